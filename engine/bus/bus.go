package bus

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/sirupsen/logrus"
)

// Message is one published value.
type Message struct {
	Topic   string
	Payload any
	Time    time.Time
}

// Backplane connects the bus to a cluster broker so that topics span nodes.
// The bus forwards each local Publish to Backplane.Publish and, while a topic
// has local subscribers, holds one Backplane subscription for it whose
// messages are delivered to the local subscribers only (never forwarded
// again).
type Backplane interface {
	// Publish sends msg to the other nodes. It must not block for long (queue
	// inside if the broker is slow); its error is logged and counted.
	Publish(ctx context.Context, msg Message) error
	// Subscribe starts delivering messages published on topic by OTHER nodes
	// to deliver, until the returned cancel is called. deliver is cheap and
	// safe for concurrent use.
	Subscribe(topic string, deliver func(Message)) (cancel func(), err error)
}

// Options configures a Bus. Zero values take defaults.
type Options struct {
	QueueSize int // per subscriber, default 1024
	Log       *logrus.Entry
	Metrics   prometheus.Registerer // nil: counters kept but not exported
	Backplane Backplane
}

// ErrClosed is returned by Subscribe after Close.
var ErrClosed = errors.New("bus: closed")

// Bus is a set of topics.
type Bus struct {
	opts Options
	log  *logrus.Entry

	published, delivered, dropped, backplaneErrs *prometheus.CounterVec

	mu       sync.RWMutex
	topics   map[string]*topic
	closed   bool
	isClosed atomic.Bool // closed, readable without mu on the publish path
	subs     sync.WaitGroup
}

type topic struct {
	name      string
	subs      atomic.Pointer[[]*Subscription]
	published prometheus.Counter
	delivered prometheus.Counter
	dropped   prometheus.Counter
	bpCancel  func() // backplane subscription, while there are local subscribers
}

// New returns a Bus.
func New(opts Options) *Bus {
	if opts.QueueSize <= 0 {
		opts.QueueSize = 1024
	}
	log := opts.Log
	if log == nil {
		l := logrus.New()
		l.SetLevel(logrus.PanicLevel)
		log = logrus.NewEntry(l)
	}
	b := &Bus{opts: opts, log: log, topics: map[string]*topic{}}
	b.published = counterVec(opts.Metrics, "switchboard_bus_published_total", "Messages published, per topic.")
	b.delivered = counterVec(opts.Metrics, "switchboard_bus_delivered_total", "Messages handed to subscriber handlers, per topic.")
	b.dropped = counterVec(opts.Metrics, "switchboard_bus_dropped_total", "Messages dropped because a subscriber queue was full, per topic.")
	b.backplaneErrs = counterVec(opts.Metrics, "switchboard_bus_backplane_errors_total", "Backplane publish errors, per topic.")
	return b
}

// counterVec registers a topic-labelled counter, reusing one already
// registered under the same name (several buses on one registry in tests).
func counterVec(reg prometheus.Registerer, name, help string) *prometheus.CounterVec {
	cv := prometheus.NewCounterVec(prometheus.CounterOpts{Name: name, Help: help}, []string{"topic"})
	if reg == nil {
		return cv
	}
	if err := reg.Register(cv); err != nil {
		var are prometheus.AlreadyRegisteredError
		if errors.As(err, &are) {
			if existing, ok := are.ExistingCollector.(*prometheus.CounterVec); ok {
				return existing
			}
		}
	}
	return cv
}

func (b *Bus) topic(name string, create bool) *topic {
	b.mu.RLock()
	t := b.topics[name]
	b.mu.RUnlock()
	if t != nil || !create {
		return t
	}
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.topicLocked(name)
}

func (b *Bus) topicLocked(name string) *topic {
	if t := b.topics[name]; t != nil {
		return t
	}
	t := &topic{
		name:      name,
		published: b.published.WithLabelValues(name),
		delivered: b.delivered.WithLabelValues(name),
		dropped:   b.dropped.WithLabelValues(name),
	}
	t.subs.Store(&[]*Subscription{})
	b.topics[name] = t
	return t
}

// Publish sends payload to every subscriber of topic and to the backplane. It
// never blocks; it returns how many local subscribers got the message queued
// (or handled, for Sync subscribers).
func (b *Bus) Publish(topic string, payload any) int {
	if b.isClosed.Load() {
		return 0
	}
	msg := Message{Topic: topic, Payload: payload, Time: time.Now()}
	n := b.deliver(msg)
	if bp := b.opts.Backplane; bp != nil {
		if err := bp.Publish(context.Background(), msg); err != nil {
			b.backplaneErrs.WithLabelValues(topic).Inc()
			b.log.WithError(err).WithField("topic", topic).Warn("bus: backplane publish failed")
		}
	}
	return n
}

func (b *Bus) deliver(msg Message) int {
	t := b.topic(msg.Topic, true)
	t.published.Inc()
	n := 0
	for _, s := range *t.subs.Load() {
		if s.offer(msg) {
			n++
		}
	}
	return n
}

// SubOption changes how one subscription receives messages.
type SubOption func(*Subscription)

// QueueSize sets the subscription's queue length (default Options.QueueSize).
func QueueSize(n int) SubOption {
	return func(s *Subscription) {
		if n > 0 {
			s.size = n
		}
	}
}

// DropOldest makes a full queue drop its oldest message to make room for the
// new one, instead of dropping the new one.
func DropOldest() SubOption { return func(s *Subscription) { s.dropOldest = true } }

// Sync runs the handler in the publisher's goroutine, with no queue. The
// handler must be quick and must not publish to its own topic recursively
// without bound.
func Sync() SubOption { return func(s *Subscription) { s.sync = true } }

