package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"math"
	"math/bits"
	"os"
	"runtime"
	"runtime/pprof"
	"sync"
	"syscall"
	"time"
)

// LoadResult is what one closed-loop run measured.
type LoadResult struct {
	Ops      int64         // completed operations (round trips)
	Duration time.Duration // from start until the last worker finished its last op
	Rate     float64       // Ops per second
	P50, P99 time.Duration // latency of one op
	Errors   int64         // ops that failed (each stops its worker)
	Allocs   float64       // heap allocations per op in this process (client and any in-process server)
}

// closeGrace is how long workers may take to finish their last op after the
// duration before their connections are closed under them.
const closeGrace = 2 * time.Second

// runClosedLoop runs conns workers for dur. Each worker calls do in a loop,
// one op at a time (closed loop: the next op starts when the previous one has
// completed), and its latency is recorded. An error from do is counted and
// stops that worker (its connection is presumed broken). newWorker is called
// for every worker before the clock starts; close is called for every
// created worker at the end (and earlier, to unblock a worker stuck past the
// duration). ctx cancels the run early.
func runClosedLoop(ctx context.Context, conns int, dur time.Duration, newWorker func(i int) (do func() error, close func(), err error)) (LoadResult, error) {
	if conns <= 0 {
		return LoadResult{}, fmt.Errorf("loadgen: conns must be > 0, got %d", conns)
	}
	if err := raiseFileLimit(2*conns + 64); err != nil {
		return LoadResult{}, err
	}
	type worker struct {
		do      func() error
		close   func()
		once    sync.Once
		hist    latencyHist
		ops     int64
		errs    int64
		lastEnd time.Time
	}
	ws := make([]*worker, conns)
	closeAll := func() {
		for _, w := range ws {
			if w != nil && w.close != nil {
				w.once.Do(w.close)
			}
		}
	}
	defer closeAll()
	for i := range ws {
		do, cl, err := newWorker(i)
		if err != nil {
			return LoadResult{}, fmt.Errorf("loadgen: worker %d: %w", i, err)
		}
		ws[i] = &worker{do: do, close: cl}
	}

	runCtx, cancel := context.WithTimeout(ctx, dur)
	defer cancel()
	var ms0 runtime.MemStats
	runtime.ReadMemStats(&ms0)
	startGate := make(chan struct{})
	var wg sync.WaitGroup
	for _, w := range ws {
		wg.Add(1)
		go func() {
			defer wg.Done()
			<-startGate
			for runCtx.Err() == nil {
				t0 := time.Now()
				err := w.do()
				t1 := time.Now()
				if err != nil {
					w.errs++
					return
				}
				w.hist.record(t1.Sub(t0))
				w.ops++
				w.lastEnd = t1
			}
		}()
	}
	start := time.Now()
	close(startGate)
	finished := make(chan struct{})
	go func() { wg.Wait(); close(finished) }()
	select {
	case <-finished:
	case <-runCtx.Done():
		select {
		case <-finished:
		case <-time.After(closeGrace):
			closeAll() // unblock workers stuck in an op
			<-finished
		}
	}
	var ms1 runtime.MemStats
	runtime.ReadMemStats(&ms1)

	var res LoadResult
	var total latencyHist
	last := start
	for _, w := range ws {
		res.Ops += w.ops
		res.Errors += w.errs
		total.merge(&w.hist)
		if w.lastEnd.After(last) {
			last = w.lastEnd
		}
	}
	res.Duration = last.Sub(start)
	if res.Duration > 0 {
		res.Rate = float64(res.Ops) / res.Duration.Seconds()
	}
	if res.Ops > 0 {
		res.Allocs = float64(ms1.Mallocs-ms0.Mallocs) / float64(res.Ops)
	}
	res.P50 = total.quantile(0.50)
	res.P99 = total.quantile(0.99)
	if res.Ops == 0 && res.Errors > 0 {
		return res, errors.New("loadgen: every worker failed before completing an op")
	}
	return res, ctx.Err()
}

