package prom

import (
	"strings"
	"testing"

	"github.com/prometheus/client_golang/prometheus"
	dto "github.com/prometheus/client_model/go"
)

func value(t *testing.T, c prometheus.Counter) float64 {
	t.Helper()
	var m dto.Metric
	if err := c.Write(&m); err != nil {
		t.Fatal(err)
	}
	return m.GetCounter().GetValue()
}

func TestRegisterReusesTheRegisteredCollector(t *testing.T) {
	reg := prometheus.NewRegistry()
	newCounter := func() prometheus.Counter {
		return prometheus.NewCounter(prometheus.CounterOpts{Name: "x_total", Help: "x."})
	}
	r := On(reg)
	first := Register(r, newCounter())
	second := Register(On(reg), newCounter()) // a second server on the same registry
	first.Inc()
	second.Inc()
	if got := value(t, first); got != 2 {
		t.Fatalf("the two servers' counts: %v, want 2 in the one scraped collector", got)
	}
	if err := r.Err(); err != nil {
		t.Fatal(err)
	}
}

func TestRegisterReportsConflicts(t *testing.T) {
	reg := prometheus.NewRegistry()
	Register(On(reg), prometheus.NewCounter(prometheus.CounterOpts{Name: "x_total", Help: "x."}))
	r := On(reg)
	Register(r, prometheus.NewCounterVec(prometheus.CounterOpts{Name: "x_total", Help: "x."}, []string{"kind"}))
	if err := r.Err(); err == nil || !strings.HasPrefix(err.Error(), "metrics: ") {
		t.Fatalf("a name registered with other labels: %v", err)
	}
}

func TestNilRegistryRegistersNothing(t *testing.T) {
	r := On(nil)
	c := Register(r, prometheus.NewCounter(prometheus.CounterOpts{Name: "x_total", Help: "x."}))
	c.Inc()
	if value(t, c) != 1 || r.Err() != nil {
		t.Fatal("a nil registry must leave the collector counting and report no error")
	}
}

func TestOwnedCollectorsAreOneInstancesAlone(t *testing.T) {
	reg := prometheus.NewRegistry()
	newCounter := func() prometheus.Counter {
		return prometheus.NewCounter(prometheus.CounterOpts{Name: "x_total", Help: "x."})
	}
	first := Own(reg)
	Register(first, newCounter())
	second := Own(reg)
	Register(second, newCounter())
	if second.Err() == nil {
		t.Fatal("a second owner of the same collector must fail")
	}
	first.Unregister()
	third := Own(reg)
	Register(third, newCounter())
	if err := third.Err(); err != nil {
		t.Fatalf("after the first owner unregistered: %v", err)
	}
}
