package main

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"math/rand/v2"
	"os"
	"os/exec"
	"os/signal"
	"runtime"
	"runtime/debug"
	"runtime/pprof"
	"sort"
	"strconv"
	"strings"
	"sync/atomic"
	"syscall"
	"testing/fstest"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/sirupsen/logrus"
	"github.com/spf13/cobra"

	"github.com/switchboard/switchboard/engine/esl"
	"github.com/switchboard/switchboard/engine/esl/esllua"
	"github.com/switchboard/switchboard/engine/esl/esltest"
	"github.com/switchboard/switchboard/luabind"
)

// The flows the esl benchmark runs, as an operator would write them.
const eslBenchScript = `local sb = require "switchboard"
sb.flow("park", function(session)
  session:answer()
  session:execute("park")
end)
sb.flow("four", function(session)
  session:answer()
  session:streamFile("ivr/welcome.wav")
  session:playAndGetDigits(1, 1, 1, 1000, "#", "ivr/menu.wav", "", "\\d")
  session:hangup()
end)
sb.flow("rtt", function(session)
  local every = tonumber(session:getVariable("bench_every_ms"))
  local stop = tonumber(session:getVariable("bench_until_ms"))
  local i = 0
  sb.sleep(math.random(every)) -- spread the calls over the interval instead of a burst each tick
  while sb.now() < stop do
    i = i + 1
    session:execute("set", "n=" .. i)
    sb.sleep(every)
  end
end)
`

// The same park and four-step flows as mod_lua-style scripts (scripts/freeswitch/): a fresh Lua state per call.
const eslBenchPark = `session:answer()
session:execute("park")
`

const eslBenchFour = `session:answer()
session:streamFile("ivr/welcome.wav")
session:playAndGetDigits(1, 1, 1, 1000, "#", "ivr/menu.wav", "", "\\d")
session:hangup()
`

func eslCmd() *cobra.Command {
	var (
		mode        string
		calls       int
		concurrency int
		dur         time.Duration
		every       time.Duration
		simAddr     string
		goFlows     bool
		modLua      bool
		prof        profiles
	)
	cmd := &cobra.Command{
		Use:   "esl",
		Short: "call control: parked-call heap, 4-step flow rate, command round trip",
		Long: `esl starts the esl server in this process with Lua flows (luabind, one VM per call) and drives it
with esltest, the FreeSWITCH simulator, run as a child process (sbbench esl --sim-addr) so this
process's heap holds only the engine side.

  --mode parked  --calls N          N concurrent calls answered and parked (async full); heap per call
  --mode flow    --concurrency C    4-step flow (answer, playback, playAndGetDigits, hangup), 0 ms media,
                 --duration D       static mode (digits stay queued for the read); calls/s
  --mode rtt     --calls N          N concurrent async full calls, each executing "set" every --every;
                 --duration D       p50/p99 of one command's round trip (sendmsg -> +OK) and of the execute
                                    (sendmsg -> CHANNEL_EXECUTE_COMPLETE)`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if simAddr != "" {
				stop, err := prof.start()
				if err != nil {
					return err
				}
				defer stop()
				return runESLSim(cmd.Context(), cmd.OutOrStdout(), simAddr, mode, calls, concurrency, dur, every)
			}
			return runESLBench(cmd.Context(), cmd.OutOrStdout(), mode, calls, concurrency, dur, every, goFlows, modLua, prof)
		},
	}
	f := cmd.Flags()
	f.StringVar(&mode, "mode", "flow", "parked | flow | rtt")
	f.IntVar(&calls, "calls", 1000, "concurrent calls (parked, rtt)")
	f.IntVar(&concurrency, "concurrency", 100, "concurrent callers placing calls back to back (flow)")
	f.DurationVar(&dur, "duration", 5*time.Second, "how long to run (flow, rtt)")
	f.DurationVar(&every, "every", 100*time.Millisecond, "pause between one call's commands (rtt)")
	f.BoolVar(&goFlows, "go-flows", false, "run the same flows written in Go instead of Lua (isolates the esl part from the Lua VM)")
	f.BoolVar(&modLua, "modlua", false, "run park and four as mod_lua-style scripts (scripts/freeswitch/, a fresh Lua state per call)")
	f.StringVar(&simAddr, "sim-addr", "", "internal: run only the FreeSWITCH simulator against this address")
	f.StringVar(&prof.cpu, "cpuprofile", "", "write a CPU profile of the engine side to this file (the simulator's to <file>.sim)")
	f.StringVar(&prof.mem, "memprofile", "", "write an allocation profile of the engine side to this file, the allocations before the measured part to <file>.base (the simulator's to <file>.sim)")
	return cmd
}

