package main

import (
	"bufio"
	"bytes"
	"context"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"runtime"
	"runtime/pprof"
	"sort"
	"strconv"
	"sync"
	"syscall"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/sirupsen/logrus"
	"github.com/spf13/cobra"

	"github.com/switchboard/switchboard/engine"
	"github.com/switchboard/switchboard/engine/socket"
	"github.com/switchboard/switchboard/engine/socket/socketlua"
)

func socketCmd() *cobra.Command {
	var (
		conns    int
		dur      time.Duration
		request  string
		addr     string
		scripts  string
		echo     bool
		idle     int
		cpuprof  string
		memprof  string
		hold     int
		rounds   int
		pipeline int
		procs    bool
		engineB  string
		vsEngine string
	)
	cmd := &cobra.Command{
		Use:   "socket",
		Short: "closed-loop load on the socket server (an action or a verb), against echo",
		Long: `socket runs N connections; each sends --request (a plain line: an action name such as
randomNumber, or a verb such as "paramView key") and waits for its reply before sending the next.
Without --addr it starts the socket server in this process with the Lua scripts of --scripts
(default logging off, as a production setup would run). Unless --echo=false it first runs the
echo baseline with the same connections and duration and prints the ratio.

With --idle N it instead opens N idle connections (each reads its welcome line) and reports the
server heap they cost: Go heap in use after GC, divided by N (client sockets included, so this
over-counts slightly), plus goroutine stack memory.

With --server-process the engine (./cmd/switchboard built with go build, or --engine) and a bare Go
line-echo server (built from an embedded source) each run in a process of their own, as users run
them; this process is only the load client. Rounds alternate (5 by default) and every run is
charged its server's CPU time from /proc/<pid>/stat: the medians of rate and server CPU per reply,
and their ratios, are the figure docs/benchmarks.md reports.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			out := cmd.OutOrStdout()
			ctx := cmd.Context()
			if hold > 0 {
				return holdIdle(addr, hold)
			}
			if procs {
				if !cmd.Flags().Changed("rounds") {
					rounds = 5
				}
				_, err := runSocketProcesses(ctx, out, socketProcOptions{
					engine: engineB, vsEngine: vsEngine, scripts: scripts, conns: conns, dur: dur, request: request,
					pipeline: pipeline, rounds: rounds, cpuprofile: cpuprof,
				})
				return err
			}
			target := addr
			var srv *socketServer
			if target == "" {
				var err error
				if srv, err = startSocketServer(scripts); err != nil {
					return err
				}
				defer srv.stop()
				target = srv.addr
			}
			if idle > 0 {
				return measureIdle(out, target, idle)
			}
			stopProfile, err := startCPUProfile(cpuprof)
			if err != nil {
				return err
			}
			defer stopProfile()
			if memprof != "" {
				runtime.MemProfileRate = 64 << 10
				defer func() {
					if f, err := os.Create(memprof); err == nil {
						_ = pprof.Lookup("allocs").WriteTo(f, 0)
						f.Close()
					}
				}()
			}
			fmt.Fprintf(out, "sbbench socket: %d conns, request %q, %s x %d rounds, GOMAXPROCS %d\n", conns, request, dur, rounds, runtime.GOMAXPROCS(0))
			// On a shared machine one run's rate says more about the neighbours than about the code, so
			// echo and socket alternate for several rounds, and each run also reports the CPU time this
			// process spent per round trip (client and server), which other load barely moves.
			var ratios, cpuRatios []float64
			for round := 1; round <= rounds; round++ {
				var base LoadResult
				var baseCPU time.Duration
				var baseUser time.Duration
				if echo {
					u0, s0 := cpuTimes()
					var err error
					if base, err = runEchoBaseline(ctx, conns, dur, 64); err != nil {
						return err
					}
					u1, s1 := cpuTimes()
					baseCPU, baseUser = perOp(u1-u0+s1-s0, base.Ops), perOp(u1-u0, base.Ops)
					printResult(out, "echo", base)
				}
				u0, s0 := cpuTimes()
				h0 := srv.counter("switchboard_socket_inline_handoffs_total")
				r, err := runSocket(ctx, target, conns, dur, request, pipeline)
				if err != nil {
					return err
				}
				u1, s1 := cpuTimes()
				sockCPU, sockUser := perOp(u1-u0+s1-s0, r.Ops), perOp(u1-u0, r.Ops)
				printResult(out, "socket", r)
				if srv != nil {
					fmt.Fprintf(out, "%-12s inline actions handed over (stalled): %.0f\n", "socket", srv.counter("switchboard_socket_inline_handoffs_total")-h0)
				}
				if !echo {
					fmt.Fprintf(out, "%-12s cpu/op %s (user %s)\n", "socket", fmtDur(sockCPU), fmtDur(sockUser))
				}
				if echo {
					printRatio(out, "socket", r, base)
					fmt.Fprintf(out, "%-12s cpu/op %s (user %s) vs echo %s (user %s): %.2fx of echo at equal CPU\n", "socket",
						fmtDur(sockCPU), fmtDur(sockUser), fmtDur(baseCPU), fmtDur(baseUser), float64(baseCPU)/float64(sockCPU))
					ratios = append(ratios, r.Rate/base.Rate)
					cpuRatios = append(cpuRatios, float64(baseCPU)/float64(sockCPU))
				}
			}
			if echo && rounds > 1 {
				fmt.Fprintf(out, "median over %d rounds: rate %.2fx of echo, %.2fx at equal CPU\n", rounds, median(ratios), median(cpuRatios))
			}
			return nil
		},
	}
	f := cmd.Flags()
	f.IntVar(&conns, "conns", 50, "concurrent connections")
	f.DurationVar(&dur, "duration", 5*time.Second, "how long to run")
	f.StringVar(&request, "request", "randomNumber", "the line each request sends (action name, JSON request or verb)")
	f.StringVar(&addr, "addr", "", "host:port of a running socket server (default: start one in-process)")
	f.StringVar(&scripts, "scripts", "scripts", "scripts directory of the in-process server")
	f.BoolVar(&echo, "echo", true, "run the echo baseline first and print the ratio")
	f.StringVar(&memprof, "memprofile", "", "write an allocation profile of the whole run (client and in-process server) to this file")
	f.StringVar(&cpuprof, "cpuprofile", "", "write a CPU profile of the whole run (client and in-process server) to this file; with --server-process, the engine process's profile of its last round")
	f.IntVar(&pipeline, "pipeline", 1, "requests each connection writes at once before reading their replies (an op is then the whole batch)")
	f.IntVar(&rounds, "rounds", 1, "alternate echo and socket runs this many times and print the medians (default 5 with --server-process)")
	f.BoolVar(&procs, "server-process", false, "run the engine (built from ./cmd/switchboard, or --engine) and a bare Go echo server as processes of their own; report the servers' CPU per reply from /proc")
	f.StringVar(&vsEngine, "vs-engine", "", "with --server-process: compare with this other switchboard binary (same request) instead of the echo server, e.g. a build of main for before/after")
	f.StringVar(&engineB, "engine", "", "with --server-process: a prebuilt switchboard binary instead of building ./cmd/switchboard")
	f.IntVar(&hold, "hold", 0, "internal: open this many idle connections to --addr until stdin closes (used by --idle)")
	_ = f.MarkHidden("hold")
	f.IntVar(&idle, "idle", 0, "measure heap per idle connection with this many connections instead of load")
	return cmd
}

type socketServer struct {
	addr string
	stop func()
	reg  *prometheus.Registry
}

// counter reads one of the in-process server's counters (0 when absent or the server is remote).
func (s *socketServer) counter(name string) float64 {
	if s == nil || s.reg == nil {
		return 0
	}
	mfs, err := s.reg.Gather()
	if err != nil {
		return 0
	}
	for _, mf := range mfs {
		if mf.GetName() == name && len(mf.GetMetric()) == 1 && mf.GetMetric()[0].GetCounter() != nil {
			return mf.GetMetric()[0].GetCounter().GetValue()
		}
	}
	return 0
}

// startSocketServer runs the socket server with the Lua runtime on 127.0.0.1:0.
func startSocketServer(scriptsDir string) (*socketServer, error) {
	logger := logrus.New()
	logger.SetOutput(io.Discard)
	log := logrus.NewEntry(logger)
	ecfg := engine.DefaultConfig()
	ecfg.Lua.ScriptsDir = scriptsDir
	rt, _, err := engine.ScriptRuntime(ecfg, nil, "", log) // every binding: the shipped scripts use them all
	if err != nil {
		return nil, err
	}
	if err := rt.Load(); err != nil {
		rt.Close()
		return nil, fmt.Errorf("socket: scripts: %w", err)
	}
	cfg := socket.DefaultConfig()
	cfg.Listen = "127.0.0.1:0"
	cfg.SimultaneousActions = 5
	s := socketlua.NewScripts(rt)
	reg := prometheus.NewRegistry()
	srv, err := socket.New(cfg, socket.Options{Actions: s, Verbs: s, Hooks: s, Log: log, Metrics: reg})
	if err != nil {
		rt.Close()
		return nil, err
	}
	if err := srv.Start(context.Background()); err != nil {
		rt.Close()
		return nil, err
	}
	return &socketServer{addr: srv.Addrs()["socket"].String(), reg: reg, stop: func() {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		_ = srv.Shutdown(ctx)
		rt.Close()
	}}, nil
}

var responseCtx = []byte(`"context":"response"`)

// runSocket drives the server at addr: one request line, then read lines until its reply.
func runSocket(ctx context.Context, addr string, conns int, dur time.Duration, request string, pipeline int) (LoadResult, error) {
	pipeline = max(pipeline, 1)
	line := bytes.Repeat([]byte(request+"\n"), pipeline)
	var firstErr sync.Once
	report := func(err error) error { // a failed connection stops; say why once
		firstErr.Do(func() { fmt.Fprintf(os.Stderr, "sbbench socket: a connection failed: %v\n", err) })
		return err
	}
	return runClosedLoop(ctx, conns, dur, func(int) (func() error, func(), error) {
		c, err := net.DialTimeout("tcp", addr, 10*time.Second)
		if err != nil {
			return nil, nil, fmt.Errorf("socket: dial %s: %w", addr, err)
		}
		r := bufio.NewReaderSize(c, 4096)
		if _, err := r.ReadSlice('\n'); err != nil { // welcome
			c.Close()
			return nil, nil, fmt.Errorf("socket: welcome: %w", err)
		}
		do := func() error {
			if _, err := c.Write(line); err != nil {
				return fmt.Errorf("socket: write: %w", err)
			}
			for got := 0; got < pipeline; {
				reply, err := r.ReadSlice('\n')
				if err != nil {
					return fmt.Errorf("socket: read: %w", err)
				}
				if !bytes.Contains(reply, responseCtx) {
					continue // a chat line or a push
				}
				if bytes.HasPrefix(reply, []byte(`{"error"`)) {
					return report(fmt.Errorf("socket: error reply %s", bytes.TrimSpace(reply)))
				}
				got++
			}
			return nil
		}
		return do, func() { c.Close() }, nil
	})
}

// measureIdle has a child process (this binary with --hold) open n connections that each read the
// welcome line and then stay idle, and reports what they cost this process's in-process server: Go heap
// in use after GC, and goroutine stacks, per connection. The clients live in the child, so the figures
// are the server's alone (and each process stays under its file limit).
func measureIdle(out io.Writer, addr string, n int) error {
	if err := raiseFileLimit(n + 256); err != nil {
		return err
	}
	var before, after runtime.MemStats
	runtime.GC()
	runtime.ReadMemStats(&before)
	child := exec.Command(os.Args[0], "socket", "--hold", strconv.Itoa(n), "--addr", addr)
	child.Stderr = os.Stderr
	stdin, err := child.StdinPipe()
	if err != nil {
		return err
	}
	stdout, err := child.StdoutPipe()
	if err != nil {
		return err
	}
	if err := child.Start(); err != nil {
		return fmt.Errorf("socket: start holder: %w", err)
	}
	defer func() {
		stdin.Close()
		_ = child.Wait()
	}()
	ready, err := bufio.NewReader(stdout).ReadString('\n')
	if err != nil || ready != "ready\n" {
		return fmt.Errorf("socket: holder did not get ready: %q %v", ready, err)
	}
	time.Sleep(time.Second)
	runtime.GC()
	runtime.ReadMemStats(&after)
	heap := float64(after.HeapAlloc) - float64(before.HeapAlloc)
	stack := float64(after.StackInuse) - float64(before.StackInuse)
	fmt.Fprintf(out, "sbbench socket --idle: %d idle connections (clients in a child process), GOMAXPROCS %d\n", n, runtime.GOMAXPROCS(0))
	fmt.Fprintf(out, "heap   %8.0f bytes/conn (%.1f MiB total)\n", heap/float64(n), heap/(1<<20))
	fmt.Fprintf(out, "stacks %8.0f bytes/conn (%.1f MiB total: reader and writer goroutines)\n", stack/float64(n), stack/(1<<20))
	fmt.Fprintf(out, "total  %8.0f bytes/conn\n", (heap+stack)/float64(n))
	return nil
}

// holdIdle opens n connections to addr, reads each welcome line, prints "ready" and keeps them until
// stdin closes.
func holdIdle(addr string, n int) error {
	if err := raiseFileLimit(n + 64); err != nil {
		return err
	}
	cs := make([]net.Conn, 0, n)
	defer func() {
		for _, c := range cs {
			c.Close()
		}
	}()
	buf := make([]byte, 256)
	for i := 0; i < n; i++ {
		c, err := net.DialTimeout("tcp", addr, 10*time.Second)
		if err != nil {
			return fmt.Errorf("socket: idle conn %d: %w", i, err)
		}
		cs = append(cs, c)
		if _, err := c.Read(buf); err != nil {
			return fmt.Errorf("socket: idle conn %d welcome: %w", i, err)
		}
	}
	fmt.Println("ready")
	_, _ = io.Copy(io.Discard, os.Stdin)
	return nil
}

// cpuTimes is the user and system CPU time this process has used.
func cpuTimes() (user, sys time.Duration) {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		return 0, 0
	}
	return time.Duration(ru.Utime.Nano()), time.Duration(ru.Stime.Nano())
}

func perOp(d time.Duration, ops int64) time.Duration {
	if ops == 0 {
		return 0
	}
	return d / time.Duration(ops)
}

func median(xs []float64) float64 {
	s := append([]float64(nil), xs...)
	sort.Float64s(s)
	if len(s) == 0 {
		return 0
	}
	return s[len(s)/2]
}
