package socket

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"net"
	"os"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/sirupsen/logrus"

	"github.com/switchboard/switchboard/engine/transport"
	"github.com/switchboard/switchboard/internal/uuid"
)

// Conn is one client connection. Its exported methods are safe from any goroutine (scripts call them
// from actions that run concurrently).
type Conn struct {
	srv         *Server
	id          string
	nc          net.Conn
	out         *transport.Outbox
	log         *logrus.Entry
	remoteIP    string
	remotePort  int
	connectedAt time.Time

	ctx    context.Context // cancelled when the connection goes away
	cancel context.CancelFunc

	// roomMu orders the connection's joins and leaves: the room store and the rooms list change together.
	roomMu       sync.Mutex
	mu           sync.Mutex
	params       Params
	rooms        []string
	totalActions int64
	pending      int
	count        int64  // requests received (messageCount)
	idHi, idLo   uint64 // random base of the messageIds made up for this connection's requests

	actions   sync.WaitGroup
	closed    atomic.Bool // no more writes: goodbye sent or connection aborted
	slow      atomic.Bool // dropped as a slow reader (counted once)
	abortOnce sync.Once
	reason    atomic.Value // string: why the connection ended (for logs and metrics)

	// rd frames requests; only the goroutine holding the reading role uses it (see read).
	rd *transport.Reader
	// inlineSince is when (Server.clock) the reader started the action it runs inline, 0 when it runs
	// none, handedOff once the stall watch gave the reading role to another goroutine.
	inlineSince atomic.Int64
	lastInline  int64 // the reader's last inlineSince
	inlineIdx   int   // position in stallWatch.inline (guarded by its mutex)

	direct *transport.DirectWriter // nil: every write is queued (TLS, non-unix)

	// spare is a reply buffer the socket took whole, kept for the next action's result (ReplyBuffer);
	// guarded by mu, at most maxSpareReply bytes of capacity.
	spare []byte
}

// maxSpareReply bounds the reply buffer a connection keeps between requests (Conn.ReplyBuffer): a bigger
// reply's buffer is left to the collector, so an idle connection holds at most this much for it.
const maxSpareReply = 1024

// handedOff marks Conn.inlineSince when the reading role moved to another goroutine.
const handedOff = -1

func (s *Server) newConn(nc net.Conn) *Conn {
	c := &Conn{srv: s, id: uuid.New(), nc: nc, connectedAt: s.now(), idHi: rand.Uint64(), idLo: rand.Uint64()}
	if a, ok := nc.RemoteAddr().(*net.TCPAddr); ok {
		c.remoteIP, c.remotePort = a.IP.String(), a.Port
	} else if nc.RemoteAddr() != nil {
		host, _, _ := net.SplitHostPort(nc.RemoteAddr().String())
		c.remoteIP = host
	}
	c.ctx, c.cancel = context.WithCancel(context.Background())
	c.log = s.log.WithField("conn", c.id)
	c.direct = transport.NewDirectWriter(nc)
	return c
}

// ID is the connection's id (also its fingerprint), a UUID.
func (c *Conn) ID() string { return c.id }

// RemoteIP is the peer's address.
func (c *Conn) RemoteIP() string { return c.remoteIP }

// RemotePort is the peer's port.
func (c *Conn) RemotePort() int { return c.remotePort }

// ConnectedAt is when the connection was accepted.
func (c *Conn) ConnectedAt() time.Time { return c.connectedAt }

// Context is cancelled when the connection goes away.
func (c *Conn) Context() context.Context { return c.ctx }

// Log is the connection's logger (fields part=socket conn=<id>).
func (c *Conn) Log() *logrus.Entry { return c.log }

// Params returns a copy of the sticky params.
func (c *Conn) Params() Params {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.params.Clone()
}

// SetParam sets a sticky param (nil deletes it).
func (c *Conn) SetParam(key string, v any) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if v == nil {
		c.params.Delete(key)
		return
	}
	c.params.Set(key, v)
}

// Rooms lists the rooms the connection is in, in join order.
func (c *Conn) Rooms() []string {
	c.mu.Lock()
	defer c.mu.Unlock()
	return append([]string(nil), c.rooms...)
}

