package cluster

import (
	"context"
	"encoding/base64"
	"encoding/binary"
	"errors"
	"fmt"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/sirupsen/logrus"

	"github.com/switchboard/switchboard/engine/bus"
	"github.com/switchboard/switchboard/internal/prom"
)

// Backplane carries the bus's topics between nodes (bus.Backplane): a topic is the subject
// "<name>.t.<topic>" when the topic is made of dot-separated tokens of printable ASCII (so that a bus
// pattern "prices.*" is the NATS wildcard "<name>.t.prices.*"), otherwise "<name>.tx.<base64url of the
// topic>" (matched exactly only). Payloads travel in the value codec.
//
// It publishes on the node's topics connection, which does not echo: a message published here reaches
// this node's subscribers once, through the local bus, and the other nodes' through NATS. Remote messages
// enter the local bus as if published here, minus the backplane: the same queues, byte bounds and drop
// counting apply. While NATS is unreachable Publish fails at once; the bus counts the failure per topic
// (switchboard_bus_backplane_errors_total) and logs it (at most once a second), and this counts it by
// reason (switchboard_cluster_topic_unsent_total).
type Backplane struct {
	n *Node

	sent, received prometheus.Counter
	unsent, bad    *prometheus.CounterVec

	bufs     sync.Pool
	subjects sync.Map                     // topic → subject (or error), computed once per topic
	lastSubj atomic.Pointer[topicSubject] // the last topic looked up in subjects (publishers repeat topics)

	// The send queue: messages wait here, batched per run of one subject, for the sender goroutine.
	outMu      sync.Mutex
	out        []*batch
	free       []*batch // sent batches, for reuse
	outBytes   int
	maxBacklog int
	maxPayload atomic.Int64 // NATS's max_payload, refreshed by the sender; 0 until known
	kick       chan struct{}
	stop       chan struct{}
	done       chan struct{}

	mu     sync.Mutex
	subs   map[*nats.Subscription]struct{}
	closed atomic.Bool

	badLog, failLog atomic.Int64 // unix nanos of the last log of a bad message, of a failed send
}

// batch is consecutive messages of one subject, sent as one NATS message: codecBatch, then each value's
// encoding preceded by its length (uvarint).
type batch struct {
	subj string
	buf  []byte
	n    int
}

type topicSubject struct{ topic, subj string }

// codecBatch starts a NATS message that holds several values.
const codecBatch = 2

// maxBatchBytes ends a batch (it is sent as one NATS message); a single bigger value goes alone.
const maxBatchBytes = 64 << 10

// maxSubjectBytes bounds a topic's subject (NATS's default control line is 4 KiB).
const maxSubjectBytes = 1024

// pendingBytes bounds what NATS buffers for one topic subscription before the bus takes it; past it NATS
// drops messages (counted as switchboard_cluster_errors_total{kind="slow_consumer"}). The bus's own
// per-subscriber queues are the bound that matters: delivery into them does not wait.
const pendingBytes = 64 << 20

// Backplane returns the node's backplane (one per node).
func (n *Node) Backplane(reg prometheus.Registerer) *Backplane {
	n.bpOnce.Do(func() {
		bp := &Backplane{n: n, subs: map[*nats.Subscription]struct{}{}, maxBacklog: n.cfg.SendBufferBytes,
			kick: make(chan struct{}, 1), stop: make(chan struct{}), done: make(chan struct{})}
		r := prom.On(reg)
		bp.sent = prom.Register(r, prometheus.NewCounter(prometheus.CounterOpts{Name: "switchboard_cluster_topic_sent_total",
			Help: "Topic messages sent to the other nodes."}))
		bp.received = prom.Register(r, prometheus.NewCounter(prometheus.CounterOpts{Name: "switchboard_cluster_topic_received_total",
			Help: "Topic messages received from the other nodes."}))
		bp.unsent = counterVec(r, "switchboard_cluster_topic_unsent_total",
			"Topic messages that could not be sent to the other nodes, by reason (disconnected, too_large, not_encodable, bad_topic, other); they reached this node's subscribers only.", "reason")
		bp.bad = counterVec(r, "switchboard_cluster_topic_bad_total", "Topic messages received that could not be decoded, by reason.", "reason")
		if err := r.Err(); err != nil {
			// The backplane cannot fail to build (the bus holds it); a registry that refuses its counters
			// leaves them unscraped, which the log says.
			n.log.WithError(err).Error("cluster backplane counters are not exported")
		}
		bp.bufs.New = func() any { b := make([]byte, 0, 512); return &b }
		n.bp = bp
		go bp.send()
	})
	return n.bp
}

