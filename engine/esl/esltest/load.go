package esltest

import (
	"context"
	"fmt"
	"math"
	"sync"
	"sync/atomic"
	"time"
)

// Load runs many simulated calls against one engine: Concurrency callers, each placing calls back to back
// until Total calls were placed (Total > 0) or ctx is done.
type Load struct {
	Call        Call // template; each call gets a fresh UUID
	Concurrency int
	Total       int
	// OK judges a finished call; nil accepts any call that ended without a simulator error.
	OK func(*Result) bool
	// Started, when set, is called once per call as soon as its socket is connected.
	Started func()
	// Failed, when set, is called for each failed call as it fails (res is nil when the call never
	// connected), from the caller's goroutine.
	Failed func(res *Result, err error)
}

// LoadResult sums up a load run.
type LoadResult struct {
	Calls   int64
	Failed  int64
	Elapsed time.Duration
	Rate    float64 // calls per second
	Sample  string  // transcript of the first failed call
}

// RunLoad runs l and returns when every caller stopped.
func RunLoad(ctx context.Context, l Load) LoadResult {
	if l.Concurrency <= 0 {
		l.Concurrency = 1
	}
	var placed, calls, failed atomic.Int64
	var sampleOnce sync.Once
	var sample string
	start := time.Now()
	var wg sync.WaitGroup
	for w := 0; w < l.Concurrency; w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for ctx.Err() == nil {
				if l.Total > 0 && placed.Add(1) > int64(l.Total) {
					return
				}
				c := l.Call
				c.UUID = ""
				c.started = l.Started
				res, err := Run(ctx, c)
				if l.Total == 0 && (ctx.Err() != nil || pastDeadline(ctx)) {
					return // cut by the end of the run, not a failure
				}
				calls.Add(1)
				if err != nil || (l.OK != nil && !l.OK(res)) {
					failed.Add(1)
					if l.Failed != nil {
						l.Failed(res, err)
					}
					sampleOnce.Do(func() {
						if res != nil {
							sample = res.String() + fmt.Sprintf("hangup cause %q, answered %v, %d commands\n", res.HangupCause, res.Answered, res.Commands)
						}
						if err != nil {
							sample += fmt.Sprintf("error: %v\n", err)
						}
					})
				}
			}
		}()
	}
	wg.Wait()
	el := time.Since(start)
	r := LoadResult{Calls: calls.Load(), Failed: failed.Load(), Elapsed: el, Sample: sample}
	if el > 0 {
		r.Rate = float64(r.Calls) / el.Seconds()
	}
	return r
}

func pastDeadline(ctx context.Context) bool {
	dl, ok := ctx.Deadline()
	return ok && !time.Now().Before(dl)
}

// Latency is a histogram of durations in buckets 5% wide (1 µs to about 10 s), safe for concurrent use
// without locks; the load runs use it for the simulator's own share of each command.
type Latency struct {
	counts [latencyBuckets]atomic.Uint64
}

const (
	latencyBuckets = 330
	latencyGrowth  = 1.05
)

func latencyBucket(d time.Duration) int {
	us := float64(d) / float64(time.Microsecond)
	if us <= 1 {
		return 0
	}
	i := int(math.Log(us)/math.Log(latencyGrowth)) + 1
	return min(i, latencyBuckets-1)
}

// Add counts one duration.
func (l *Latency) Add(d time.Duration) { l.counts[latencyBucket(d)].Add(1) }

// Count is how many durations were added.
func (l *Latency) Count() uint64 {
	var n uint64
	for i := range l.counts {
		n += l.counts[i].Load()
	}
	return n
}

// Quantile returns the upper bound of the bucket holding quantile q (0 < q <= 1), 0 when empty.
func (l *Latency) Quantile(q float64) time.Duration {
	total := l.Count()
	if total == 0 {
		return 0
	}
	target := uint64(math.Ceil(q * float64(total)))
	var n uint64
	for i := range l.counts {
		n += l.counts[i].Load()
		if n >= target {
			return time.Duration(math.Pow(latencyGrowth, float64(i)) * float64(time.Microsecond))
		}
	}
	return time.Duration(math.Pow(latencyGrowth, latencyBuckets) * float64(time.Microsecond))
}
