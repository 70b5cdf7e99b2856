package bus

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/sirupsen/logrus"

	"github.com/switchboard/switchboard/internal/prom"
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

// BatchBackplane is a Backplane that can also hand over several messages at once (a batch received from
// the broker). When the bus's Backplane implements it, the bus subscribes with SubscribeBatch and queues a
// batch with one lock and one wake-up per subscriber instead of one per message; every message is still
// bounded, dropped and counted as if delivered alone, in order.
type BatchBackplane interface {
	Backplane
	// SubscribeBatch is Subscribe with deliver taking the messages of one batch in order. deliver does not
	// keep the slice (the caller may reuse it once deliver returns), only the messages in it.
	SubscribeBatch(topic string, deliver func([]Message)) (cancel func(), err error)
}

// Options configures a Bus. Zero values take defaults.
type Options struct {
	QueueSize  int // messages per subscriber queue, default 1024
	QueueBytes int // bytes per subscriber queue (SizeOf of each payload + 64), default 16 MiB
	Log        *logrus.Entry
	Metrics    prometheus.Registerer // nil: counters kept but not exported
	Backplane  Backplane
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
	patterns atomic.Pointer[[]*topic] // topics whose name is a pattern (IsPattern), copy-on-write
	closed   bool
	isClosed atomic.Bool // closed, readable without mu on the publish path
	subs     sync.WaitGroup

	bpLogMu    sync.Mutex
	bpLastLog  time.Time
	bpUnlogged int
}

type topic struct {
	name      string
	pattern   bool // name holds wildcard tokens: it matches other topics' messages
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
	if opts.QueueBytes <= 0 {
		opts.QueueBytes = DefaultQueueBytes
	}
	log := opts.Log
	if log == nil {
		l := logrus.New()
		l.SetLevel(logrus.PanicLevel)
		log = logrus.NewEntry(l)
	}
	b := &Bus{opts: opts, log: log, topics: map[string]*topic{}}
	r := prom.On(opts.Metrics)
	b.published = counterVec(r, "switchboard_bus_published_total", "Messages published, per topic.")
	b.delivered = counterVec(r, "switchboard_bus_delivered_total", "Messages handed to subscriber handlers, per topic.")
	b.dropped = counterVec(r, "switchboard_bus_dropped_total", "Messages dropped because a subscriber queue was full, per topic.")
	b.backplaneErrs = counterVec(r, "switchboard_bus_backplane_errors_total", "Backplane publish errors, per topic.")
	if err := r.Err(); err != nil {
		// The bus cannot fail to build (every part holds it); a registry that refuses its counters leaves
		// them unscraped, which the log says.
		log.WithError(err).Error("bus counters are not exported")
	}
	return b
}

// counterVec registers a topic-labelled counter (one already registered under the same name is reused:
// several buses on one registry in tests).
func counterVec(r *prom.Registrar, name, help string) *prometheus.CounterVec {
	return prom.Register(r, prometheus.NewCounterVec(prometheus.CounterOpts{Name: name, Help: help}, []string{"topic"}))
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
		pattern:   IsPattern(name),
		published: b.published.WithLabelValues(name),
		delivered: b.delivered.WithLabelValues(name),
		dropped:   b.dropped.WithLabelValues(name),
	}
	t.subs.Store(&[]*Subscription{})
	b.topics[name] = t
	if t.pattern {
		var next []*topic
		if old := b.patterns.Load(); old != nil {
			next = append(next, *old...)
		}
		next = append(next, t)
		b.patterns.Store(&next)
	}
	return t
}

// Publish sends payload to every subscriber of topic (and of each pattern that
// matches it) and to the backplane. It never blocks; it returns how many local
// subscribers got the message queued (or handled, for Sync subscribers). A
// pattern is no topic to publish to: Publish("a.*", v) delivers nothing.
func (b *Bus) Publish(topic string, payload any) int {
	if b.isClosed.Load() {
		return 0
	}
	msg := Message{Topic: topic, Payload: payload, Time: time.Now()}
	t := b.topic(topic, true)
	if t.pattern {
		b.warnPattern(topic)
		return 0
	}
	t.published.Inc()
	n := b.deliverTo(t, msg)
	if ps := b.patterns.Load(); ps != nil {
		for _, p := range *ps {
			if Match(p.name, topic) {
				n += b.deliverTo(p, msg)
			}
		}
	}
	if bp := b.opts.Backplane; bp != nil {
		if err := bp.Publish(context.Background(), msg); err != nil {
			b.backplaneErrs.WithLabelValues(topic).Inc()
			b.logBackplaneError(err, topic)
		}
	}
	return n
}