var _ bus.BatchBackplane = (*Backplane)(nil)

// Subject is the subject of topic (or pattern), and whether it can be a NATS wildcard.
func (bp *Backplane) Subject(topic string) (string, error) {
	var s string
	if plainTopic(topic) {
		s = bp.n.cfg.Name + ".t." + topic
	} else {
		if bus.IsPattern(topic) {
			return "", fmt.Errorf("cluster: topic %q: a pattern's tokens must be printable ASCII", clipName(topic))
		}
		s = bp.n.cfg.Name + ".tx." + base64.RawURLEncoding.EncodeToString([]byte(topic))
	}
	if len(s) > maxSubjectBytes {
		return "", fmt.Errorf("cluster: topic %q: longer than the %d bytes a subject may take", clipName(topic), maxSubjectBytes)
	}
	return s, nil
}

// topicOf reverses Subject for a message's subject.
func (bp *Backplane) topicOf(subject string) (string, bool) {
	if rest, ok := strings.CutPrefix(subject, bp.n.cfg.Name+".t."); ok {
		return rest, true
	}
	if rest, ok := strings.CutPrefix(subject, bp.n.cfg.Name+".tx."); ok {
		b, err := base64.RawURLEncoding.DecodeString(rest)
		return string(b), err == nil
	}
	return "", false
}

// plainTopic: non-empty tokens of printable ASCII, where * and > appear only as whole tokens.
func plainTopic(topic string) bool {
	if topic == "" {
		return false
	}
	tokStart := 0
	for i := 0; i <= len(topic); i++ {
		if i == len(topic) || topic[i] == '.' {
			tok := topic[tokStart:i]
			if tok == "" {
				return false
			}
			if strings.ContainsAny(tok, "*>") && tok != "*" && tok != ">" {
				return false
			}
			if tok == ">" && i != len(topic) {
				return false
			}
			tokStart = i + 1
			continue
		}
		if c := topic[i]; c <= ' ' || c > '~' {
			return false
		}
	}
	return true
}

func clipName(s string) string {
	if len(s) > 64 {
		return s[:64] + "…"
	}
	return s
}

