package main

// The --server-process harness: the engine and a bare Go baseline each run in a process of their own, as
// users run them, while this process is only the load client. Rounds alternate between the two and each
// run is charged the CPU time its server process spent (utime + stime from /proc/<pid>/stat), so the
// figures are the servers' alone, not the client's.
//
// Generic pieces, used by `sbbench socket --server-process` and meant for the other subcommands:
//   - buildBaseline builds one of the programs under baselines/ (embedded in sbbench) with `go build`;
//   - buildEngine builds ./cmd/switchboard (or takes a prebuilt binary);
//   - freeAddr finds a free 127.0.0.1 port;
//   - startServerProcess starts a process, waits until it accepts on its addresses, reads its CPU time,
//     stops it;
//   - compareProcesses alternates rounds of a baseline side and a target side and prints the medians of
//     rate and server CPU per operation, and the ratios.

import (
	"context"
	"embed"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"
	"unsafe"
)

// baselineSources holds the baseline servers' sources: baselines/NAME/*.go is a main package that imports the
// standard library only and takes -listen ADDR (and whatever else its subcommand passes).
//
//go:embed baselines
var baselineSources embed.FS

// buildBaseline builds the baseline program baselines/<name> into dir and returns the binary's path. The
// sources are written to a module of their own under dir, so the build needs no network and no module
// of this repository.
func buildBaseline(ctx context.Context, dir, name string) (string, error) {
	srcDir := filepath.Join(dir, name+"-src")
	entries, err := baselineSources.ReadDir("baselines/" + name)
	if err != nil {
		return "", fmt.Errorf("baseline %s: %w", name, err)
	}
	if err := os.MkdirAll(srcDir, 0o755); err != nil {
		return "", fmt.Errorf("baseline %s: %w", name, err)
	}
	for _, e := range entries {
		if e.IsDir() || !strings.HasSuffix(e.Name(), ".go") {
			continue
		}
		b, err := baselineSources.ReadFile("baselines/" + name + "/" + e.Name())
		if err != nil {
			return "", fmt.Errorf("baseline %s: %w", name, err)
		}
		if err := os.WriteFile(filepath.Join(srcDir, e.Name()), b, 0o644); err != nil {
			return "", fmt.Errorf("baseline %s: %w", name, err)
		}
	}
	if err := os.WriteFile(filepath.Join(srcDir, "go.mod"), []byte("module sbbench/baseline/"+name+"\n\ngo 1.22\n"), 0o644); err != nil {
		return "", fmt.Errorf("baseline %s: %w", name, err)
	}
	bin := filepath.Join(dir, name)
	if err := goBuild(ctx, srcDir, bin, "."); err != nil {
		return "", fmt.Errorf("baseline %s: %w", name, err)
	}
	return bin, nil
}

// buildEngine returns the engine binary to run: prebuilt when given, else ./cmd/switchboard of the module
// that contains the working directory, built into dir.
func buildEngine(ctx context.Context, dir, prebuilt string) (string, error) {
	if prebuilt != "" {
		abs, err := filepath.Abs(prebuilt)
		if err != nil {
			return "", fmt.Errorf("engine: %w", err)
		}
		if _, err := os.Stat(abs); err != nil {
			return "", fmt.Errorf("engine: %w", err)
		}
		return abs, nil
	}
	out, err := exec.CommandContext(ctx, "go", "env", "GOMOD").Output()
	if err != nil {
		return "", fmt.Errorf("engine: go env GOMOD: %w", err)
	}
	mod := strings.TrimSpace(string(out))
	if mod == "" || mod == os.DevNull {
		return "", errors.New("engine: the working directory is not inside the switchboard module; run from the repository or pass --engine")
	}
	bin := filepath.Join(dir, "switchboard")
	if err := goBuild(ctx, filepath.Dir(mod), bin, "./cmd/switchboard"); err != nil {
		return "", fmt.Errorf("engine: %w", err)
	}
	return bin, nil
}

