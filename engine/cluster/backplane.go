package cluster

import (
	"context"
	"encoding/base64"
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

	bufs sync.Pool

	mu     sync.Mutex
	subs   map[*nats.Subscription]struct{}
	closed bool

	badLog atomic.Int64 // unix nanos of the last log of an undecodable message
}

// maxSubjectBytes bounds a topic's subject (NATS's default control line is 4 KiB).
const maxSubjectBytes = 1024

// pendingBytes bounds what NATS buffers for one topic subscription before the bus takes it; past it NATS
// drops messages (counted as switchboard_cluster_errors_total{kind="slow_consumer"}). The bus's own
// per-subscriber queues are the bound that matters: delivery into them does not wait.
const pendingBytes = 64 << 20

// Backplane returns the node's backplane (one per node).
func (n *Node) Backplane(reg prometheus.Registerer) *Backplane {
	n.bpOnce.Do(func() {
		bp := &Backplane{n: n, subs: map[*nats.Subscription]struct{}{}}
		bp.sent = counter(reg, "switchboard_cluster_topic_sent_total", "Topic messages sent to the other nodes.")
		bp.received = counter(reg, "switchboard_cluster_topic_received_total", "Topic messages received from the other nodes.")
		bp.unsent = counterVec(reg, "switchboard_cluster_topic_unsent_total",
			"Topic messages that could not be sent to the other nodes, by reason (disconnected, too_large, not_encodable, bad_topic, other); they reached this node's subscribers only.", "reason")
		bp.bad = counterVec(reg, "switchboard_cluster_topic_bad_total", "Topic messages received that could not be decoded, by reason.", "reason")
		bp.bufs.New = func() any { b := make([]byte, 0, 512); return &b }
		n.bp = bp
	})
	return n.bp
}

var _ bus.Backplane = (*Backplane)(nil)

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

// Publish sends msg to the other nodes (bus.Backplane). It does not wait for NATS: the message goes into
// the connection's buffer, or fails at once while disconnected.
func (bp *Backplane) Publish(_ context.Context, msg bus.Message) error {
	subj, err := bp.Subject(msg.Topic)
	if err != nil {
		bp.unsent.WithLabelValues("bad_topic").Inc()
		return err
	}
	bufp := bp.bufs.Get().(*[]byte)
	defer bp.bufs.Put(bufp)
	data, err := EncodeValue((*bufp)[:0], msg.Payload)
	if err != nil {
		bp.unsent.WithLabelValues("not_encodable").Inc()
		return err
	}
	if cap(data) <= 1<<20 {
		*bufp = data
	}
	if err := bp.n.tc.Publish(subj, data); err != nil {
		reason := "other"
		switch {
		case errors.Is(err, nats.ErrMaxPayload):
			reason = "too_large"
		case errors.Is(err, nats.ErrReconnectBufExceeded), errors.Is(err, nats.ErrConnectionClosed),
			errors.Is(err, nats.ErrConnectionReconnecting), !bp.n.tc.IsConnected():
			reason = "disconnected"
		}
		bp.unsent.WithLabelValues(reason).Inc()
		return fmt.Errorf("cluster: %s: %w", reason, err)
	}
	bp.sent.Inc()
	return nil
}

// Subscribe delivers the other nodes' messages on topic (a pattern matches their topics as on the local
// bus) until cancel (bus.Backplane). It works while NATS is away: the subscription is made when the
// connection comes back.
func (bp *Backplane) Subscribe(topic string, deliver func(bus.Message)) (func(), error) {
	subj, err := bp.Subject(topic)
	if err != nil {
		return nil, err
	}
	sub, err := bp.n.tc.Subscribe(subj, func(m *nats.Msg) {
		name, ok := bp.topicOf(m.Subject)
		if !ok {
			bp.badMessage("subject", m.Subject, nil)
			return
		}
		v, err := DecodeValue(m.Data)
		if err != nil {
			bp.badMessage("payload", m.Subject, err)
			return
		}
		bp.received.Inc()
		deliver(bus.Message{Topic: name, Payload: v, Time: time.Now()})
	})
	if err != nil {
		return nil, fmt.Errorf("cluster: subscribe %q: %w", clipName(topic), err)
	}
	_ = sub.SetPendingLimits(-1, pendingBytes)
	bp.mu.Lock()
	if bp.closed {
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

func (bp *Backplane) close() {
	bp.mu.Lock()
	bp.closed = true
	bp.mu.Unlock()
}

func counter(reg prometheus.Registerer, name, help string) prometheus.Counter {
	c := prometheus.NewCounter(prometheus.CounterOpts{Name: name, Help: help})
	if reg == nil {
		return c
	}
	if err := reg.Register(c); err != nil {
		var are prometheus.AlreadyRegisteredError
		if errors.As(err, &are) {
			if existing, ok := are.ExistingCollector.(prometheus.Counter); ok {
				return existing
			}
		}
	}
	return c
}

// UnsentCounter is the unsent counter for reason (tests read it).
func (bp *Backplane) UnsentCounter(reason string) prometheus.Counter {
	return bp.unsent.WithLabelValues(reason)
}
