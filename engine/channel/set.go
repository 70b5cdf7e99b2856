package channel

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"net"
	"sync"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/sirupsen/logrus"

	"github.com/switchboard/switchboard/engine/bus"
	"github.com/switchboard/switchboard/engine/transport"
	"github.com/switchboard/switchboard/internal/lifecycle"
	"github.com/switchboard/switchboard/internal/prom"
)

// Options are a Set's collaborators.
type Options struct {
	Bus     *bus.Bus // required when any channel redirects
	Log     *logrus.Entry
	Metrics prometheus.Registerer // nil: not exported
	// Transform returns the transform of a channel and direction, or nil. It is asked for every message, so
	// a script reload takes effect at once.
	Transform func(channel, direction string) Transform
	// OnEvent receives channel.up / channel.down events, in order, from one goroutine owned by the Set.
	OnEvent func(Event)
}

// Set is the engine's channels, by name: the active-sockets part (engine.Part). Build it with New, Start
// it, stop it with Shutdown.
type Set struct {
	opts   Options
	stop   lifecycle.StopOnce
	bus    *bus.Bus
	log    *logrus.Entry
	byName map[string]*Channel
	order  []*Channel
	subs   []*bus.Subscription

	mu      sync.Mutex
	ctx     context.Context
	cancel  context.CancelFunc
	started bool
	wg      sync.WaitGroup
	events  chan Event
}

// eventQueue bounds the events waiting for OnEvent.
const eventQueue = 256

// New builds the channels of configs (the `channels:` list); nothing connects until Start.
func New(configs []Config, opts Options) (*Set, error) {
	if opts.Log == nil {
		l := logrus.New()
		l.Out = io.Discard
		opts.Log = logrus.NewEntry(l)
	}
	s := &Set{opts: opts, bus: opts.Bus, log: opts.Log.WithField("part", "channel"), byName: map[string]*Channel{},
		events: make(chan Event, eventQueue)}
	s.ctx, s.cancel = context.WithCancel(context.Background())
	ms, err := newMetrics(opts.Metrics)
	if err != nil {
		return nil, err
	}
	for _, cfg := range configs {
		if err := cfg.Validate(); err != nil {
			return nil, err
		}
		if _, dup := s.byName[cfg.Name]; dup {
			return nil, fmt.Errorf("channels[%s].name: used twice", cfg.Name)
		}
		if (cfg.RedirectIn || cfg.RedirectOut) && opts.Bus == nil {
			return nil, fmt.Errorf("channel %s: redirects need a bus", cfg.Name)
		}
		var tc *tls.Config
		if cfg.TLS {
			name := cfg.TLSServer
			if name == "" {
				name = cfg.Host
			}
			var err error
			if tc, err = transport.ClientTLS(name, cfg.TLSCA); err != nil {
				return nil, fmt.Errorf("channels[%s].tls: %w", cfg.Name, err)
			}
		}
		log := s.log.WithField("channel", cfg.Name)
		c := &Channel{cfg: cfg, log: log, set: s, m: ms.forChannel(cfg.Name), state: StateDown,
			warns: map[string]*rateLog{}, foreign: make(chan struct{}, maxForeignFetches)}
		if !cfg.Run {
			c.state = StateStopped
		}
		c.in, c.out = framingsOf(cfg)
		c.paired = c.out.paired()
		if cfg.Heartbeat != "" {
			hb, err := c.heartbeatMessage()
			if err != nil {
				return nil, fmt.Errorf("channels[%s].heartbeat: %w", cfg.Name, err)
			}
			c.hb = hb
		}
		c.dialer = &transport.Dialer{Addr: cfg.Addr(), TLS: tc, Timeout: cfg.DialTimeout, KeepAlive: cfg.KeepAlive, Log: log,
			Backoff:     transport.Backoff{Initial: cfg.ReconnectionTimeout, Max: cfg.ReconnectMax, Multiplier: 2, Jitter: 0.05},
			OnDialError: c.dialFailed, Quiet: true}
		s.byName[cfg.Name] = c
		s.order = append(s.order, c)
	}
	return s, nil
}

// Channel returns the channel called name.
func (s *Set) Channel(name string) (*Channel, bool) {
	c, ok := s.byName[name]
	return c, ok
}

