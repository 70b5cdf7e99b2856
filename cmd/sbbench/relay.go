package main

import (
	"bufio"
	"bytes"
	"context"
	"fmt"
	"io"
	"net"
	"os"
	"path/filepath"
	"runtime"
	"runtime/pprof"
	"sort"
	"strconv"
	"sync"
	"sync/atomic"
	"syscall"
	"testing/fstest"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/sirupsen/logrus"
	"github.com/spf13/cobra"

	"github.com/switchboard/switchboard/engine/relay"
	"github.com/switchboard/switchboard/engine/relay/relaylua"
	"github.com/switchboard/switchboard/engine/relay/relaytest"
	"github.com/switchboard/switchboard/luabind"
)

// benchRoutes is 3forge's example on two centers: AAPL -> c0, IBM -> c1, ZVZZT -> c0 and c1.
const benchRoutes = `RULE0;0;O,D;NewOrder,Cancel;Symbol String nonull;Symbol < "F";c0;BREAK;
RULE1;1;O,D;NewOrder,Cancel;Symbol String nonull;Symbol < "Q";c1;BREAK;
RULE2;2;O,D;NewOrder,Cancel;Symbol String nonull;true;c0,c1;BREAK;
RULE3;3;*;*;;true;*;BREAK;
`

var benchSymbols = []string{"AAPL", "IBM", "ZVZZT"}

// relayWorkload is what sbbench relay sends and how the relay routes it (--routes).
type relayWorkload struct {
	name    string
	routes  string   // the relay.routes file
	centers []string // the relay's centers, by index (the forwarder's sinks)
	// body appends the message's params after its header ("O#seq@-1").
	body func(line []byte, seq int64) []byte
	// to is the set of centers (bit i = centers[i]) the routes send line to, found by the forwarder without
	// parsing.
	to func(line []byte) int
	// fwdRoutes are the same choice as amiforwarder -route flags (BYTES=MASK; no match: every center).
	fwdRoutes []string
	// deliveries is the least number of lines the centers must have received after ops acknowledged
	// messages from clients connections.
	deliveries func(ops int64, clients int) int64
}

// forgeWorkload is 3forge's example on two centers (benchRoutes): NewOrder messages with Symbol AAPL, IBM and
// ZVZZT in turn.
var forgeWorkload = relayWorkload{
	name:    "forge",
	routes:  benchRoutes,
	centers: []string{"c0", "c1"},
	body: func(line []byte, seq int64) []byte {
		line = append(line, `|T="NewOrder"|I="o`...)
		line = strconv.AppendInt(line, seq, 10)
		line = append(line, `"|Symbol="`...)
		line = append(line, benchSymbols[seq%3]...)
		return append(line, `"|qty=100|px=12.5D`...)
	},
	to: func(line []byte) int {
		switch {
		case bytes.Contains(line, []byte(`Symbol="AAPL"`)):
			return 1
		case bytes.Contains(line, []byte(`Symbol="IBM"`)):
			return 2
		}
		return 3 // both centers, like ZVZZT
	},
	fwdRoutes: []string{`Symbol="AAPL"=1`, `Symbol="IBM"=2`},
	// a third (give or take one per client) go to both
	deliveries: func(ops int64, clients int) int64 { return ops + ops/3 - int64(clients) },
}

// bigRoutes is issue 18's relay rule: typed params and a Lua expression per message, one center. venue is
// not a declared param, so the expression reads it as a global (nil unless a script defines it).
const bigRoutes = `Big;0;O;Order;qty Long nonull,px Double;qty > 500 and px < 1000000.0 and venue ~= "XXX";c1;BREAK;
`

// bigWorkload is issue 18's relay case: Order messages whose qty and px differ from one message to the next
// (so no two in a row have the same params) and all pass the rule, to the one center.
var bigWorkload = relayWorkload{
	name:    "big",
	routes:  bigRoutes,
	centers: []string{"c1"},
	body: func(line []byte, seq int64) []byte {
		line = append(line, `|T="Order"|I="o`...)
		line = strconv.AppendInt(line, seq, 10)
		line = append(line, `"|qty=`...)
		line = strconv.AppendInt(line, 501+seq%100000, 10)
		line = append(line, `L|px=`...)
		line = strconv.AppendInt(line, 1+seq%1000, 10)
		return append(line, `.25D`...)
	},
	to:         func([]byte) int { return 1 },
	deliveries: func(ops int64, _ int) int64 { return ops },
}

