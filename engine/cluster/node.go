package cluster

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/sirupsen/logrus"

	"github.com/switchboard/switchboard/internal/prom"
)

// Options builds a Node.
type Options struct {
	Log     *logrus.Entry
	Metrics prometheus.Registerer // nil: counters kept but not exported
	// DefaultID names the node when Config.NodeID is "" (the engine passes hostname:port).
	DefaultID string
}

// Node is this engine's membership of a cluster: its identity and its connections to NATS. It holds two
// connections: one for topics (the bus's backplane, with no echo of its own messages, so that a message
// published here is delivered here once, by the local bus) and one for everything else (sb.cache's KV
// bucket, node status requests, presence, the relay's streams), so that a burst of topic traffic never
// delays a lock or a relay acknowledgement behind it on one socket.
//
// Both connections keep trying to reach NATS for as long as the node lives: New returns at once when NATS
// is unreachable, the engine serves its local clients meanwhile, and subscriptions are restored when a
// connection comes back (nats.go resends them). Nothing is buffered while disconnected: what cannot be
// sent is counted and logged by whoever sent it.
type Node struct {
	cfg Config
	id  string
	log *logrus.Entry

	nc *nats.Conn // requests, KV, streams
	tc *nats.Conn // topics (NoEcho)
	js jetstream.JetStream

	disconnects, reconnects, asyncErrors *prometheus.CounterVec
	connectedG                           prometheus.GaugeFunc

	bpOnce sync.Once
	bp     *Backplane

	statusMu sync.Mutex
	statusFn func() any

	members *Presence // every live node, keyed by id
	hb      heartbeat
	started time.Time

	closed    atomic.Bool
	closeOnce sync.Once
}

// MembersTTL is how long a node stays listed after its last heartbeat (it beats every MembersTTL/5): a
// node killed with kill -9 leaves the node list within it.
const MembersTTL = 5 * time.Second

// New connects to the servers of cfg (which must be Enabled). It returns once connected, or at once
// with a node still trying when no server answers within cfg.ConnectTimeout: the engine starts anyway.
// Errors are only for a configuration that can never work (a missing credentials or TLS file).
func New(cfg Config, opts Options) (*Node, error) {
	if !cfg.Enabled() {
		return nil, errors.New("cluster: nats_url is empty")
	}
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	for key, f := range map[string]string{"cluster.credentials": cfg.Credentials, "cluster.tls.cert": cfg.TLS.Cert,
		"cluster.tls.key": cfg.TLS.Key, "cluster.tls.ca": cfg.TLS.CA} {
		if f == "" {
			continue
		}
		if _, err := os.Stat(f); err != nil {
			return nil, fmt.Errorf("%s: %w", key, err)
		}
	}
	log := opts.Log
	if log == nil {
		l := logrus.New()
		l.SetLevel(logrus.PanicLevel)
		log = logrus.NewEntry(l)
	}
	id := cfg.NodeID
	if id == "" {
		id = opts.DefaultID
	}
	if id == "" {
		host, _ := os.Hostname()
		id = fmt.Sprintf("%s:pid%d", host, os.Getpid())
	}
	n := &Node{cfg: cfg, id: id, log: log.WithFields(logrus.Fields{"part": "cluster", "node": id})}
	metrics := prom.On(opts.Metrics)
	n.disconnects = counterVec(metrics, "switchboard_cluster_disconnects_total", "Connections to NATS lost, per connection (main, topics).", "conn")
	n.reconnects = counterVec(metrics, "switchboard_cluster_reconnects_total", "Connections to NATS restored, per connection (main, topics).", "conn")
	n.asyncErrors = counterVec(metrics, "switchboard_cluster_errors_total", "Errors NATS reported asynchronously (slow_consumer, permission, other).", "kind")
	if err := metrics.Err(); err != nil {
		return nil, err
	}

	var err error
	if n.nc, err = n.connect("main"); err != nil {
		return nil, err
	}
	if n.tc, err = n.connect("topics", nats.NoEcho()); err != nil {
		n.nc.Close()
		return nil, err
	}
	if n.js, err = jetstream.New(n.nc); err != nil {
		n.nc.Close()
		n.tc.Close()
		return nil, fmt.Errorf("cluster: jetstream: %w", err)
	}
	n.connectedG = prometheus.NewGaugeFunc(prometheus.GaugeOpts{Name: "switchboard_cluster_connected",
		Help: "1 while both connections to NATS are up, else 0."}, func() float64 {
		if n.Connected() {
			return 1
		}
		return 0
	})
	n.connectedG = prom.Register(metrics, n.connectedG)
	if err := metrics.Err(); err != nil {
		n.closeConns()
		return nil, err
	}
	if err := n.serveStatus(); err != nil {
		n.closeConns()
		return nil, err
	}
	n.started = time.Now()
	n.members = n.Presence("nodes", MembersTTL)
	n.hb = heartbeat{stop: make(chan struct{}), done: make(chan struct{})}
	go n.beat()
	return n, nil
}

