package socket

import (
	"sync"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/switchboard/switchboard/internal/prom"
)

// metrics are the switchboard_socket_* collectors.
type metrics struct {
	accepted prometheus.Counter
	refused  prometheus.Counter
	open     prometheus.Gauge
	closed   *prometheus.CounterVec // by reason
	requests *prometheus.CounterVec // by kind (action|verb) and name
	errors   *prometheus.CounterVec // by reason
	pending  prometheus.Gauge
	latency  *prometheus.HistogramVec // action latency by action
	slow     prometheus.Counter
	chat     prometheus.Counter
	handoffs prometheus.Counter
	// handshakes counts failed TLS handshakes by reason (timeout, failed).
	handshakes *prometheus.CounterVec

	perAction sync.Map // action name -> *actionMetrics, so the hot path does no label hashing
	perVerb   sync.Map // verb name -> prometheus.Counter (built-in and registered verbs only)
}

type actionMetrics struct {
	requests prometheus.Counter
	latency  prometheus.Observer
}

// action returns the collectors of one (known) action.
func (m *metrics) action(name string) *actionMetrics {
	if v, ok := m.perAction.Load(name); ok {
		return v.(*actionMetrics)
	}
	am := &actionMetrics{requests: m.requests.WithLabelValues("action", name), latency: m.latency.WithLabelValues(name)}
	v, _ := m.perAction.LoadOrStore(name, am)
	return v.(*actionMetrics)
}

// verb returns the request counter of a verb (a built-in one or one a script registered, so the label
// values stay few).
func (m *metrics) verb(name string) prometheus.Counter {
	if v, ok := m.perVerb.Load(name); ok {
		return v.(prometheus.Counter)
	}
	v, _ := m.perVerb.LoadOrStore(name, m.requests.WithLabelValues("verb", name))
	return v.(prometheus.Counter)
}

func newMetrics(reg prometheus.Registerer) (*metrics, error) {
	m := &metrics{
		accepted: prometheus.NewCounter(prometheus.CounterOpts{Name: "switchboard_socket_connections_total", Help: "Connections accepted."}),
		refused:  prometheus.NewCounter(prometheus.CounterOpts{Name: "switchboard_socket_connections_refused_total", Help: "Connections refused over socket.max_connections."}),
		open:     prometheus.NewGauge(prometheus.GaugeOpts{Name: "switchboard_socket_connections", Help: "Open connections."}),
		closed:   prometheus.NewCounterVec(prometheus.CounterOpts{Name: "switchboard_socket_disconnects_total", Help: "Connections closed, by reason."}, []string{"reason"}),
		requests: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "switchboard_socket_requests_total", Help: "Requests by kind (action or verb) and name; unknown actions count as \"unknown\"."}, []string{"kind", "name"}),
		errors:   prometheus.NewCounterVec(prometheus.CounterOpts{Name: "switchboard_socket_errors_total", Help: "Error replies and limit hits, by reason."}, []string{"reason"}),
		pending:  prometheus.NewGauge(prometheus.GaugeOpts{Name: "switchboard_socket_pending_actions", Help: "Actions running now."}),
		latency: prometheus.NewHistogramVec(prometheus.HistogramOpts{Name: "switchboard_socket_action_duration_seconds", Help: "Action handler latency.",
			Buckets: []float64{.0001, .00025, .0005, .001, .0025, .005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5, 10}}, []string{"action"}),
		slow: prometheus.NewCounter(prometheus.CounterOpts{Name: "switchboard_socket_slow_readers_total", Help: "Connections dropped because their outbound queue was full."}),
		chat: prometheus.NewCounter(prometheus.CounterOpts{Name: "switchboard_socket_chat_messages_total", Help: "say messages broadcast."}),
		handoffs: prometheus.NewCounter(prometheus.CounterOpts{Name: "switchboard_socket_inline_handoffs_total",
			Help: "Actions run by a connection's reader that took long enough for reading to move to another goroutine."}),
		handshakes: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "switchboard_socket_tls_handshake_failures_total",
			Help: "TLS handshakes that failed (reason=failed) or did not finish within socket.tls.handshake_timeout (reason=timeout); the connection is closed."}, []string{"reason"}),
	}
	r := prom.On(reg)
	m.accepted = prom.Register(r, m.accepted)
	m.refused = prom.Register(r, m.refused)
	m.open = prom.Register(r, m.open)
	m.closed = prom.Register(r, m.closed)
	m.requests = prom.Register(r, m.requests)
	m.errors = prom.Register(r, m.errors)
	m.pending = prom.Register(r, m.pending)
	m.latency = prom.Register(r, m.latency)
	m.slow = prom.Register(r, m.slow)
	m.chat = prom.Register(r, m.chat)
	m.handoffs = prom.Register(r, m.handoffs)
	m.handshakes = prom.Register(r, m.handshakes)
	if err := r.Err(); err != nil {
		return nil, err
	}
	return m, nil
}
