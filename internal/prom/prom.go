// Package prom registers the engine's Prometheus collectors, the same way in every part.
//
// A part builds its collectors, then registers each through a Registrar and keeps what Register returns:
// the collector itself, or the one of the same type already registered under the same name (several
// servers of one kind on one registry, as in tests, then count together, and every count is scraped).
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
	reg  prometheus.Registerer
	errs []error
}

// On returns a Registrar for reg (nil: register nothing).
func On(reg prometheus.Registerer) *Registrar { return &Registrar{reg: reg} }

// Register registers c and returns the collector to count with: c, or the collector of the same type
// already registered in its place.
func Register[T prometheus.Collector](r *Registrar, c T) T {
	if r.reg == nil {
		return c
	}
	err := r.reg.Register(c)
	if err == nil {
		return c
	}
	var are prometheus.AlreadyRegisteredError
	if errors.As(err, &are) {
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
