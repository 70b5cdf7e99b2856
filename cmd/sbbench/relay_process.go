package main

import (
	"context"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"github.com/switchboard/switchboard/engine/relay/relaytest"
)

// relayProcOptions is what `sbbench relay --server-process` runs.
type relayProcOptions struct {
	engine     string // prebuilt switchboard binary; "" builds ./cmd/switchboard
	workload   *relayWorkload
	clients    int
	window     int
	dur        time.Duration
	rounds     int
	cpuprofile string // the engine's CPU profile of its last run, from its admin listener's /debug/pprof
	vsEngine   string // another switchboard binary to compare with instead of the forwarder (before/after)
}

// runRelayProcesses builds and starts the engine (the relay part alone, logging at error level) and the
// amiforwarder baseline as processes of their own, each with its own test centers in this process, then
// alternates rounds of the same AMI load on the two and prints the medians.
func runRelayProcesses(ctx context.Context, out io.Writer, o relayProcOptions) (procComparison, error) {
	wl := o.workload
	dir, err := os.MkdirTemp("", "sbbench-relay-")
	if err != nil {
		return procComparison{}, err
	}
	defer os.RemoveAll(dir)
	engineBin, err := buildEngine(ctx, dir, o.engine)
	if err != nil {
		return procComparison{}, err
	}
	newCenters := func() ([]*relaytest.Center, error) {
		cs := make([]*relaytest.Center, len(wl.centers))
		for i := range cs {
			c, err := relaytest.NewCenter("127.0.0.1:0")
			if err != nil {
				return nil, err
			}
			c.Store = false
			cs[i] = c
		}
		return cs, nil
	}
	relayCenters, err := newCenters()
	if err != nil {
		return procComparison{}, err
	}
	defer closeCenters(relayCenters)
	fwdCenters, err := newCenters()
	if err != nil {
		return procComparison{}, err
	}
	defer closeCenters(fwdCenters)

	scripts := filepath.Join(dir, "scripts")
	if err := os.MkdirAll(scripts, 0o755); err != nil {
		return procComparison{}, err
	}
	if err := os.WriteFile(filepath.Join(scripts, "bench.lua"), []byte("-- route expressions only\n"), 0o644); err != nil {
		return procComparison{}, err
	}
	routes := filepath.Join(dir, "relay.routes")
	if err := os.WriteFile(routes, []byte(wl.routes), 0o644); err != nil {
		return procComparison{}, err
	}
	addrs, err := freeAddrs(true, true, o.cpuprofile != "")
	if err != nil {
		return procComparison{}, err
	}
	relayAddr, fwdAddr, adminAddr := addrs[0], addrs[1], addrs[2]
	eng, err := startEngineProcess(ctx, "relay", engineBin, dir, "switchboard.yaml",
		relayEngineConfig(relayAddr, adminAddr, scripts, routes, wl.centers, relayCenters, o.window), relayAddr)
	if err != nil {
		return procComparison{}, err
	}
	defer stopProcess(eng)
	for _, c := range relayCenters {
		if err := c.WaitLogin(1, 30*time.Second); err != nil {
			return procComparison{}, fmt.Errorf("relay: %w", err)
		}
	}
	fwdArgs := []string{"-listen", fwdAddr}
	for _, c := range fwdCenters {
		fwdArgs = append(fwdArgs, "-center", c.Addr())
	}
	for _, r := range wl.fwdRoutes {
		fwdArgs = append(fwdArgs, "-route", r)
	}
	// before/after: the other engine takes the forwarder's place, with the same configuration
	fwd, baseName, err := comparedWith{name: "forwarder", program: "amiforwarder", args: fwdArgs, vsEngine: o.vsEngine,
		vsConfig: relayEngineConfig(fwdAddr, "", scripts, routes, wl.centers, fwdCenters, o.window)}.start(ctx, dir, fwdAddr)
	if err != nil {
		return procComparison{}, err
	}
	defer stopProcess(fwd)
	baseLogin := o.vsEngine != "" // an engine takes logins; the forwarder takes lines
	if baseLogin {
		for _, c := range fwdCenters {
			if err := c.WaitLogin(1, 30*time.Second); err != nil {
				return procComparison{}, fmt.Errorf("vs-engine: %w", err)
			}
		}
	}
	fmt.Fprintf(out, "sbbench relay --server-process: routes %s, %d clients, window %d, %s x %d rounds; engine %s (pid %d), %s (pid %d); CPU from /proc at 1/%d s\n",
		wl.name, o.clients, o.window, o.dur, o.rounds, engineBin, eng.Pid(), baseName, fwd.Pid(), clockTicks())
	// drive runs the load on addr and checks that every acknowledged message reached its centers
	drive := func(ctx context.Context, name, addr string, login bool, centers []*relaytest.Center) (LoadResult, error) {
		before := countDeliveries(centers)
		r, err := drivePipelined(ctx, addr, o.clients, o.window, o.dur, login, wl.body, nil)
		if err != nil {
			return r, err
		}
		want := before + wl.deliveries(r.Ops, o.clients)
		for deadline := time.Now().Add(10 * time.Second); countDeliveries(centers) < want && time.Now().Before(deadline); {
			time.Sleep(10 * time.Millisecond)
		}
		if got := countDeliveries(centers); got < want {
			return r, fmt.Errorf("%s: centers got %d deliveries, want at least %d", name, got-before, want-before)
		}
		return r, nil
	}
	target := procSide{name: "relay", proc: eng, run: func(ctx context.Context) (LoadResult, error) {
		if o.cpuprofile == "" {
			return drive(ctx, "relay", relayAddr, true, relayCenters)
		}
		prof := make(chan error, 1)
		go func() { prof <- fetchCPUProfile(adminAddr, o.dur, o.cpuprofile) }()
		r, err := drive(ctx, "relay", relayAddr, true, relayCenters)
		if perr := <-prof; perr != nil && err == nil {
			err = perr
		}
		return r, err
	}}
	base := procSide{name: baseName, proc: fwd, run: func(ctx context.Context) (LoadResult, error) {
		return drive(ctx, baseName, fwdAddr, baseLogin, fwdCenters)
	}}
	return compareProcesses(ctx, out, o.rounds, base, target)
}

