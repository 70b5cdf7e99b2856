package esl

import (
	"github.com/prometheus/client_golang/prometheus"

	"github.com/switchboard/switchboard/engine/labels"
	"github.com/switchboard/switchboard/internal/prom"
)

// metrics are the switchboard_esl_* series. Every label value a peer can influence is bounded: flows by
// esl.max_flow_series (only flows the resolver found get a value of their own), causes by FreeSWITCH's
// cause table, ignored frames by a fixed list of content types.
type metrics struct {
	active    prometheus.Gauge
	calls     *prometheus.CounterVec // flow, outcome
	rtt       prometheus.Histogram
	engine    *prometheus.HistogramVec // phase: write, receive
	causes    *prometheus.CounterVec
	ignored   *prometheus.CounterVec
	badFrames prometheus.Counter
	flows     *labels.Set // flow label values; never released: flows are few and named by scripts
}

func newMetrics(reg prometheus.Registerer, maxFlows int, bodies *BodyBudget) (*metrics, error) {
	m := &metrics{
		active: prometheus.NewGauge(prometheus.GaugeOpts{Name: "switchboard_esl_calls_active", Help: "Calls connected to the esl part now."}),
		calls: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "switchboard_esl_calls_total",
			Help: "Calls handled, by flow and outcome (completed: the flow returned; hungup: the caller left during a blocking call; error, shutdown, no_flow, setup_failed)."}, []string{"flow", "outcome"}),
		rtt: prometheus.NewHistogram(prometheus.HistogramOpts{Name: "switchboard_esl_command_seconds",
			Help:    "Round trip of one command to FreeSWITCH and its reply.",
			Buckets: []float64{.00005, .0001, .0002, .0003, .0004, .0005, .00075, .001, .0015, .002, .005, .01, .025, .1, 1}}),
		engine: prometheus.NewHistogramVec(prometheus.HistogramOpts{Name: "switchboard_esl_command_engine_seconds",
			Help: "The engine's own share of a command round trip, by phase: write (encoding and writing the command) and " +
				"receive (from the read that brought the reply to the waiting flow having it). The rest of the round trip " +
				"is FreeSWITCH, the network and the reader's wake-up.",
			Buckets: []float64{.000005, .00001, .00002, .00005, .0001, .0002, .0003, .0005, .00075, .001, .0015, .002, .005, .01, .1}},
			[]string{"phase"}),
		causes: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "switchboard_esl_hangup_causes_total",
			Help: "Hangup causes reported by FreeSWITCH."}, []string{"cause"}),
		ignored: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "switchboard_esl_frames_ignored_total",
			Help: "Frames of unknown or unreadable types that were ignored."}, []string{"type"}),
		badFrames: prometheus.NewCounter(prometheus.CounterOpts{Name: "switchboard_esl_bad_frames_total",
			Help: "Calls whose socket was closed for a malformed or over-limit frame (a body past esl.bodies_in_flight_bytes included)."}),
		flows: labels.NewSet(maxFlows, nil),
	}
	bodiesGauge := prometheus.NewGaugeFunc(prometheus.GaugeOpts{Name: "switchboard_esl_body_bytes_in_flight",
		Help: "Bytes of frame bodies being read now past their first 64 KiB, all calls together (bounded by esl.bodies_in_flight_bytes)."},
		func() float64 { return float64(bodies.InUse()) })
	r := prom.On(reg)
	m.active = prom.Register(r, m.active)
	m.calls = prom.Register(r, m.calls)
	m.rtt = prom.Register(r, m.rtt)
	m.engine = prom.Register(r, m.engine)
	m.causes = prom.Register(r, m.causes)
	m.ignored = prom.Register(r, m.ignored)
	m.badFrames = prom.Register(r, m.badFrames)
	prom.Register(r, bodiesGauge)
	return m, r.Err()
}