// logBackplaneError logs a failed backplane publish at once, then at most once a second with the number
// failed since (while the broker is away every publish fails).
func (b *Bus) logBackplaneError(err error, topic string) {
	b.bpLogMu.Lock()
	b.bpUnlogged++
	now := time.Now()
	if !b.bpLastLog.IsZero() && now.Sub(b.bpLastLog) < time.Second {
		b.bpLogMu.Unlock()
		return
	}
	n := b.bpUnlogged
	b.bpUnlogged, b.bpLastLog = 0, now
	b.bpLogMu.Unlock()
	b.log.WithError(err).WithFields(logrus.Fields{"topic": topic, "failed": n}).
		Warn("bus: backplane publish failed: the message reached this node's subscribers only")
}

func (b *Bus) warnPattern(topic string) {
	b.bpLogMu.Lock()
	defer b.bpLogMu.Unlock()
	if now := time.Now(); b.bpLastLog.IsZero() || now.Sub(b.bpLastLog) >= time.Second {
		b.bpLastLog = now
		b.log.WithField("topic", topic).Warn("bus: publish to a pattern (a topic with * or > tokens) delivers nothing")
	}
}

// deliverTo offers msg to the subscribers of t only.
func (b *Bus) deliverTo(t *topic, msg Message) int {
	n := 0
	size := -1 // computed once, for the first queued subscriber
	for _, s := range *t.subs.Load() {
		if !s.sync && size < 0 {
			size = SizeOf(msg.Payload) + messageOverhead
		}
		if s.offer(msg, size) {
			n++
		}
	}
	return n
}

// deliverBatch offers msgs, in order, to the subscribers of t only: what deliverTo does for each message,
// with one lock and at most one wake-up per queued subscriber.
func (b *Bus) deliverBatch(t *topic, msgs []Message) {
	subs := *t.subs.Load()
	queued := 0
	for _, s := range subs {
		if !s.sync {
			queued++
		}
	}
	var sizes []int // with several queued subscribers, computed once for all
	if queued > 1 {
		sizes = make([]int, len(msgs))
		for i, m := range msgs {
			sizes[i] = SizeOf(m.Payload) + messageOverhead
		}
	}
	for _, s := range subs {
		if s.sync {
			for _, m := range msgs {
				s.offer(m, -1)
			}
			continue
		}
		s.offerBatch(msgs, sizes)
	}
}

// DefaultQueueBytes bounds a subscriber queue in bytes when Options.QueueBytes is 0.
const DefaultQueueBytes = 16 << 20

// messageOverhead is what a queued message costs beyond its payload, so that empty messages count too.
const messageOverhead = 64

// sizeSlot is what SizeOf counts for an element of a slice or each key and value of a map, beyond their
// contents.
const sizeSlot = 16

// maxSizeDepth bounds how deep SizeOf walks (payloads converted from Lua are cut at 64 levels anyway).
const maxSizeDepth = 64

// SizeOf estimates the bytes a plain-data payload holds: the length of strings and byte slices, 8 for a
// number, and for tables their contents plus sizeSlot per element (2 per map entry). It is what the bounds
// in bytes count (subscriber queues here, send and receive buffers of channels).
func SizeOf(v any) int { return sizeOf(v, 0) }