// Publish queues msg for the other nodes (bus.Backplane) and returns: the sender goroutine sends what is
// queued as soon as it runs, consecutive messages of one topic in one NATS message, so that under load
// the per-message cost of NATS is shared by many. It fails at once while NATS is unreachable, and when
// cluster.send_buffer_bytes are already waiting (NATS slower than the publishers).
func (bp *Backplane) Publish(_ context.Context, msg bus.Message) error {
	if bp.closed.Load() {
		bp.unsent.WithLabelValues("disconnected").Inc()
		return errors.New("cluster: node is shutting down")
	}
	if !bp.n.tc.IsConnected() {
		bp.unsent.WithLabelValues("disconnected").Inc()
		return errors.New("cluster: disconnected: NATS is unreachable")
	}
	subj, err := bp.subjectOf(msg.Topic)
	if err != nil {
		bp.unsent.WithLabelValues("bad_topic").Inc()
		return err
	}
	// A string or byte string is encoded straight into the batch (its size is known); another value into
	// a pooled buffer first, then copied.
	var data, raw []byte
	var str string
	var tag byte // tagString or tagBytes: str or raw goes straight into the batch
	var size int // the encoding's bytes
	switch p := msg.Payload.(type) {
	case string:
		str, tag = p, tagString
		size = 2 + uvarintLen(uint64(len(p))) + len(p)
	case []byte:
		raw, tag = p, tagBytes
		size = 2 + uvarintLen(uint64(len(p))) + len(p)
	default:
		bufp := bp.bufs.Get().(*[]byte)
		defer bp.bufs.Put(bufp)
		if data, err = EncodeValue((*bufp)[:0], msg.Payload); err != nil {
			bp.unsent.WithLabelValues("not_encodable").Inc()
			return err
		}
		if cap(data) <= 1<<20 {
			*bufp = data
		}
		size = len(data)
	}
	maxPayload := bp.maxPayload.Load()
	if maxPayload <= 0 {
		maxPayload = bp.n.tc.MaxPayload()
		bp.maxPayload.Store(maxPayload)
	}
	if int64(size+len(subj)+64) > maxPayload {
		bp.unsent.WithLabelValues("too_large").Inc()
		return fmt.Errorf("cluster: too_large: the message takes %d bytes, more than NATS's max_payload (%d)", size, maxPayload)
	}
	limit := int(min(maxBatchBytes, maxPayload-64))
	framed := size + uvarintLen(uint64(size))
	bp.outMu.Lock()
	if bp.outBytes+framed > bp.maxBacklog {
		bp.outMu.Unlock()
		bp.unsent.WithLabelValues("backlog_full").Inc()
		return fmt.Errorf("cluster: backlog_full: %d bytes wait to be sent (cluster.send_buffer_bytes)", bp.outBytes)
	}
	wasEmpty := len(bp.out) == 0
	var b *batch
	if !wasEmpty {
		if last := bp.out[len(bp.out)-1]; last.subj == subj && len(last.buf)+framed <= limit {
			b = last
		}
	}
	if b == nil {
		// An idle publisher's message goes alone at once: a small buffer. Behind the sender, batches fill.
		want := 4096
		if !wasEmpty {
			want = limit
		}
		b = bp.newBatchLocked(subj, max(framed+1, min(want, limit)))
		bp.out = append(bp.out, b)
	}
	b.buf = binary.AppendUvarint(b.buf, uint64(size))
	switch tag {
	case tagString:
		b.buf = append(binary.AppendUvarint(append(b.buf, codecVersion, tagString), uint64(len(str))), str...)
	case tagBytes:
		b.buf = append(binary.AppendUvarint(append(b.buf, codecVersion, tagBytes), uint64(len(raw))), raw...)
	default:
		b.buf = append(b.buf, data...)
	}
	b.n++
	filled := bp.outBytes < fillBytes && bp.outBytes+framed >= fillBytes
	bp.outBytes += framed
	bp.outMu.Unlock()
	if wasEmpty || filled {
		select {
		case bp.kick <- struct{}{}:
		default:
		}
	}
	return nil
}

// uvarintLen is the length of n's uvarint encoding.
func uvarintLen(n uint64) int {
	l := 1
	for n >= 0x80 {
		n >>= 7
		l++
	}
	return l
}

// maxFreeBatches bounds the sent batches kept for reuse (at most maxFreeBatches × 2 × maxBatchBytes
// bytes beside the send queue).
const maxFreeBatches = 16

// newBatchLocked starts a batch of subj with room for capacity bytes, reusing a sent one if any.
func (bp *Backplane) newBatchLocked(subj string, capacity int) *batch {
	var b *batch
	if n := len(bp.free); n > 0 {
		b, bp.free = bp.free[n-1], bp.free[:n-1]
		b.subj, b.buf, b.n = subj, b.buf[:0], 0
	} else {
		b = &batch{subj: subj, buf: make([]byte, 0, capacity)}
	}
	b.buf = append(b.buf, codecBatch)
	return b
}

// subjectOf is Subject, remembered per topic.
func (bp *Backplane) subjectOf(topic string) (string, error) {
	if l := bp.lastSubj.Load(); l != nil && l.topic == topic {
		return l.subj, nil
	}
	if v, ok := bp.subjects.Load(topic); ok {
		if s, ok := v.(string); ok {
			bp.lastSubj.Store(&topicSubject{topic, s})
			return s, nil
		}
		return "", v.(error)
	}
	s, err := bp.Subject(topic)
	if err != nil {
		bp.subjects.Store(topic, err)
		return "", err
	}
	bp.subjects.Store(topic, s)
	bp.lastSubj.Store(&topicSubject{topic, s})
	return s, nil
}