// profiles are the optional CPU and allocation profiles of one process of the benchmark.
type profiles struct{ cpu, mem string }

func (p profiles) sim() profiles {
	q := profiles{}
	if p.cpu != "" {
		q.cpu = p.cpu + ".sim"
	}
	if p.mem != "" {
		q.mem = p.mem + ".sim"
	}
	return q
}

// start begins the CPU profile and, for the allocation profile, writes the allocations so far to
// <mem>.base (go tool pprof -base <mem>.base <mem> shows the measured part alone); the returned stop ends
// the CPU profile and writes the allocation profile.
func (p profiles) start() (stop func(), err error) {
	if p.mem != "" {
		// The allocation profile is published at the end of a GC cycle: finish one so the base holds
		// everything allocated so far (and below, so the profile holds everything until the end).
		runtime.GC()
		f, err := os.Create(p.mem + ".base")
		if err != nil {
			return nil, err
		}
		_ = pprof.Lookup("allocs").WriteTo(f, 0)
		f.Close()
	}
	var cpu *os.File
	if p.cpu != "" {
		if cpu, err = os.Create(p.cpu); err != nil {
			return nil, err
		}
		if err := pprof.StartCPUProfile(cpu); err != nil {
			cpu.Close()
			return nil, err
		}
	}
	return func() {
		if cpu != nil {
			pprof.StopCPUProfile()
			cpu.Close()
		}
		if p.mem != "" {
			runtime.GC()
			if f, err := os.Create(p.mem); err == nil {
				_ = pprof.Lookup("allocs").WriteTo(f, 0)
				f.Close()
			}
		}
	}, nil
}

type simReport struct {
	Calls, Failed int64
	Rate          float64
	Sample        string
	ReplyP50      time.Duration // the simulator's own time per command (read to reply written)
	ReplyP99      time.Duration
	NumGC         uint32  // the simulator's GCs during the run
	Alloc         uint64  // bytes it allocated
	Seconds       float64 // how long it ran
}

// runESLSim is the child: it plays FreeSWITCH.
func runESLSim(ctx context.Context, out io.Writer, addr, mode string, calls, concurrency int, dur, every time.Duration) error {
	if err := raiseFileLimit(calls + concurrency + 64); err != nil {
		return err
	}
	ctx, stop := signal.NotifyContext(ctx, syscall.SIGTERM, os.Interrupt)
	defer stop()
	var l esltest.Load
	switch mode {
	case "parked":
		l = esltest.Load{Call: esltest.Call{Addr: addr, Path: "park", Async: true, Full: true, Quiet: true, MaxDuration: time.Hour}, Concurrency: calls, Total: calls}
	case "flow":
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, dur)
		defer cancel()
		l = esltest.Load{Call: esltest.Call{Addr: addr, Path: "four", Quiet: true, PressOnRead: "1"},
			Concurrency: concurrency, OK: func(r *esltest.Result) bool { return r.HangupCause == "NORMAL_CLEARING" }}
	case "rtt":
		until := time.Now().Add(dur).UnixMilli()
		l = esltest.Load{Call: esltest.Call{Addr: addr, Path: "rtt", Async: true, Full: true, Quiet: true,
			Vars: map[string]string{"bench_every_ms": strconv.Itoa(int(every / time.Millisecond)), "bench_until_ms": strconv.FormatInt(until, 10)}},
			Concurrency: calls, Total: calls}
	default:
		return fmt.Errorf("esl: --mode %q: expected parked, flow or rtt", mode)
	}
	if mode != "flow" {
		// parked and rtt calls are placed once: say at once why one is missing, so that a run waiting for
		// every call to be up is not left guessing
		var reported atomic.Int64
		l.Failed = func(res *esltest.Result, err error) {
			if n := reported.Add(1); n <= 5 {
				if err == nil {
					err = fmt.Errorf("hangup cause %q", res.HangupCause)
				}
				fmt.Fprintf(os.Stderr, "sbbench esl: simulator: call failed: %v\n", err)
			} else if n == 6 {
				fmt.Fprintln(os.Stderr, "sbbench esl: simulator: more calls failed (the count is in the report)")
			}
		}
	}
	var m0, m1 runtime.MemStats
	runtime.ReadMemStats(&m0)
	start := time.Now()
	var replies esltest.Latency
	l.Call.ReplyTime = &replies
	r := esltest.RunLoad(ctx, l)
	runtime.ReadMemStats(&m1)
	return json.NewEncoder(out).Encode(simReport{Calls: r.Calls, Failed: r.Failed, Rate: r.Rate, Sample: r.Sample,
		ReplyP50: replies.Quantile(0.5), ReplyP99: replies.Quantile(0.99),
		NumGC: m1.NumGC - m0.NumGC, Alloc: m1.TotalAlloc - m0.TotalAlloc, Seconds: time.Since(start).Seconds()})
}