// trueWorkload is bigWorkload's messages under a catch-all rule: the relay's cost without an expression.
var trueWorkload = relayWorkload{
	name:       "true",
	routes:     "All;0;*;*;;true;c1;BREAK;\n",
	centers:    bigWorkload.centers,
	body:       bigWorkload.body,
	to:         bigWorkload.to,
	deliveries: bigWorkload.deliveries,
}

// relayWorkloads are the --routes choices.
var relayWorkloads = map[string]*relayWorkload{"forge": &forgeWorkload, "big": &bigWorkload, "true": &trueWorkload}

func relayCmd() *cobra.Command {
	var (
		clients    int
		dur        time.Duration
		window     int
		guaranteed bool
		persist    string
		cpuprofile string
		memprofile string
		rounds     int
		journal    string
		natsURL    string
		natsN      int
		replicas   int
		routes     string
		serverProc bool
		engine     string
		vsEngine   string
	)
	cmd := &cobra.Command{
		Use:   "relay",
		Short: "AMI relay: C clients -> relay -> 2 test centers, against a bare Go line forwarder",
		Long: `relay starts, in this process, two test centers (they ack every line) and the relay with
3forge's example routes (Lua expressions) on those two centers, then runs --clients AMI
clients for --duration. Each client keeps up to --window unacknowledged O messages in
flight (NewOrder with Symbol AAPL, IBM, ZVZZT in turn) and measures each message's ack
latency (send to M status). The same clients first drive a bare Go line forwarder in the
same topology (bufio reader per client, each line written to both sinks and acked; the
sinks ack each line back like centers) for the baseline.
--guaranteed journals every message (fsync, group commit) before its ack.
--journal jetstream runs guaranteed mode twice in the same invocation, the local journal and then
the JetStream journal (R3 stream on --nats-url, or on --nats-servers embedded NATS servers
clustered in this process on loopback), and prints both with the ratio; --rounds alternates them.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			out := cmd.OutOrStdout()
			wl := relayWorkloads[routes]
			if wl == nil {
				return fmt.Errorf("--routes: expected forge, big or true, got %q", routes)
			}
			if serverProc {
				if journal != relay.JournalLocal || guaranteed {
					return fmt.Errorf("--server-process: non-guaranteed mode on the local journal only")
				}
				if !cmd.Flags().Changed("rounds") {
					rounds = 5
				}
				_, err := runRelayProcesses(cmd.Context(), out, relayProcOptions{engine: engine, workload: wl, clients: clients,
					window: window, dur: dur, rounds: rounds, cpuprofile: cpuprofile, vsEngine: vsEngine})
				return err
			}
			switch journal {
			case relay.JournalLocal:
			case relay.JournalJetStream:
				return runJetStreamComparison(cmd.Context(), out, jsBenchOpts{clients: clients, window: window, dur: dur,
					rounds: max(rounds, 1), natsURL: natsURL, servers: natsN, replicas: replicas, persist: persist, cpuprofile: cpuprofile})
			default:
				return fmt.Errorf("--journal: expected local or jetstream, got %q", journal)
			}
			mode := "non-guaranteed"
			if guaranteed {
				mode = "guaranteed (journal fsync before ack)"
			}
			fmt.Fprintf(out, "sbbench relay: %d clients, window %d, %s, %s, GOMAXPROCS %d\n",
				clients, window, dur, mode, runtime.GOMAXPROCS(0))
			var ratios, cpuRatios []float64
			for round := 1; round < rounds; round++ {
				// extra rounds first (forwarder, relay, forwarder, relay, ...) so that a
				// machine shared with other work loads both sides alike
				var baseCPU, relayCPU time.Duration
				base, err := runForwarderBaseline(cmd.Context(), clients, window, dur, wl, &baseCPU)
				if err != nil {
					return fmt.Errorf("baseline: %w", err)
				}
				printResult(out, "forwarder", base)
				r, err := runRelayBench(cmd.Context(), clients, window, dur, relayBenchJournal{guaranteed: guaranteed, persist: persist, workload: wl}, &relayCPU)
				if err != nil {
					return err
				}
				printResult(out, "relay", r)
				ratios = append(ratios, r.Rate/base.Rate)
				cpuRatios = append(cpuRatios, float64(baseCPU)/float64(relayCPU))
				fmt.Fprintf(out, "round %d      rate %.2fx of the forwarder (%.0f vs %.0f msgs/s); ack p99 %s; cpu/msg %dns vs %dns (%.2fx)\n",
					round, r.Rate/base.Rate, r.Rate, base.Rate, fmtDur(r.P99), relayCPU.Nanoseconds(), baseCPU.Nanoseconds(), float64(baseCPU)/float64(relayCPU))
			}
			var baseCPU, relayCPU time.Duration
			base, err := runForwarderBaseline(cmd.Context(), clients, window, dur, wl, &baseCPU)
			if err != nil {
				return fmt.Errorf("baseline: %w", err)
			}
			printResult(out, "forwarder", base)
			stopProfile, err := startCPUProfile(cpuprofile)
			if err != nil {
				return err
			}
			r, err := runRelayBench(cmd.Context(), clients, window, dur, relayBenchJournal{guaranteed: guaranteed, persist: persist, workload: wl}, &relayCPU)
			stopProfile()
			if memprofile != "" {
				f, err := os.Create(memprofile)
				if err != nil {
					return err
				}
				defer f.Close()
				if err := pprof.Lookup("allocs").WriteTo(f, 0); err != nil {
					return err
				}
			}
			if err != nil {
				return err
			}
			printResult(out, "relay", r)
			fmt.Fprintf(out, "relay        rate %.2fx of the forwarder (%.0f vs %.0f msgs/s); ack p99 %s; cpu/msg %dns vs %dns (%.2fx)\n",
				r.Rate/base.Rate, r.Rate, base.Rate, fmtDur(r.P99), relayCPU.Nanoseconds(), baseCPU.Nanoseconds(), float64(baseCPU)/float64(relayCPU))
			if rounds > 1 {
				ratios = append(ratios, r.Rate/base.Rate)
				cpuRatios = append(cpuRatios, float64(baseCPU)/float64(relayCPU))
				sort.Float64s(ratios)
				sort.Float64s(cpuRatios)
				fmt.Fprintf(out, "rounds       %d, rate ratio min %.2fx median %.2fx max %.2fx; cpu/msg ratio median %.2fx\n",
					len(ratios), ratios[0], ratios[len(ratios)/2], ratios[len(ratios)-1], cpuRatios[len(cpuRatios)/2])
			}
			return nil
		},
	}
	f := cmd.Flags()
	f.IntVar(&clients, "clients", 4, "AMI client connections")
	f.DurationVar(&dur, "duration", 5*time.Second, "how long to run each side")
	f.IntVar(&window, "window", 256, "unacknowledged messages in flight per client")
	f.BoolVar(&guaranteed, "guaranteed", false, "guaranteed messaging (journal + fsync before ack)")
	f.StringVar(&cpuprofile, "cpuprofile", "", "write a CPU profile of the (last) relay run to this file")
	f.StringVar(&memprofile, "memprofile", "", "write an allocation profile (whole process, after the last relay run) to this file")
	f.IntVar(&rounds, "rounds", 1, "alternate forwarder and relay runs this many times and report the median ratio")
	f.StringVar(&persist, "persist-dir", "", "journal directory for --guaranteed (default: a temporary directory)")
	f.StringVar(&routes, "routes", "forge", "forge: 3forge's example routes on two centers (NewOrder, Symbol AAPL/IBM/ZVZZT); big: issue 18's rule on one center (Order, typed qty and px, a Lua expression per message); true: the same messages under a catch-all rule")
	f.BoolVar(&serverProc, "server-process", false, "run the engine (relay part alone) and a bare AMI forwarder (baselines/amiforwarder) as processes of their own, this process only the load and the centers; rounds alternate (default 5), medians of rate and server CPU per message from /proc")
	f.StringVar(&engine, "engine", "", "--server-process: a prebuilt switchboard binary (default: build ./cmd/switchboard)")
	f.StringVar(&vsEngine, "vs-engine", "", "--server-process: compare with this other switchboard binary (same routes and load) instead of the forwarder, e.g. a build of main for before/after")
	f.StringVar(&journal, "journal", relay.JournalLocal, "local, or jetstream: compare the local journal with the JetStream journal (guaranteed mode) in one run")
	f.StringVar(&natsURL, "nats-url", "", "--journal jetstream: the NATS servers (comma-separated); empty runs --nats-servers embedded servers")
	f.IntVar(&natsN, "nats-servers", 3, "--journal jetstream without --nats-url: embedded NATS servers clustered on loopback")
	f.IntVar(&replicas, "replicas", 3, "--journal jetstream: the stream's replicas (relay.jetstream.replicas)")
	return cmd
}

// relayBenchJournal is the journal a relay bench run uses.
type relayBenchJournal struct {
	guaranteed bool
	persist    string
	jetstream  *relay.ClusterOptions // relay.journal = jetstream on this cluster
	relayID    string
	replicas   int
	workload   *relayWorkload // nil: forgeWorkload
}

// runRelayBench runs the relay with the workload's test centers and drives it.
func runRelayBench(ctx context.Context, clients, window int, dur time.Duration, jo relayBenchJournal, cpu *time.Duration) (LoadResult, error) {
	guaranteed, persist := jo.guaranteed, jo.persist
	wl := jo.workload
	if wl == nil {
		wl = &forgeWorkload
	}
	centers := make([]*relaytest.Center, len(wl.centers))
	cfg := relay.DefaultConfig()
	cfg.Listen = "127.0.0.1:0"
	cfg.Centers = map[string]string{}
	for i := range centers {
		c, err := relaytest.NewCenter("127.0.0.1:0")
		if err != nil {
			return LoadResult{}, err
		}
		c.Store = false
		defer c.Close()
		centers[i] = c
		cfg.Centers[wl.centers[i]] = c.Addr()
	}
	tmp, err := os.MkdirTemp("", "sbbench-relay-")
	if err != nil {
		return LoadResult{}, err
	}
	defer os.RemoveAll(tmp)
	cfg.RoutesFile = filepath.Join(tmp, "relay.routes")
	if err := os.WriteFile(cfg.RoutesFile, []byte(wl.routes), 0o644); err != nil {
		return LoadResult{}, err
	}
	cfg.Guaranteed = guaranteed
	cfg.PersistDir = filepath.Join(tmp, "persist")
	if persist != "" {
		cfg.PersistDir = persist
	}
	cfg.ClientQueue = 2 * window
	cfg.ClientQueueBytes = max(cfg.ClientQueueBytes, 2*window*64) // a status line is under 64 bytes
	quiet := logrus.New()
	quiet.SetOutput(io.Discard)
	rt, err := luabind.New(luabind.Options{Config: luabind.DefaultConfig(), Log: logrus.NewEntry(quiet),
		FS: fstest.MapFS{"bench.lua": &fstest.MapFile{Data: []byte("-- route expressions only\n")}}, Display: "scripts"})
	if err != nil {
		return LoadResult{}, err
	}
	defer rt.Close()
	if err := rt.Load(); err != nil {
		return LoadResult{}, err
	}
	reg := prometheus.NewRegistry()
	opts := relay.Options{Compile: relaylua.Compiler(rt), Log: logrus.NewEntry(quiet), Metrics: reg}
	if jo.jetstream != nil {
		cfg.Guaranteed, cfg.Journal, cfg.ID = true, relay.JournalJetStream, jo.relayID
		cfg.JetStream.Replicas = jo.replicas
		opts.Cluster = *jo.jetstream
	}
	r, err := relay.New(cfg, opts)
	if err != nil {
		return LoadResult{}, err
	}
	if err := r.Start(ctx); err != nil {
		return LoadResult{}, err
	}
	defer func() {
		sctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		_ = r.Shutdown(sctx)
	}()
	for deadline := time.Now().Add(30 * time.Second); !r.Active(); {
		if time.Now().After(deadline) {
			return LoadResult{}, fmt.Errorf("relay: not active after 30s (is JetStream reachable, with %d servers?)", jo.replicas)
		}
		time.Sleep(10 * time.Millisecond)
	}
	for _, c := range centers {
		if err := c.WaitLogin(1, 5*time.Second); err != nil {
			return LoadResult{}, err
		}
	}
	res, err := drivePipelined(ctx, r.Addrs()["relay"].String(), clients, window, dur, true, wl.body, cpu)
	if err != nil {
		return res, err
	}
	// every acked message reached its centers
	want := wl.deliveries(res.Ops, clients)
	delivered := func() int64 {
		n := 0
		for _, c := range centers {
			n += c.Count()
		}
		return int64(n)
	}
	deadline := time.Now().Add(10 * time.Second)
	for delivered() < want && time.Now().Before(deadline) {
		time.Sleep(10 * time.Millisecond)
	}
	if got := delivered(); got < want {
		return res, fmt.Errorf("relay: centers got %d deliveries, want at least %d", got, want)
	}
	if guaranteed && jo.jetstream == nil {
		printFsync(os.Stdout, reg, res.Ops)
	}
	return res, nil
}

// printFsync summarises the journal's fsync histogram: count, mean and the
// bucket bound holding the 50th and 99th percentiles.
func printFsync(w io.Writer, reg *prometheus.Registry, records int64) {
	mfs, err := reg.Gather()
	if err != nil {
		return
	}
	for _, mf := range mfs {
		if mf.GetName() != "switchboard_relay_journal_fsync_seconds" || len(mf.GetMetric()) == 0 {
			continue
		}
		h := mf.GetMetric()[0].GetHistogram()
		n := h.GetSampleCount()
		if n == 0 {
			return
		}
		q := func(f float64) string {
			for _, b := range h.GetBucket() {
				if float64(b.GetCumulativeCount()) >= f*float64(n) {
					return "<= " + fmtDur(time.Duration(b.GetUpperBound()*1e9))
				}
			}
			return "> 500ms"
		}
		fmt.Fprintf(w, "journal      %d fsyncs (%.0f records each), mean %s, p50 %s, p90 %s, p99 %s, p99.9 %s\n", n,
			float64(records)/float64(n), fmtDur(time.Duration(h.GetSampleSum()/float64(n)*1e9)), q(0.5), q(0.9), q(0.99), q(0.999))
	}
}

// runForwarderBaseline is the bare Go line forwarder, in the relay's
// topology and with the same ack work: per client a bufio reader; each line
// is written to the same centers the relay's example routes pick (found by a
// byte search for the symbol: no parsing) and acked with a status line; the
// centers are the same test centers the relay bench uses (they ack every
// line back with its sequence number), and the forwarder reads and drops
// those acks. No parsing, routing table, index or journal.
func runForwarderBaseline(ctx context.Context, clients, window int, dur time.Duration, wl *relayWorkload, cpu *time.Duration) (LoadResult, error) {
	sinks := make([]net.Conn, len(wl.centers))
	var wg sync.WaitGroup
	for i := range sinks {
		center, err := relaytest.NewCenter("127.0.0.1:0")
		if err != nil {
			return LoadResult{}, err
		}
		center.Store = false
		defer center.Close()
		c, err := net.Dial("tcp", center.Addr())
		if err != nil {
			return LoadResult{}, err
		}
		sinks[i] = c
		wg.Add(1)
		go func() { // the forwarder reads and drops the center's acks
			defer wg.Done()
			br := bufio.NewReaderSize(c, 64<<10)
			for {
				if _, err := br.ReadSlice('\n'); err != nil {
					return
				}
			}
		}()
	}
	sinkMu := make([]sync.Mutex, len(sinks))
	sinkW := make([]*bufio.Writer, len(sinks))
	for i := range sinks {
		sinkW[i] = bufio.NewWriterSize(sinks[i], 64<<10)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return LoadResult{}, err
	}
	var conns sync.WaitGroup
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			conns.Add(1)
			go func() {
				defer conns.Done()
				defer c.Close()
				br := bufio.NewReaderSize(c, 64<<10)
				bw := bufio.NewWriterSize(c, 64<<10)
				var ack []byte
				for {
					line, err := br.ReadSlice('\n')
					if err != nil {
						return
					}
					to := wl.to(line)
					end := br.Buffered() == 0 // end of the read burst: flush
					for i := range sinkW {
						if to&(1<<i) == 0 && !end {
							continue
						}
						sinkMu[i].Lock()
						if to&(1<<i) != 0 {
							sinkW[i].Write(line)
						}
						if end && sinkW[i].Buffered() > 0 {
							sinkW[i].Flush()
						}
						sinkMu[i].Unlock()
					}
					seq := int64(0)
					if j := bytes.IndexByte(line, '#'); j > 0 {
						for k := j + 1; k < len(line) && line[k] >= '0' && line[k] <= '9'; k++ {
							seq = seq*10 + int64(line[k]-'0')
						}
					}
					ack = relay.AppendStatus(ack[:0], time.Now().UnixMilli(), seq, 0, "OK")
					ack = append(ack, '\n')
					bw.Write(ack)
					if br.Buffered() == 0 {
						if bw.Flush() != nil {
							return
						}
					}
				}
			}()
		}
	}()
	res, err := drivePipelined(ctx, ln.Addr().String(), clients, window, dur, false, wl.body, cpu)
	ln.Close()
	conns.Wait()
	for i := range sinks {
		sinkMu[i].Lock()
		sinkW[i].Flush()
		sinkMu[i].Unlock()
		sinks[i].Close()
	}
	wg.Wait()
	return res, err
}

// drivePipelined runs clients that keep window messages in flight and
// measure each one's ack latency. With login, each first logs in (L#0).
// cpu receives the process's CPU time (user+system, clients and servers
// alike) per acknowledged message; Allocs the heap allocations per message.
func drivePipelined(ctx context.Context, addr string, clients, window int, dur time.Duration, login bool, body func([]byte, int64) []byte, cpu *time.Duration) (LoadResult, error) {
	type result struct {
		hist latencyHist
		ops  int64
		errs int64
		err  error
	}
	results := make([]*result, clients)
	var wg sync.WaitGroup
	cpu0 := processCPU()
	var ms0 runtime.MemStats
	runtime.ReadMemStats(&ms0)
	start := time.Now()
	stopAt := start.Add(dur)
	for ci := 0; ci < clients; ci++ {
		res := &result{}
		results[ci] = res
		conn, err := net.Dial("tcp", addr)
		if err != nil {
			return LoadResult{}, err
		}
		br := bufio.NewReaderSize(conn, 64<<10)
		bw := bufio.NewWriterSize(conn, 64<<10)
		if login {
			fmt.Fprintf(bw, "L#0|I=\"bench-%d\"\n", ci)
			bw.Flush()
			if _, err := br.ReadSlice('\n'); err != nil {
				conn.Close()
				return LoadResult{}, fmt.Errorf("login: %w", err)
			}
		}
		sent := make([]atomic.Int64, window) // send time (unix nanos) by seq % window
		slots := make(chan struct{}, window)
		for i := 0; i < window; i++ {
			slots <- struct{}{}
		}
		wg.Add(2)
		go func() { // writer
			defer wg.Done()
			var line []byte
			seq := int64(1)
			for time.Now().Before(stopAt) && ctx.Err() == nil {
				<-slots
				n := 1 + len(slots)
				for k := 0; k < n; k++ {
					if k > 0 {
						<-slots
					}
					sent[seq%int64(window)].Store(time.Now().UnixNano())
					line = relay.AppendHeader(line[:0], 'O', seq, -1)
					line = body(line, seq)
					line = append(line, '\n')
					bw.Write(line)
					seq++
				}
				if err := bw.Flush(); err != nil {
					res.err = err
					conn.Close()
					return
				}
			}
			// wait for the acks still in flight (all slots back), then end the reader
			drain := time.NewTimer(10 * time.Second)
			defer drain.Stop()
			for i := 0; i < window; i++ {
				select {
				case <-slots:
				case <-drain.C:
					res.err = fmt.Errorf("%d acks missing", window-i)
					i = window
				}
			}
			conn.Close()
		}()
		go func() { // reader
			defer wg.Done()
			defer conn.Close()
			for {
				line, err := br.ReadSlice('\n')
				if err != nil {
					return
				}
				now := time.Now()
				i := bytes.Index(line, []byte("|Q="))
				if i < 0 {
					continue
				}
				var q int64
				for k := i + 3; k < len(line) && line[k] >= '0' && line[k] <= '9'; k++ {
					q = q*10 + int64(line[k]-'0')
				}
				if bytes.Contains(line, []byte("|S=0|")) {
					res.ops++
				} else {
					res.errs++
				}
				res.hist.record(time.Duration(now.UnixNano() - sent[q%int64(window)].Load()))
				slots <- struct{}{}
			}
		}()
	}
	wg.Wait()
	var total LoadResult
	var h latencyHist
	for _, r := range results {
		total.Ops += r.ops
		total.Errors += r.errs
		h.merge(&r.hist)
		if r.err != nil {
			total.Errors++
		}
	}
	total.Duration = time.Since(start)
	total.Rate = float64(total.Ops) / total.Duration.Seconds()
	var ms1 runtime.MemStats
	runtime.ReadMemStats(&ms1)
	if total.Ops > 0 {
		total.Allocs = float64(ms1.Mallocs-ms0.Mallocs) / float64(total.Ops)
		if cpu != nil {
			*cpu = (processCPU() - cpu0) / time.Duration(total.Ops)
		}
	}
	total.P50, total.P99 = h.quantile(0.50), h.quantile(0.99)
	return total, nil
}

// processCPU is the user and system CPU time this process has used.
func processCPU() time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		return 0
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}