// raiseFileLimit lifts the soft RLIMIT_NOFILE to at least need (up to the
// hard limit) so that 1000 connections and their server side fit.
func raiseFileLimit(need int) error {
	var lim syscall.Rlimit
	if err := syscall.Getrlimit(syscall.RLIMIT_NOFILE, &lim); err != nil {
		return fmt.Errorf("loadgen: getrlimit: %w", err)
	}
	if lim.Cur >= uint64(need) {
		return nil
	}
	if lim.Max < uint64(need) {
		return fmt.Errorf("loadgen: need %d file descriptors, hard limit is %d", need, lim.Max)
	}
	lim.Cur = uint64(need)
	if err := syscall.Setrlimit(syscall.RLIMIT_NOFILE, &lim); err != nil {
		return fmt.Errorf("loadgen: setrlimit %d: %w", need, err)
	}
	return nil
}

// latencyHist is a log-linear histogram of durations in nanoseconds: exact
// below 64 ns, then 64 buckets per power of two (relative error under 1.6%),
// up to 2^41 ns; fixed 9 KiB per worker whatever the run length.
type latencyHist struct {
	counts [histBuckets]uint32
	n      uint64
}

const (
	histSub     = 64
	histMaxExp  = 34 // largest shift: values up to 128<<34 ns (≈ 36 min)
	histBuckets = (histMaxExp + 2) * histSub
)

func histIndex(v uint64) int {
	if v < histSub {
		return int(v)
	}
	e := bits.Len64(v) - 7 // v>>e is in [64, 128)
	if e > histMaxExp {
		return histBuckets - 1
	}
	return (e+1)*histSub + int(v>>uint(e)) - histSub
}

// histValue is the middle of bucket i.
func histValue(i int) uint64 {
	if i < histSub {
		return uint64(i)
	}
	e := uint(i/histSub - 1)
	m := uint64(i%histSub + histSub)
	return m<<e + (uint64(1)<<e)/2
}

func (h *latencyHist) record(d time.Duration) {
	if d < 0 {
		d = 0
	}
	h.counts[histIndex(uint64(d))]++
	h.n++
}

func (h *latencyHist) merge(o *latencyHist) {
	for i, c := range o.counts {
		h.counts[i] += c
	}
	h.n += o.n
}

func (h *latencyHist) quantile(q float64) time.Duration {
	if h.n == 0 {
		return 0
	}
	target := uint64(math.Ceil(q * float64(h.n)))
	if target == 0 {
		target = 1
	}
	var cum uint64
	for i, c := range h.counts {
		cum += uint64(c)
		if cum >= target {
			return time.Duration(histValue(i))
		}
	}
	return time.Duration(histValue(histBuckets - 1))
}

// printResult prints one line for a run.
func printResult(w io.Writer, name string, r LoadResult) {
	fmt.Fprintf(w, "%-12s %10.0f ops/s  p50 %9s  p99 %9s  ops %d in %.2fs  errors %d  allocs/op %.1f\n",
		name, r.Rate, fmtDur(r.P50), fmtDur(r.P99), r.Ops, r.Duration.Seconds(), r.Errors, r.Allocs)
}

// printRatio prints r against the baseline base (normally the echo run of the
// same invocation): rate as a fraction of the baseline's, latencies as
// multiples.
func printRatio(w io.Writer, name string, r, base LoadResult) {
	ratio := func(a, b float64) string {
		if b == 0 {
			return "n/a"
		}
		return fmt.Sprintf("%.2fx", a/b)
	}
	fmt.Fprintf(w, "%-12s rate %s of echo (%.0f vs %.0f ops/s)  p50 %s  p99 %s of echo\n",
		name, ratio(r.Rate, base.Rate), r.Rate, base.Rate,
		ratio(float64(r.P50), float64(base.P50)), ratio(float64(r.P99), float64(base.P99)))
}

func fmtDur(d time.Duration) string {
	switch {
	case d >= time.Second:
		return fmt.Sprintf("%.2fs", d.Seconds())
	case d >= time.Millisecond:
		return fmt.Sprintf("%.2fms", float64(d)/1e6)
	default:
		return fmt.Sprintf("%.1fµs", float64(d)/1e3)
	}
}

// startCPUProfile writes a CPU profile to path until stop is called; an empty path profiles nothing.
func startCPUProfile(path string) (stop func(), err error) {
	if path == "" {
		return func() {}, nil
	}
	f, err := os.Create(path)
	if err != nil {
		return nil, err
	}
	if err := pprof.StartCPUProfile(f); err != nil {
		f.Close()
		return nil, err
	}
	return func() { pprof.StopCPUProfile(); f.Close() }, nil
}