func runESLBench(ctx context.Context, out io.Writer, mode string, calls, concurrency int, dur, every time.Duration, goFlows, modLua bool, prof profiles) error {
	if err := raiseFileLimit(calls + concurrency + 64); err != nil {
		return err
	}
	quiet := logrus.New()
	quiet.SetOutput(io.Discard)
	scripts := fstest.MapFS{"bench.lua": {Data: []byte(eslBenchScript)}}
	if modLua {
		// The sb.flow park and four give way to the files of the same names.
		scripts = fstest.MapFS{
			"bench.lua":           {Data: []byte(eslBenchScript[:strings.Index(eslBenchScript, "sb.flow(\"park\"")] + eslBenchScript[strings.Index(eslBenchScript, "sb.flow(\"rtt\""):])},
			"freeswitch/park.lua": {Data: []byte(eslBenchPark)},
			"freeswitch/four.lua": {Data: []byte(eslBenchFour)},
		}
	}
	eslLua := esllua.New(esllua.OptionsFrom(luabind.DefaultConfig()))
	rt, err := luabind.New(luabind.Options{Config: luabind.DefaultConfig(), FS: scripts,
		Display: "bench", Log: logrus.NewEntry(quiet), Bindings: []luabind.Binding{eslLua}})
	if err != nil {
		return err
	}
	defer rt.Close()
	if err := rt.Load(); err != nil {
		return err
	}
	reg := prometheus.NewRegistry()
	cfg := esl.DefaultConfig()
	resolve := eslLua.Flows(rt)
	if goFlows {
		resolve = goBenchFlows
	}
	cfg.Listen = "127.0.0.1:0"
	srv, err := esl.New(cfg, esl.Options{Flows: resolve, Log: logrus.NewEntry(quiet), Metrics: reg})
	if err != nil {
		return err
	}
	if err := srv.Start(ctx); err != nil {
		return err
	}
	defer func() {
		sctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		_ = srv.Shutdown(sctx)
	}()
	addr := srv.Addrs()["esl"].String()
	flows := "Lua"
	switch {
	case goFlows:
		flows = "Go"
	case modLua:
		flows = "mod_lua-style Lua (fresh state per call)"
	}
	fmt.Fprintf(out, "sbbench esl: mode %s, %s flows, GOMAXPROCS %d, engine in-process on %s, simulator in a child process\n", mode, flows, runtime.GOMAXPROCS(0), addr)

	runtime.GC()
	debug.FreeOSMemory()
	var before runtime.MemStats
	runtime.ReadMemStats(&before)

	child := exec.CommandContext(ctx, os.Args[0], "esl", "--sim-addr", addr, "--mode", mode, "--calls", strconv.Itoa(calls),
		"--concurrency", strconv.Itoa(concurrency), "--duration", dur.String(), "--every", every.String())
	if sp := prof.sim(); sp.cpu != "" || sp.mem != "" {
		child.Args = append(child.Args, "--cpuprofile", sp.cpu, "--memprofile", sp.mem)
	}
	child.Stderr = os.Stderr
	stdout, err := child.StdoutPipe()
	if err != nil {
		return err
	}
	start := time.Now()
	if err := child.Start(); err != nil {
		return err
	}
	var heapPerCall float64
	var base, writeBase, recvBase []bucketCount
	if mode == "rtt" {
		// Leave out the connect burst: measure from one second after every call is up.
		deadline := time.Now().Add(2 * time.Minute)
		for srv.Active() < calls && time.Now().Before(deadline) {
			time.Sleep(20 * time.Millisecond)
		}
		time.Sleep(time.Second)
		base = promBuckets(reg, "switchboard_esl_command_seconds")
		writeBase = promBuckets(reg, "switchboard_esl_command_engine_seconds", "write")
		recvBase = promBuckets(reg, "switchboard_esl_command_engine_seconds", "receive")
	}
	// Profiles and GC counts cover the measured part: after the connect burst in rtt mode.
	stopProf, err := prof.start()
	if err != nil {
		return err
	}
	var gc0 runtime.MemStats
	runtime.ReadMemStats(&gc0)
	measured := time.Now()
	if mode == "parked" {
		// wait for every call, or until none has come up for 15 s (the simulator says why on stderr)
		deadline := time.Now().Add(5 * time.Minute)
		upBefore, upAt := 0, time.Now()
		for n := srv.Active(); n < calls && time.Now().Before(deadline); n = srv.Active() {
			if n != upBefore {
				upBefore, upAt = n, time.Now()
			} else if time.Since(upAt) > 15*time.Second {
				fmt.Fprintf(out, "no new call for 15 s: %d of %d calls are up; measuring those\n", n, calls)
				break
			}
			time.Sleep(50 * time.Millisecond)
		}
		fmt.Fprintf(out, "%d calls parked after %.2fs\n", srv.Active(), time.Since(start).Seconds())
		// Let every flow reach its park: wait until no command has been sent for a second.
		last := uint64(0)
		for still := 0; still < 5 && time.Now().Before(deadline); {
			time.Sleep(200 * time.Millisecond)
			_, _, n := histQuantiles(promBuckets(reg, "switchboard_esl_command_seconds"), nil)
			if n == last {
				still++
			} else {
				still, last = 0, n
			}
		}
		runtime.GC()
		runtime.GC()
		var at runtime.MemStats
		runtime.ReadMemStats(&at)
		n := srv.Active()
		if path := os.Getenv("SBBENCH_HEAPPROFILE"); path != "" {
			if f, err := os.Create(path); err == nil {
				_ = pprof.WriteHeapProfile(f)
				f.Close()
			}
		}
		heapPerCall = float64(int64(at.HeapAlloc)-int64(before.HeapAlloc)) / float64(n)
		fmt.Fprintf(out, "heap: %.1f MB before, %.1f MB with %d parked calls: %.1f KB per call; goroutines %d; Lua VMs %d\n",
			float64(before.HeapAlloc)/1e6, float64(at.HeapAlloc)/1e6, n, heapPerCall/1024, runtime.NumGoroutine(), rt.LiveVMs())
		_ = child.Process.Signal(syscall.SIGTERM)
	}
	var rep simReport
	if err := json.NewDecoder(stdout).Decode(&rep); err != nil {
		_ = child.Wait()
		return fmt.Errorf("esl: simulator: %w", err)
	}
	if err := child.Wait(); err != nil && mode != "parked" {
		return fmt.Errorf("esl: simulator: %w", err)
	}
	var gc1 runtime.MemStats
	runtime.ReadMemStats(&gc1)
	stopProf()
	if mode != "parked" {
		secs := time.Since(measured).Seconds()
		fmt.Fprintf(out, "engine: %d GCs in %.1fs (%.1f MB/s allocated, %.0f allocs/s); simulator: %d GCs (%.1f MB/s allocated)\n",
			gc1.NumGC-gc0.NumGC, secs, float64(gc1.TotalAlloc-gc0.TotalAlloc)/1e6/secs, float64(gc1.Mallocs-gc0.Mallocs)/secs,
			rep.NumGC, float64(rep.Alloc)/1e6/rep.Seconds)
	}
	switch mode {
	case "flow":
		fmt.Fprintf(out, "4-step flow: %.0f calls/s (%d calls, %d failed, %d concurrent callers, %s)\n", rep.Rate, rep.Calls, rep.Failed, concurrency, dur)
	case "rtt":
		fmt.Fprintf(out, "calls %d, failed %d\n", rep.Calls, rep.Failed)
	case "parked":
		rep.Sample = "" // parked calls end when the benchmark stops them
	}
	if rep.Sample != "" {
		fmt.Fprintf(out, "first failed call:\n%s", rep.Sample)
	}
	p50, p99, n := histQuantiles(promBuckets(reg, "switchboard_esl_command_seconds"), base)
	what := "all commands"
	if base != nil {
		what = "steady state, connect burst left out"
	}
	fmt.Fprintf(out, "command round trip (sendmsg/api -> reply), %s, %d commands: p50 %s p99 %s\n", what, n, fmtDur(p50), fmtDur(p99))
	w50, w99, _ := histQuantiles(promBuckets(reg, "switchboard_esl_command_engine_seconds", "write"), writeBase)
	r50, r99, _ := histQuantiles(promBuckets(reg, "switchboard_esl_command_engine_seconds", "receive"), recvBase)
	fmt.Fprintf(out, "  engine's share: write the command p50 %s p99 %s; reply read -> flow has it p50 %s p99 %s\n",
		fmtDur(w50), fmtDur(w99), fmtDur(r50), fmtDur(r99))
	fmt.Fprintf(out, "  simulator's share (command read -> reply written, every command of the run): p50 %s p99 %s\n", fmtDur(rep.ReplyP50), fmtDur(rep.ReplyP99))
	return nil
}

