package relay

import (
	"math"
	"sort"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/switchboard/switchboard/engine/labels"
	"github.com/switchboard/switchboard/internal/prom"
)

// metrics are the switchboard_relay_* series of one relay.
type metrics struct {
	connections     prometheus.Gauge
	clientIn        *prometheus.CounterVec // by type letter
	acks            *prometheus.CounterVec // by result ok|error
	rejected        prometheus.Counter
	unrouted        prometheus.Counter
	exprErrors      prometheus.Counter
	exprNotBool     prometheus.Counter
	dropped         *prometheus.CounterVec // by center
	centerOut       *prometheus.CounterVec // by center
	centerAcks      *prometheus.CounterVec // by center
	centerUp        *prometheus.GaugeVec   // by center
	centerStalled   *prometheus.GaugeVec   // by center
	reconnects      *prometheus.CounterVec // by center
	routeReloads    *prometheus.CounterVec // by result
	ackLatency      *durationHistogram
	slowReaders     prometheus.Counter
	commands        *prometheus.CounterVec // E from centers by result: object, command, undelivered
	fsync           prometheus.Histogram
	journalDropped  *prometheus.CounterVec // by center, reason
	journalResent   prometheus.Counter     // relay.journal = jetstream: records sent again after a failure
	appIn           *prometheus.CounterVec // by login id, at most relay.max_app_series of them (apps)
	apps            *labels.Set            // the app label values in use; a value's series goes with its last session
	acksOK, acksErr prometheus.Counter
	inByType        [len(knownTypes)]prometheus.Counter
	collectors      []prometheus.Collector
	queueDepthFns   []prometheus.Collector
	reg             *prom.Registrar
}

func newMetrics(maxApps int) *metrics {
	m := &metrics{
		connections: prometheus.NewGauge(prometheus.GaugeOpts{Name: "switchboard_relay_connections", Help: "Application connections open."}),
		clientIn: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "switchboard_relay_messages_in_total",
			Help: "Instructions received from applications, by type."}, []string{"type"}),
		acks: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "switchboard_relay_acks_total",
			Help: "Status (M) lines sent to applications, by result."}, []string{"result"}),
		rejected: prometheus.NewCounter(prometheus.CounterOpts{Name: "switchboard_relay_rejected_total",
			Help: "Instructions rejected (malformed, missing fields, not logged in)."}),
		unrouted: prometheus.NewCounter(prometheus.CounterOpts{Name: "switchboard_relay_unrouted_total",
			Help: "Routable instructions that no rule sent anywhere."}),
		exprErrors: prometheus.NewCounter(prometheus.CounterOpts{Name: "switchboard_relay_expression_errors_total",
			Help: "Route expression evaluations that failed (treated as false)."}),
		exprNotBool: prometheus.NewCounter(prometheus.CounterOpts{Name: "switchboard_relay_expression_not_boolean_total",
			Help: "Route expression evaluations that yielded neither a boolean nor null (treated as false)."}),
		dropped: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "switchboard_relay_center_dropped_total",
			Help: "Messages not delivered to a center (non-guaranteed mode): its queue was full, the link closed before the center acknowledged them, or they were still queued at shutdown."}, []string{"center"}),
		centerOut: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "switchboard_relay_center_messages_out_total",
			Help: "Messages written to a center."}, []string{"center"}),
		centerAcks: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "switchboard_relay_center_acks_total",
			Help: "Status lines received from a center, by result."}, []string{"center", "result"}),
		centerUp: prometheus.NewGaugeVec(prometheus.GaugeOpts{Name: "switchboard_relay_center_up",
			Help: "1 while the link to a center is logged in and not stalled."}, []string{"center"}),
		centerStalled: prometheus.NewGaugeVec(prometheus.GaugeOpts{Name: "switchboard_relay_center_stalled",
			Help: "1 while a center is logged in but does not read (a write blocked for more than a second)."}, []string{"center"}),
		reconnects: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "switchboard_relay_center_connects_total",
			Help: "Sessions established with a center."}, []string{"center"}),
		routeReloads: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "switchboard_relay_routes_reloads_total",
			Help: "Routes file loads by result (ok, failed)."}, []string{"result"}),
		ackLatency: newDurationHistogram("switchboard_relay_ack_latency_seconds",
			"Time from receiving an instruction to queuing its status (includes the journal fsync in guaranteed mode).",
			[]float64{.00005, .0001, .00025, .0005, .001, .0025, .005, .01, .025, .05, .1, .5}),
		appIn: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "switchboard_relay_app_messages_in_total",
			Help: "Instructions received per connected application (login I, at most 64 bytes; at most relay.max_app_series ids, the others under app=\"other\"; a series goes when its application's last session ends)."}, []string{"app"}),
		fsync: prometheus.NewHistogram(prometheus.HistogramOpts{Name: "switchboard_relay_journal_fsync_seconds",
			Help: "Duration of each journal group commit's fsync (guaranteed mode).",
			Buckets: []float64{.00005, .0001, .0002, .0003, .0005, .00075, .001, .0015, .002, .003, .004, .005,
				.0075, .01, .015, .025, .05, .1, .5}}),
		journalResent: prometheus.NewCounter(prometheus.CounterOpts{Name: "switchboard_relay_journal_resent_total",
			Help: "Records sent to the JetStream journal again because the stream had not stored them (a server or leader lost, a timeout)."}),
		journalDropped: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "switchboard_relay_journal_dropped_total",
			Help: "Journal records a center had not acknowledged when retention dropped them for it (guaranteed mode), by reason: bytes, age."},
			[]string{"center", "reason"}),
		slowReaders: prometheus.NewCounter(prometheus.CounterOpts{Name: "switchboard_relay_slow_readers_total",
			Help: "Applications disconnected because they did not read their statuses (as switchboard_socket_slow_readers_total counts clients of the socket server)."}),
		commands: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "switchboard_relay_commands_total",
			Help: "E lines from centers, by result: object (to the application that sent the object), command (to the one that registered the command), undelivered (the center got R with S=1)."},
			[]string{"result"}),
	}
	m.apps = labels.NewSet(maxApps, func(v string) { m.appIn.DeleteLabelValues(v) })
	m.acksOK, m.acksErr = m.acks.WithLabelValues("ok"), m.acks.WithLabelValues("error")
	for i := range knownTypes {
		m.inByType[i] = m.clientIn.WithLabelValues(knownTypes[i : i+1])
	}
	m.collectors = []prometheus.Collector{m.connections, m.clientIn, m.acks, m.rejected, m.unrouted, m.exprErrors, m.exprNotBool,
		m.dropped, m.centerOut, m.centerAcks, m.centerUp, m.centerStalled, m.reconnects, m.routeReloads, m.ackLatency, m.slowReaders, m.commands, m.fsync, m.journalDropped, m.journalResent, m.appIn}
	// The name the same count had before it matched the socket server's (deprecated; one count, two names).
	m.collectors = append(m.collectors, prometheus.NewCounterFunc(prometheus.CounterOpts{Name: "switchboard_relay_slow_clients_total",
		Help: "Deprecated: the same count as switchboard_relay_slow_readers_total, under its former name."},
		func() float64 { return float64(counterValue(m.slowReaders)) }))
	return m
}