// Send writes v as one JSON line (an Object or map renders as an object). It never blocks; a peer whose
// outbound queue is full is disconnected.
func (c *Conn) Send(v any) error {
	b, err := appendJSON(make([]byte, 0, 128), v, 0)
	if err != nil {
		return fmt.Errorf("socket: send: %w", err)
	}
	return c.write(append(b, crlf...))
}

// SendRaw writes bytes as they are (no JSON, no delimiter).
func (c *Conn) SendRaw(p []byte) error { return c.write(p) }

// Close says goodbye and closes the connection once the reader notices.
func (c *Conn) Close() {
	c.reason.CompareAndSwap(nil, "closed by script")
	c.sendGoodbye()
	c.interruptRead()
}

// write sends p: at once on this goroutine when nothing is queued and the socket takes it all (a plain
// TCP connection), else through the outbox; a full queue disconnects the peer (it does not read what we
// send). Writing directly spares the outbox's writer goroutine a wake-up per reply (docs/benchmarks.md);
// it never blocks: what the socket does not take at once is queued, in order, behind it.
func (c *Conn) write(p []byte) error {
	_, err := c.send(p)
	return err
}

// send is write; taken says the socket took p whole on this goroutine, so nothing refers to p any more
// (a queued p belongs to the outbox until written).
func (c *Conn) send(p []byte) (taken bool, err error) {
	if c.closed.Load() {
		return false, net.ErrClosed
	}
	refused := 0 // what the outbox refused (the rest of p the socket did not take)
	taken, err = c.direct.Send(c.out, p, func(rest []byte) error {
		refused = len(rest)
		return c.out.Send(rest)
	})
	if err == nil {
		return taken, nil
	}
	if errors.Is(err, transport.ErrOutboxFull) {
		c.dropSlowReader(refused)
		return false, fmt.Errorf("socket: conn %s: %w", c.id, err)
	}
	return false, err
}

// ReplyBuffer returns an empty buffer for an action to encode its result in (an EncodedObject: the reply
// is then built in the same buffer): the one the connection's previous reply went out in when the socket
// took it whole, else nil (append allocates). A nil Conn (an action run outside a server) returns nil.
func (c *Conn) ReplyBuffer() []byte {
	if c == nil {
		return nil
	}
	c.mu.Lock()
	b := c.spare
	c.spare = nil
	c.mu.Unlock()
	return b[:0]
}

// keepReply keeps a written reply's buffer for ReplyBuffer (one at most, up to maxSpareReply bytes).
func (c *Conn) keepReply(b []byte) {
	if cap(b) > maxSpareReply {
		return
	}
	c.mu.Lock()
	if c.spare == nil {
		c.spare = b[:0]
	}
	c.mu.Unlock()
}

// dropSlowReader disconnects a client that does not read what it is sent (its outbound queue is at
// socket.outbound_queue messages or socket.max_outbound_bytes bytes), logging and counting it once
// (switchboard_socket_slow_readers_total) however many writes meet the full queue.
func (c *Conn) dropSlowReader(refused int) {
	if !c.slow.CompareAndSwap(false, true) {
		return
	}
	c.srv.metrics.slow.Inc()
	c.log.WithFields(logrus.Fields{"queued_messages": c.out.Pending(), "queued_bytes": c.out.PendingBytes(),
		"refused_bytes": refused, "max_outbound_bytes": c.srv.cfg.MaxOutboundBytes, "outbound_queue": c.srv.cfg.OutboundQueue}).
		Warn("client is not reading: outbound queue full, disconnecting")
	c.abort("outbound queue full")
}

// abort closes the connection at once (no goodbye) and cancels its actions.
func (c *Conn) abort(reason string) {
	c.abortOnce.Do(func() {
		c.reason.CompareAndSwap(nil, reason)
		c.closed.Store(true)
		c.cancel()
		_ = c.nc.Close()
	})
}

// interruptRead unblocks the reader (shutdown, Close).
func (c *Conn) interruptRead() { _ = c.nc.SetReadDeadline(time.Unix(1, 0)) }

func (c *Conn) sendGoodbye() {
	if c.closed.Swap(true) {
		return
	}
	_, _ = c.direct.Send(c.out, apiLine("status", c.srv.cfg.Goodbye), c.out.Send)
}