func closeCenters(cs []*relaytest.Center) {
	for _, c := range cs {
		c.Close()
	}
}

func countDeliveries(cs []*relaytest.Center) int64 {
	n := 0
	for _, c := range cs {
		n += c.Count()
	}
	return int64(n)
}

// relayEngineConfig is the engine's configuration for the relay benchmark: the relay part on relayAddr with
// its defaults (expression memo, object index and all), the workload's centers and routes, the other parts
// off, logging at error level, the admin listener only for a profile. The application queue bound is raised
// as the in-process benchmark raises it, to hold a window's statuses.
func relayEngineConfig(relayAddr, adminAddr, scripts, routes string, names []string, centers []*relaytest.Center, window int) string {
	pprof := "" // older builds (before/after runs) do not know admin.pprof: it is written only when used
	if adminAddr != "" {
		pprof = "\n  pprof: true"
	}
	var cs []string
	for i, c := range centers {
		cs = append(cs, strconv.Quote(names[i])+": "+strconv.Quote(c.Addr()))
	}
	return fmt.Sprintf(`log:
  level: error
lua:
  scripts_dir: %q
admin:
  listen: %q%s
socket:
  enabled: false
esl:
  enabled: false
relay:
  enabled: true
  listen: %q
  centers: {%s}
  routes_file: %q
  client_queue: %d
  client_queue_bytes: %d
`, scripts, adminAddr, pprof, relayAddr, strings.Join(cs, ", "), routes, max(4096, 2*window), max(1<<20, 2*window*64))
}