type bucketCount struct {
	upper float64
	count uint64
}

// promBuckets reads the cumulative buckets of histogram name from reg; with phase set, of the series whose
// phase label has that value.
func promBuckets(reg *prometheus.Registry, name string, phase ...string) []bucketCount {
	mfs, err := reg.Gather()
	if err != nil {
		return nil
	}
	for _, mf := range mfs {
		if mf.GetName() != name {
			continue
		}
		for _, m := range mf.GetMetric() {
			if len(phase) > 0 {
				match := false
				for _, lp := range m.GetLabel() {
					match = match || (lp.GetName() == "phase" && lp.GetValue() == phase[0])
				}
				if !match {
					continue
				}
			}
			var out []bucketCount
			for _, b := range m.GetHistogram().GetBucket() {
				out = append(out, bucketCount{b.GetUpperBound(), b.GetCumulativeCount()})
			}
			sort.Slice(out, func(i, j int) bool { return out[i].upper < out[j].upper })
			return out
		}
	}
	return nil
}

// histQuantiles interpolates p50 and p99 inside the buckets of now minus base (base may be nil).
func histQuantiles(now, base []bucketCount) (p50, p99 time.Duration, count uint64) {
	bs := make([]bucketCount, len(now))
	copy(bs, now)
	if len(base) == len(bs) {
		for i := range bs {
			bs[i].count -= base[i].count
		}
	}
	if len(bs) == 0 {
		return 0, 0, 0
	}
	count = bs[len(bs)-1].count
	q := func(f float64) time.Duration {
		target := f * float64(count)
		prevB, prevC := 0.0, 0.0
		for _, b := range bs {
			c := float64(b.count)
			if c >= target {
				frac := 0.0
				if c > prevC {
					frac = (target - prevC) / (c - prevC)
				}
				return time.Duration((prevB + frac*(b.upper-prevB)) * float64(time.Second))
			}
			prevB, prevC = b.upper, c
		}
		return time.Duration(prevB * float64(time.Second))
	}
	return q(0.5), q(0.99), count
}

