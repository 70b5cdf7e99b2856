package channel

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"sync"
	"time"

	"github.com/sirupsen/logrus"

	"github.com/switchboard/switchboard/engine/transport"
)

// State of a channel's connection.
type State string

const (
	StateDown       State = "down"
	StateConnecting State = "connecting"
	StateUp         State = "up"
	StateStopped    State = "stopped"
)

// Errors of Send and Request.
var (
	ErrBufferFull = errors.New("channel: send buffer full")
	ErrDropped    = errors.New("channel: message dropped by the transform")
	ErrStopped    = errors.New("channel: stopped")
	ErrNotRunning = errors.New("channel: not running (run: false)")
	ErrTimeout    = errors.New("channel: no reply before the timeout")
	ErrDown       = errors.New("channel: connection lost before the reply")
)

// Message is what a Transform sees: the channel's name and a plain-data payload (a string for text framings,
// a table for HTTP requests and responses).
type Message struct {
	Channel string
	Payload any
}

// Transform rewrites or drops messages between a channel's socket and its topics.
type Transform interface {
	Apply(ctx context.Context, msg Message) (out Message, keep bool, err error)
}

// TransformFunc adapts a function to Transform.
type TransformFunc func(ctx context.Context, msg Message) (Message, bool, error)

// Apply calls f.
func (f TransformFunc) Apply(ctx context.Context, msg Message) (Message, bool, error) {
	return f(ctx, msg)
}

// Direction of a transform.
const (
	In  = "in"
	Out = "out"
)

// Event is a channel going up or down.
type Event struct {
	Channel string
	Up      bool
	Addr    string
	Err     error // why it went down (nil on shutdown)
}

type reply struct {
	payload any
	err     error
}

// waiter is a Request waiting for the inbound message that answers it. A waiter that gave up stays in line
// (gone) so that the late reply is not handed to the next request.
type waiter struct {
	ch   chan reply
	gone bool
}

// outMsg is an encoded message waiting for a connection, with the request that waits for its reply.
type outMsg struct {
	b []byte
	w *waiter
}

// Channel is one active socket: a connection to an upstream server with its framing, its send buffer and its
// topic bridges.
type Channel struct {
	cfg     Config
	in, out framing
	dialer  *transport.Dialer
	log     *logrus.Entry
	set     *Set
	m       chanMetrics

	reqMu sync.Mutex // keeps request registration and write in the same order

	mu         sync.Mutex
	state      State
	ob         *transport.Outbox
	pending    []outMsg
	waiters    []*waiter // in the order their messages were written
	connecting bool
	connected  bool // a connection was established before (for the reconnect counter)
	lastErr    error
	dropWarn   time.Time
	errWarn    time.Time
	dropped    int
}

// Name returns the configured name.
func (c *Channel) Name() string { return c.cfg.Name }

// Config returns the channel's configuration.
func (c *Channel) Config() Config { return c.cfg }

// State returns the connection state and the last connection error.
func (c *Channel) State() (State, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.state, c.lastErr
}

// Send transforms (out), encodes and writes payload. While the connection is down the bytes wait in the
// send buffer (a non-permanent channel starts connecting); over the buffer the message is dropped, counted,
// logged and ErrBufferFull is returned.
func (c *Channel) Send(ctx context.Context, payload any) error {
	b, err := c.prepare(ctx, payload)
	if err != nil {
		return err
	}
	return c.write(b, nil)
}