// Errors that end the read loop.
var (
	errBreak    = errors.New("telnet break")
	errShutdown = errors.New("server shutting down")
	errIdle     = errors.New("idle timeout")
	errQuit     = errors.New("quit")
	// errHandedOff ends a read loop whose inline action stalled: another goroutine reads now.
	errHandedOff = errors.New("reading handed off")
)

// ctrlC is what telnet sends for Ctrl-C (IAC IP IAC DO TIMING-MARK); Ctrl-D is a lone 0x04.
var ctrlC = []byte{0xff, 0xf4, 0xff, 0xfd, 0x06}

// connReader feeds the framing reader: it checks each chunk for telnet break characters (the reference
// checks whole chunks, not lines), applies the idle timeout and notices shutdown.
type connReader struct {
	c    *Conn
	idle time.Duration
}

func (r connReader) Read(p []byte) (int, error) {
	s := r.c.srv
	if r.idle > 0 {
		_ = r.c.nc.SetReadDeadline(time.Now().Add(r.idle))
	}
	if s.shutting.Load() || r.c.closed.Load() {
		return 0, errShutdown
	}
	n, err := r.c.nc.Read(p)
	if n == 1 && p[0] == 0x04 || n == len(ctrlC) && bytes.Equal(p[:n], ctrlC) {
		return 0, errBreak
	}
	if err != nil && n == 0 {
		var ne net.Error
		if errors.As(err, &ne) && ne.Timeout() {
			if s.shutting.Load() || r.c.closed.Load() {
				return 0, errShutdown
			}
			if r.idle > 0 {
				return 0, errIdle
			}
		}
	}
	return n, err
}

// serve runs the connection until it ends (its goroutine may hand reading to another one on the way).
func (c *Conn) serve() {
	s := c.srv
	s.metrics.accepted.Inc()
	s.metrics.open.Inc()
	defer s.metrics.open.Dec()
	c.out = transport.NewBoundedOutbox(c.nc, transport.OutboxLimits{Messages: s.cfg.OutboundQueue, Bytes: s.cfg.MaxOutboundBytes})
	c.log.WithField("remote", c.nc.RemoteAddr().String()).Debug("connection open")

	if s.cfg.Welcome != "" {
		_ = c.write(apiLine("welcome", s.cfg.Welcome))
	}
	if s.opts.Hooks != nil {
		s.opts.Hooks.Connect(c.ctx, c)
	}

	maxLine := s.cfg.MaxBuffer
	if s.cfg.MaxDataLength > maxLine {
		maxLine = s.cfg.MaxDataLength
	}
	c.rd = transport.NewReader(connReader{c: c, idle: s.cfg.IdleTimeout}, s.delim, maxLine)
	c.read()
}

// read reads and handles requests until the connection ends, then finishes it; or until the action it
// was running inline stalled and the stall watch started another goroutine on read (handOver).
func (c *Conn) read() {
	var end error
	for end == nil {
		msg, err := c.rd.Next()
		switch {
		case err == nil:
			end = c.handleMessage(msg)
		case errors.Is(err, transport.ErrTooLong):
			c.tooLong(-1)
		default:
			end = err
		}
	}
	if end == errHandedOff {
		return
	}
	c.finish(end)
	c.srv.forget(c)
}

// handOver gives the reading role to another goroutine (an action worker) if the reader is still in the
// inline action it started at since (called by the stall watch).
func (c *Conn) handOver(since int64) bool {
	if !c.inlineSince.CompareAndSwap(since, handedOff) {
		return false
	}
	c.srv.metrics.handoffs.Inc()
	c.srv.workers.run(c.read) // an idle action worker's stack is already grown for the interpreter
	return true
}

// handleMessage splits off bare CRs (with the default "\n" delimiter a CR also ends a line, as in the
// reference) and handles each line. Only the last line of a message may run its action inline.
func (c *Conn) handleMessage(msg []byte) error {
	if c.srv.splitCR && bytes.IndexByte(msg, '\r') >= 0 {
		parts := bytes.Split(msg, []byte{'\r'})
		for i, part := range parts {
			if err := c.handleLine(part, i == len(parts)-1); err != nil {
				return err
			}
		}
		return nil
	}
	return c.handleLine(msg, true)
}

