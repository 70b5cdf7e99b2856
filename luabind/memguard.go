package luabind

import (
	"runtime"
	"runtime/metrics"
	"sort"
	"time"

	"github.com/sirupsen/logrus"
)

// memoryGuard is the last resort when the Go heap passes lua.memory_limit_mb: every source of growth has a
// bound of its own (strings, arrays, the cache, timers...), so being over means a script builds a large
// value one piece at a time. The guard first collects garbage; if the heap is still over, it cancels the
// handler that has been computing longest (innocent requests run for microseconds; a handler blocked in
// sb.sleep or a call flow waiting for FreeSWITCH comes after those that compute), waits for it to end,
// collects and looks again, cancelling twice as many each round while the heap stays over (1, 2, 4...).
type memoryGuard struct {
	rt     *Runtime
	limit  uint64
	sample []metrics.Sample

	round   int       // rounds of cancellations since the heap was last under the limit
	pending []victim  // cancelled in the last round and not finished yet
	since   time.Time // when the last round cancelled
	lastGC  time.Time // when the guard last forced a collection
}

type victim struct {
	vm *VM
	st uint64
}

// memorySettle is how long a round waits for its victims to unwind and close their VMs (which frees what
// they built) before looking again; memoryGCEvery spaces the collections the guard forces.
const (
	memorySettle  = time.Second
	memoryGCEvery = 100 * time.Millisecond
)

func (m *memoryGuard) heap() uint64 {
	metrics.Read(m.sample)
	if m.sample[0].Value.Kind() != metrics.KindUint64 {
		return 0
	}
	return m.sample[0].Value.Uint64()
}

func (m *memoryGuard) reset() {
	m.round = 0
	m.pending = nil
}

// check runs on every watchdog tick while handlers run.
func (m *memoryGuard) check() {
	h := m.heap()
	if h <= m.limit {
		if m.round > 0 {
			m.rt.log.WithFields(logrus.Fields{"heap_bytes": h, "limit_mb": m.rt.cfg.MemoryLimitMB}).Info("heap back under lua.memory_limit_mb")
		}
		m.reset()
		return
	}
	// What the last round's victims built is freed when their VMs close: wait for that first. The heap
	// counts garbage not yet collected, so only a collection tells what is live: collect at most every
	// memoryGCEvery, unless the heap is past twice the limit.
	if m.unwinding() || h <= 2*m.limit && time.Since(m.lastGC) < memoryGCEvery {
		return
	}
	runtime.GC()
	m.lastGC = time.Now()
	if h = m.heap(); h <= m.limit {
		return
	}
	victims := m.pick(1 << min(m.round, 20))
	if len(victims) == 0 {
		return
	}
	cancelled := victims[:0]
	for _, v := range victims {
		if v.vm.cancel(v.st, ErrMemory) {
			m.rt.memTrips.Add(1)
			cancelled = append(cancelled, v)
		}
	}
	victims = cancelled
	m.round++
	m.pending, m.since = victims, time.Now()
	m.rt.log.WithFields(logrus.Fields{"heap_bytes": h, "limit_mb": m.rt.cfg.MemoryLimitMB,
		"cancelled": len(victims), "round": m.round}).Error("heap over lua.memory_limit_mb: cancelled the Lua handlers computing longest")
}

// unwinding reports whether the last round's victims are still finishing (for at most memorySettle).
func (m *memoryGuard) unwinding() bool {
	if len(m.pending) == 0 {
		return false
	}
	if time.Since(m.since) < memorySettle {
		for _, v := range m.pending {
			if !v.vm.closed.Load() {
				return true
			}
		}
	}
	m.pending = nil
	return false
}

// pick chooses up to n running handlers to cancel: those computing before those blocked in a Go call, the
// longest running first.
func (m *memoryGuard) pick(n int) []victim {
	type cand struct {
		victim
		waiting bool
		started int64
	}
	rt := m.rt
	var cands []cand
	rt.vmMu.Lock()
	for vm := range rt.vms {
		if st, ok := vm.busy(); ok {
			cands = append(cands, cand{victim{vm, st}, vm.waiting.Load(), vm.started.Load()})
		}
	}
	rt.vmMu.Unlock()
	sort.Slice(cands, func(i, j int) bool {
		if cands[i].waiting != cands[j].waiting {
			return !cands[i].waiting
		}
		return cands[i].started < cands[j].started
	})
	if len(cands) > n {
		cands = cands[:n]
	}
	out := make([]victim, len(cands))
	for i, c := range cands {
		out[i] = c.victim
	}
	return out
}