func goBuild(ctx context.Context, srcDir, out, pkg string) error {
	cmd := exec.CommandContext(ctx, "go", "build", "-o", out, pkg)
	cmd.Dir = srcDir
	cmd.Env = append(os.Environ(), "GOWORK=off", "GOFLAGS=", "GOTOOLCHAIN=local")
	if b, err := cmd.CombinedOutput(); err != nil {
		return fmt.Errorf("go build %s in %s: %w\n%s", pkg, srcDir, err, b)
	}
	return nil
}

// freeAddr is a 127.0.0.1 address with a port nobody listened on a moment ago (the port is released before
// the server takes it; another program could grab it in between, which startServerProcess then reports).
func freeAddr() (string, error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return "", fmt.Errorf("free port: %w", err)
	}
	addr := ln.Addr().String()
	ln.Close()
	return addr, nil
}

// freeAddrs returns n free 127.0.0.1 addresses, "" for each one want leaves false (an optional listener).
func freeAddrs(want ...bool) ([]string, error) {
	out := make([]string, len(want))
	for i, w := range want {
		if !w {
			continue
		}
		a, err := freeAddr()
		if err != nil {
			return nil, err
		}
		out[i] = a
	}
	return out, nil
}

// startEngineProcess writes config to dir/file and starts the engine binary on it (`run -c`), ready once
// listen accepts connections.
func startEngineProcess(ctx context.Context, name, bin, dir, file, config, listen string) (*serverProcess, error) {
	cfgPath := filepath.Join(dir, file)
	if err := os.WriteFile(cfgPath, []byte(config), 0o644); err != nil {
		return nil, err
	}
	return startServerProcess(ctx, name, bin, dir, []string{"run", "-c", cfgPath}, listen)
}

// stopProcess stops p, reporting a failure on stderr: for defer.
func stopProcess(p *serverProcess) {
	if err := p.Stop(); err != nil {
		fmt.Fprintln(os.Stderr, "sbbench:", err)
	}
}

// serverProcess is a server running in a child process.
type serverProcess struct {
	name   string
	cmd    *exec.Cmd
	out    *tailBuffer   // the last bytes of its stdout and stderr, for error messages
	exited chan struct{} // closed once it has exited; waitErr is then set
	waitE  error
}

// comparedWith is what an engine process is measured against: a baseline program built from
// baselines/<program> and started with args, or, when vsEngine is set, another engine build started on
// vsConfig (before/after in one run).
type comparedWith struct {
	name     string // the baseline's name in the report ("echo", "forwarder")
	program  string // baselines/<program>
	args     []string
	vsEngine string
	vsConfig string
}

// start builds and starts it in dir, listening on addr; it returns the process and its name in the report.
func (w comparedWith) start(ctx context.Context, dir, addr string) (*serverProcess, string, error) {
	if w.vsEngine != "" {
		bin, err := buildEngine(ctx, dir, w.vsEngine)
		if err != nil {
			return nil, "", err
		}
		p, err := startEngineProcess(ctx, "vs-engine", bin, dir, "switchboard-vs.yaml", w.vsConfig, addr)
		return p, "vs-engine", err
	}
	bin, err := buildBaseline(ctx, dir, w.program)
	if err != nil {
		return nil, "", err
	}
	p, err := startServerProcess(ctx, w.name, bin, dir, w.args, addr)
	return p, w.name, err
}