// tooLong answers a line over max_data_length (n = its length) or over the hard buffer cap (n < 0).
func (c *Conn) tooLong(n int) {
	s := c.srv
	s.metrics.errors.WithLabelValues("data_too_long").Inc()
	id, count := c.nextRequest()
	var msg string
	if n >= 0 {
		msg = fmt.Sprintf("data length is too big (%d received/%d max)", n, s.cfg.MaxDataLength)
	} else {
		limit := s.cfg.MaxBuffer
		if s.cfg.MaxDataLength > 0 && s.cfg.MaxDataLength < limit {
			limit = s.cfg.MaxDataLength
		}
		msg = fmt.Sprintf("data length is too big (more than %d received/%d max)", max(limit, s.cfg.MaxBuffer), limit)
	}
	c.log.WithField("limit", s.cfg.MaxDataLength).Debug(msg)
	_ = c.write(statusErrorReply(msg, id, count))
}

// nextRequest counts a request and picks its messageId: the sticky messageId param, else one made from
// the connection's random id base and the request's number.
func (c *Conn) nextRequest() (msgID, int64) {
	c.mu.Lock()
	c.count++
	count := c.count
	id := msgID{s: c.params.String("messageId")}
	c.mu.Unlock()
	if id.s == "" {
		id.hi, id.lo = c.idHi, c.idLo+uint64(count)
	}
	return id, count
}

// handleLine dispatches one complete line. last says no other line of the same message follows it.
func (c *Conn) handleLine(raw []byte, last bool) error {
	if len(raw) == 0 {
		return nil
	}
	s := c.srv
	if s.cfg.MaxDataLength > 0 && len(raw) > s.cfg.MaxDataLength {
		c.tooLong(len(raw))
		return nil
	}
	l := ParseLine(string(raw))
	id, count := c.nextRequest()
	switch l.Kind {
	case LineVerb:
		return c.builtinVerb(l, id, count)
	case LineJSON:
		c.mu.Lock()
		applyJSONLine(&c.params, l.JSON)
		if mid := c.params.String("messageId"); mid != "" {
			id = msgID{s: mid}
		}
		p := c.params.Clone()
		c.mu.Unlock()
		return c.startAction(p, id, count, last)
	case LinePlain:
		if s.opts.Verbs != nil {
			if v, ok := s.opts.Verbs.LookupVerb(l.Verb); ok {
				c.customVerb(v, l, id, count)
				return nil
			}
		}
		c.mu.Lock()
		if cur, _ := c.params.Get("action"); !isString(cur, l.Verb) { // clients mostly repeat an action
			c.params.Set("action", l.Verb)
		}
		p := c.params.Clone()
		c.mu.Unlock()
		return c.startAction(p, id, count, last)
	}
	return nil
}

// applyJSONLine applies a JSON request line to the sticky params: "params" (an object) replaces them all,
// a truthy "action" sets the action.
func applyJSONLine(params *Params, v any) {
	obj, ok := v.(Object)
	if !ok {
		return
	}
	if p, ok := obj.Get("params"); ok {
		params.Reset()
		if po, ok := p.(Object); ok {
			params.Replace(po) // decodeJSON left no duplicate keys
		}
	}
	if a, ok := obj.Get("action"); ok && truthy(a) {
		params.Set("action", a)
	}
}

func isString(v any, s string) bool {
	x, ok := v.(string)
	return ok && x == s
}

// truthy is JavaScript's truthiness for JSON values.
func truthy(v any) bool {
	switch x := v.(type) {
	case nil:
		return false
	case bool:
		return x
	case string:
		return x != ""
	case json.Number:
		f, err := strconv.ParseFloat(string(x), 64)
		return err != nil || f != 0
	}
	return true
}

const (
	msgUnknownAction = "unknown action or invalid apiVersion"
	msgTooMany       = "you have too many pending requests"
	msgShuttingDown  = "the server is shutting down"
)

