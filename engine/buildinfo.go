package engine

import (
	"github.com/prometheus/client_golang/prometheus"

	"github.com/switchboard/switchboard/internal/buildinfo"
)

// buildInfoGauge is switchboard_build_info{version,commit,go} 1: which build is answering, for dashboards
// and for alerts that compare versions across a fleet.
func buildInfoGauge() prometheus.Collector {
	bi := buildinfo.Get()
	g := prometheus.NewGauge(prometheus.GaugeOpts{
		Name:        "switchboard_build_info",
		Help:        "Always 1; the labels name the running build (version, commit, Go release).",
		ConstLabels: prometheus.Labels{"version": bi.Version, "commit": bi.Commit, "go": bi.Go},
	})
	g.Set(1)
	return g
}