// startServerProcess starts path with args in dir and waits until every address of addrs accepts a TCP
// connection (at most a minute). A process that exits before is an error with the end of its output.
func startServerProcess(ctx context.Context, name, path, dir string, args []string, addrs ...string) (*serverProcess, error) {
	p := &serverProcess{name: name, out: &tailBuffer{max: 16 << 10}, exited: make(chan struct{})}
	p.cmd = exec.Command(path, args...)
	p.cmd.Dir = dir
	p.cmd.Stdout = p.out
	p.cmd.Stderr = p.out
	if err := p.cmd.Start(); err != nil {
		return nil, fmt.Errorf("%s: start %s: %w", name, path, err)
	}
	go func() {
		p.waitE = p.cmd.Wait()
		close(p.exited)
	}()
	deadline := time.Now().Add(time.Minute)
	for _, addr := range addrs {
		for {
			c, err := net.DialTimeout("tcp", addr, time.Second)
			if err == nil {
				c.Close()
				break
			}
			select {
			case <-p.exited:
				return nil, fmt.Errorf("%s: exited before listening on %s (%v):\n%s", name, addr, p.waitE, p.out.String())
			case <-ctx.Done():
				_ = p.Stop()
				return nil, ctx.Err()
			case <-time.After(20 * time.Millisecond):
			}
			if time.Now().After(deadline) {
				_ = p.Stop()
				return nil, fmt.Errorf("%s: not listening on %s after a minute:\n%s", name, addr, p.out.String())
			}
		}
	}
	return p, nil
}

// Pid is the process id.
func (p *serverProcess) Pid() int { return p.cmd.Process.Pid }

// CPUTime is the CPU time the process has used so far, in clock ticks' resolution.
func (p *serverProcess) CPUTime() (procCPU, error) {
	c, err := procCPUTime(p.Pid())
	if err != nil {
		return procCPU{}, fmt.Errorf("%s: %w", p.name, err)
	}
	return c, nil
}

// Stop asks the process to stop (SIGTERM), kills it after 10 s and waits for it. An exit status other than
// 0 (or the SIGTERM itself) is an error with the end of its output.
func (p *serverProcess) Stop() error {
	select {
	case <-p.exited:
	default:
		_ = p.cmd.Process.Signal(syscall.SIGTERM)
		select {
		case <-p.exited:
		case <-time.After(10 * time.Second):
			_ = p.cmd.Process.Kill()
			<-p.exited
			return fmt.Errorf("%s: killed after 10 s without stopping on SIGTERM:\n%s", p.name, p.out.String())
		}
	}
	var ee *exec.ExitError
	if errors.As(p.waitE, &ee) {
		if ws, ok := ee.Sys().(syscall.WaitStatus); ok && ws.Signaled() && ws.Signal() == syscall.SIGTERM {
			return nil
		}
		return fmt.Errorf("%s: %w:\n%s", p.name, p.waitE, p.out.String())
	}
	return p.waitE
}

// procCPU is a process's CPU time: in user space (its own code, Go's runtime, the libraries) and in the
// kernel on its behalf (system calls, and on loopback the TCP receive work its writes cause).
type procCPU struct{ User, System time.Duration }

// Total is user + system time.
func (c procCPU) Total() time.Duration { return c.User + c.System }

func (c procCPU) sub(o procCPU) procCPU { return procCPU{c.User - o.User, c.System - o.System} }

// procCPUTime reads utime and stime of pid from /proc/<pid>/stat.
func procCPUTime(pid int) (procCPU, error) {
	b, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/stat")
	if err != nil {
		return procCPU{}, fmt.Errorf("cpu time: %w", err)
	}
	utime, stime, err := parseProcStatCPU(b)
	if err != nil {
		return procCPU{}, fmt.Errorf("cpu time of %d: %w", pid, err)
	}
	tick := time.Second / time.Duration(clockTicks())
	return procCPU{User: time.Duration(utime) * tick, System: time.Duration(stime) * tick}, nil
}

// parseProcStatCPU returns utime and stime (fields 14 and 15, in clock ticks) of a /proc/<pid>/stat line.
// The command name (field 2) is in parentheses and may itself hold spaces and parentheses, so fields are
// counted from the last ')'.
func parseProcStatCPU(b []byte) (utime, stime uint64, err error) {
	s := string(b)
	i := strings.LastIndexByte(s, ')')
	if i < 0 {
		return 0, 0, fmt.Errorf("no command name in %q", s)
	}
	f := strings.Fields(s[i+1:]) // f[0] is field 3 (state)
	if len(f) < 13 {
		return 0, 0, fmt.Errorf("%d fields after the command name in %q", len(f), s)
	}
	if utime, err = strconv.ParseUint(f[11], 10, 64); err != nil {
		return 0, 0, fmt.Errorf("utime: %w", err)
	}
	if stime, err = strconv.ParseUint(f[12], 10, 64); err != nil {
		return 0, 0, fmt.Errorf("stime: %w", err)
	}
	return utime, stime, nil
}