// The sender's batching policy. A message that finds the sender idle goes at once. While publishers
// stream (the sender is woken again within streamGap of its last send), it lingers up to linger for the
// queue to reach fillBytes before sending: without this, a sender as fast as the publisher sends a NATS
// message for every few bus messages, and the per-message cost of NATS (a protocol line, the server's
// routing, the other client's parsing and callback) is paid for each few instead of shared by hundreds.
const (
	streamGap = 500 * time.Microsecond
	linger    = 100 * time.Microsecond
	fillBytes = 32 << 10
)

// send publishes what Publish queued until close, then what is left.
func (bp *Backplane) send() {
	defer close(bp.done)
	var spare []*batch
	timer := time.NewTimer(linger)
	timer.Stop()
	var last time.Time
	for {
		select {
		case <-bp.kick:
		case <-bp.stop:
			bp.flush(&spare, true)
			return
		}
		if time.Since(last) < streamGap && bp.queuedBytes() < fillBytes {
			timer.Reset(linger)
			select {
			case <-bp.kick: // the queue reached fillBytes
			case <-timer.C:
			case <-bp.stop:
			}
			timer.Stop()
		}
		bp.flush(&spare, false)
		last = time.Now()
	}
}

func (bp *Backplane) queuedBytes() int {
	bp.outMu.Lock()
	defer bp.outMu.Unlock()
	return bp.outBytes
}

// flush sends what is queued once (what arrives meanwhile has kicked the sender again), or until the queue
// is empty when all is true (at close).
func (bp *Backplane) flush(spare *[]*batch, all bool) {
	if bp.n.tc.IsConnected() {
		bp.maxPayload.Store(bp.n.tc.MaxPayload()) // a reconnect may have reached another server
	}
	for {
		bp.outMu.Lock()
		batches := bp.out
		bp.out, bp.outBytes = (*spare)[:0], 0
		bp.outMu.Unlock()
		if len(batches) == 0 {
			*spare = batches
			return
		}
		for i, b := range batches {
			if err := bp.n.tc.Publish(b.subj, b.buf); err != nil {
				reason := "other"
				switch {
				case errors.Is(err, nats.ErrMaxPayload):
					reason = "too_large"
				case errors.Is(err, nats.ErrReconnectBufExceeded), errors.Is(err, nats.ErrConnectionClosed),
					errors.Is(err, nats.ErrConnectionReconnecting), !bp.n.tc.IsConnected():
					reason = "disconnected"
				}
				bp.unsent.WithLabelValues(reason).Add(float64(b.n))
				bp.logFailure(err, reason, b)
			} else {
				bp.sent.Add(float64(b.n))
			}
			batches[i] = nil
			// NATS copied the bytes: the buffer can take the next messages.
			if cap(b.buf) <= 2*maxBatchBytes {
				bp.outMu.Lock()
				if len(bp.free) < maxFreeBatches {
					b.subj = ""
					bp.free = append(bp.free, b)
				}
				bp.outMu.Unlock()
			}
		}
		*spare = batches
		if !all {
			return
		}
	}
}

func (bp *Backplane) logFailure(err error, reason string, b *batch) {
	now := time.Now().UnixNano()
	last := bp.failLog.Load()
	if now-last < int64(time.Second) || !bp.failLog.CompareAndSwap(last, now) {
		return
	}
	bp.n.log.WithError(err).WithFields(logrus.Fields{"subject": clipName(b.subj), "messages": b.n, "reason": reason}).
		Warn("cluster: topic messages not sent to the other nodes (they reached this node's subscribers only)")
}

// Subscribe delivers the other nodes' messages on topic (a pattern matches their topics as on the local
// bus) until cancel (bus.Backplane). It works while NATS is away: the subscription is made when the
// connection comes back.
func (bp *Backplane) Subscribe(topic string, deliver func(bus.Message)) (func(), error) {
	return bp.SubscribeBatch(topic, func(ms []bus.Message) {
		for _, m := range ms {
			deliver(m)
		}
	})
}

// maxDeliverBatch bounds the messages handed to a SubscribeBatch deliver at once (and so the slice each
// subscription keeps for them): a NATS message holding more is delivered in several calls.
const maxDeliverBatch = 1024