// Names returns the channel names in configuration order.
func (s *Set) Names() []string {
	out := make([]string, len(s.order))
	for i, c := range s.order {
		out[i] = c.cfg.Name
	}
	return out
}

// Start subscribes the redirect-out topics and starts connecting the permanent channels. It does not wait
// for connections: an upstream that is down is retried in the background.
func (s *Set) Start(ctx context.Context) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.started {
		return errors.New("channel: already started")
	}
	s.started = true
	s.wg.Add(1)
	go s.dispatch()
	for _, c := range s.order {
		if !c.cfg.Run {
			continue
		}
		if c.cfg.RedirectOut {
			c := c
			sub, err := s.bus.Subscribe(c.cfg.TopicOut, func(m bus.Message) {
				err := c.Send(s.ctx, m.Payload)
				if err != nil && !errors.Is(err, ErrDropped) && !errors.Is(err, ErrBufferFull) {
					// Transform and encoding errors (buffer overflow logs on its own).
					c.warnRateLimited(err, c.cfg.TopicOut)
				}
			})
			if err != nil {
				s.stopLocked()
				return fmt.Errorf("channel %s: subscribe %s: %w", c.cfg.Name, c.cfg.TopicOut, err)
			}
			s.subs = append(s.subs, sub)
		}
		if c.cfg.Permanent {
			s.wg.Add(1)
			go func() {
				defer s.wg.Done()
				c.run(s.ctx)
			}()
		}
		s.log.WithFields(logrus.Fields{"channel": c.cfg.Name, "addr": c.cfg.Addr(), "protocol": c.cfg.Protocol,
			"permanent": c.cfg.Permanent}).Info("channel configured")
	}
	return nil
}

// goConnect starts a non-permanent channel's connection (called with c.mu held).
func (s *Set) goConnect(c *Channel) {
	s.spawn(c.runOnDemand)
}

// spawn runs fn in a goroutine the Set waits for at Shutdown; false once the Set is stopping.
func (s *Set) spawn(fn func(ctx context.Context)) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.ctx.Err() != nil {
		return false
	}
	s.wg.Add(1)
	go func() {
		defer s.wg.Done()
		fn(s.ctx)
	}()
	return true
}

// Shutdown stops the topic bridges, gives queued writes until ctx is done to go out, then closes every
// connection and waits for the channel goroutines. It is idempotent (a second call waits for the first)
// and safe on a set that never started.
func (s *Set) Shutdown(ctx context.Context) error {
	return s.stop.Do(ctx, func() error { return s.shutdown(ctx) })
}

// Addrs is nil: channels dial out, they listen on nothing.
func (s *Set) Addrs() map[string]net.Addr { return nil }

func (s *Set) shutdown(ctx context.Context) error {
	s.mu.Lock()
	subs := s.subs
	s.subs = nil
	s.mu.Unlock()
	for _, sub := range subs {
		sub.Close()
	}
	for _, c := range s.order {
		c.mu.Lock()
		var ob *transport.Outbox
		if c.sess != nil {
			ob = c.sess.ob
		}
		c.mu.Unlock()
		if ob != nil {
			_ = ob.Close(ctx) // flush; later Sends get net.ErrClosed and are buffered
		}
		c.mu.Lock()
		pending := c.pending
		c.pending, c.pendingBytes = nil, 0
		c.state = StateStopped
		if c.recvWake != nil {
			close(c.recvWake)
			c.recvWake = nil
		}
		c.gaugesLocked()
		c.mu.Unlock()
		if n := len(pending); n > 0 {
			c.log.WithField("messages", n).Warn("shutdown with messages still buffered")
		}
		for _, m := range pending {
			if m.w != nil {
				m.w.send(reply{err: fmt.Errorf("channel %s: %w", c.cfg.Name, ErrStopped)})
			}
		}
	}
	s.mu.Lock()
	s.stopLocked()
	s.mu.Unlock()
	done := make(chan struct{})
	go func() { s.wg.Wait(); close(done) }()
	select {
	case <-done:
		return nil
	case <-ctx.Done():
		return fmt.Errorf("shutdown: %w", ctx.Err())
	}
}

func (s *Set) stopLocked() {
	if s.ctx.Err() == nil {
		s.cancel()
		close(s.events)
	}
}