var clockTicksOnce = sync.OnceValue(func() uint64 {
	// AT_CLKTCK from the auxiliary vector (what sysconf(_SC_CLK_TCK) returns); 100 on every Linux seen.
	const atClkTck = 17
	b, err := os.ReadFile("/proc/self/auxv")
	if err != nil {
		return 100
	}
	w := int(unsafe.Sizeof(uintptr(0)))
	word := func(p []byte) uint64 {
		if w == 8 {
			return binary.NativeEndian.Uint64(p)
		}
		return uint64(binary.NativeEndian.Uint32(p))
	}
	for i := 0; i+2*w <= len(b); i += 2 * w {
		if word(b[i:]) == atClkTck {
			if v := word(b[i+w:]); v > 0 {
				return v
			}
		}
	}
	return 100
})

// clockTicks is the unit of /proc/<pid>/stat's times, per second.
func clockTicks() uint64 { return clockTicksOnce() }

// tailBuffer keeps the last max bytes written to it.
type tailBuffer struct {
	mu  sync.Mutex
	max int
	b   []byte
}

func (t *tailBuffer) Write(p []byte) (int, error) {
	t.mu.Lock()
	defer t.mu.Unlock()
	t.b = append(t.b, p...)
	if len(t.b) > t.max {
		t.b = append(t.b[:0], t.b[len(t.b)-t.max:]...)
	}
	return len(p), nil
}

func (t *tailBuffer) String() string {
	t.mu.Lock()
	defer t.mu.Unlock()
	return string(t.b)
}

// procSide is one side of a comparison: a server process and the load that drives it for one run.
type procSide struct {
	name string
	proc *serverProcess
	run  func(ctx context.Context) (LoadResult, error)
}

// sideRuns is what the rounds measured on one side.
type sideRuns struct {
	Results   []LoadResult
	CPUPerOp  []time.Duration // the server process's CPU time per operation, per run
	UserPerOp []time.Duration // the part of it in user space
}

func (s sideRuns) medianRate() float64 {
	rates := make([]float64, len(s.Results))
	for i, r := range s.Results {
		rates[i] = r.Rate
	}
	return median(rates)
}

func (s sideRuns) medianCPU() time.Duration { return medianDur(s.CPUPerOp) }

func (s sideRuns) medianUser() time.Duration { return medianDur(s.UserPerOp) }

func medianDur(d []time.Duration) time.Duration {
	c := append([]time.Duration(nil), d...)
	sort.Slice(c, func(i, j int) bool { return c[i] < c[j] })
	if len(c) == 0 {
		return 0
	}
	return c[len(c)/2]
}

// systemPerOp is each run's kernel CPU time per operation.
func systemPerOp(s sideRuns) []time.Duration {
	d := make([]time.Duration, len(s.CPUPerOp))
	for i := range d {
		d[i] = s.CPUPerOp[i] - s.UserPerOp[i]
	}
	return d
}

// procComparison is the outcome of compareProcesses.
type procComparison struct {
	Base, Target sideRuns
	RateRatio    float64 // median target rate / median baseline rate
	CPURatio     float64 // median target server CPU per op / median baseline's (lower is better)
	// the same for the user-space and the kernel part of that CPU time: which side of the system call
	// boundary the difference is on
	UserRatio, SystemRatio float64
	// the same from each round's pair of runs (made in the same minute), then the median over rounds:
	// steadier than the ratio of medians when the neighbours' load drifts during the run
	PairedRateRatio, PairedCPURatio float64
}