// startAction checks the limits and runs the action. Actions run concurrently and reply in completion
// order, as in the reference; but when nothing else is pending on the connection and no other request
// is buffered (last: none later in the same message), the reader runs the action itself: most requests
// then cost no goroutine hand-off. An inline action that takes longer than a moment (the stall watch,
// inline.go) hands the reading role to another goroutine, so later requests are not held up behind it.
func (c *Conn) startAction(p Params, id msgID, count int64, last bool) error {
	s := c.srv
	name, _ := p.Get("action")
	nameStr, _ := name.(string)
	var a Action
	found := false
	if nameStr != "" {
		a, found = s.opts.Actions.Lookup(nameStr)
	}
	inline := last && c.rd != nil && c.rd.Buffered() == 0
	shutting := s.shutting.Load() // read once: an action counted as pending must run
	c.mu.Lock()
	c.totalActions++
	over := c.pending >= s.cfg.SimultaneousActions
	inline = inline && c.pending == 0
	if !over && found && !shutting {
		c.pending++
	}
	c.mu.Unlock()
	switch {
	case shutting:
		s.metrics.errors.WithLabelValues("shutting_down").Inc()
		_ = c.write(errorReply(msgShuttingDown, id, count))
		return nil
	case over:
		s.metrics.errors.WithLabelValues("too_many_pending").Inc()
		_ = c.write(errorReply(msgTooMany, id, count))
		return nil
	case !found:
		s.metrics.requests.WithLabelValues("action", "unknown").Inc()
		s.metrics.errors.WithLabelValues("unknown_action").Inc()
		_ = c.write(errorReply(msgUnknownAction, id, count))
		return nil
	}
	s.metrics.pending.Inc()
	c.actions.Add(1)
	if !inline {
		c.runOnWorker(a, nameStr, p, id, count)
		return nil
	}
	since := s.inlineStart(c)
	if since <= c.lastInline { // unique per connection, so a stale hand-over cannot match a later action
		since = c.lastInline + 1
	}
	c.lastInline = since
	c.inlineSince.Store(since)
	reply := c.runAction(a, nameStr, p, id, count)
	s.inlineEnd(c) // before the action stops counting as pending: only then may the reader start another
	c.answer(reply)
	if !c.inlineSince.CompareAndSwap(since, 0) {
		return errHandedOff
	}
	return nil
}

// runOnWorker runs the action on an action worker (a function of its own, so the inline path does not
// pay for the closure's captures).
func (c *Conn) runOnWorker(a Action, name string, p Params, id msgID, count int64) {
	c.srv.workers.run(func() { c.answer(c.runAction(a, name, p, id, count)) })
}

// answer ends an action: it stops counting as pending before its reply is sent, so a client that waits
// for its replies before sending more never meets the simultaneous_actions limit (a reply written on
// this goroutine can reach the client at once); then the reply goes out, and only then is the action
// done for Shutdown and finish.
func (c *Conn) answer(reply []byte) {
	c.mu.Lock()
	c.pending--
	c.mu.Unlock()
	c.srv.metrics.pending.Dec()
	if taken, _ := c.send(reply); taken {
		c.keepReply(reply)
	}
	c.actions.Done()
}

// runAction runs an action and returns its reply (or error reply).
func (c *Conn) runAction(a Action, name string, p Params, id msgID, count int64) []byte {
	s := c.srv
	start := time.Now()
	info := a.Info()
	am := s.metrics.action(name)
	am.requests.Inc()
	var reply []byte
	var err error
	if !info.ValidatesInputs {
		err = ApplyInputs(&p, info.Inputs, nil)
	}
	if err != nil {
		s.metrics.errors.WithLabelValues("invalid_params").Inc()
		reply = errorReply(err.Error(), id, count)
	} else {
		timeout := info.Timeout
		if timeout <= 0 {
			timeout = s.cfg.ActionTimeout
		}
		var res any
		if info.EnforcesTimeout {
			// No timer per request: the action limits itself to c.TimeLimit(info).
			res, err = a.Run(c.ctx, c, p)
		} else {
			ctx, cancel := context.WithTimeout(c.ctx, timeout)
			res, err = a.Run(ctx, c, p)
			cancel()
		}
		am.latency.Observe(time.Since(start).Seconds())
		if err == nil {
			reply, err = actionReply(res, id, count)
			if err != nil {
				c.log.WithError(err).WithField("action", name).Warn("action result cannot be encoded")
				err = fmt.Errorf("the action's result cannot be sent: %w", err)
			}
		}
		if err != nil {
			reply = errorReply(c.actionError(name, timeout, err), id, count)
		}
	}
	return reply
}

