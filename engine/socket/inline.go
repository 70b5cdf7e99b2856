package socket

import (
	"sync"
	"sync/atomic"
	"time"
)

// Inline actions. A connection's reader runs an action itself when nothing else is pending on the
// connection and no further request is buffered: the common closed-loop request then costs no goroutine
// hand-off (docs/benchmarks.md). The stall watch keeps this from serialising a connection behind a slow
// action: an action that has run inline for stallAfter gets the reading role taken from it, and a new
// goroutine goes on reading, so requests that arrive meanwhile wait at most about 2×stallAfter before
// they start (the reference, an event loop, would start them at once; with workers, they would start
// after one hand-off). The old goroutine ends when its action has replied.

// stallAfter is how long an inline action may hold up its connection's reading; the watch also ticks
// this often while inline actions run.
const stallAfter = 2 * time.Millisecond

// stallWatch hands reading over from connections whose inline action stalls. It ticks only while
// inline actions run (and for a short while after), then parks until the next one starts.
type stallWatch struct {
	epoch   time.Time
	running atomic.Int64 // inline actions running now
	parked  atomic.Bool
	wake    chan struct{} // capacity 1
	quit    chan struct{}
	done    chan struct{}
	once    sync.Once // start
	stopped sync.Once
}

func (w *stallWatch) init() {
	w.epoch = time.Now()
	w.wake = make(chan struct{}, 1)
	w.quit = make(chan struct{})
	w.done = make(chan struct{})
}

// clock is the time since the server was built, in nanoseconds, > 0.
func (w *stallWatch) clock() int64 { return int64(time.Since(w.epoch)) + 1 }

// inlineStart counts an inline action and returns its start time (stallWatch.clock).
func (s *Server) inlineStart() int64 {
	w := &s.stall
	if w.running.Add(1) == 1 && w.parked.Load() && w.parked.CompareAndSwap(true, false) {
		select {
		case w.wake <- struct{}{}:
		default:
		}
	}
	return w.clock()
}

func (s *Server) inlineEnd() { s.stall.running.Add(-1) }

// start runs the watch (once per server; Serve calls it).
func (w *stallWatch) start(s *Server) {
	w.once.Do(func() { go w.run(s) })
}

// stop ends the watch and waits for it (a watch never started is just marked done).
func (w *stallWatch) stop() {
	w.stopped.Do(func() { close(w.quit) })
	w.once.Do(func() { close(w.done) })
	<-w.done
}

// idleTicks is how many ticks without inline actions the watch waits before parking.
const idleTicks = 100

func (w *stallWatch) run(s *Server) {
	defer close(w.done)
	t := time.NewTicker(stallAfter)
	defer t.Stop()
	idle := 0
	for {
		select {
		case <-t.C:
		case <-w.quit:
			return
		}
		if w.running.Load() == 0 {
			if idle++; idle < idleTicks {
				continue
			}
			idle = 0
			t.Stop()
			w.parked.Store(true)
			// An action may have started between the check and parked: do not sleep through it.
			if w.running.Load() == 0 || !w.parked.CompareAndSwap(true, false) {
				select {
				case <-w.wake:
				case <-w.quit:
					return
				}
			}
			t.Reset(stallAfter)
			continue
		}
		idle = 0
		now := w.clock()
		s.mu.Lock()
		for c := range s.conns {
			if since := c.inlineSince.Load(); since > 0 && now-since >= int64(stallAfter) {
				c.handOver(since)
			}
		}
		s.mu.Unlock()
	}
}