// connect opens one connection; name says which in logs and metrics.
func (n *Node) connect(name string, extra ...nats.Option) (*nats.Conn, error) {
	log := n.log.WithField("conn", name)
	o := []nats.Option{
		nats.Name(fmt.Sprintf("switchboard %s %s (%s)", n.cfg.Name, n.id, name)),
		nats.Timeout(n.cfg.ConnectTimeout),
		nats.RetryOnFailedConnect(true),
		nats.MaxReconnects(-1),
		nats.ReconnectWait(n.cfg.ReconnectWait),
		nats.ReconnectBufSize(-1), // nothing queued while disconnected: it is refused, counted and logged
		// A server that vanishes without closing the socket (a partition) is noticed within 15 s, not
		// nats.go's default of minutes.
		nats.PingInterval(5 * time.Second),
		nats.MaxPingsOutstanding(3),
		nats.ConnectHandler(func(c *nats.Conn) {
			log.WithField("server", c.ConnectedUrlRedacted()).Info("cluster: connected to NATS")
		}),
		nats.DisconnectErrHandler(func(c *nats.Conn, err error) {
			if n.closed.Load() {
				return
			}
			n.disconnects.WithLabelValues(name).Inc()
			log.WithError(err).Warn("cluster: lost the connection to NATS; local service continues, cross-node messages are counted as unsent until it returns")
		}),
		nats.ReconnectHandler(func(c *nats.Conn) {
			n.reconnects.WithLabelValues(name).Inc()
			log.WithField("server", c.ConnectedUrlRedacted()).Info("cluster: reconnected to NATS; subscriptions restored")
		}),
		nats.ErrorHandler(func(c *nats.Conn, s *nats.Subscription, err error) {
			kind := "other"
			switch {
			case errors.Is(err, nats.ErrSlowConsumer):
				kind = "slow_consumer"
			case strings.Contains(strings.ToLower(err.Error()), "permission"):
				kind = "permission"
			}
			n.asyncErrors.WithLabelValues(kind).Inc()
			e := log.WithError(err)
			if s != nil {
				e = e.WithField("subject", s.Subject)
			}
			e.Warn("cluster: NATS reported an error")
		}),
	}
	if n.cfg.Credentials != "" {
		o = append(o, nats.UserCredentials(n.cfg.Credentials))
	}
	if n.cfg.TLS.Cert != "" {
		o = append(o, nats.ClientCert(n.cfg.TLS.Cert, n.cfg.TLS.Key))
	}
	if n.cfg.TLS.CA != "" {
		o = append(o, nats.RootCAs(n.cfg.TLS.CA))
	}
	o = append(o, extra...)
	nc, err := nats.Connect(strings.Join(n.cfg.servers(), ","), o...)
	if err != nil {
		return nil, fmt.Errorf("cluster: connect %s: %w", redactURLs(n.cfg.servers()), err)
	}
	if nc.IsConnected() {
		log.WithField("server", nc.ConnectedUrlRedacted()).Info("cluster: connected to NATS")
	} else {
		log.WithField("servers", redactURLs(n.cfg.servers())).Warn("cluster: NATS is unreachable; serving local clients and retrying")
	}
	return nc, nil
}

// redactURLs lists servers without passwords or tokens.
func redactURLs(servers []string) string {
	out := make([]string, len(servers))
	for i, s := range servers {
		if at := strings.LastIndex(s, "@"); at >= 0 {
			if sch := strings.Index(s, "://"); sch >= 0 && sch < at {
				s = s[:sch+3] + "***@" + s[at+1:]
			}
		}
		out[i] = s
	}
	return strings.Join(out, ",")
}

// ID is the node's name in the cluster.
func (n *Node) ID() string { return n.id }

// Name is the cluster's name (cluster.name).
func (n *Node) Name() string { return n.cfg.Name }