func (c *Channel) prepare(ctx context.Context, payload any) ([]byte, error) {
	if !c.cfg.Run {
		return nil, ErrNotRunning
	}
	if t := c.set.transform(c.cfg.Name, Out); t != nil {
		out, keep, err := t.Apply(ctx, Message{Channel: c.cfg.Name, Payload: payload})
		if err != nil {
			c.m.dropped("transform_error").Inc()
			return nil, fmt.Errorf("channel %s: out transform: %w", c.cfg.Name, err)
		}
		if !keep {
			c.m.dropped("transform").Inc()
			return nil, ErrDropped
		}
		payload = out.Payload
	}
	b, err := c.out.encode(payload)
	if err != nil {
		c.m.dropped("encode").Inc()
		return nil, fmt.Errorf("channel %s: %w", c.cfg.Name, err)
	}
	if c.cfg.ShowMessages || (c.cfg.Protocol == Asymmetric && c.cfg.Outbound.ShowMessages) {
		c.log.WithField("message", quoteBytes(b, 1024)).Info("message out")
	}
	return b, nil
}

func (c *Channel) write(b []byte, w *waiter) error {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.state == StateStopped {
		return ErrStopped
	}
	if c.ob != nil {
		err := c.ob.Send(b)
		if err == nil {
			c.m.msgsOut.Inc()
			return nil
		}
		if errors.Is(err, transport.ErrOutboxFull) {
			c.dropLocked("queue_full")
			return fmt.Errorf("channel %s: %w", c.cfg.Name, ErrBufferFull)
		}
		// The connection is failing; the session will end. Keep the message for the next one.
	}
	if len(c.pending) >= c.cfg.SendBuffer {
		c.dropLocked("buffer_full")
		return fmt.Errorf("channel %s: %w (%d messages waiting)", c.cfg.Name, ErrBufferFull, len(c.pending))
	}
	c.pending = append(c.pending, outMsg{b: b, w: w})
	c.m.buffered.Set(float64(len(c.pending)))
	if !c.cfg.Permanent && !c.connecting && c.ob == nil {
		c.connecting = true
		c.state = StateConnecting
		c.set.goConnect(c)
	}
	return nil
}

// dropLocked counts a dropped message and logs at most once a second.
func (c *Channel) dropLocked(reason string) {
	c.m.dropped(reason).Inc()
	c.dropped++
	if now := time.Now(); now.Sub(c.dropWarn) >= time.Second {
		c.log.WithFields(logrus.Fields{"reason": reason, "dropped": c.dropped, "buffer": c.cfg.SendBuffer}).Warn("outbound message dropped")
		c.dropWarn, c.dropped = now, 0
	}
}

// warnRateLimited logs a message from topic_out that could not be sent, at most once a second per channel.
func (c *Channel) warnRateLimited(err error, topic string) {
	c.mu.Lock()
	now := time.Now()
	skip := now.Sub(c.errWarn) < time.Second
	if !skip {
		c.errWarn = now
	}
	c.mu.Unlock()
	if !skip {
		c.log.WithError(err).WithField("topic", topic).Warn("message from topic_out not sent")
	}
}

// Request sends payload and waits for the next inbound message (for http: the response), at most timeout
// (0 = no limit beyond ctx). Requests are answered in the order they were sent.
func (c *Channel) Request(ctx context.Context, payload any, timeout time.Duration) (any, error) {
	b, err := c.prepare(ctx, payload)
	if err != nil {
		return nil, err
	}
	w := &waiter{ch: make(chan reply, 1)}
	c.reqMu.Lock()
	c.mu.Lock()
	c.waiters = append(c.waiters, w)
	c.mu.Unlock()
	err = c.write(b, w)
	c.reqMu.Unlock()
	if err != nil {
		c.abandon(w, true)
		return nil, err
	}
	var timer <-chan time.Time
	if timeout > 0 {
		t := time.NewTimer(timeout)
		defer t.Stop()
		timer = t.C
	}
	select {
	case r := <-w.ch:
		return r.payload, r.err
	case <-timer:
		c.abandon(w, false)
		return nil, fmt.Errorf("channel %s: %w (%v)", c.cfg.Name, ErrTimeout, timeout)
	case <-ctx.Done():
		c.abandon(w, false)
		return nil, fmt.Errorf("channel %s: request: %w", c.cfg.Name, ctx.Err())
	}
}