// heartbeatMessage encodes the configured heartbeat with the outbound framing.
func (c *Channel) heartbeatMessage() (*outMsg, error) {
	m := &outMsg{internal: true, reply: c.paired}
	if c.out.protocol == HTTP {
		r, err := parseHTTPRequest(c.cfg.Heartbeat)
		if err != nil {
			return nil, err
		}
		if r.url != nil {
			return nil, errors.New("expected a request for this channel's server, such as \"HEAD /\"")
		}
		if m.b, err = r.encode(c.out.host, false); err != nil {
			return nil, err
		}
		m.method, m.idem = r.method, r.idempotent()
		return m, nil
	}
	b, err := c.out.encode(c.cfg.Heartbeat)
	if err != nil {
		return nil, err
	}
	m.b = b
	return m, nil
}

func (s *Set) transform(name, dir string) Transform {
	if s.opts.Transform == nil {
		return nil
	}
	return s.opts.Transform(name, dir)
}

// emit queues an event for OnEvent; a full queue drops it with a log line.
func (s *Set) emit(ev Event) {
	if s.opts.OnEvent == nil {
		return
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.ctx.Err() != nil {
		return
	}
	select {
	case s.events <- ev:
	default:
		s.log.WithField("channel", ev.Channel).Warn("channel event dropped: handlers too slow")
	}
}

func (s *Set) dispatch() {
	defer s.wg.Done()
	for ev := range s.events {
		if s.opts.OnEvent != nil {
			s.opts.OnEvent(ev)
		}
	}
}

type metrics struct {
	up, buffered, bufferedBytes *prometheus.GaugeVec
	reconnects                  *prometheus.CounterVec
	messages, bytes, dropCounts *prometheus.CounterVec
}

type chanMetrics struct {
	up, buffered, bufferedBytes        prometheus.Gauge
	reconnects                         prometheus.Counter
	msgsIn, msgsOut, bytesIn, bytesOut prometheus.Counter
	drops                              *prometheus.CounterVec
	name                               string
}

func (m chanMetrics) dropped(reason string) prometheus.Counter {
	return m.drops.WithLabelValues(m.name, reason)
}

func newMetrics(reg prometheus.Registerer) (*metrics, error) {
	m := &metrics{
		up: prometheus.NewGaugeVec(prometheus.GaugeOpts{Name: "switchboard_channel_up",
			Help: "1 while the channel's connection is established."}, []string{"channel"}),
		buffered: prometheus.NewGaugeVec(prometheus.GaugeOpts{Name: "switchboard_channel_buffered",
			Help: "Outbound messages waiting for the connection."}, []string{"channel"}),
		bufferedBytes: prometheus.NewGaugeVec(prometheus.GaugeOpts{Name: "switchboard_channel_buffered_bytes",
			Help: "Bytes of outbound messages waiting for the connection."}, []string{"channel"}),
		reconnects: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "switchboard_channel_reconnects_total",
			Help: "Connections established after the first one."}, []string{"channel"}),
		messages: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "switchboard_channel_messages_total",
			Help: "Messages by direction (in, out)."}, []string{"channel", "direction"}),
		bytes: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "switchboard_channel_bytes_total",
			Help: "Bytes on the wire by direction (in, out)."}, []string{"channel", "direction"}),
		dropCounts: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "switchboard_channel_dropped_total",
			Help: "Messages not delivered, by reason."}, []string{"channel", "reason"}),
	}
	r := prom.On(reg)
	m.up = prom.Register(r, m.up)
	m.buffered = prom.Register(r, m.buffered)
	m.bufferedBytes = prom.Register(r, m.bufferedBytes)
	m.reconnects = prom.Register(r, m.reconnects)
	m.messages = prom.Register(r, m.messages)
	m.bytes = prom.Register(r, m.bytes)
	m.dropCounts = prom.Register(r, m.dropCounts)
	return m, r.Err()
}

func (m *metrics) forChannel(name string) chanMetrics {
	return chanMetrics{
		up: m.up.WithLabelValues(name), buffered: m.buffered.WithLabelValues(name),
		bufferedBytes: m.bufferedBytes.WithLabelValues(name),
		reconnects:    m.reconnects.WithLabelValues(name),
		msgsIn:        m.messages.WithLabelValues(name, In), msgsOut: m.messages.WithLabelValues(name, Out),
		bytesIn: m.bytes.WithLabelValues(name, In), bytesOut: m.bytes.WithLabelValues(name, Out),
		drops: m.dropCounts, name: name,
	}
}