func sizeOf(v any, depth int) int {
	if depth > maxSizeDepth {
		return 0
	}
	switch x := v.(type) {
	case nil:
		return 0
	case string:
		return len(x)
	case []byte:
		return len(x)
	case bool:
		return 1
	case int, int64, uint64, float64, int32, uint32, float32, time.Time, time.Duration:
		return 8
	case map[string]any:
		n := 0
		for k, e := range x {
			n += len(k) + sizeOf(e, depth+1) + 2*sizeSlot
		}
		return n
	case map[string]string:
		n := 0
		for k, e := range x {
			n += len(k) + len(e) + 2*sizeSlot
		}
		return n
	case []any:
		n := 0
		for _, e := range x {
			n += sizeOf(e, depth+1) + sizeSlot
		}
		return n
	case []string:
		n := 0
		for _, e := range x {
			n += len(e) + sizeSlot
		}
		return n
	}
	return 64 // another Go value: counted as a small struct
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
	maxBytes   int
	dropOldest bool
	sync       bool

	mu      sync.Mutex
	queue   []queued // ring buffer of len size
	head, n int
	bytes   int // sum of the queued messages' sizes
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

// Subscribe registers handler for topic: an exact name, or a pattern (see IsPattern) that also receives
// the messages of every topic it matches.
func (b *Bus) Subscribe(topicName string, handler func(Message), opts ...SubOption) (*Subscription, error) {
	if handler == nil {
		return nil, fmt.Errorf("bus: subscribe %q: nil handler", topicName)
	}
	s := &Subscription{bus: b, handler: handler, size: b.opts.QueueSize, maxBytes: b.opts.QueueBytes}
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
		// Remote messages go to this topic's (or pattern's) own subscribers: a message matching both a
		// topic and a pattern arrives once on each backplane subscription, and is delivered once to each.
		var cancel func()
		var err error
		if bb, ok := b.opts.Backplane.(BatchBackplane); ok {
			cancel, err = bb.SubscribeBatch(topicName, func(ms []Message) { b.deliverBatch(t, ms) })
		} else {
			cancel, err = b.opts.Backplane.Subscribe(topicName, func(m Message) { b.deliverTo(t, m) })
		}
		if err != nil {
			// The subscription still gets this node's messages; the next first subscriber tries again.
			b.log.WithError(err).WithField("topic", topicName).Warn("bus: topic stays on this node: the backplane refused the subscription")
		} else {
			t.bpCancel = cancel
		}
	}
	if !s.sync {
		s.queue = make([]queued, s.size)
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

// IsPattern says whether a topic name is a pattern: dot-separated tokens of which one or more is "*"
// (any one token) or the last is ">" (one or more tokens), as NATS subjects: "prices.*", "calls.>".
func IsPattern(name string) bool {
	if !strings.ContainsAny(name, "*>") {
		return false
	}
	tokens := strings.Split(name, ".")
	wild := false
	for i, tok := range tokens {
		switch {
		case tok == "*":
			wild = true
		case tok == ">" && i == len(tokens)-1:
			wild = true
		case tok == "":
			return false
		}
	}
	return wild
}

// Match reports whether topic (a name, not a pattern) matches pattern.
func Match(pattern, topic string) bool {
	for {
		pt, prest, pmore := strings.Cut(pattern, ".")
		if pt == ">" && !pmore {
			return topic != ""
		}
		tt, trest, tmore := strings.Cut(topic, ".")
		if pt != "*" && pt != tt {
			return false
		}
		if pt == "*" && tt == "" {
			return false
		}
		if !pmore || !tmore {
			return pmore == tmore
		}
		pattern, topic = prest, trest
	}
}

// queued is a message in a subscription's queue with the bytes it counts for.
type queued struct {
	msg  Message
	size int
}

// offer queues msg of size bytes (or runs the handler for Sync); false if dropped or closed. A message over
// the byte bound on its own is queued only into an empty queue.
func (s *Subscription) offer(msg Message, size int) bool {
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
	wasEmpty := s.n == 0
	ok, drops := s.enqueueLocked(msg, size)
	s.unlockAfterEnqueue(wasEmpty, drops)
	return ok
}

// enqueueLocked queues msg (size bytes) under s.mu: when the queue is at its count or byte bound it drops
// msg (drop newest) or the oldest messages until msg fits (drop oldest). It returns whether msg was queued
// and how many messages were dropped.
func (s *Subscription) enqueueLocked(msg Message, size int) (ok bool, drops int) {
	full := func() bool { return s.n == s.size || (s.n > 0 && s.bytes+size > s.maxBytes) }
	if full() {
		if !s.dropOldest {
			return false, 1
		}
		for full() {
			s.bytes -= s.queue[s.head].size
			s.queue[s.head] = queued{}
			s.head = (s.head + 1) % s.size
			s.n--
			drops++
		}
	}
	s.queue[(s.head+s.n)%s.size] = queued{msg: msg, size: size}
	s.n++
	s.bytes += size
	return true, drops
}

// unlockAfterEnqueue releases s.mu, counts drops and wakes the drainer. The drainer only sleeps after
// seeing an empty queue under mu, so only a queue that was empty before needs the wake.
func (s *Subscription) unlockAfterEnqueue(wasEmpty bool, drops int) {
	wake := wasEmpty && s.n > 0
	s.mu.Unlock()
	if drops > 0 {
		s.drop(drops)
	}
	if wake {
		select {
		case s.wake <- struct{}{}:
		default:
		}
	}
}

// offerBatch is offer for each message of msgs in order (sizes[i] the size of msgs[i], or computed here
// when sizes is nil), under one lock.
func (s *Subscription) offerBatch(msgs []Message, sizes []int) {
	s.mu.Lock()
	if s.closed {
		s.mu.Unlock()
		return
	}
	wasEmpty := s.n == 0
	drops := 0
	for i, msg := range msgs {
		size := 0
		if sizes != nil {
			size = sizes[i]
		} else {
			size = SizeOf(msg.Payload) + messageOverhead
		}
		_, d := s.enqueueLocked(msg, size)
		drops += d
	}
	s.unlockAfterEnqueue(wasEmpty, drops)
}

func (s *Subscription) drop(n int) {
	s.dropped.Add(uint64(n))
	s.topic.dropped.Add(float64(n))
	s.logMu.Lock()
	s.unlogged += uint64(n)
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
		s.bus.log.WithFields(logrus.Fields{"topic": s.topic.name, "dropped": n, "total_dropped": s.dropped.Load(), "policy": policy, "queue": s.size, "queue_bytes": s.maxBytes}).
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
			q := s.queue[s.head]
			s.queue[s.head] = queued{}
			s.head = (s.head + 1) % s.size
			s.n--
			s.bytes -= q.size
			s.mu.Unlock()
			s.call(q.msg)
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

// QueuedBytes returns the bytes (as SizeOf counts them, plus 64 a message) waiting in the queue.
func (s *Subscription) QueuedBytes() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.bytes
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
			s.n, s.bytes = 0, 0
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
