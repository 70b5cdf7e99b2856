package socket

import (
	"sync"
	"time"
)

// Inline actions. A connection's reader runs an action itself when nothing else is pending on the
// connection and no further request is buffered: the common closed-loop request then costs no goroutine
// hand-off (docs/benchmarks.md). The stall watch keeps this from serialising a connection behind a slow
// action: an action that has run inline for stallAfter gets the reading role taken from it, and an
// action worker (its stack already grown) goes on reading, so requests that arrive meanwhile wait at most about 2×stallAfter before
// they start (the reference, an event loop, would start them at once; with workers, they would start
// after one hand-off). The old goroutine ends when its action has replied (or, if it was a worker, goes
// back to the pool).

// stallAfter is how long an inline action may hold up its connection's reading; the watch also ticks
// this often while inline actions run.
const stallAfter = 2 * time.Millisecond

// stallWatch hands reading over from connections whose inline action stalls. It ticks only while
// inline actions run (and for a short while after), then parks until the next one starts. It looks only
// at the connections running an inline action now, so its cost does not grow with idle connections.
type stallWatch struct {
	epoch time.Time

	mu     sync.Mutex
	inline []*Conn // connections whose reader runs an action now (Conn.inlineIdx is the position)
	parked bool

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

// inlineStart registers c's reader as running an action inline and returns its start time (clock).
func (s *Server) inlineStart(c *Conn) int64 {
	w := &s.stall
	now := w.clock()
	w.mu.Lock()
	c.inlineIdx = len(w.inline)
	w.inline = append(w.inline, c)
	wake := w.parked
	w.parked = false
	w.mu.Unlock()
	if wake {
		select {
		case w.wake <- struct{}{}:
		default:
		}
	}
	return now
}

// inlineEnd unregisters c (its inline action has returned).
func (s *Server) inlineEnd(c *Conn) {
	w := &s.stall
	w.mu.Lock()
	last := len(w.inline) - 1
	moved := w.inline[last]
	w.inline[c.inlineIdx] = moved
	moved.inlineIdx = c.inlineIdx
	w.inline[last] = nil
	w.inline = w.inline[:last]
	w.mu.Unlock()
}

// start runs the watch (once per server; Serve calls it).
func (w *stallWatch) start() {
	w.once.Do(func() { go w.run() })
}

// stop ends the watch and waits for it (a watch never started is just marked done).
func (w *stallWatch) stop() {
	w.stopped.Do(func() { close(w.quit) })
	w.once.Do(func() { close(w.done) })
	<-w.done
}

// idleTicks is how many ticks without inline actions the watch waits before parking.
const idleTicks = 100

func (w *stallWatch) run() {
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
		now := w.clock()
		w.mu.Lock()
		if len(w.inline) > 0 {
			idle = 0
			for _, c := range w.inline {
				if since := c.inlineSince.Load(); since > 0 && now-since >= int64(stallAfter) {
					c.handOver(since)
				}
			}
			w.mu.Unlock()
			continue
		}
		if idle++; idle < idleTicks {
			w.mu.Unlock()
			continue
		}
		idle = 0
		w.parked = true
		w.mu.Unlock()
		t.Stop()
		select {
		case <-w.wake:
		case <-w.quit:
			return
		}
		t.Reset(stallAfter)
	}
}
