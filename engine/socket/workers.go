package socket

import (
	"sync"
	"time"
)

// workers run actions. A finished worker waits a while for the next action instead of exiting, so its
// stack (grown by the Lua interpreter) is reused: starting a goroutine per action cost ~13% of CPU in
// copystack alone at 50 connections (docs/benchmarks.md). Concurrency is unchanged: a new worker starts
// whenever none is idle.
type workers struct {
	jobs    chan func()
	quit    chan struct{}
	wg      sync.WaitGroup
	idleFor time.Duration
	once    sync.Once
}

func newWorkers(idleFor time.Duration) *workers {
	return &workers{jobs: make(chan func()), quit: make(chan struct{}), idleFor: idleFor}
}

// run hands job to an idle worker or starts one.
func (w *workers) run(job func()) {
	select {
	case w.jobs <- job:
	default:
		w.wg.Add(1)
		go w.loop(job)
	}
}

func (w *workers) loop(job func()) {
	defer w.wg.Done()
	t := time.NewTimer(w.idleFor)
	defer t.Stop()
	for {
		job()
		t.Reset(w.idleFor)
		select {
		case job = <-w.jobs:
		case <-t.C:
			return
		case <-w.quit:
			return
		}
	}
}

// stop makes idle workers exit and waits for all of them (running jobs finish first).
func (w *workers) stop() {
	w.once.Do(func() { close(w.quit) })
	w.wg.Wait()
}