// Subscription is one handler's registration on a topic.
type Subscription struct {
	bus     *Bus
	topic   *topic
	handler func(Message)

	size       int
	dropOldest bool
	sync       bool

	mu      sync.Mutex
	queue   []Message // ring buffer of len size
	head, n int
	closed  bool
	wake    chan struct{}
	stop    chan struct{}

	dropped     atomic.Uint64
	logMu       sync.Mutex
	lastLog     time.Time
	unlogged    uint64
	closeOnce   sync.Once
	closedState atomic.Bool
}

// Subscribe registers handler for topic (exact name).
func (b *Bus) Subscribe(topicName string, handler func(Message), opts ...SubOption) (*Subscription, error) {
	if handler == nil {
		return nil, fmt.Errorf("bus: subscribe %q: nil handler", topicName)
	}
	s := &Subscription{bus: b, handler: handler, size: b.opts.QueueSize}
	for _, o := range opts {
		o(s)
	}
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.closed {
		return nil, ErrClosed
	}
	t := b.topicLocked(topicName)
	s.topic = t
	old := *t.subs.Load()
	if len(old) == 0 && b.opts.Backplane != nil && t.bpCancel == nil {
		cancel, err := b.opts.Backplane.Subscribe(topicName, func(m Message) { b.deliver(m) })
		if err != nil {
			return nil, fmt.Errorf("bus: subscribe %q: backplane: %w", topicName, err)
		}
		t.bpCancel = cancel
	}
	if !s.sync {
		s.queue = make([]Message, s.size)
		s.wake = make(chan struct{}, 1)
		s.stop = make(chan struct{})
		b.subs.Add(1)
		go s.run()
	}
	next := make([]*Subscription, len(old), len(old)+1)
	copy(next, old)
	next = append(next, s)
	t.subs.Store(&next)
	return s, nil
}

// offer queues msg (or runs the handler for Sync); false if dropped or closed.
func (s *Subscription) offer(msg Message) bool {
	if s.sync {
		if s.closedState.Load() {
			return false
		}
		s.call(msg)
		return true
	}
	s.mu.Lock()
	if s.closed {
		s.mu.Unlock()
		return false
	}
	queued := true
	if s.n == s.size {
		if !s.dropOldest {
			s.mu.Unlock()
			s.drop()
			return false
		}
		s.queue[s.head] = Message{}
		s.head = (s.head + 1) % s.size
		s.n--
		queued = true
		defer s.drop()
	}
	s.queue[(s.head+s.n)%s.size] = msg
	s.n++
	// the drainer only sleeps after seeing an empty queue under mu, so only
	// the message that makes the queue non-empty needs to wake it
	wake := s.n == 1
	s.mu.Unlock()
	if wake {
		select {
		case s.wake <- struct{}{}:
		default:
		}
	}
	return queued
}

func (s *Subscription) drop() {
	s.dropped.Add(1)
	s.topic.dropped.Inc()
	s.logMu.Lock()
	s.unlogged++
	now := time.Now()
	if s.lastLog.IsZero() || now.Sub(s.lastLog) >= time.Second {
		n := s.unlogged
		s.unlogged = 0
		s.lastLog = now
		s.logMu.Unlock()
		policy := "newest"
		if s.dropOldest {
			policy = "oldest"
		}
		s.bus.log.WithFields(logrus.Fields{"topic": s.topic.name, "dropped": n, "total_dropped": s.dropped.Load(), "policy": policy, "queue": s.size}).
			Warn("bus: subscriber queue full, messages dropped")
		return
	}
	s.logMu.Unlock()
}

func (s *Subscription) run() {
	defer s.bus.subs.Done()
	for {
		select {
		case <-s.wake:
		case <-s.stop:
			return
		}
		for {
			s.mu.Lock()
			if s.closed {
				s.mu.Unlock()
				return
			}
			if s.n == 0 {
				s.mu.Unlock()
				break
			}
			msg := s.queue[s.head]
			s.queue[s.head] = Message{}
			s.head = (s.head + 1) % s.size
			s.n--
			s.mu.Unlock()
			s.call(msg)
		}
	}
}

func (s *Subscription) call(msg Message) {
	defer func() {
		if r := recover(); r != nil {
			s.bus.log.WithFields(logrus.Fields{"topic": msg.Topic, "panic": r}).Error("bus: subscriber handler panicked")
		}
	}()
	s.topic.delivered.Inc()
	s.handler(msg)
}

// Dropped returns how many messages this subscription has lost to a full queue.
func (s *Subscription) Dropped() uint64 { return s.dropped.Load() }

// Close removes the subscription. No handler call starts after Close returns
// except one already running; queued messages are discarded. Safe to call from
// the handler itself and more than once.
func (s *Subscription) Close() {
	s.closeOnce.Do(func() {
		s.closedState.Store(true)
		b := s.bus
		b.mu.Lock()
		t := s.topic
		old := *t.subs.Load()
		next := make([]*Subscription, 0, len(old))
		for _, x := range old {
			if x != s {
				next = append(next, x)
			}
		}
		t.subs.Store(&next)
		if len(next) == 0 && t.bpCancel != nil {
			t.bpCancel()
			t.bpCancel = nil
		}
		b.mu.Unlock()
		if !s.sync {
			s.mu.Lock()
			s.closed = true
			clear(s.queue)
			s.n = 0
			s.mu.Unlock()
			close(s.stop)
		}
	})
}

// Close closes every subscription and waits for their goroutines to end.
// Publish after Close delivers to nobody.
func (b *Bus) Close() {
	b.mu.Lock()
	b.closed = true
	b.isClosed.Store(true)
	var all []*Subscription
	for _, t := range b.topics {
		all = append(all, *t.subs.Load()...)
	}
	b.mu.Unlock()
	for _, s := range all {
		s.Close()
	}
	b.subs.Wait()
}
