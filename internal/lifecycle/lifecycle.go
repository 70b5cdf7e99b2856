// Package lifecycle holds what every part shares to honour the engine's part contract (engine.Part):
// a Shutdown that is idempotent and safe on a part that never started.
package lifecycle

import (
	"context"
	"sync"
)

// StopOnce makes a Shutdown idempotent: the first call stops the part; a later (or concurrent) call waits
// for that stop to finish, at most until its own ctx is done, and returns the first call's result. A
// second call never repeats work whose effects were already consumed (a server's Serve result, read once).
// The zero value is ready to use.
type StopOnce struct {
	mu   sync.Mutex
	done chan struct{}
	err  error
}

// Do runs stop the first time it is called and returns its result, then and to every later call.
func (s *StopOnce) Do(ctx context.Context, stop func() error) error {
	s.mu.Lock()
	if done := s.done; done != nil {
		s.mu.Unlock()
		select {
		case <-done:
			return s.err
		case <-ctx.Done():
			return ctx.Err()
		}
	}
	s.done = make(chan struct{})
	s.mu.Unlock()
	s.err = stop()
	close(s.done)
	return s.err
}

// Started reports whether Do was called.
func (s *StopOnce) Started() bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.done != nil
}