// abandon marks a request that stopped waiting. Its place in line stays (its reply is still due) unless its
// message was never written (unsent).
func (c *Channel) abandon(w *waiter, unsent bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	w.gone = true
	if !unsent {
		return
	}
	for i, x := range c.waiters {
		if x == w {
			c.waiters = append(c.waiters[:i], c.waiters[i+1:]...)
			return
		}
	}
}

// session runs one established connection until it breaks or ctx is done.
func (c *Channel) session(ctx context.Context, conn net.Conn) error {
	pc := &packetConn{Conn: conn, c: c}
	ob := transport.NewOutbox(pc, c.cfg.SendBuffer)
	dec := c.in.decoder(pc)

	c.mu.Lock()
	if c.state == StateStopped {
		c.mu.Unlock()
		_ = ob.Close(ctx)
		return ErrStopped
	}
	for _, m := range c.pending {
		if err := ob.Send(m.b); err != nil {
			break
		}
		c.m.msgsOut.Inc()
	}
	flushed := len(c.pending)
	c.pending = nil
	c.ob, c.state, c.lastErr = ob, StateUp, nil
	if c.connected {
		c.m.reconnects.Inc()
	}
	c.connected = true
	c.mu.Unlock()
	c.m.buffered.Set(0)
	c.m.up.Set(1)
	c.log.WithFields(logrus.Fields{"addr": conn.RemoteAddr().String(), "flushed": flushed}).Info("channel up")
	c.set.emit(Event{Channel: c.cfg.Name, Up: true, Addr: conn.RemoteAddr().String()})

	stop := context.AfterFunc(ctx, func() { conn.Close() })
	defer stop()
	var err error
	for {
		var msg any
		msg, err = dec.Decode()
		if err != nil {
			break
		}
		c.inbound(ctx, msg)
	}
	switch {
	case ctx.Err() != nil:
		err = nil
	case err == io.EOF:
		err = errors.New("closed by peer")
	case isTimeout(err) && c.cfg.IdleTimeout > 0:
		err = fmt.Errorf("nothing received for %v (idle_timeout)", c.cfg.IdleTimeout)
	}
	if err != nil {
		err = fmt.Errorf("channel %s: %w", c.cfg.Name, err)
	}

	c.mu.Lock()
	c.ob = nil
	if c.state != StateStopped {
		c.state = StateDown
	}
	c.lastErr = err
	lost := c.keepPendingWaitersLocked()
	c.mu.Unlock()
	for _, w := range lost {
		w.ch <- reply{err: fmt.Errorf("channel %s: %w", c.cfg.Name, ErrDown)}
	}
	cctx, cancel := context.WithTimeout(context.Background(), time.Second)
	_ = ob.Close(cctx)
	cancel()
	conn.Close()
	c.m.up.Set(0)
	entry := c.log.WithField("addr", conn.RemoteAddr().String())
	if err != nil {
		entry.WithError(err).Warn("channel down")
	} else {
		entry.Info("channel down")
	}
	c.set.emit(Event{Channel: c.cfg.Name, Up: false, Addr: conn.RemoteAddr().String(), Err: err})
	return err
}

// keepPendingWaitersLocked is called when a connection ends: requests whose message was written on it will
// get no reply (returned, to be failed); requests whose message is still buffered keep their place for the
// next connection.
func (c *Channel) keepPendingWaitersLocked() (lost []*waiter) {
	buffered := make(map[*waiter]bool)
	for _, m := range c.pending {
		if m.w != nil {
			buffered[m.w] = true
		}
	}
	kept := c.waiters[:0]
	for _, w := range c.waiters {
		switch {
		case buffered[w]:
			kept = append(kept, w)
		case !w.gone:
			lost = append(lost, w)
		}
	}
	for i := len(kept); i < len(c.waiters); i++ {
		c.waiters[i] = nil
	}
	c.waiters = kept
	return lost
}

func isTimeout(err error) bool {
	var ne net.Error
	return errors.As(err, &ne) && ne.Timeout()
}