// register registers the relay's collectors on reg; they are this relay's own (prom.Own): the
// per-application series go with their sessions, which two relays could not share.
func (m *metrics) register(reg prometheus.Registerer) error {
	m.reg = prom.Own(reg)
	for _, c := range append(m.collectors, m.queueDepthFns...) {
		prom.Register(m.reg, c)
	}
	if err := m.reg.Err(); err != nil {
		m.reg.Unregister()
		return err
	}
	return nil
}

func (m *metrics) unregister() {
	if m.reg != nil {
		m.reg.Unregister()
	}
}

// durationHistogram is a Prometheus histogram of durations that can record
// many equal observations at once (every status of one read burst has the
// same latency), with one atomic add per bucket instead of one per message.
type durationHistogram struct {
	desc   *prometheus.Desc
	bounds []float64       // upper bounds in seconds
	limits []time.Duration // the same bounds as durations
	counts []atomic.Uint64 // per bucket (not cumulative); the last one is +Inf
	sumNs  atomic.Uint64
}

func newDurationHistogram(name, help string, bounds []float64) *durationHistogram {
	h := &durationHistogram{desc: prometheus.NewDesc(name, help, nil, nil), bounds: bounds,
		counts: make([]atomic.Uint64, len(bounds)+1)}
	for _, b := range bounds {
		h.limits = append(h.limits, time.Duration(math.Round(b*1e9)))
	}
	return h
}

// observeN records n observations of d.
func (h *durationHistogram) observeN(d time.Duration, n int) {
	if n <= 0 {
		return
	}
	if d < 0 {
		d = 0
	}
	i := sort.Search(len(h.limits), func(i int) bool { return d <= h.limits[i] })
	h.counts[i].Add(uint64(n))
	h.sumNs.Add(uint64(d) * uint64(n))
}

// Describe implements prometheus.Collector.
func (h *durationHistogram) Describe(ch chan<- *prometheus.Desc) { ch <- h.desc }

// Collect implements prometheus.Collector.
func (h *durationHistogram) Collect(ch chan<- prometheus.Metric) {
	buckets := make(map[float64]uint64, len(h.bounds))
	var cum uint64
	for i, b := range h.bounds {
		cum += h.counts[i].Load()
		buckets[b] = cum
	}
	cum += h.counts[len(h.bounds)].Load()
	ch <- prometheus.MustNewConstHistogram(h.desc, cum, float64(h.sumNs.Load())/1e9, buckets)
}
