package channel

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"sort"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/sirupsen/logrus"

	"github.com/switchboard/switchboard/engine/bus"
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

// Errors of Send, Request and Receive.
var (
	ErrBufferFull   = errors.New("channel: send buffer full")
	ErrDropped      = errors.New("channel: message dropped by the transform")
	ErrReplyDropped = errors.New("channel: reply dropped by the in transform")
	ErrStopped      = errors.New("channel: stopped")
	ErrNotRunning   = errors.New("channel: not running (run: false)")
	ErrTimeout      = errors.New("channel: no reply before the timeout")
	ErrNoMessage    = errors.New("channel: nothing received before the timeout")
	ErrDown         = errors.New("channel: connection lost before the reply")
	// ErrResponseTimeout ends a connection whose due reply was not complete within response_timeout.
	ErrResponseTimeout = errors.New("no complete reply within response_timeout")
)

// maxTries bounds how many connections an idempotent HTTP request is written on without being answered.
const maxTries = 3

// messageOverhead is what a queued message costs beyond its payload bytes, so that bounds in bytes also
// bound empty messages.
const messageOverhead = 64

// failEventEvery rate-limits the channel.down events and warnings of failed connection attempts.
const failEventEvery = 5 * time.Second

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
	// Failed: a connection attempt failed (the dial, or a connection on which the peer never answered);
	// these events are rate-limited.
	Failed bool
}

type reply struct {
	payload any
	err     error
}

// waiter is a Request waiting for the inbound message that answers it. A waiter that gave up (gone) keeps its
// message's place in line so that the late reply is not handed to the next request.
type waiter struct {
	ch   chan reply // capacity 1: a waiter gets one reply
	gone atomic.Bool
}

func newWaiter() *waiter { return &waiter{ch: make(chan reply, 1)} }

// send hands r to the waiter; false if it gave up.
func (w *waiter) send(r reply) bool {
	if w.gone.Load() {
		return false
	}
	select {
	case w.ch <- r:
		return true
	default:
		return false
	}
}

// outMsg is an encoded outbound message and what the channel must remember about it until it is answered.
type outMsg struct {
	b        []byte
	w        *waiter // the request waiting for the reply, or nil
	method   string  // http: the request method (a response to HEAD has no body)
	idem     bool    // http: may be written again on a new connection if the old one closed unanswered
	reply    bool    // a reply is due: http and resp always, other framings only for a request
	internal bool    // a heartbeat: its reply is consumed
	answered bool
	tries    int   // connections it was written on without being answered
	end      int64 // offset of its last byte in its connection's outbound stream
	wv       waiter
}

// session is one established connection.
type session struct {
	conn    net.Conn
	ob      *transport.Outbox
	started time.Time

	// guarded by Channel.mu
	inflight  []*outMsg // written or queued on this connection, reply due, in write order
	queued    []*outMsg // queued on the outbox and maybe not written yet (trimmed as writes complete)
	enq       int64     // bytes queued on the outbox so far
	held      int64     // bytes of the messages in inflight (kept until answered: an http request may be re-sent)
	verified  bool      // the peer answered (immediately true without a heartbeat)
	quiet     bool      // follows a session that ended in good order: up is not announced
	closing   bool      // take no more writes
	answered  int       // replies paired with requests on this connection
	gotInput  bool
	lastInput time.Time
	replyDue  time.Time // the oldest due reply must be complete by then
	hbDue     time.Time // some input must arrive by then (a heartbeat went out)
	armed     time.Time // the read deadline set on conn

	written atomic.Int64 // bytes the outbox's writer got out
	readErr error        // a deadline that really passed (reader goroutine only)
}

// Channel is one active socket: a connection to an upstream server with its framing, its send buffer and its
// topic bridges.
type Channel struct {
	cfg     Config
	in, out framing
	paired  bool    // every outbound message gets one reply (http, resp)
	hb      *outMsg // the heartbeat template, or nil
	dialer  *transport.Dialer
	log     *logrus.Entry
	set     *Set
	m       chanMetrics
	foreign chan struct{} // slots for absolute-URL fetches (follow_absolute)

	mu           sync.Mutex
	state        State
	sess         *session
	pending      []*outMsg // waiting for a connection, in order
	pendingBytes int64
	connecting   bool // an on-demand connection is being made or used
	connected    bool // a connection was established before (for the reconnect counter)
	lastErr      error
	oneShot      bool // http: the server closes after each response; one request per connection
	redialed     bool // the last session ended in good order: its successor is announced quietly
	recv         []received
	recvBytes    int
	recvWake     chan struct{} // closed when a message is kept for Receive
	wasUp        bool          // no failure event since the last up
	failEvent    time.Time
	warns        map[string]*rateLog
}

type received struct {
	payload any
	size    int
}