// compareProcesses runs rounds rounds; each runs both sides once, the baseline first in odd rounds and the
// target first in even ones, so that a neighbour's load drifting over the run weighs on both alike. Each
// run is charged the CPU time its server process spent during it. It prints every run, then the medians
// and their ratios.
func compareProcesses(ctx context.Context, out io.Writer, rounds int, base, target procSide) (procComparison, error) {
	var cmp procComparison
	measure := func(s procSide, into *sideRuns) error {
		c0, err := s.proc.CPUTime()
		if err != nil {
			return err
		}
		r, err := s.run(ctx)
		if err != nil {
			return fmt.Errorf("%s: %w", s.name, err)
		}
		c1, err := s.proc.CPUTime()
		if err != nil {
			return err
		}
		if r.Errors > 0 {
			return fmt.Errorf("%s: %d connections failed", s.name, r.Errors)
		}
		used := c1.sub(c0)
		cpu, user := perOp(used.Total(), r.Ops), perOp(used.User, r.Ops)
		into.Results = append(into.Results, r)
		into.CPUPerOp = append(into.CPUPerOp, cpu)
		into.UserPerOp = append(into.UserPerOp, user)
		printResult(out, s.name, r)
		fmt.Fprintf(out, "%-12s server cpu/op %s: user %s, system %s (%s over the run, pid %d)\n", s.name, fmtDur(cpu),
			fmtDur(user), fmtDur(cpu-user), fmtDur(used.Total()), s.proc.Pid())
		return nil
	}
	for round := 1; round <= max(rounds, 1); round++ {
		first, second := base, target
		firstInto, secondInto := &cmp.Base, &cmp.Target
		if round%2 == 0 {
			first, second, firstInto, secondInto = second, first, secondInto, firstInto
		}
		fmt.Fprintf(out, "round %d\n", round)
		if err := measure(first, firstInto); err != nil {
			return cmp, err
		}
		if err := measure(second, secondInto); err != nil {
			return cmp, err
		}
	}
	br, tr := cmp.Base.medianRate(), cmp.Target.medianRate()
	bc, tc := cmp.Base.medianCPU(), cmp.Target.medianCPU()
	if br > 0 {
		cmp.RateRatio = tr / br
	}
	if bc > 0 {
		cmp.CPURatio = float64(tc) / float64(bc)
	}
	bu, tu := cmp.Base.medianUser(), cmp.Target.medianUser()
	bs, ts := medianDur(systemPerOp(cmp.Base)), medianDur(systemPerOp(cmp.Target))
	if bu > 0 {
		cmp.UserRatio = float64(tu) / float64(bu)
	}
	if bs > 0 {
		cmp.SystemRatio = float64(ts) / float64(bs)
	}
	var rr, cr []float64
	for i := range cmp.Base.Results {
		if b := cmp.Base.Results[i].Rate; b > 0 {
			rr = append(rr, cmp.Target.Results[i].Rate/b)
		}
		if b := cmp.Base.CPUPerOp[i]; b > 0 {
			cr = append(cr, float64(cmp.Target.CPUPerOp[i])/float64(b))
		}
	}
	cmp.PairedRateRatio, cmp.PairedCPURatio = median(rr), median(cr)
	n := len(cmp.Base.Results)
	fmt.Fprintf(out, "medians of %d rounds (server processes):\n", n)
	fmt.Fprintf(out, "  %-12s %10.0f ops/s  server cpu/op %s: user %s, system %s\n", base.name, br, fmtDur(bc), fmtDur(bu), fmtDur(bs))
	fmt.Fprintf(out, "  %-12s %10.0f ops/s  server cpu/op %s: user %s, system %s\n", target.name, tr, fmtDur(tc), fmtDur(tu), fmtDur(ts))
	fmt.Fprintf(out, "  %s: rate %.2fx of %s, server cpu per op %.2fx of %s's (user %.2fx, system %.2fx)\n", target.name,
		cmp.RateRatio, base.name, cmp.CPURatio, base.name, cmp.UserRatio, cmp.SystemRatio)
	fmt.Fprintf(out, "  per-round ratios, median: rate %.2fx, server cpu per op %.2fx\n", cmp.PairedRateRatio, cmp.PairedCPURatio)
	return cmp, nil
}
