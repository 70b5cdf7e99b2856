package socket

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/sirupsen/logrus"

	"github.com/switchboard/switchboard/engine/transport"
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

	mu           sync.Mutex
	params       Params
	rooms        []string
	totalActions int64
	pending      int
	count        int64 // requests received (messageCount)

	actions   sync.WaitGroup
	closed    atomic.Bool // no more writes: goodbye sent or connection aborted
	abortOnce sync.Once
	reason    atomic.Value // string: why the connection ended (for logs and metrics)
}

func (s *Server) newConn(nc net.Conn) *Conn {
	c := &Conn{srv: s, id: newID(), nc: nc, connectedAt: s.now()}
	if a, ok := nc.RemoteAddr().(*net.TCPAddr); ok {
		c.remoteIP, c.remotePort = a.IP.String(), a.Port
	} else if nc.RemoteAddr() != nil {
		host, _, _ := net.SplitHostPort(nc.RemoteAddr().String())
		c.remoteIP = host
	}
	c.ctx, c.cancel = context.WithCancel(context.Background())
	c.log = s.log.WithField("conn", c.id)
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

// Join adds the connection to a room (errors: room does not exist, already in this room).
func (c *Conn) Join(room string) error {
	if err := c.srv.rooms.join(c, room, c.srv.now()); err != nil {
		return err
	}
	c.mu.Lock()
	c.rooms = append(c.rooms, room)
	c.mu.Unlock()
	return nil
}

// Leave removes the connection from a room.
func (c *Conn) Leave(room string) error {
	if err := c.srv.rooms.leave(c, room); err != nil {
		return err
	}
	c.mu.Lock()
	for i, r := range c.rooms {
		if r == room {
			c.rooms = append(c.rooms[:i:i], c.rooms[i+1:]...)
			break
		}
	}
	c.mu.Unlock()
	return nil
}

// Say sends text to every member of room (the connection must be in it), through the say hook.
func (c *Conn) Say(ctx context.Context, room, text string) error {
	if !c.srv.rooms.isMember(c, room) {
		return notIn(room)
	}
	out, keep, err := c.srv.sayHook(ctx, c, room, text)
	if err != nil {
		return err
	}
	if keep {
		c.srv.Broadcast(room, c.id, out)
	}
	return nil
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

// write queues p; a full queue disconnects the peer (it does not read what we send).
func (c *Conn) write(p []byte) error {
	if c.closed.Load() {
		return net.ErrClosed
	}
	err := c.out.Send(p)
	if err == nil {
		return nil
	}
	if errors.Is(err, transport.ErrOutboxFull) {
		c.srv.metrics.slow.Inc()
		c.log.WithField("queued", c.srv.cfg.OutboundQueue).Warn("client is not reading: outbound queue full, disconnecting")
		c.abort("outbound queue full")
		return fmt.Errorf("socket: conn %s: %w", c.id, err)
	}
	return err
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
	_ = c.out.Send(apiLine("status", c.srv.cfg.Goodbye))
}

// Errors that end the read loop.
var (
	errBreak    = errors.New("telnet break")
	errShutdown = errors.New("server shutting down")
	errIdle     = errors.New("idle timeout")
	errQuit     = errors.New("quit")
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

// serve runs the connection until it ends.
func (c *Conn) serve() {
	s := c.srv
	s.metrics.accepted.Inc()
	s.metrics.open.Inc()
	defer s.metrics.open.Dec()
	c.out = transport.NewOutbox(c.nc, s.cfg.OutboundQueue)
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
	rd := transport.NewReader(connReader{c: c, idle: s.cfg.IdleTimeout}, s.delim, maxLine)
	var end error
	for end == nil {
		msg, err := rd.Next()
		switch {
		case err == nil:
			end = c.handleMessage(msg)
		case errors.Is(err, transport.ErrTooLong):
			c.tooLong(-1)
		default:
			end = err
		}
	}
	c.finish(end)
}

// handleMessage splits off bare CRs (with the default "\n" delimiter a CR also ends a line, as in the
// reference) and handles each line.
func (c *Conn) handleMessage(msg []byte) error {
	if c.srv.splitCR && bytes.IndexByte(msg, '\r') >= 0 {
		for _, part := range bytes.Split(msg, []byte{'\r'}) {
			if err := c.handleLine(part); err != nil {
				return err
			}
		}
		return nil
	}
	return c.handleLine(msg)
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

// nextRequest counts a request and picks its messageId: the sticky messageId param, else a new UUID.
func (c *Conn) nextRequest() (string, int64) {
	c.mu.Lock()
	c.count++
	count := c.count
	id := c.params.String("messageId")
	c.mu.Unlock()
	if id == "" {
		id = newID()
	}
	return id, count
}

// handleLine dispatches one complete line.
func (c *Conn) handleLine(raw []byte) error {
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
		if obj, ok := l.JSON.(Object); ok {
			if p, ok := obj.Get("params"); ok {
				c.params.Reset()
				if po, ok := p.(Object); ok {
					for _, f := range po {
						c.params.Set(f.Key, f.Value)
					}
				}
			}
			if a, ok := obj.Get("action"); ok && truthy(a) {
				c.params.Set("action", a)
			}
		}
		if mid := c.params.String("messageId"); mid != "" {
			id = mid
		}
		p := c.params.Clone()
		c.mu.Unlock()
		c.startAction(p, id, count)
	case LinePlain:
		if s.opts.Verbs != nil {
			if v, ok := s.opts.Verbs.LookupVerb(l.Verb); ok {
				c.customVerb(v, l, id, count)
				return nil
			}
		}
		c.mu.Lock()
		c.params.Set("action", l.Verb)
		p := c.params.Clone()
		c.mu.Unlock()
		c.startAction(p, id, count)
	}
	return nil
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

// startAction checks the limits and runs the action in its own goroutine: replies come back in
// completion order, as in the reference.
func (c *Conn) startAction(p Params, id string, count int64) {
	s := c.srv
	name, _ := p.Get("action")
	nameStr, _ := name.(string)
	var a Action
	found := false
	if nameStr != "" {
		a, found = s.opts.Actions.Lookup(nameStr)
	}
	c.mu.Lock()
	c.totalActions++
	over := c.pending >= s.cfg.SimultaneousActions
	if !over && found && !s.shutting.Load() {
		c.pending++
	}
	c.mu.Unlock()
	switch {
	case s.shutting.Load():
		s.metrics.errors.WithLabelValues("shutting_down").Inc()
		_ = c.write(errorReply(msgShuttingDown, id, count))
		return
	case over:
		s.metrics.errors.WithLabelValues("too_many_pending").Inc()
		_ = c.write(errorReply(msgTooMany, id, count))
		return
	case !found:
		s.metrics.requests.WithLabelValues("action", "unknown").Inc()
		s.metrics.errors.WithLabelValues("unknown_action").Inc()
		_ = c.write(errorReply(msgUnknownAction, id, count))
		return
	}
	s.metrics.pending.Inc()
	c.actions.Add(1)
	s.workers.run(func() { c.runAction(a, nameStr, p, id, count) })
}

func (c *Conn) runAction(a Action, name string, p Params, id string, count int64) {
	s := c.srv
	start := time.Now()
	defer func() {
		c.mu.Lock()
		c.pending--
		c.mu.Unlock()
		s.metrics.pending.Dec()
		c.actions.Done()
	}()
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
			// No timer per request: the action limits itself to TimeLimit(ctx).
			res, err = a.Run(context.WithValue(c.ctx, timeLimitKey{}, timeout), c, p)
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
	_ = c.write(reply)
}

type timeLimitKey struct{}

// TimeLimit is the time limit the server gives an action that enforces its own (ActionInfo.EnforcesTimeout).
func TimeLimit(ctx context.Context) (time.Duration, bool) {
	d, ok := ctx.Value(timeLimitKey{}).(time.Duration)
	return d, ok
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

// ApplyInputs fills defaults and checks required inputs and validators in declaration order, as the
// reference does; the first failure is returned. validate(i, v) checks a present value of inputs[i]
// (nil: use Input.Validate).
func ApplyInputs(p *Params, inputs []Input, validate func(i int, v any) error) error {
	for i, in := range inputs {
		v, ok := p.Get(in.Name)
		if !ok && in.Default != nil {
			p.Set(in.Name, in.Default)
			v, ok = in.Default, true
		}
		if !ok {
			if in.Required {
				return fmt.Errorf("%s is a required parameter for this action", in.Name)
			}
			continue
		}
		if validate != nil {
			if err := validate(i, v); err != nil {
				return err
			}
		} else if in.Validate != nil {
			if err := in.Validate(v); err != nil {
				return err
			}
		}
	}
	return nil
}

func (c *Conn) customVerb(v Verb, l Line, id string, count int64) {
	s := c.srv
	s.metrics.requests.WithLabelValues("verb", l.Verb).Inc()
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
		reason = "quit"
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

	c.mu.Lock()
	rooms := c.rooms
	c.rooms = nil
	c.mu.Unlock()
	for _, r := range rooms {
		_ = s.rooms.leave(c, r)
	}
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

// Broadcast delivers a chat line to every member of room (the sender included, as in the reference).
func (s *Server) Broadcast(room, from, text string) int {
	line := chatLine(text, room, from, s.now().UnixMilli())
	n := 0
	for _, m := range s.rooms.members(room) {
		// Each outbox takes ownership of its slice.
		if m.write(bytes.Clone(line)) == nil {
			n++
		}
	}
	s.metrics.chat.Inc()
	return n
}

func (s *Server) sayHook(ctx context.Context, c *Conn, room, text string) (string, bool, error) {
	if s.opts.Hooks == nil {
		return text, true, nil
	}
	return s.opts.Hooks.Say(ctx, c, room, text)
}