// Config is the section the node was built from.
func (n *Node) Config() Config { return n.cfg }

// Conn is the node's general connection (not the topics one): requests, KV, streams. Messages published on
// it are echoed to its own subscriptions as usual.
func (n *Node) Conn() *nats.Conn { return n.nc }

// JetStream is the JetStream context of Conn.
func (n *Node) JetStream() jetstream.JetStream { return n.js }

// Log is the node's logger (part=cluster, node=<id>).
func (n *Node) Log() *logrus.Entry { return n.log }

// RequestTimeout is cluster.request_timeout.
func (n *Node) RequestTimeout() time.Duration { return n.cfg.RequestTimeout }

// Connected says whether both connections are up.
func (n *Node) Connected() bool { return n.nc.IsConnected() && n.tc.IsConnected() }

// Subject names a subject of this cluster: Subject("topic", "a", "b") = "<name>.topic.a.b". kind and
// tokens must be valid subject tokens (no dots, spaces or wildcards), tokens may be wildcards.
func (n *Node) Subject(kind string, tokens ...string) string {
	return n.cfg.Name + "." + kind + joinTokens(tokens)
}

func joinTokens(tokens []string) string {
	var b strings.Builder
	for _, t := range tokens {
		b.WriteByte('.')
		b.WriteString(t)
	}
	return b.String()
}

// Bucket names a JetStream KV bucket (or stream) of this cluster: Bucket("cache") = "<name>_cache".
func (n *Node) Bucket(kind string) string { return n.cfg.Name + "_" + kind }

// Context returns a context bounded by cluster.request_timeout under parent.
func (n *Node) Context(parent context.Context) (context.Context, context.CancelFunc) {
	if parent == nil {
		parent = context.Background()
	}
	return context.WithTimeout(parent, n.cfg.RequestTimeout)
}

// Shutdown drains both connections (pending messages are sent, subscriptions end) within ctx, then
// closes them. It is idempotent.
func (n *Node) Shutdown(ctx context.Context) error {
	var err error
	n.closeOnce.Do(func() {
		n.closed.Store(true)
		close(n.hb.stop)
		<-n.hb.done
		if n.nc.IsConnected() {
			lctx, cancel := n.Context(ctx)
			if err := n.members.Leave(lctx, n.id); err != nil {
				n.log.WithError(err).Debug("cluster: leaving the node list failed (it expires by itself)")
			}
			cancel()
		}
		if n.bp != nil {
			n.bp.close()
		}
		var wg sync.WaitGroup
		for _, c := range []*nats.Conn{n.tc, n.nc} {
			wg.Add(1)
			go func(c *nats.Conn) {
				defer wg.Done()
				if !c.IsConnected() {
					c.Close()
					return
				}
				closed := make(chan struct{})
				c.SetClosedHandler(func(*nats.Conn) { close(closed) })
				if derr := c.Drain(); derr != nil {
					c.Close()
					return
				}
				select {
				case <-closed:
				case <-ctx.Done():
					c.Close()
				}
			}(c)
		}
		wg.Wait()
	})
	return err
}

// beat renews this node in the members set every MembersTTL/5 until Shutdown.
func (n *Node) beat() {
	defer close(n.hb.done)
	t := time.NewTicker(MembersTTL / 5)
	defer t.Stop()
	failing := false
	for {
		if n.nc.IsConnected() {
			ctx, cancel := n.Context(context.Background())
			val, _ := json.Marshal(map[string]any{"node": n.id, "started": n.started.UTC().Format(time.RFC3339Nano)})
			err := n.members.Beat(ctx, n.id, val)
			cancel()
			if err != nil && !failing {
				n.log.WithError(err).Warn("cluster: heartbeat failed (other nodes will stop listing this one until it succeeds)")
			} else if err == nil && failing {
				n.log.Info("cluster: heartbeat restored")
			}
			failing = err != nil
		}
		select {
		case <-n.hb.stop:
			return
		case <-t.C:
		}
	}
}

func (n *Node) closeConns() {
	n.closed.Store(true)
	n.nc.Close()
	n.tc.Close()
}

// counterVec registers a labelled counter, sharing one already registered under the same name (several
// nodes on one registry in tests).
func counterVec(r *prom.Registrar, name, help string, labels ...string) *prometheus.CounterVec {
	return prom.Register(r, prometheus.NewCounterVec(prometheus.CounterOpts{Name: name, Help: help}, labels))
}