// goBenchFlows are the benchmark flows in Go, for comparison with the Lua ones.
func goBenchFlows(call *esl.CallInfo) (esl.Flow, error) {
	switch call.Flow {
	case "park":
		return esl.FlowFunc(func(ctx context.Context, s *esl.Session) error {
			if err := s.Answer(ctx); err != nil {
				return err
			}
			_, err := s.Execute(ctx, "park", "", esl.ExecOptions{})
			return err
		}), nil
	case "four":
		return esl.FlowFunc(func(ctx context.Context, s *esl.Session) error {
			if err := s.Answer(ctx); err != nil {
				return err
			}
			if _, err := s.StreamFile(ctx, "ivr/welcome.wav", nil); err != nil {
				return err
			}
			if _, err := s.PlayAndGetDigits(ctx, 1, 1, 1, 1000, "#", "ivr/menu.wav", "", `\d`, "", 0, ""); err != nil {
				return err
			}
			return s.Hangup(ctx, "")
		}), nil
	case "rtt":
		return esl.FlowFunc(func(ctx context.Context, s *esl.Session) error {
			ev, _ := s.Variable("bench_every_ms")
			un, _ := s.Variable("bench_until_ms")
			every, _ := strconv.Atoi(ev)
			until, _ := strconv.ParseInt(un, 10, 64)
			time.Sleep(time.Duration(rand.Int64N(int64(every)+1)) * time.Millisecond)
			for i := 1; time.Now().UnixMilli() < until; i++ {
				if _, err := s.Execute(ctx, "set", "n="+strconv.Itoa(i), esl.ExecOptions{}); err != nil {
					return err
				}
				time.Sleep(time.Duration(every) * time.Millisecond)
			}
			return nil
		}), nil
	}
	return nil, fmt.Errorf("no flow %q", call.Flow)
}