// rateLog rate-limits one kind of warning: the first at once, then one a second with the count since.
type rateLog struct {
	last  time.Time
	count int
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

// warn logs at warning level at most once a second per kind, with how many were suppressed.
func (c *Channel) warn(kind string, every time.Duration, entry *logrus.Entry, msg string) {
	c.mu.Lock()
	r := c.warns[kind]
	if r == nil {
		r = &rateLog{}
		c.warns[kind] = r
	}
	r.count++
	now := time.Now()
	if !r.last.IsZero() && now.Sub(r.last) < every {
		c.mu.Unlock()
		return
	}
	n := r.count
	r.last, r.count = now, 0
	c.mu.Unlock()
	if n > 1 {
		entry = entry.WithField("times", n)
	}
	entry.Warn(msg)
}

// Send transforms (out), encodes and writes payload. While the connection is down the bytes wait in the
// send buffer (a non-permanent channel starts connecting); over the buffer the message is dropped, counted,
// logged and ErrBufferFull is returned.
func (c *Channel) Send(ctx context.Context, payload any) error {
	m, fr, err := c.prepare(ctx, payload)
	if err != nil {
		return err
	}
	if fr != nil {
		return c.fetch(fr, nil)
	}
	return c.write(m)
}

// Request sends payload and waits for its reply, at most timeout (0 = no limit beyond ctx). On http and resp
// the reply is the response to this request; on the other framings it is the next inbound message after the
// replies due to earlier requests.
func (c *Channel) Request(ctx context.Context, payload any, timeout time.Duration) (any, error) {
	m, fr, err := c.prepare(ctx, payload)
	if err != nil {
		return nil, err
	}
	var w *waiter
	if fr != nil {
		w = newWaiter()
		err = c.fetch(fr, w)
	} else {
		m.wv.ch = make(chan reply, 1) // one allocation less than a separate waiter
		w = &m.wv
		m.w, m.reply = w, true
		err = c.write(m)
	}
	if err != nil {
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
		c.abandon(m, w)
		return nil, fmt.Errorf("channel %s: %w (%v)", c.cfg.Name, ErrTimeout, timeout)
	case <-ctx.Done():
		c.abandon(m, w)
		return nil, fmt.Errorf("channel %s: request: %w", c.cfg.Name, ctx.Err())
	}
}

// abandon marks a request that stopped waiting. A message already written keeps its place in line (its reply
// is still due); one still waiting for a connection is taken back.
func (c *Channel) abandon(m *outMsg, w *waiter) {
	w.gone.Store(true)
	if m == nil {
		return
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	for i, p := range c.pending {
		if p == m {
			c.pending = append(c.pending[:i], c.pending[i+1:]...)
			c.pendingBytes -= int64(len(m.b))
			c.gaugesLocked()
			return
		}
	}
}

// Receive returns the oldest inbound message that no request and no topic took (redirect_in off), waiting at
// most timeout (0 = until ctx is done). A non-permanent channel that is not connected starts connecting.
func (c *Channel) Receive(ctx context.Context, timeout time.Duration) (any, error) {
	if !c.cfg.Run {
		return nil, ErrNotRunning
	}
	var timer <-chan time.Time
	if timeout > 0 {
		t := time.NewTimer(timeout)
		defer t.Stop()
		timer = t.C
	}
	for {
		c.mu.Lock()
		if len(c.recv) > 0 {
			r := c.recv[0]
			c.recv[0] = received{}
			c.recv = c.recv[1:]
			c.recvBytes -= r.size
			c.mu.Unlock()
			return r.payload, nil
		}
		if c.state == StateStopped {
			c.mu.Unlock()
			return nil, ErrStopped
		}
		if !c.cfg.Permanent && c.sess == nil && !c.connecting {
			c.startConnectLocked()
		}
		if c.recvWake == nil {
			c.recvWake = make(chan struct{})
		}
		wake := c.recvWake
		c.mu.Unlock()
		select {
		case <-wake:
		case <-timer:
			return nil, fmt.Errorf("channel %s: %w (%v)", c.cfg.Name, ErrNoMessage, timeout)
		case <-ctx.Done():
			return nil, fmt.Errorf("channel %s: receive: %w", c.cfg.Name, ctx.Err())
		}
	}
}

// prepare runs the out transform and encodes the payload. For an http request naming another server (with
// follow_absolute) it returns the request to fetch instead.
func (c *Channel) prepare(ctx context.Context, payload any) (*outMsg, *httpRequest, error) {
	if !c.cfg.Run {
		return nil, nil, ErrNotRunning
	}
	if t := c.set.transform(c.cfg.Name, Out); t != nil {
		out, keep, err := t.Apply(ctx, Message{Channel: c.cfg.Name, Payload: payload})
		if err != nil {
			c.m.dropped("transform_error").Inc()
			return nil, nil, fmt.Errorf("channel %s: out transform: %w", c.cfg.Name, err)
		}
		if !keep {
			c.m.dropped("transform").Inc()
			return nil, nil, ErrDropped
		}
		payload = out.Payload
	}
	m := &outMsg{reply: c.paired}
	if c.out.protocol == HTTP {
		r, err := parseHTTPRequest(payload)
		if err != nil {
			c.m.dropped("encode").Inc()
			return nil, nil, fmt.Errorf("channel %s: %w", c.cfg.Name, err)
		}
		host := c.out.host
		if r.url != nil {
			if !c.ownURL(r) {
				if !c.cfg.FollowAbsolute {
					c.m.dropped("foreign_url").Inc()
					return nil, nil, fmt.Errorf("channel %s: http: %s is on another server than this channel's (%s); "+
						"set follow_absolute: true to fetch it from there", c.cfg.Name, r.url.Redacted(), c.cfg.Addr())
				}
				return nil, r, nil
			}
			host = r.url.Host
		}
		if m.b, err = r.encode(host, false); err != nil {
			c.m.dropped("encode").Inc()
			return nil, nil, fmt.Errorf("channel %s: %w", c.cfg.Name, err)
		}
		m.method, m.idem = r.method, r.idempotent()
	} else {
		b, err := c.out.encode(payload)
		if err != nil {
			c.m.dropped("encode").Inc()
			return nil, nil, fmt.Errorf("channel %s: %w", c.cfg.Name, err)
		}
		m.b = b
	}
	if c.cfg.ShowMessages || (c.cfg.Protocol == Asymmetric && c.cfg.Outbound.ShowMessages) {
		c.log.WithField("message", quoteBytes(m.b, 1024)).Info("message out")
	}
	return m, nil, nil
}

// ownURL reports whether an absolute URL names this channel's server.
func (c *Channel) ownURL(r *httpRequest) bool {
	host, port, err := net.SplitHostPort(r.hostPort())
	return err == nil && strings.EqualFold(host, c.cfg.Host) && port == fmt.Sprint(c.cfg.Port) &&
		(r.url.Scheme == "https") == c.cfg.TLS
}

// write hands a message to the connection, or to the send buffer while there is none.
func (c *Channel) write(m *outMsg) error {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.state == StateStopped {
		return ErrStopped
	}
	if s := c.sess; s != nil && len(c.pending) == 0 && c.takesLocked(s, m) {
		err := c.enqueueLocked(s, m)
		if err == nil {
			return nil
		}
		if errors.Is(err, ErrBufferFull) {
			c.dropLocked("queue_full")
			return fmt.Errorf("channel %s: %w", c.cfg.Name, err)
		}
		// The connection is failing; the session will end. Keep the message for the next one.
	}
	if len(c.pending) >= c.cfg.SendBuffer {
		c.dropLocked("buffer_full")
		return fmt.Errorf("channel %s: %w (%d messages waiting, send_buffer)", c.cfg.Name, ErrBufferFull, len(c.pending))
	}
	if q := c.queuedBytesLocked(); q+int64(len(m.b)) > int64(c.cfg.SendBufferBytes) {
		c.dropLocked("buffer_full")
		return fmt.Errorf("channel %s: %w (%d bytes waiting, a message of %d, send_buffer_bytes %d)", c.cfg.Name,
			ErrBufferFull, q, len(m.b), c.cfg.SendBufferBytes)
	}
	c.pending = append(c.pending, m)
	c.pendingBytes += int64(len(m.b))
	c.gaugesLocked()
	if !c.cfg.Permanent && !c.connecting && c.sess == nil {
		c.startConnectLocked()
	}
	return nil
}

func (c *Channel) startConnectLocked() {
	c.connecting = true
	if c.state != StateStopped {
		c.state = StateConnecting
	}
	c.set.goConnect(c)
}

// takesLocked reports whether s takes m now. HTTP requests are pipelined except non-idempotent ones (a POST
// goes out alone, so that a close can never leave it unanswered behind another request), and one at a time
// to a server that closes after each response.
func (c *Channel) takesLocked(s *session, m *outMsg) bool {
	switch {
	case !s.verified || s.closing:
		return false
	case len(s.inflight) == 0:
		return true
	case c.out.protocol != HTTP:
		return true
	}
	return !c.oneShot && m.idem && s.inflight[len(s.inflight)-1].idem
}

// queuedBytesLocked is what the send buffer holds: messages waiting for a connection, bytes queued on the
// connection but not yet written, and messages kept until their reply comes (a message both unwritten and
// awaiting its reply counts twice: the bound errs on the safe side).
func (c *Channel) queuedBytesLocked() int64 {
	q := c.pendingBytes
	if s := c.sess; s != nil {
		q += s.enq - s.written.Load() + s.held
	}
	return q
}

func (c *Channel) gaugesLocked() {
	c.m.buffered.Set(float64(len(c.pending)))
	c.m.bufferedBytes.Set(float64(c.pendingBytes))
}

// enqueueLocked queues m on the connection's outbox.
func (c *Channel) enqueueLocked(s *session, m *outMsg) error {
	if !m.internal {
		if q := c.queuedBytesLocked(); q+int64(len(m.b)) > int64(c.cfg.SendBufferBytes) {
			return fmt.Errorf("%w (%d bytes queued, send_buffer_bytes %d)", ErrBufferFull, q, c.cfg.SendBufferBytes)
		}
	}
	if err := s.ob.Send(m.b); err != nil {
		if errors.Is(err, transport.ErrOutboxFull) {
			return fmt.Errorf("%w (%d messages queued, send_buffer)", ErrBufferFull, c.cfg.SendBuffer)
		}
		return err
	}
	s.enq += int64(len(m.b))
	m.end = s.enq
	written := s.written.Load()
	i := 0
	for i < len(s.queued) && s.queued[i].end <= written {
		s.queued[i] = nil
		i++
	}
	if i == len(s.queued) {
		s.queued = s.queued[:0] // keeps the array: no allocation per message in a request-reply loop
	} else {
		s.queued = s.queued[i:]
	}
	s.queued = append(s.queued, m)
	if m.reply {
		if len(s.inflight) == 0 && c.cfg.ResponseTimeout > 0 {
			s.replyDue = time.Now().Add(c.cfg.ResponseTimeout)
			c.armLocked(s, s.replyDue, false)
		}
		s.inflight = append(s.inflight, m)
		s.held += int64(len(m.b) + messageOverhead)
	}
	if !m.internal {
		c.m.msgsOut.Inc()
	}
	return nil
}

// flushLocked moves buffered messages to the connection while it takes them.
func (c *Channel) flushLocked(s *session) int {
	n := 0
	for len(c.pending) > 0 && c.takesLocked(s, c.pending[0]) {
		m := c.pending[0]
		c.pendingBytes -= int64(len(m.b))
		if err := c.enqueueLocked(s, m); err != nil {
			c.pendingBytes += int64(len(m.b))
			break
		}
		c.pending[0] = nil
		c.pending = c.pending[1:]
		n++
	}
	if len(c.pending) == 0 {
		c.pending = nil
	}
	c.gaugesLocked()
	return n
}

// dropLocked counts a dropped outbound message and logs at most once a second.
func (c *Channel) dropLocked(reason string) {
	c.m.dropped(reason).Inc()
	r := c.warns["drop"]
	if r == nil {
		r = &rateLog{}
		c.warns["drop"] = r
	}
	r.count++
	if now := time.Now(); now.Sub(r.last) >= time.Second {
		c.log.WithFields(logrus.Fields{"reason": reason, "dropped": r.count, "buffer": c.cfg.SendBuffer,
			"buffer_bytes": c.cfg.SendBufferBytes}).Warn("outbound message dropped")
		r.last, r.count = now, 0
	}
}

// warnRateLimited logs a message from topic_out that could not be sent, at most once a second per channel.
func (c *Channel) warnRateLimited(err error, topic string) {
	c.warn("topic_out", time.Second, c.log.WithError(err).WithField("topic", topic), "message from topic_out not sent")
}

// armLocked sets the connection's read deadline to t when it is earlier than the one set (or exactly, when
// exact): a later deadline set before only wakes the reader early, which then sets the right one.
func (c *Channel) armLocked(s *session, t time.Time, exact bool) {
	if !exact && !s.armed.IsZero() && !t.Before(s.armed) {
		return
	}
	if exact && t.Equal(s.armed) {
		return
	}
	_ = s.conn.SetReadDeadline(t)
	s.armed = t
}

// deadlineLocked is the earliest time something must have arrived (zero: none).
func (c *Channel) deadlineLocked(s *session) time.Time {
	var d time.Time
	earliest := func(t time.Time) {
		if !t.IsZero() && (d.IsZero() || t.Before(d)) {
			d = t
		}
	}
	earliest(s.replyDue)
	earliest(s.hbDue)
	if c.cfg.IdleTimeout > 0 {
		earliest(s.lastInput.Add(c.cfg.IdleTimeout))
	}
	return d
}

// overdueLocked returns why the connection must end now, or nil.
func (c *Channel) overdueLocked(s *session, now time.Time) error {
	switch {
	case !s.replyDue.IsZero() && !now.Before(s.replyDue):
		return fmt.Errorf("%w %v", ErrResponseTimeout, c.cfg.ResponseTimeout)
	case !s.hbDue.IsZero() && !now.Before(s.hbDue):
		return fmt.Errorf("no answer to the heartbeat within %v (heartbeat_timeout)", c.cfg.HeartbeatTimeout)
	case c.cfg.IdleTimeout > 0 && !now.Before(s.lastInput.Add(c.cfg.IdleTimeout)):
		return fmt.Errorf("nothing received for %v (idle_timeout)", c.cfg.IdleTimeout)
	}
	return nil
}

// upLocked makes a verified session the channel's connection: state up, buffered messages written.
func (c *Channel) upLocked(s *session) (flushed int) {
	s.verified = true
	c.state, c.lastErr, c.wasUp = StateUp, nil, true
	if c.connected {
		c.m.reconnects.Inc()
	}
	c.connected = true
	c.m.up.Set(1)
	return c.flushLocked(s)
}

func (c *Channel) announceUp(addr string, flushed int, quiet bool) {
	entry := c.log.WithFields(logrus.Fields{"addr": addr, "flushed": flushed})
	if quiet {
		entry.Debug("channel up (new connection after the server closed the last one)")
		return
	}
	entry.Info("channel up")
	c.set.emit(Event{Channel: c.cfg.Name, Up: true, Addr: addr})
}

// runSession runs one established connection until it breaks or ctx is done, and reports how it ended:
// redial (closed in good order after answering: connect again at once) or unserved (the peer never proved
// alive: the backoff goes on growing).
func (c *Channel) runSession(ctx context.Context, conn net.Conn) (redial, unserved bool, err error) {
	s := &session{conn: conn, started: time.Now(), verified: c.hb == nil}
	s.lastInput = s.started
	pc := &packetConn{Conn: conn, c: c, s: s}
	s.ob = transport.NewOutbox(pc, c.cfg.SendBuffer)
	dec := c.in.decoder(pc)
	if hd, ok := dec.(*HTTPDecoder); ok {
		hd.Method = func() string { return c.headMethod(s) }
	}
	addr := conn.RemoteAddr().String()

	c.mu.Lock()
	if c.state == StateStopped {
		c.mu.Unlock()
		conn.Close()
		_ = s.ob.Close(context.Background())
		return false, false, ErrStopped
	}
	c.sess = s
	quiet := c.redialed
	s.quiet, c.redialed = quiet, false
	flushed := 0
	if s.verified {
		flushed = c.upLocked(s)
	} else {
		c.state = StateConnecting
	}
	c.mu.Unlock()
	if s.verified {
		c.announceUp(addr, flushed, quiet)
	}

	stop := context.AfterFunc(ctx, func() { conn.Close() })
	defer stop()
	var hbDone, hbStop chan struct{}
	if c.hb != nil {
		hbDone, hbStop = make(chan struct{}), make(chan struct{})
		go func() {
			defer close(hbDone)
			c.heartbeats(s, hbStop)
		}()
	}
	deliberate := false
	for {
		msg, derr := dec.Decode()
		if derr != nil {
			err = derr
			break
		}
		if c.inbound(ctx, s, msg) {
			deliberate = true
			break
		}
	}
	if hbStop != nil {
		close(hbStop)
		<-hbDone
	}
	return c.endSession(ctx, s, err, deliberate, addr)
}

// session adapts runSession to transport.Dialer.Run.
func (c *Channel) session(ctx context.Context, conn net.Conn) error {
	redial, unserved, err := c.runSession(ctx, conn)
	switch {
	case redial:
		return transport.RedialNow(err)
	case unserved:
		return transport.Unserved(err)
	}
	return err
}

// heartbeats writes the heartbeat at once and then every heartbeat_interval until stop.
func (c *Channel) heartbeats(s *session, stop <-chan struct{}) {
	t := time.NewTicker(c.cfg.HeartbeatInterval)
	defer t.Stop()
	for {
		c.mu.Lock()
		if c.sess == s && !s.closing && (len(s.inflight) == 0 || (s.verified && c.takesLocked(s, c.hb))) {
			m := &outMsg{b: c.hb.b, method: c.hb.method, idem: c.hb.idem, reply: c.hb.reply, internal: true}
			if err := c.enqueueLocked(s, m); err == nil && s.hbDue.IsZero() {
				s.hbDue = time.Now().Add(c.cfg.HeartbeatTimeout)
				c.armLocked(s, s.hbDue, false)
			}
		}
		c.mu.Unlock()
		select {
		case <-t.C:
		case <-stop:
			return
		}
	}
}

// headMethod is the method of the request the next response answers.
func (c *Channel) headMethod(s *session) string {
	c.mu.Lock()
	defer c.mu.Unlock()
	if len(s.inflight) > 0 && s.inflight[0].method != "" {
		return s.inflight[0].method
	}
	return "GET"
}

// inbound pairs a decoded message with the request it answers and delivers it. It returns true when the
// session must end after it (the server announced it closes).
func (c *Channel) inbound(ctx context.Context, s *session, payload any) (end bool) {
	c.m.msgsIn.Inc()
	if c.cfg.ShowMessages || (c.cfg.Protocol == Asymmetric && c.cfg.Inbound.ShowMessages) {
		c.log.WithField("message", showPayload(payload)).Info("message in")
	}
	c.mu.Lock()
	if !c.paired && c.cfg.HeartbeatReply != "" {
		if str, ok := payload.(string); ok && str == c.cfg.HeartbeatReply {
			c.mu.Unlock()
			return false
		}
	}
	var m *outMsg
	if len(s.inflight) > 0 {
		m = s.inflight[0]
		s.inflight[0] = nil
		if len(s.inflight) == 1 {
			s.inflight = s.inflight[:0] // keeps the array
		} else {
			s.inflight = s.inflight[1:]
		}
		m.answered = true
		s.answered++
		s.held -= int64(len(m.b) + messageOverhead)
		s.replyDue = time.Time{}
		if len(s.inflight) > 0 && c.cfg.ResponseTimeout > 0 {
			s.replyDue = time.Now().Add(c.cfg.ResponseTimeout)
			c.armLocked(s, s.replyDue, false)
		}
	}
	if c.in.protocol == HTTP {
		if r, ok := payload.(map[string]any); ok && r["close"] == true {
			end = true
			s.closing = true
			if s.answered == 1 {
				c.oneShot = true
			}
		} else if m != nil {
			c.oneShot = false
		}
	}
	if !end && len(c.pending) > 0 {
		c.flushLocked(s)
	}
	c.mu.Unlock()
	switch {
	case m != nil && m.internal:
		return end
	case m == nil && c.in.protocol == HTTP:
		c.m.dropped("unsolicited").Inc()
		c.warn("unsolicited", time.Second, c.log.WithField("message", showPayload(payload)),
			"http response that answers no request dropped")
		return end
	}
	var w *waiter
	if m != nil {
		w = m.w
	}
	c.deliver(ctx, payload, w)
	return end
}

// deliver runs the in transform and hands a message to its request (w, may be nil), to topic_in, or keeps it
// for Receive.
func (c *Channel) deliver(ctx context.Context, payload any, w *waiter) {
	if t := c.set.transform(c.cfg.Name, In); t != nil {
		out, keep, err := t.Apply(ctx, Message{Channel: c.cfg.Name, Payload: payload})
		if err != nil {
			c.m.dropped("transform_error").Inc()
			c.log.WithError(err).Warn("in transform failed; message dropped")
			if w != nil {
				w.send(reply{err: fmt.Errorf("channel %s: in transform: %w", c.cfg.Name, err)})
			}
			return
		}
		if !keep {
			c.m.dropped("transform").Inc()
			if w != nil {
				w.send(reply{err: fmt.Errorf("channel %s: %w", c.cfg.Name, ErrReplyDropped)})
			}
			return
		}
		payload = out.Payload
	}
	taken := w != nil && w.send(reply{payload: payload})
	if c.cfg.RedirectIn {
		c.set.bus.Publish(c.cfg.TopicIn, payload)
		return
	}
	if !taken {
		c.keepForReceive(payload)
	}
}

// keepForReceive queues a message no one took for Receive, within receive_buffer_bytes; beyond, it is
// dropped and counted.
func (c *Channel) keepForReceive(payload any) {
	size := bus.SizeOf(payload) + messageOverhead
	c.mu.Lock()
	if c.recvBytes+size > c.cfg.ReceiveBuffer {
		c.mu.Unlock()
		c.m.dropped("no_taker").Inc()
		c.warn("no_taker", time.Second, c.log.WithFields(logrus.Fields{"receive_buffer_bytes": c.cfg.ReceiveBuffer,
			"message": showPayload(payload)}),
			"inbound message dropped: no taker (no request waiting, redirect_in off, receive buffer full)")
		return
	}
	c.recv = append(c.recv, received{payload: payload, size: size})
	c.recvBytes += size
	if c.recvWake != nil {
		close(c.recvWake)
		c.recvWake = nil
	}
	c.mu.Unlock()
}

// failure is a request that will get no reply, with why.
type failure struct {
	m   *outMsg
	err error
}

// endSession closes a connection that ended and settles every message on it: a message not yet written goes
// back to the send buffer; a written one whose reply broke the framing or timed out fails with that reason;
// other unanswered ones are written again (idempotent http requests, up to maxTries connections) or fail with
// a clear error.
func (c *Channel) endSession(ctx context.Context, s *session, err error, deliberate bool, addr string) (bool, bool, error) {
	if s.readErr != nil {
		err = s.readErr
	}
	stopping := ctx.Err() != nil
	// A server that answered on this connection and then reset it closed with requests of ours still unread
	// (an http keep-alive close racing our pipeline): a close like any other, not a failure of the request at
	// the head; the unanswered requests are settled as after an orderly close.
	resetAfterAnswers := !stopping && !deliberate && s.answered > 0 && isReset(err)
	clean := deliberate || err == io.EOF || resetAfterAnswers
	switch {
	case stopping || deliberate:
		err = nil
	case err == io.EOF:
		err = errors.New("closed by peer")
	case resetAfterAnswers:
		err = errors.New("closed by peer (reset with requests unread)")
	}
	var reason error
	if err != nil {
		reason = fmt.Errorf("channel %s: %w", c.cfg.Name, err)
	}

	c.mu.Lock()
	if c.sess == s {
		c.sess = nil
	}
	s.closing = true
	c.mu.Unlock()
	s.conn.Close() // a blocked write returns at once
	cctx, cancel := context.WithTimeout(context.Background(), time.Second)
	_ = s.ob.Close(cctx)
	cancel()

	c.mu.Lock()
	written := s.written.Load()
	seen := make(map[*outMsg]bool, len(s.inflight)+len(s.queued))
	var msgs []*outMsg
	for _, list := range [][]*outMsg{s.inflight, s.queued} {
		for _, m := range list {
			if m != nil && !seen[m] && !m.answered {
				seen[m] = true
				msgs = append(msgs, m)
			}
		}
	}
	sort.Slice(msgs, func(i, j int) bool { return msgs[i].end < msgs[j].end })
	var requeue []*outMsg
	var failed []failure
	headDone := false
	for _, m := range msgs {
		unwritten := m.end > written
		switch {
		case stopping:
			if !m.internal {
				failed = append(failed, failure{m, fmt.Errorf("channel %s: %w", c.cfg.Name, ErrStopped)})
			}
		case unwritten && !m.internal:
			requeue = append(requeue, m)
		case unwritten || !m.reply:
		case !clean && !headDone:
			// The reply being read when the connection failed: its request gets the real reason.
			headDone = true
			if !m.internal {
				failed = append(failed, failure{m, reason})
			}
		case m.internal:
		case !c.paired:
			failed = append(failed, failure{m, c.downErr(reason)})
		case c.out.protocol == RESP:
			failed = append(failed, failure{m, fmt.Errorf("channel %s: %w: resp commands are not re-sent", c.cfg.Name, ErrDown)})
		case !m.idem:
			failed = append(failed, failure{m, fmt.Errorf("channel %s: %w: %s is not re-sent (not idempotent)", c.cfg.Name, ErrDown, m.method)})
		case m.tries+1 >= maxTries:
			failed = append(failed, failure{m, fmt.Errorf("channel %s: %w (written on %d connections)", c.cfg.Name, ErrDown, m.tries+1)})
		default:
			m.tries++
			requeue = append(requeue, m)
		}
	}
	if len(requeue) > 0 {
		for _, m := range requeue {
			m.end, m.answered = 0, false
			c.pendingBytes += int64(len(m.b))
		}
		c.pending = append(requeue, c.pending...)
	}
	c.gaugesLocked()
	// An http or resp server closing in good order after answering (Connection: close, HTTP/1.0), or an idle
	// connection after a while (keep-alive timeout): connect again at once, quietly.
	redial := !stopping && c.paired && clean && (s.answered > 0 || time.Since(s.started) >= c.stableAfter())
	unserved := !stopping && !redial && (!s.verified || (!s.gotInput && time.Since(s.started) < c.stableAfter()))
	if c.state != StateStopped {
		if redial {
			c.state = StateConnecting
		} else {
			c.state = StateDown
		}
	}
	if !redial {
		c.lastErr = reason
	}
	c.redialed = redial
	wasVerified := s.verified
	c.mu.Unlock()
	c.m.up.Set(0)

	for _, f := range failed {
		if f.m.w != nil {
			f.m.w.send(reply{err: f.err})
			continue
		}
		c.m.dropped("reply_lost").Inc()
		c.warn("reply_lost", time.Second, c.log.WithError(f.err).WithField("request", quoteBytes(f.m.b, 256)),
			"request from topic_out got no reply")
	}

	entry := c.log.WithFields(logrus.Fields{"addr": addr, "requeued": len(requeue)})
	switch {
	case stopping:
		entry.Info("channel down")
		c.set.emit(Event{Channel: c.cfg.Name, Addr: addr})
	case redial:
		entry.Debug("the server closed the connection after its response; connecting again")
	case !wasVerified:
		c.attemptFailed(reason, addr)
	case unserved:
		c.warn("down", failEventEvery, entry.WithError(reason), "channel down (the peer closed before sending anything)")
		c.set.emit(Event{Channel: c.cfg.Name, Addr: addr, Err: reason})
	default:
		if reason != nil {
			entry.WithError(reason).Warn("channel down")
		} else {
			entry.Info("channel down")
		}
		c.set.emit(Event{Channel: c.cfg.Name, Addr: addr, Err: reason})
	}
	return redial, unserved, reason
}

// downErr is the error of a request whose message went out on a connection that ended before its reply.
func (c *Channel) downErr(reason error) error {
	if reason == nil {
		return fmt.Errorf("channel %s: %w", c.cfg.Name, ErrDown)
	}
	return fmt.Errorf("channel %s: %w (%v)", c.cfg.Name, ErrDown, errors.Unwrap(reason))
}

// stableAfter is how long a connection on which nothing arrived must last to count as served (and an idle
// http or resp connection to be closed in good order).
func (c *Channel) stableAfter() time.Duration { return stableAfter }

const stableAfter = time.Second

// attemptFailed shows a failed connection attempt: state down with the error, and a channel.down event
// (the first after an up at once, then at most one per failEventEvery).
func (c *Channel) attemptFailed(err error, addr string) {
	c.mu.Lock()
	if c.state != StateStopped {
		c.state = StateDown
	}
	c.lastErr = err
	now := time.Now()
	emit := c.wasUp || c.failEvent.IsZero() || now.Sub(c.failEvent) >= failEventEvery
	if emit {
		c.wasUp, c.failEvent = false, now
	}
	c.mu.Unlock()
	if emit {
		c.set.emit(Event{Channel: c.cfg.Name, Addr: addr, Err: err, Failed: true})
	}
}

// dialFailed is the permanent channel's transport.Dialer.OnDialError.
func (c *Channel) dialFailed(err error, _ time.Duration) {
	c.attemptFailed(fmt.Errorf("channel %s: %w", c.cfg.Name, err), c.cfg.Addr())
}

func isTimeout(err error) bool {
	var ne net.Error
	return errors.As(err, &ne) && ne.Timeout()
}

func showPayload(p any) string {
	if s, ok := p.(string); ok {
		return quoteBytes([]byte(s), 1024)
	}
	return quoteBytes([]byte(fmt.Sprint(p)), 1024)
}

// packetConn counts bytes, logs raw packets (showpackets), applies the read deadlines (reply due, heartbeat,
// idle) and marks the peer as answered.
type packetConn struct {
	net.Conn
	c *Channel
	s *session
}

func (p *packetConn) Read(b []byte) (int, error) {
	c, s := p.c, p.s
	for {
		c.mu.Lock()
		if d := c.deadlineLocked(s); !d.IsZero() {
			c.armLocked(s, d, false)
		}
		c.mu.Unlock()
		n, err := p.Conn.Read(b)
		if n > 0 {
			c.m.bytesIn.Add(float64(n))
			if c.cfg.ShowPackets || c.cfg.Inbound.ShowPackets {
				c.log.WithField("packet", quoteBytes(b[:n], 4096)).Info("packet in")
			}
			c.mu.Lock()
			s.lastInput, s.gotInput, s.hbDue = time.Now(), true, time.Time{}
			up, flushed := false, 0
			if !s.verified && c.sess == s {
				up, flushed = true, c.upLocked(s)
			}
			c.mu.Unlock()
			if up {
				c.announceUp(p.RemoteAddr().String(), flushed, s.quiet)
			}
			return n, err
		}
		if err != nil && isTimeout(err) {
			c.mu.Lock()
			why := c.overdueLocked(s, time.Now())
			if why == nil {
				c.armLocked(s, c.deadlineLocked(s), true)
			}
			c.mu.Unlock()
			if why == nil {
				continue // an early wake-up: nothing is due yet
			}
			s.readErr = why
			return 0, why
		}
		return n, err
	}
}

func (p *packetConn) Write(b []byte) (int, error) {
	n, err := p.Conn.Write(b)
	if n > 0 {
		p.s.written.Add(int64(n))
		p.c.m.bytesOut.Add(float64(n))
		if p.c.cfg.ShowPackets || p.c.cfg.Outbound.ShowPackets {
			p.c.log.WithField("packet", quoteBytes(b[:n], 4096)).Info("packet out")
		}
	}
	return n, err
}

// runOnDemand is a non-permanent channel's connection: made when a message is sent, used until it ends,
// made again while messages wait, never restored otherwise.
func (c *Channel) runOnDemand(ctx context.Context) {
	for {
		conn, err := c.dialer.Dial(ctx)
		if err != nil {
			c.failPending(fmt.Errorf("channel %s: %w", c.cfg.Name, err), "connect_failed", "connect failed; buffered messages dropped")
			return
		}
		_, unserved, serr := c.runSession(ctx, conn)
		conn.Close()
		c.mu.Lock()
		if ctx.Err() != nil || c.state == StateStopped || len(c.pending) == 0 {
			c.connecting = false
			if c.state == StateConnecting {
				c.state = StateDown // closed in good order, and nothing to send: idle until the next message
			}
			c.mu.Unlock()
			return
		}
		c.mu.Unlock()
		if unserved {
			c.failPending(serr, "connect_failed", "the server closed before answering; buffered messages dropped")
			return
		}
	}
}

// failPending ends an on-demand connection attempt: the buffered messages are dropped and counted, their
// requests fail with err, the state is down and a (rate-limited) channel.down event fires.
func (c *Channel) failPending(err error, reason, msg string) {
	c.mu.Lock()
	drop := c.pending
	c.pending, c.pendingBytes = nil, 0
	c.connecting = false
	c.gaugesLocked()
	c.mu.Unlock()
	c.attemptFailed(err, c.cfg.Addr())
	c.m.dropped(reason).Add(float64(len(drop)))
	for _, m := range drop {
		if m.w != nil {
			m.w.send(reply{err: err})
		}
	}
	c.log.WithError(err).WithField("dropped", len(drop)).Warn(msg)
}

// run keeps a permanent channel connected.
func (c *Channel) run(ctx context.Context) {
	c.mu.Lock()
	if c.state != StateStopped {
		c.state = StateConnecting
	}
	c.mu.Unlock()
	_ = c.dialer.Run(ctx, c.session)
}

// isReset reports whether err is the peer resetting the connection (or our write meeting a reset).
func isReset(err error) bool {
	return errors.Is(err, syscall.ECONNRESET) || errors.Is(err, syscall.EPIPE)
}
