package main

import (
	"context"
	"fmt"
	"io"
	"math"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"time"
)

// socketProcOptions is what `sbbench socket --server-process` runs.
type socketProcOptions struct {
	engine     string // prebuilt switchboard binary; "" builds ./cmd/switchboard
	vsEngine   string // another switchboard binary to compare with instead of the echo server (before/after)
	scripts    string // the engine's lua.scripts_dir
	conns      int
	dur        time.Duration
	request    string
	pipeline   int
	rounds     int
	cpuprofile string // the engine's CPU profile of its last run, from its admin listener's /debug/pprof
	size       int    // echo line size; 0 = 64
}

// runSocketProcesses builds and starts the engine (socket part alone, logging at error level) and the echo
// baseline as processes of their own, alternates rounds of load on the two and prints the medians.
func runSocketProcesses(ctx context.Context, out io.Writer, o socketProcOptions) (procComparison, error) {
	if o.size == 0 {
		o.size = 64
	}
	dir, err := os.MkdirTemp("", "sbbench-socket-")
	if err != nil {
		return procComparison{}, err
	}
	defer os.RemoveAll(dir)
	engineBin, err := buildEngine(ctx, dir, o.engine)
	if err != nil {
		return procComparison{}, err
	}
	scripts, err := filepath.Abs(o.scripts)
	if err != nil {
		return procComparison{}, err
	}
	addrs, err := freeAddrs(true, true, o.cpuprofile != "")
	if err != nil {
		return procComparison{}, err
	}
	sockAddr, echoAddr, adminAddr := addrs[0], addrs[1], addrs[2]
	eng, err := startEngineProcess(ctx, "socket", engineBin, dir, "switchboard.yaml", socketEngineConfig(sockAddr, adminAddr, scripts), sockAddr)
	if err != nil {
		return procComparison{}, err
	}
	defer stopProcess(eng)
	echo, baseName, err := comparedWith{name: "echo", program: "echoserver", args: []string{"-listen", echoAddr},
		vsEngine: o.vsEngine, vsConfig: socketEngineConfig(echoAddr, "", scripts)}.start(ctx, dir, echoAddr)
	if err != nil {
		return procComparison{}, err
	}
	defer stopProcess(echo)
	fmt.Fprintf(out, "sbbench socket --server-process: %d conns, request %q, %s x %d rounds; engine %s (pid %d), %s %s (pid %d); CPU from /proc at 1/%d s\n",
		o.conns, o.request, o.dur, o.rounds, engineBin, eng.Pid(), baseName, o.vsEngine, echo.Pid(), clockTicks())
	engineRuns := 0
	target := procSide{name: "socket", proc: eng, run: func(ctx context.Context) (LoadResult, error) {
		engineRuns++
		if o.cpuprofile == "" || engineRuns < max(o.rounds, 1) { // profile the last run only
			return runSocket(ctx, sockAddr, o.conns, o.dur, o.request, o.pipeline)
		}
		prof := make(chan error, 1)
		go func() { prof <- fetchCPUProfile(adminAddr, o.dur, o.cpuprofile) }()
		r, err := runSocket(ctx, sockAddr, o.conns, o.dur, o.request, o.pipeline)
		if perr := <-prof; perr != nil && err == nil {
			err = perr
		}
		return r, err
	}}
	base := procSide{name: baseName, proc: echo, run: func(ctx context.Context) (LoadResult, error) {
		if o.vsEngine != "" {
			return runSocket(ctx, echoAddr, o.conns, o.dur, o.request, o.pipeline)
		}
		return runEcho(ctx, echoAddr, o.conns, o.dur, o.size)
	}}
	return compareProcesses(ctx, out, o.rounds, base, target)
}

// socketEngineConfig is the engine's configuration for the socket benchmark: the socket part on sockAddr with
// its defaults, the other parts off, logging at error level (as production runs at info, minus the
// per-connection lines), the admin listener only for a profile.
func socketEngineConfig(sockAddr, adminAddr, scripts string) string {
	pprof := "" // older builds (before/after runs) do not know admin.pprof: it is written only when used
	if adminAddr != "" {
		pprof = "\n  pprof: true"
	}
	return fmt.Sprintf(`log:
  level: error
lua:
  scripts_dir: %q
admin:
  listen: %q%s
socket:
  listen: %q
  public_dir: ""
relay:
  enabled: false
esl:
  enabled: false
`, scripts, adminAddr, pprof, sockAddr)
}

// fetchCPUProfile writes the engine's CPU profile over d (whole seconds, at least one) to path.
func fetchCPUProfile(adminAddr string, d time.Duration, path string) error {
	secs := max(int(math.Round(d.Seconds())), 1)
	url := "http://" + adminAddr + "/debug/pprof/profile?seconds=" + strconv.Itoa(secs)
	c := http.Client{Timeout: d + 30*time.Second}
	resp, err := c.Get(url)
	if err != nil {
		return fmt.Errorf("cpu profile: %w", err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		b, _ := io.ReadAll(io.LimitReader(resp.Body, 4096))
		return fmt.Errorf("cpu profile: %s: %s", resp.Status, b)
	}
	f, err := os.Create(path)
	if err != nil {
		return fmt.Errorf("cpu profile: %w", err)
	}
	if _, err := io.Copy(f, resp.Body); err != nil {
		f.Close()
		return fmt.Errorf("cpu profile: %w", err)
	}
	return f.Close()
}