// SubscribeBatch is Subscribe delivering the values of one NATS message (a batch) together, in order, in
// calls of at most maxDeliverBatch messages (bus.BatchBackplane).
func (bp *Backplane) SubscribeBatch(topic string, deliver func([]bus.Message)) (func(), error) {
	subj, err := bp.Subject(topic)
	if err != nil {
		return nil, err
	}
	// NATS calls one subscription's handler from one goroutine, one message at a time: msgs is its own.
	var msgs []bus.Message
	sub, err := bp.n.tc.Subscribe(subj, func(m *nats.Msg) {
		name, ok := bp.topicOf(m.Subject)
		if !ok {
			bp.badMessage("subject", m.Subject, nil)
			return
		}
		now := time.Now()
		flush := func() {
			bp.received.Add(float64(len(msgs)))
			deliver(msgs)
			clear(msgs) // keep no payload alive
			msgs = msgs[:0]
		}
		err := DecodeMessage(m.Data, func(v any) {
			if len(msgs) == maxDeliverBatch {
				flush()
			}
			msgs = append(msgs, bus.Message{Topic: name, Payload: v, Time: now})
		})
		if len(msgs) > 0 {
			flush()
		}
		if err != nil {
			bp.badMessage("payload", m.Subject, err)
		}
	})
	if err != nil {
		return nil, fmt.Errorf("cluster: subscribe %q: %w", clipName(topic), err)
	}
	_ = sub.SetPendingLimits(-1, pendingBytes)
	bp.mu.Lock()
	if bp.closed.Load() {
		bp.mu.Unlock()
		_ = sub.Unsubscribe()
		return nil, errors.New("cluster: node is shutting down")
	}
	bp.subs[sub] = struct{}{}
	bp.mu.Unlock()
	return func() {
		bp.mu.Lock()
		delete(bp.subs, sub)
		bp.mu.Unlock()
		_ = sub.Unsubscribe()
	}, nil
}

func (bp *Backplane) badMessage(reason, subject string, err error) {
	bp.bad.WithLabelValues(reason).Inc()
	now := time.Now().UnixNano()
	last := bp.badLog.Load()
	if now-last < int64(time.Second) || !bp.badLog.CompareAndSwap(last, now) {
		return
	}
	bp.n.log.WithFields(logrus.Fields{"subject": clipName(subject), "reason": reason}).WithError(err).
		Warn("cluster: dropped a topic message from NATS that is not a switchboard message")
}

// close sends what is queued and stops the sender (the node drains its connections next).
func (bp *Backplane) close() {
	if bp.closed.Swap(true) {
		return
	}
	close(bp.stop)
	<-bp.done
}

// UnsentCounter is the unsent counter for reason (tests read it).
func (bp *Backplane) UnsentCounter(reason string) prometheus.Counter {
	return bp.unsent.WithLabelValues(reason)
}

// DecodeMessage decodes a topic message from NATS, one value or a batch, calling fn for each value in
// order. A batch item that does not decode is skipped (its error returned at the end); a broken batch frame
// stops there. The short strings of a batch share allocations (decoder.bytesString).
func DecodeMessage(data []byte, fn func(any)) error {
	if len(data) == 0 || data[0] != codecBatch {
		v, err := DecodeValue(data)
		if err != nil {
			return err
		}
		fn(v)
		return nil
	}
	var first error
	d := decoder{arena: true, base: data}
	rest := data[1:]
	for len(rest) > 0 {
		n, w := binary.Uvarint(rest)
		if w <= 0 || n > uint64(len(rest)-w) {
			return fmt.Errorf("%w: batch item past the end", ErrBadEncoding)
		}
		item := rest[w : w+int(n)]
		rest = rest[w+int(n):]
		d.end = len(data) - len(rest)
		if len(item) > 2 && item[0] == codecVersion && item[1] == tagString {
			// The common value, a string alone, without the general decoder's steps.
			if l, lw := binary.Uvarint(item[2:]); lw > 0 && l == uint64(len(item)-2-lw) {
				d.b = item[2+lw:]
				fn(d.bytesString(int(l)))
				continue
			}
		}
		v, err := d.value(item)
		if err != nil {
			if first == nil {
				first = err
			}
			continue
		}
		fn(v)
	}
	return first
}
