// Package prom registers the engine's Prometheus collectors, the same way in every part.
//
// A part builds its collectors, then registers each through a Registrar and keeps what Register returns.
// Two policies, chosen when the Registrar is made:
//
//   - On (shared): Register returns the collector itself, or the one of the same type already registered
//     under the same name (several servers of one kind on one registry, as in tests, then count together,
//     and every count is scraped).
//   - Own (owned): the collectors belong to one instance, which removes them when it stops (Unregister);
//     one already registered is an error (the relay: its per-application series are deleted with their
//     sessions, which two instances could not share).
//
// Any other registration error (a name registered with other labels or help) is kept and reported by Err,
// so the part fails to build instead of counting into a collector nobody scrapes. A nil registry registers
// nothing: the collectors still count, for the part's own status page.
package prom

import (
	"errors"
	"fmt"

	"github.com/prometheus/client_golang/prometheus"
)

// Registrar registers collectors on one registry and gathers the errors.
type Registrar struct {
	reg   prometheus.Registerer
	owned bool
	done  []prometheus.Collector // what it registered (owned: Unregister removes them)
	errs  []error
}

// On returns a Registrar sharing collectors already on reg (nil: register nothing).
func On(reg prometheus.Registerer) *Registrar { return &Registrar{reg: reg} }

// Own returns a Registrar whose collectors are the caller's alone (nil: register nothing).
func Own(reg prometheus.Registerer) *Registrar { return &Registrar{reg: reg, owned: true} }

// Unregister removes what an Own Registrar registered.
func (r *Registrar) Unregister() {
	if r.reg == nil {
		return
	}
	for _, c := range r.done {
		r.reg.Unregister(c)
	}
	r.done = nil
}

// Register registers c and returns the collector to count with: c, or the collector of the same type
// already registered in its place.
func Register[T prometheus.Collector](r *Registrar, c T) T {
	if r.reg == nil {
		return c
	}
	err := r.reg.Register(c)
	if err == nil {
		r.done = append(r.done, c)
		return c
	}
	var are prometheus.AlreadyRegisteredError
	if !r.owned && errors.As(err, &are) {
		if prev, ok := are.ExistingCollector.(T); ok {
			return prev
		}
	}
	r.errs = append(r.errs, err)
	return c
}

// Err is every registration error so far, or nil.
func (r *Registrar) Err() error {
	if len(r.errs) == 0 {
		return nil
	}
	return fmt.Errorf("metrics: %w", errors.Join(r.errs...))
}