// TimeLimit is the time limit of an action on this connection: its own Timeout, else the server's
// socket.action_timeout. An action that enforces its own limit (ActionInfo.EnforcesTimeout) asks here.
func (c *Conn) TimeLimit(info ActionInfo) time.Duration {
	if info.Timeout > 0 {
		return info.Timeout
	}
	if c == nil { // an action run outside a server (tests, benchmarks)
		return DefaultConfig().ActionTimeout
	}
	return c.srv.cfg.ActionTimeout
}

// actionError logs a failed action and returns what the client is told.
func (c *Conn) actionError(name string, timeout time.Duration, err error) string {
	s := c.srv
	if errors.Is(err, ErrTimeout) || errors.Is(err, context.DeadlineExceeded) {
		s.metrics.errors.WithLabelValues("action_timeout").Inc()
		c.log.WithField("action", name).WithError(err).Warn("action timed out")
		return fmt.Sprintf("the action %s did not finish within its time limit of %v", name, timeout)
	}
	s.metrics.errors.WithLabelValues("action_error").Inc()
	c.log.WithField("action", name).WithError(err).Info("action failed")
	var pub interface{ PublicMessage() string }
	if errors.As(err, &pub) {
		return pub.PublicMessage()
	}
	return err.Error()
}

func (c *Conn) customVerb(v Verb, l Line, id msgID, count int64) {
	s := c.srv
	s.metrics.verb(l.Verb).Inc()
	ctx, cancel := context.WithTimeout(c.ctx, s.cfg.ActionTimeout)
	data, err := v.Run(ctx, c, l.Rest)
	cancel()
	if err != nil {
		_ = c.write(errorReply(c.actionError(l.Verb, s.cfg.ActionTimeout, err), id, count))
		return
	}
	_ = c.write(okReply(data, data != nil, id, count))
}

// finish ends the connection according to why the read loop stopped.
func (c *Conn) finish(end error) {
	s := c.srv
	reason := "closed by client"
	switch {
	case errors.Is(end, errQuit):
		// The reference destroys the connection and drops replies still pending; here the requests sent
		// before quit are answered first (each is bounded by its action's time limit), then goodbye.
		reason = "quit"
		c.waitActions(c.ctx)
		c.cancel()
		c.sendGoodbye()
	case errors.Is(end, errBreak):
		reason = "telnet break"
		c.cancel()
		c.sendGoodbye()
	case errors.Is(end, errIdle):
		reason = "idle timeout"
		c.log.WithField("idle_timeout", s.cfg.IdleTimeout).Info("closing idle connection")
		c.cancel()
		c.sendGoodbye()
	case errors.Is(end, errShutdown):
		reason = "shutdown"
		if !c.closed.Load() {
			c.waitActions(s.drainCtx)
			c.sendGoodbye()
		}
	case errors.Is(end, io.EOF), errors.Is(end, io.ErrUnexpectedEOF):
		// The peer half-closed: replies to what it sent still go out, no goodbye (as the reference).
		c.waitActions(s.drainCtx)
	default:
		if !c.closed.Load() && !errors.Is(end, net.ErrClosed) && !errors.Is(end, os.ErrDeadlineExceeded) {
			c.log.WithError(end).Debug("read error")
		}
		reason = "read error"
	}
	c.reason.CompareAndSwap(nil, reason)
	c.cancel()
	c.actions.Wait()
	c.closed.Store(true)

	flushCtx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	_ = c.out.Close(flushCtx)
	cancel()
	if tc, ok := c.nc.(interface{ CloseWrite() error }); ok {
		_ = tc.CloseWrite()
	}
	_ = c.nc.Close()

	c.leaveAll(context.Background())
	if s.opts.Hooks != nil {
		s.opts.Hooks.Disconnect(context.Background(), c)
	}
	why, _ := c.reason.Load().(string)
	s.metrics.closed.WithLabelValues(why).Inc()
	c.log.WithField("reason", why).Debug("connection closed")
}

// waitActions waits for pending actions (their replies are still sent) until ctx ends.
func (c *Conn) waitActions(ctx context.Context) {
	done := make(chan struct{})
	go func() { c.actions.Wait(); close(done) }()
	select {
	case <-done:
	case <-ctx.Done():
	}
}