// inbound runs the in transform and delivers a decoded message to the oldest request, then to topic_in.
func (c *Channel) inbound(ctx context.Context, payload any) {
	c.m.msgsIn.Inc()
	if c.cfg.ShowMessages || (c.cfg.Protocol == Asymmetric && c.cfg.Inbound.ShowMessages) {
		c.log.WithField("message", showPayload(payload)).Info("message in")
	}
	if t := c.set.transform(c.cfg.Name, In); t != nil {
		out, keep, err := t.Apply(ctx, Message{Channel: c.cfg.Name, Payload: payload})
		if err != nil {
			c.m.dropped("transform_error").Inc()
			c.log.WithError(err).Warn("in transform failed; message dropped")
			return
		}
		if !keep {
			c.m.dropped("transform").Inc()
			return
		}
		payload = out.Payload
	}
	c.mu.Lock()
	var w *waiter
	if len(c.waiters) > 0 {
		w = c.waiters[0]
		c.waiters[0] = nil
		c.waiters = c.waiters[1:]
		if w.gone {
			w = nil
		}
	}
	c.mu.Unlock()
	if w != nil {
		w.ch <- reply{payload: payload}
	}
	if c.cfg.RedirectIn {
		c.set.bus.Publish(c.cfg.TopicIn, payload)
	}
}

func showPayload(p any) string {
	if s, ok := p.(string); ok {
		return quoteBytes([]byte(s), 1024)
	}
	return quoteBytes([]byte(fmt.Sprint(p)), 1024)
}

// packetConn counts bytes, logs raw packets (showpackets) and applies the idle timeout to reads.
type packetConn struct {
	net.Conn
	c *Channel
}

func (p *packetConn) Read(b []byte) (int, error) {
	if t := p.c.cfg.IdleTimeout; t > 0 {
		_ = p.Conn.SetReadDeadline(time.Now().Add(t))
	}
	n, err := p.Conn.Read(b)
	if n > 0 {
		p.c.m.bytesIn.Add(float64(n))
		if p.c.cfg.ShowPackets || p.c.cfg.Inbound.ShowPackets {
			p.c.log.WithField("packet", quoteBytes(b[:n], 4096)).Info("packet in")
		}
	}
	return n, err
}

func (p *packetConn) Write(b []byte) (int, error) {
	n, err := p.Conn.Write(b)
	if n > 0 {
		p.c.m.bytesOut.Add(float64(n))
		if p.c.cfg.ShowPackets || p.c.cfg.Outbound.ShowPackets {
			p.c.log.WithField("packet", quoteBytes(b[:n], 4096)).Info("packet out")
		}
	}
	return n, err
}

// connectOnce is a non-permanent channel's use: one dial, one session, no automatic restore.
func (c *Channel) connectOnce(ctx context.Context) {
	conn, err := c.dialer.Dial(ctx)
	if err != nil {
		err = fmt.Errorf("channel %s: %w", c.cfg.Name, err)
		c.mu.Lock()
		n := len(c.pending)
		c.pending = nil
		c.connecting = false
		if c.state != StateStopped {
			c.state = StateDown
		}
		c.lastErr = err
		var waiting []*waiter
		for _, w := range c.waiters {
			if !w.gone {
				waiting = append(waiting, w)
			}
		}
		c.waiters = nil
		c.mu.Unlock()
		c.m.buffered.Set(0)
		c.m.dropped("connect_failed").Add(float64(n))
		for _, w := range waiting {
			w.ch <- reply{err: err}
		}
		c.log.WithError(err).WithField("dropped", n).Warn("connect failed; buffered messages dropped")
		return
	}
	c.mu.Lock()
	c.connecting = false
	c.mu.Unlock()
	_ = c.session(ctx, conn)
	conn.Close()
}

// run keeps a permanent channel connected.
func (c *Channel) run(ctx context.Context) {
	c.mu.Lock()
	c.state = StateConnecting
	c.mu.Unlock()
	_ = c.dialer.Run(ctx, c.session)
}
