// Package gcfloor keeps Go's garbage collector from running before the heap has grown to a floor.
//
// A Switchboard process holds little live memory (a few MB of VMs and connections) but allocates fast
// on its hot paths (each Lua call builds tables and strings). Go's default pacing collects whenever the
// heap doubles, with a 4 MB minimum, so such a process collects dozens of times a second and spends a
// noticeable share of its CPU doing so (docs/benchmarks.md). The floor raises the collection goal to at
// least Floor bytes while the live heap is small; once the live heap is large enough for its own goal
// (live × (1+GOGC/100)) to exceed the floor, Go's pacing applies unchanged. The memory this costs is
// bounded by the floor itself.
//
// The tuner works with the runtime's knobs only: after every collection it reads the live heap
// (runtime/metrics) and sets the GC percent (runtime/debug) to the smallest value ≥ GOGC whose goal
// reaches the floor. A memory limit (GOMEMLIMIT) still applies on top.
package gcfloor

import (
	"os"
	"runtime"
	"runtime/debug"
	"runtime/metrics"
	"strconv"
	"sync"
	"sync/atomic"
)

// runtimeMinimum is the Go runtime's minimum heap goal at GOGC=100 (it scales with the GC percent).
const runtimeMinimum = 4 << 20

// maxPercent bounds the GC percent the tuner sets.
const maxPercent = 1 << 20

// Tuner raises the garbage collector's goal to a floor. The GC percent is process-wide, so a process
// runs at most one Tuner (cmd/switchboard starts it; tests and libraries embedding the engine do not).
type Tuner struct {
	floor   uint64
	base    int // the GC percent without the floor (GOGC)
	stopped atomic.Bool
	mu      sync.Mutex // adjust
	current int
	sample  []metrics.Sample
}

// Start starts a tuner for a floor of floor bytes and returns it. It returns nil (nothing to stop)
// when floor is 0 or GOGC=off, where there is nothing to raise.
func Start(floor uint64) *Tuner {
	base, ok := basePercent(os.Getenv("GOGC"))
	if floor == 0 || !ok {
		return nil
	}
	t := &Tuner{floor: floor, base: base, current: base,
		sample: []metrics.Sample{{Name: "/gc/heap/live:bytes"}}}
	t.adjust()
	t.arm()
	return t
}

// Stop ends the tuning and restores the GC percent to GOGC. Safe on a nil Tuner.
func (t *Tuner) Stop() {
	if t == nil || t.stopped.Swap(true) {
		return
	}
	t.mu.Lock()
	defer t.mu.Unlock()
	debug.SetGCPercent(t.base)
	t.current = t.base
}

// Percent is the GC percent the tuner set last.
func (t *Tuner) Percent() int {
	t.mu.Lock()
	defer t.mu.Unlock()
	return t.current
}

// sentinel is garbage the moment it is made: its finalizer runs after the next collection, adjusts
// and makes the next one.
type sentinel struct{ t *Tuner }

func (t *Tuner) arm() {
	runtime.SetFinalizer(&sentinel{t: t}, func(s *sentinel) {
		if s.t.stopped.Load() {
			return
		}
		s.t.adjust()
		s.t.arm()
	})
}

// adjust sets the GC percent for the live heap of the last collection.
func (t *Tuner) adjust() {
	metrics.Read(t.sample)
	var live uint64
	if t.sample[0].Value.Kind() == metrics.KindUint64 {
		live = t.sample[0].Value.Uint64()
	}
	p := percentFor(t.floor, live, t.base)
	t.mu.Lock()
	defer t.mu.Unlock()
	if t.stopped.Load() || p == t.current {
		return
	}
	debug.SetGCPercent(p)
	t.current = p
}

// percentFor is the smallest GC percent ≥ base whose heap goal reaches floor for a live heap of live
// bytes. The runtime's goal is max(live × (1+p/100), 4 MB × p/100), so the floor is reached either by
// the growth of the live heap or by the runtime's minimum, whichever needs the smaller percent.
func percentFor(floor, live uint64, base int) int {
	floor = min(floor, maxFloor)
	p := ceilDiv(floor*100, runtimeMinimum) // by the minimum
	if live > 0 && live < floor {
		p = min(p, ceilDiv((floor-live)*100, live)) // by growth
	} else if live >= floor {
		p = 0
	}
	if p <= uint64(max(base, 0)) {
		return base
	}
	return int(min(p, maxPercent))
}

// maxFloor keeps floor×100 within a uint64.
const maxFloor = 1 << 50

func ceilDiv(a, b uint64) uint64 { return (a + b - 1) / b }

// basePercent parses GOGC as the runtime does: unset or empty is 100, "off" disables collection
// (ok=false: no floor to keep).
func basePercent(env string) (int, bool) {
	switch env {
	case "":
		return 100, true
	case "off":
		return 0, false
	}
	p, err := strconv.Atoi(env)
	if err != nil {
		return 100, true // the runtime ignores a GOGC it cannot parse
	}
	if p < 0 {
		return 0, false
	}
	return p, true
}
