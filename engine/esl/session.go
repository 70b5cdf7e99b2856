package esl

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"net"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/sirupsen/logrus"

	"github.com/switchboard/switchboard/internal/uuid"
)

// ErrHungUp is returned by every blocking session call once the caller hung up or the socket went away.
var ErrHungUp = errors.New("hung up")

// CallInfo is what the connect reply told about a call.
type CallInfo struct {
	UUID   string
	Async  bool     // Socket-Mode: async
	Full   bool     // Control: full
	Path   string   // variable_socket_path: the /path of the socket application's data
	Flow   string   // the flow chosen for it
	Args   []string // arguments after the flow's name (mod_lua's argv[1]...), strings as FreeSWITCH passes them
	Data   *Event   // the channel data of the connect reply, without its variable_* headers (see Variable)
	Remote net.Addr

	vars func(name string) (string, bool)
}

// Variable returns channel variable name: from the connect reply, updated by every event since.
func (c *CallInfo) Variable(name string) string {
	if c.vars == nil {
		return ""
	}
	v, _ := c.vars(name)
	return v
}

// Flow runs one call; it returns when the call is done with.
type Flow interface {
	Run(ctx context.Context, s *Session) error
}

// FlowFunc adapts a function to Flow.
type FlowFunc func(ctx context.Context, s *Session) error

// Run calls f.
func (f FlowFunc) Run(ctx context.Context, s *Session) error { return f(ctx, s) }

// FlowResolver picks the flow for a call; an error hangs the call up with that reason logged.
type FlowResolver func(call *CallInfo) (Flow, error)

// DTMF is one digit the caller pressed, as a DTMF event reported it.
type DTMF struct {
	Digit    string
	Duration string // samples at 8 kHz, as FreeSWITCH reports it

	seq uint64 // order of arrival in the call (ExecOptions.ConsumesDigits)
}

// dtmfCost is what one queued digit counts against esl.dtmf_queue_bytes: its text plus the entry itself.
func dtmfCost(d DTMF) int { return len(d.Digit) + len(d.Duration) + 40 }

// ErrFlowGrace is the cause of a flow cancelled because it was still running esl.flow_grace after its
// call ended (hangup or socket gone).
var ErrFlowGrace = errors.New("still running esl.flow_grace after the call ended")

// Session is the engine's side of one call: commands go out one at a time, each waiting for its reply;
// executes wait for the CHANNEL_EXECUTE_COMPLETE whose Application-UUID is the event-uuid they sent.
// Every wait also ends on hangup (ErrHungUp), socket loss (ErrHungUp) and ctx.
type Session struct {
	info   *CallInfo
	conn   net.Conn
	srv    *Server
	remote string

	started time.Time // when the socket was accepted (status.go)

	cmdMu    sync.Mutex  // one command in flight
	awaiting atomic.Bool // a command waits for its reply: other replies are dropped, never parked
	replies  chan reply
	wbuf     []byte
	cmdTimer *time.Timer // Command's reply timeout, created at first use
	rconn    *stampedConn

	mu       sync.Mutex
	vars     map[string]string
	varBytes int  // names and values in vars (esl.max_variables_bytes)
	varsFull bool // a variable was not remembered (logged once)
	answered bool
	bridged  bool
	media    bool   // early media or answered
	state    string // Channel-State of the latest event
	hungup   bool
	cause    string
	stale    int // replies of abandoned commands still to come
	digits   []DTMF
	dtmfSeq  uint64   // digits ever queued
	dtmfLen  int      // bytes the queued digits count (dtmfCost)
	dtmfDrop int      // digits dropped because the queue was full
	events   []*Event // session events (sendevent to this channel, diverted) waiting for an input callback
	evBytes  int
	evCh     chan struct{}
	xfer     bool     // transferred: the dialplan takes the call back
	waiters  []waiter // executes and background jobs waiting for their event (rarely more than one)
	hangupCh chan struct{}
	dtmfCh   chan struct{}
	done     chan struct{} // the reader ended: socket closed
	readErr  error
	noAuto   bool   // SetAutoHangup(false)
	autoSet  bool   // SetAutoHangup was called
	modLua   bool   // mod_lua defaults: no hangup at the end unless asked
	logUUID  string // log fields, set once the connect reply named the call
	logFlow  string
	onGone   func() // called once when the call ends (hangup or socket gone)
	legs     map[string]*Leg
}

// AutoHangup reports whether the engine will hang the call up when the flow returns: never after a
// transfer; else as SetAutoHangup said, else esl.auto_hangup (sb.flow) or off (mod_lua-style flows, as
// mod_lua leaves its own leg up).
func (s *Session) AutoHangup() bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	switch {
	case s.xfer:
		return false
	case s.autoSet:
		return !s.noAuto
	case s.modLua:
		return false
	}
	return s.srv.cfg.AutoHangup
}

// SetAutoHangup chooses whether the call is hung up when the flow returns (default esl.auto_hangup); off,
// the engine sends `exit` and FreeSWITCH continues the dialplan after the socket application.
func (s *Session) SetAutoHangup(on bool) {
	s.mu.Lock()
	s.noAuto = !on
	s.autoSet = true
	s.mu.Unlock()
}

// SetModLua gives the call mod_lua's defaults (no hangup when the flow ends unless SetAutoHangup(true)).
func (s *Session) SetModLua() {
	s.mu.Lock()
	s.modLua = true
	s.mu.Unlock()
}

// Config is the esl configuration the call is served with.
func (s *Session) Config() Config { return s.srv.cfg }

// Transferred reports whether the flow transferred the call (or FreeSWITCH routes it again): the dialplan
// owns it now, Ready is false and the engine will not hang it up.
func (s *Session) Transferred() bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.xfer
}

// MarkTransferred notes that the call went back to the dialplan.
func (s *Session) MarkTransferred() {
	s.mu.Lock()
	s.xfer = true
	s.mu.Unlock()
}

func newSession(srv *Server, conn net.Conn) *Session {
	return &Session{srv: srv, conn: conn, remote: conn.RemoteAddr().String(), replies: make(chan reply, 1), vars: map[string]string{},
		hangupCh: make(chan struct{}), dtmfCh: make(chan struct{}, 1), evCh: make(chan struct{}, 1), done: make(chan struct{})}
}

// Info describes the call.
func (s *Session) Info() *CallInfo { return s.info }

// UUID is the channel's Unique-ID.
func (s *Session) UUID() string { return s.info.UUID }

// Log is the call's logger (part=esl uuid=<call> flow=<flow>). It is built when asked, so an idle call
// holds no logger of its own.
func (s *Session) Log() *logrus.Entry {
	s.mu.Lock()
	f := logrus.Fields{"remote": s.remote}
	if s.logUUID != "" {
		f["uuid"], f["flow"] = s.logUUID, s.logFlow
	}
	s.mu.Unlock()
	return s.srv.log.WithFields(f)
}

// Ready is true while the channel is up, the socket connected and the call not transferred.
func (s *Session) Ready() bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	return !s.hungup && !s.xfer
}

// Up is true while the channel is up and the socket connected (a transferred call is still up).
func (s *Session) Up() bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	return !s.hungup
}

// Answered reports whether the channel was answered.
func (s *Session) Answered() bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.answered
}

// Bridged reports whether the channel is bridged now (CHANNEL_BRIDGE seen, no CHANNEL_UNBRIDGE since).
func (s *Session) Bridged() bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.bridged
}

// MediaReady reports whether media flows (early media or answered).
func (s *Session) MediaReady() bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.media
}

// State is the Channel-State of the latest event (CS_EXECUTE, CS_HANGUP...).
func (s *Session) State() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.hungup && s.cause != "" {
		return "CS_HANGUP"
	}
	return s.state
}

// HangupCause is the cause FreeSWITCH reported, "" while the call is up.
func (s *Session) HangupCause() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.cause
}

// HungUp is closed when the caller hangs up or the socket goes away.
func (s *Session) HungUp() <-chan struct{} { return s.hangupCh }

// Variable returns a channel variable as the latest event carrying variables reported it (or as
// SetVariable set it since).
func (s *Session) Variable(name string) (string, bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	v, ok := s.vars[name]
	return v, ok
}

// setVarLocked remembers a channel variable reported by FreeSWITCH (under mu), within
// esl.max_variables_bytes: a new or longer value past it is not remembered, and the first such is logged.
func (s *Session) setVarLocked(name, value string) {
	old, had := s.vars[name]
	grow := len(value) - len(old)
	if !had {
		grow += len(name) + varOverhead
	}
	if grow > 0 && s.varBytes+grow > s.srv.cfg.MaxVariablesBytes {
		if !s.varsFull {
			s.varsFull = true
			s.srv.log.WithFields(logrus.Fields{"remote": s.remote, "uuid": s.logUUID, "variable": clip(name, 64)}).
				Warnf("channel variables past %d bytes (esl.max_variables_bytes): later ones are not remembered", s.srv.cfg.MaxVariablesBytes)
		}
		return
	}
	s.vars[name] = value
	s.varBytes += grow
}

// deleteVarLocked forgets a channel variable (under mu).
func (s *Session) deleteVarLocked(name string) {
	if old, had := s.vars[name]; had {
		delete(s.vars, name)
		s.varBytes -= len(name) + len(old) + varOverhead
	}
}

// varOverhead is what one remembered variable costs beyond its name and value.
const varOverhead = 64

// clip cuts s to at most n bytes, for logs.
func clip(s string, n int) string {
	if len(s) <= n {
		return s
	}
	return s[:n] + "..."
}

func (s *Session) markHungUp(cause string) {
	s.mu.Lock()
	if cause != "" && s.cause == "" {
		s.cause = cause
	}
	var gone func()
	if !s.hungup {
		s.hungup = true
		close(s.hangupCh)
		gone, s.onGone = s.onGone, nil
	}
	s.mu.Unlock()
	if gone != nil {
		gone()
	}
}

var executeStart = []byte("Event-Name: CHANNEL_EXECUTE\n")

// reply is a command's reply as the reader hands it over, with when its last bytes were read.
type reply struct {
	f       *Frame
	arrived time.Time
}

// stampedConn notes when each Read returned, so a command can tell the engine's share of its round trip.
// Only the session's reader goroutine reads it (at is read by the command waiter after a channel receive).
type stampedConn struct {
	net.Conn
	at time.Time
}

func (c *stampedConn) Read(p []byte) (int, error) {
	n, err := c.Conn.Read(p)
	c.at = time.Now()
	return n, err
}

// read is the session's reader goroutine: replies to the waiting command, events to their waiters.
func (s *Session) read(r *Reader) {
	defer close(s.done)
	for {
		f, err := r.ReadFrame()
		if err != nil {
			if errors.Is(err, ErrFrame) {
				// the stream cannot be resynchronised: the call's socket is closed (the flow sees ErrHungUp)
				s.srv.metrics.badFrames.Inc()
				s.Log().WithError(err).Warn("bad frame from FreeSWITCH: closing the call's socket")
				s.conn.Close()
			}
			s.mu.Lock()
			s.readErr = err
			s.mu.Unlock()
			s.markHungUp("")
			return
		}
		s.dispatch(r, f)
	}
}

// dispatch hands one frame to whoever waits for it. The body's buffer goes back to the reader's pool
// before it returns (replies keep a copy).
func (s *Session) dispatch(r *Reader, f *Frame) {
	defer r.Recycle(f)
	switch ct := f.ContentType(); ct {
	case TypeCommandReply, TypeAPIResponse:
		// Under mu, so abandon sees either the reply queued or the stale count, never neither.
		s.mu.Lock()
		if s.stale > 0 {
			s.stale--
			s.mu.Unlock()
			return
		}
		if !s.awaiting.Load() {
			s.mu.Unlock()
			s.srv.metrics.ignored.WithLabelValues("unsolicited-reply").Inc()
			s.Log().WithField("reply", clip(f.ReplyText(), 64)).Debug("reply with no command waiting: dropped")
			return
		}
		if r.Pooled(f) { // an api response in a pooled buffer: the waiting command keeps a copy
			body := bytes.Clone(f.Body)
			r.Recycle(f)
			f.Body = body
		}
		select {
		case s.replies <- reply{f: f, arrived: s.rconn.at}:
			s.mu.Unlock()
		default:
			s.mu.Unlock()
			s.Log().WithField("reply", f.ReplyText()).Warn("reply with no command waiting: dropped")
		}
	case TypeEventPlain, TypeEventJSON:
		// CHANNEL_EXECUTE says nothing a waiter needs (its COMPLETE carries the same variables, later):
		// skip parsing it, which halves the parsing an execute costs.
		if ct == TypeEventPlain && bytes.HasPrefix(f.Body, executeStart) {
			return
		}
		e, err := ParseEvent(f)
		if err != nil {
			s.srv.metrics.ignored.WithLabelValues("bad-event").Inc()
			s.Log().WithError(err).Warn("unreadable event ignored")
			return
		}
		s.onEvent(e)
	case TypeDisconnectNotice:
		s.markHungUp("")
		if f.Headers.Get("Content-Disposition") != "linger" {
			s.Log().Debug("disconnect notice")
		}
	default:
		s.srv.metrics.ignored.WithLabelValues(label(ct)).Inc()
		s.Log().WithField("content_type", ct).Debug("frame of unknown type ignored")
	}
}

func label(ct string) string {
	switch ct {
	case TypeLogData, TypeEventXML, "text/rude-rejection", "auth/request":
		return ct
	case "":
		return "none"
	}
	return "other"
}

func (s *Session) onEvent(e *Event) {
	name := e.Name()
	if id := e.Get("Unique-ID"); id != "" && s.info != nil && id != s.info.UUID && name != "BACKGROUND_JOB" {
		if s.onLegEvent(id, name, e) {
			return
		}
	}
	if !channelEvents[name] && name != "" {
		s.queueEvent(e)
		return
	}
	warnFull := false
	s.mu.Lock()
	for _, h := range e.Headers {
		if strings.HasPrefix(h.Name, "variable_") {
			s.setVarLocked(h.Name[len("variable_"):], h.Value)
		}
	}
	if e.Get("Answer-State") == "answered" {
		s.answered, s.media = true, true
	}
	if st := e.Get("Channel-State"); st != "" {
		s.state = st
		if st == "CS_ROUTING" {
			s.xfer = true // routed again: the dialplan has the call
		}
	}
	var waiter chan *Event
	switch name {
	case "CHANNEL_ANSWER":
		s.answered, s.media = true, true
	case "CHANNEL_PROGRESS_MEDIA":
		s.media = true
	case "CHANNEL_BRIDGE":
		s.bridged = true
	case "CHANNEL_UNBRIDGE":
		s.bridged = false
	case "CHANNEL_EXECUTE_COMPLETE":
		waiter = s.waiterLocked(e.Get("Application-UUID"))
	case "BACKGROUND_JOB":
		waiter = s.waiterLocked(e.Get("Job-UUID"))
	case "DTMF":
		// FreeSWITCH reports one character; anything else is not a digit. The queue is bounded in bytes.
		d := DTMF{Digit: e.Get("DTMF-Digit"), Duration: clip(e.Get("DTMF-Duration"), 16)}
		if len(d.Digit) != 1 {
			break
		}
		if c := dtmfCost(d); s.dtmfLen+c > s.srv.cfg.DTMFQueueBytes {
			s.dtmfDrop++
			warnFull = s.dtmfDrop == 1
		} else {
			s.dtmfSeq++
			d.seq = s.dtmfSeq
			s.dtmfLen += c
			s.digits = append(s.digits, d)
		}
		select {
		case s.dtmfCh <- struct{}{}:
		default:
		}
	}
	s.mu.Unlock()
	if warnFull {
		s.Log().WithField("limit_bytes", s.srv.cfg.DTMFQueueBytes).Warn("DTMF queue full (esl.dtmf_queue_bytes): digits dropped until the flow reads some")
	}
	if waiter != nil {
		select {
		case waiter <- e:
		default:
		}
	}
	if name == "CHANNEL_HANGUP" || name == "CHANNEL_HANGUP_COMPLETE" {
		cause := e.Get("Hangup-Cause")
		s.markHungUp(cause)
	}
}

// Command sends one command and returns its reply frame (command/reply or api/response). timeout 0 waits
// as long as ctx allows (a static-mode sendmsg replies only when its application ends).
func (s *Session) Command(ctx context.Context, c *Command, timeout time.Duration) (*Frame, error) {
	s.cmdMu.Lock()
	defer s.cmdMu.Unlock()
	select {
	case <-s.done:
		return nil, ErrHungUp
	default:
	}
	s.wbuf = AppendCommand(s.wbuf[:0], c)
	s.awaiting.Store(true)
	defer s.awaiting.Store(false)
	start := time.Now()
	_ = s.conn.SetWriteDeadline(start.Add(s.srv.cfg.CommandTimeout))
	if _, err := s.conn.Write(s.wbuf); err != nil {
		s.conn.Close()
		return nil, fmt.Errorf("%w: write: %v", ErrHungUp, err)
	}
	sent := time.Now()
	var tc <-chan time.Time
	if timeout > 0 {
		// One timer per call, reused under cmdMu (Reset drops a stale expiry since Go 1.23).
		if s.cmdTimer == nil {
			s.cmdTimer = time.NewTimer(timeout)
		} else {
			s.cmdTimer.Reset(timeout)
		}
		defer s.cmdTimer.Stop()
		tc = s.cmdTimer.C
	}
	select {
	case r := <-s.replies:
		now := time.Now()
		s.srv.metrics.rtt.Observe(now.Sub(start).Seconds())
		// The engine's share: encoding and writing, then from the read that brought the reply's last
		// bytes to this goroutine having it. The rest is the peer, the network and the reader's wake-up.
		if !r.arrived.IsZero() && r.arrived.After(sent) {
			s.srv.metrics.engine.WithLabelValues("write").Observe(sent.Sub(start).Seconds())
			s.srv.metrics.engine.WithLabelValues("receive").Observe(now.Sub(r.arrived).Seconds())
		}
		return r.f, nil
	case <-s.done:
		return nil, ErrHungUp
	case <-ctx.Done():
		s.abandon()
		return nil, ctx.Err()
	case <-tc:
		s.abandon()
		// A copy of the word, so c (often on the caller's stack) does not escape through the error.
		return nil, fmt.Errorf("esl: %s: no reply within %s", strings.Clone(firstWord(c.Line)), timeout)
	}
}

func firstWord(s string) string { w, _, _ := strings.Cut(s, " "); return w }

// abandon notes that the reply of a command nobody waits for any more is still to come.
func (s *Session) abandon() {
	s.mu.Lock()
	select {
	case <-s.replies: // it came just as we gave up
	default:
		s.stale++
	}
	s.mu.Unlock()
}

// Raw sends a command line with headers and returns the reply text, failing on -ERR.
func (s *Session) Raw(ctx context.Context, line string, headers ...Header) (string, error) {
	f, err := s.Command(ctx, &Command{Line: line, Headers: headers}, s.srv.cfg.CommandTimeout)
	if err != nil {
		return "", err
	}
	text := f.ReplyText()
	if strings.HasPrefix(text, "-ERR") {
		return text, fmt.Errorf("esl: %s: %s", firstWord(line), text)
	}
	return text, nil
}

// SendMsg sends a sendmsg for this call with the given headers and optional body; the reply means queued
// (async) or finished (static), never "worked".
func (s *Session) SendMsg(ctx context.Context, headers Headers, body []byte) (string, error) {
	timeout := s.srv.cfg.CommandTimeout
	if !s.info.Async && strings.EqualFold(headers.Get("call-command"), "execute") {
		timeout = 0
	}
	f, err := s.Command(ctx, &Command{Line: "sendmsg", Headers: headers, Body: body}, timeout)
	if err != nil {
		return "", err
	}
	text := f.ReplyText()
	if strings.HasPrefix(text, "-ERR") {
		return text, fmt.Errorf("esl: sendmsg: %s", text)
	}
	return text, nil
}

// ExecOptions tune Execute.
type ExecOptions struct {
	// EventLock makes FreeSWITCH run the application strictly after what was queued before it and keeps
	// later messages from running nested inside it. Execute sets it unless NoLock.
	NoLock bool
	// OnDTMF, when set, is called with each digit reported while the application runs; returning true
	// stops the application (a nested `break`). The execute then goes without event-lock so the break
	// can run inside it.
	OnDTMF func(d DTMF) (stop bool)
	// OnInput is OnDTMF for mod_lua-style input callbacks: it also sees session events (sendevent to this
	// channel) and may act on the playing file (uuid_fileman) instead of stopping it.
	OnInput func(in Input) Control
	// StopOnDTMF stops the application at the first digit and leaves the digit queued (a read's prompt).
	StopOnDTMF bool
	// ConsumesDigits: the application reads digits itself (read, play_and_get_digits); the DTMF events it
	// caused are dropped when it completes so a later GetDigits does not see them again.
	ConsumesDigits bool
	// OnHangup, when set, is called once if the caller hangs up during the wait.
	OnHangup func()
	// Target runs the application on another channel (an originated leg); "" is the call itself.
	Target *Leg
}

// Input is what reaches an input callback: a digit or a session event.
type Input struct {
	DTMF  *DTMF
	Event *Event
}

// Control is an input callback's answer: go on, stop the application, or act on the playing file.
type Control struct {
	Stop    bool   // stop the application (a nested break)
	FileCmd string // uuid_fileman command (seek:+3000, pause, stop...); the application goes on
}

// ExecResult is what Execute saw besides the completion event.
type ExecResult struct {
	Event   *Event
	Stopped bool // an input callback stopped it (break, or fileman stop)
}

// Execute runs a dialplan application and waits for its CHANNEL_EXECUTE_COMPLETE, returning that event.
func (s *Session) Execute(ctx context.Context, app, arg string, opt ExecOptions) (*Event, error) {
	r, err := s.ExecuteInput(ctx, app, arg, opt)
	return r.Event, err
}

// ExecuteInput is Execute that also reports whether an input callback stopped the application.
func (s *Session) ExecuteInput(ctx context.Context, app, arg string, opt ExecOptions) (ExecResult, error) {
	var res ExecResult
	leg := opt.Target
	hungup := s.hangupCh
	ready := s.Ready
	if leg != nil {
		hungup = leg.hangupCh
		ready = leg.Ready
	}
	if !ready() {
		return res, ErrHungUp
	}
	id := uuid.New()
	ch := make(chan *Event, 1)
	s.mu.Lock()
	s.waiters = append(s.waiters, waiter{id, ch})
	firstSeq := s.dtmfSeq
	s.mu.Unlock()
	defer s.unwait(id)
	if opt.ConsumesDigits {
		defer s.dropDigitsAfter(firstSeq)
	}
	h := make(Headers, 0, 5)
	h = append(h, Header{"call-command", "execute"}, Header{"execute-app-name", app})
	var body []byte
	if len(arg) > 2048 || strings.ContainsAny(arg, "\r\n") {
		body = []byte(arg)
		h = append(h, Header{"content-type", "text/plain"})
	} else if arg != "" {
		h = append(h, Header{"execute-app-arg", arg})
	}
	h = append(h, Header{"event-uuid", id})
	interruptible := opt.OnDTMF != nil || opt.OnInput != nil || opt.StopOnDTMF
	if !opt.NoLock && !interruptible {
		h = append(h, Header{"event-lock", "true"})
	}
	if leg != nil {
		if _, err := s.sendMsgTo(ctx, leg.UUID, h, body); err != nil {
			return res, fmt.Errorf("esl: execute %s on %s: %w", app, leg.UUID, err)
		}
	} else if _, err := s.SendMsg(ctx, h, body); err != nil {
		return res, fmt.Errorf("esl: execute %s: %w", app, err)
	}
	broke := false
	stop := func() error {
		if broke {
			return nil
		}
		broke = true
		res.Stopped = true
		_, err := s.SendMsg(ctx, Headers{{"call-command", "execute"}, {"execute-app-name", "break"}}, nil)
		return err
	}
	var evCh chan struct{}
	if opt.OnInput != nil {
		evCh = s.evCh
		s.mu.Lock()
		if len(s.events) > 0 {
			signalCh(s.evCh)
		}
		s.mu.Unlock()
	}
	dtmfCh := s.dtmfCh
	if !interruptible || leg != nil {
		dtmfCh = nil
	}
	if dtmfCh != nil {
		// Digits already queued count as pressed now (type-ahead).
		s.mu.Lock()
		if len(s.digits) > 0 {
			signalCh(s.dtmfCh)
		}
		s.mu.Unlock()
	}
	for {
		select {
		case e := <-ch:
			res.Event = e
			if !ready() && !(leg == nil && s.Transferred() && s.Up()) {
				// The application ended because the call did: the caller is gone.
				return res, ErrHungUp
			}
			return res, nil
		case <-hungup:
			return res, ErrHungUp
		case <-dtmfCh:
			switch {
			case opt.StopOnDTMF:
				if err := stop(); err != nil {
					return res, err
				}
				dtmfCh = nil // the digit stays queued for the read that follows
			case opt.OnDTMF != nil:
				for _, d := range s.TakeDigits() {
					if opt.OnDTMF(d) {
						if err := stop(); err != nil {
							return res, err
						}
					}
				}
			case opt.OnInput != nil:
				for _, d := range s.TakeDigits() {
					if err := s.control(ctx, opt.OnInput(Input{DTMF: &d}), stop, &res); err != nil {
						return res, err
					}
				}
			}
		case <-evCh:
			for _, e := range s.TakeEvents() {
				if err := s.control(ctx, opt.OnInput(Input{Event: e}), stop, &res); err != nil {
					return res, err
				}
			}
		case <-ctx.Done():
			return res, ctx.Err()
		}
	}
}

// control carries out an input callback's answer during an application.
func (s *Session) control(ctx context.Context, c Control, stop func() error, res *ExecResult) error {
	switch {
	case c.FileCmd != "":
		if strings.EqualFold(c.FileCmd, "stop") {
			res.Stopped = true
		}
		if !s.info.Full {
			// uuid_fileman needs `full`: without it the best we can do is stop the file.
			return stop()
		}
		_, err := s.API(ctx, "uuid_fileman "+s.info.UUID+" "+c.FileCmd)
		if errors.Is(err, ErrHungUp) {
			return nil
		}
		return err
	case c.Stop:
		return stop()
	}
	return nil
}

func signalCh(c chan struct{}) {
	select {
	case c <- struct{}{}:
	default:
	}
}

// dropDigitsAfter forgets the digits that arrived after seq: an application consumed them.
func (s *Session) dropDigitsAfter(seq uint64) {
	s.mu.Lock()
	defer s.mu.Unlock()
	kept := s.digits[:0]
	n := 0
	for _, d := range s.digits {
		if d.seq <= seq {
			kept = append(kept, d)
			n += dtmfCost(d)
		}
	}
	clear(s.digits[len(kept):])
	s.digits = kept
	s.dtmfLen = n
}

// TakeDigits returns and clears the digits reported so far.
func (s *Session) TakeDigits() []DTMF {
	s.mu.Lock()
	defer s.mu.Unlock()
	d := s.digits
	s.digits = nil
	s.dtmfLen = 0
	s.dtmfDrop = 0
	return d
}

// FlushDigits forgets the digits reported so far.
func (s *Session) FlushDigits() { s.TakeDigits() }

// PendingDigits counts the digits queued and not read yet.
func (s *Session) PendingDigits() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return len(s.digits)
}

// queueEvent keeps a session event (not a channel event of myevents: e.g. a sendevent addressed to this
// channel, diverted to the socket) for an input callback; bounded by esl.event_queue_bytes, oldest dropped.
func (s *Session) queueEvent(e *Event) {
	size := 0
	for _, h := range e.Headers {
		size += len(h.Name) + len(h.Value) + 32
	}
	size += len(e.Body)
	s.mu.Lock()
	defer s.mu.Unlock()
	limit := s.srv.cfg.EventQueueBytes
	if size > limit {
		return
	}
	for s.evBytes+size > limit && len(s.events) > 0 {
		s.evBytes -= eventSize(s.events[0])
		s.events[0] = nil
		s.events = s.events[1:]
	}
	s.events = append(s.events, e)
	s.evBytes += size
	signalCh(s.evCh)
}

func eventSize(e *Event) int {
	size := len(e.Body)
	for _, h := range e.Headers {
		size += len(h.Name) + len(h.Value) + 32
	}
	return size
}

// TakeEvents returns and clears the session events queued so far.
func (s *Session) TakeEvents() []*Event {
	s.mu.Lock()
	defer s.mu.Unlock()
	e := s.events
	s.events = nil
	s.evBytes = 0
	return e
}

// FlushEvents forgets the session events queued so far.
func (s *Session) FlushEvents() { s.TakeEvents() }

// GetDigits collects up to max digits from DTMF events: it stops at a terminator (not included, returned
// second), after timeout with no digit at all, or after interdigit between digits (0 = timeout), or after
// abs in total (0 = none). It needs DTMF events: async mode. max <= 0 returns "" at once; timeout and
// interdigit both 0 wait for digits without limit.
func (s *Session) GetDigits(ctx context.Context, max int, terminators string, timeout, interdigit, abs time.Duration) (string, string, error) {
	if max <= 0 {
		return "", "", nil
	}
	if interdigit <= 0 {
		interdigit = timeout
	}
	var absC <-chan time.Time
	if abs > 0 {
		t := time.NewTimer(abs)
		defer t.Stop()
		absC = t.C
	}
	got := ""
	var wait *time.Timer
	var waitC <-chan time.Time
	arm := func(d time.Duration) {
		if d <= 0 {
			waitC = nil
			return
		}
		if wait == nil {
			wait = time.NewTimer(d)
		} else {
			wait.Reset(d)
		}
		waitC = wait.C
	}
	arm(timeout)
	defer func() {
		if wait != nil {
			wait.Stop()
		}
	}()
	for {
		s.mu.Lock()
		for len(s.digits) > 0 && len(got) < max {
			d := s.digits[0]
			s.digits[0] = DTMF{}
			s.digits = s.digits[1:]
			s.dtmfLen -= dtmfCost(d)
			if terminators != "" && strings.Contains(terminators, d.Digit) {
				s.mu.Unlock()
				return got, d.Digit, nil
			}
			got += d.Digit
			arm(interdigit)
		}
		hung := s.hungup
		s.mu.Unlock()
		if len(got) >= max {
			return got, "", nil
		}
		if hung {
			return got, "", ErrHungUp
		}
		select {
		case <-s.dtmfCh:
		case <-waitC:
			return got, "", nil
		case <-absC:
			return got, "", nil
		case <-s.hangupCh:
		case <-ctx.Done():
			return got, "", ctx.Err()
		}
	}
}

// SetVariable sets (or with "" unsets) a channel variable through the set application.
func (s *Session) SetVariable(ctx context.Context, name, value string) error {
	if _, err := s.Execute(ctx, "set", name+"="+value, ExecOptions{}); err != nil {
		return err
	}
	s.NoteVariable(name, value)
	return nil
}

// SetVariableLiteral sets (or with "" unsets) a channel variable without ${} expansion, as mod_lua's
// setVariable does: `api uuid_setvar` on full sockets, the set application otherwise.
func (s *Session) SetVariableLiteral(ctx context.Context, name, value string) error {
	if !s.info.Full {
		return s.SetVariable(ctx, name, value)
	}
	if _, err := s.API(ctx, strings.TrimSpace("uuid_setvar "+s.info.UUID+" "+name+" "+value)); err != nil {
		return err
	}
	s.NoteVariable(name, value)
	return nil
}

// NoteVariable records a variable in the call's cache only ("" forgets it): what the engine knows the
// channel holds without asking (read_result of a local read).
func (s *Session) NoteVariable(name, value string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if value == "" {
		s.deleteVarLocked(name)
		return
	}
	// the flow's own value always counts, even past the bound (it is the script's, not the peer's)
	if old, had := s.vars[name]; had {
		s.varBytes += len(value) - len(old)
	} else {
		s.varBytes += len(name) + len(value) + varOverhead
	}
	s.vars[name] = value
}

// Hangup hangs the call up with cause (default NORMAL_CLEARING) and waits until FreeSWITCH reports it.
func (s *Session) Hangup(ctx context.Context, cause string) error {
	if cause == "" {
		cause = "NORMAL_CLEARING"
	}
	if !s.Ready() {
		return nil
	}
	if _, err := s.SendMsg(ctx, Headers{{"call-command", "hangup"}, {"hangup-cause", strings.ToUpper(cause)}}, nil); err != nil {
		if errors.Is(err, ErrHungUp) {
			return nil
		}
		return err
	}
	t := time.NewTimer(s.srv.cfg.CommandTimeout)
	defer t.Stop()
	select {
	case <-s.hangupCh:
	case <-t.C:
	case <-ctx.Done():
		return ctx.Err()
	}
	return nil
}

// API runs an api command (full mode only) and returns its body.
func (s *Session) API(ctx context.Context, cmd string) (string, error) {
	if !s.info.Full {
		return "", fmt.Errorf("esl: api needs `full` in the socket application's data")
	}
	f, err := s.Command(ctx, &Command{Line: "api " + cmd}, s.srv.cfg.CommandTimeout)
	if err != nil {
		return "", err
	}
	return string(f.Body), nil
}

// BgAPI runs an api command in the background (full mode only) and waits for its BACKGROUND_JOB.
func (s *Session) BgAPI(ctx context.Context, cmd string) (string, error) {
	if !s.info.Full {
		return "", fmt.Errorf("esl: bgapi needs `full` in the socket application's data")
	}
	id := uuid.New()
	ch := make(chan *Event, 1)
	s.mu.Lock()
	s.waiters = append(s.waiters, waiter{id, ch})
	s.mu.Unlock()
	defer s.unwait(id)
	if _, err := s.Raw(ctx, "bgapi "+cmd, Header{"Job-UUID", id}); err != nil {
		return "", err
	}
	select {
	case e := <-ch:
		return e.Body, nil
	case <-s.done:
		return "", ErrHungUp
	case <-ctx.Done():
		return "", ctx.Err()
	}
}

type waiter struct {
	id string
	ch chan *Event
}

func (s *Session) waiterLocked(id string) chan *Event {
	for _, w := range s.waiters {
		if w.id == id {
			return w.ch
		}
	}
	return nil
}

func (s *Session) unwait(id string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	for i, w := range s.waiters {
		if w.id == id {
			n := len(s.waiters) - 1
			copy(s.waiters[i:], s.waiters[i+1:])
			s.waiters[n] = waiter{} // drop the channel
			s.waiters = s.waiters[:n]
			return
		}
	}
}

// channelEvents are the events `myevents` subscribes (plus BACKGROUND_JOB, asked for on full sockets): they
// describe the channel. Anything else on the socket is a session event (a sendevent addressed to this
// channel, diverted with divert_events) and goes to the input-callback queue.
var channelEvents = map[string]bool{
	"CHANNEL_ANSWER": true, "CHANNEL_APPLICATION": true, "CHANNEL_BRIDGE": true, "CHANNEL_CREATE": true,
	"CHANNEL_DATA": true, "CHANNEL_DESTROY": true, "CHANNEL_EXECUTE": true, "CHANNEL_EXECUTE_COMPLETE": true,
	"CHANNEL_HANGUP": true, "CHANNEL_HANGUP_COMPLETE": true, "CHANNEL_ORIGINATE": true, "CHANNEL_UUID": true,
	"CHANNEL_OUTGOING": true, "CHANNEL_PARK": true, "CHANNEL_PROGRESS": true, "CHANNEL_PROGRESS_MEDIA": true,
	"CHANNEL_STATE": true, "CHANNEL_UNBRIDGE": true, "CHANNEL_UNPARK": true, "DETECTED_SPEECH": true,
	"DTMF": true, "NOTALK": true, "TALK": true, "BACKGROUND_JOB": true, "CHANNEL_CALLSTATE": true,
	"PLAYBACK_START": true, "PLAYBACK_STOP": true, "RECORD_START": true, "RECORD_STOP": true,
}

// SendEvent fires an event through FreeSWITCH (`sendevent NAME`, full sockets only); a Unique-ID header
// makes FreeSWITCH queue it to that channel instead. It returns the reply text (`+OK <Event-UUID>`).
func (s *Session) SendEvent(ctx context.Context, name string, headers Headers, body string) (string, error) {
	if !s.info.Full {
		return "", fmt.Errorf("esl: sendevent needs `full` in the socket application's data")
	}
	c := &Command{Line: "sendevent " + name, Headers: headers}
	if body != "" {
		c.Body = []byte(body)
	}
	f, err := s.Command(ctx, c, s.srv.cfg.CommandTimeout)
	if err != nil {
		return "", err
	}
	text := f.ReplyText()
	if strings.HasPrefix(text, "-ERR") {
		return text, fmt.Errorf("esl: sendevent: %s", text)
	}
	return text, nil
}

// DivertEvents asks FreeSWITCH to send the events queued to this session (what an input callback's
// "event" kind sees) over the socket.
func (s *Session) DivertEvents(ctx context.Context, on bool) error {
	arg := "off"
	if on {
		arg = "on"
	}
	_, err := s.Raw(ctx, "divert_events "+arg)
	return err
}

// sendMsgTo is SendMsg addressed to another channel (`sendmsg <uuid>`).
func (s *Session) sendMsgTo(ctx context.Context, uuid string, headers Headers, body []byte) (string, error) {
	f, err := s.Command(ctx, &Command{Line: "sendmsg " + uuid, Headers: headers, Body: body}, s.srv.cfg.CommandTimeout)
	if err != nil {
		return "", err
	}
	text := f.ReplyText()
	if strings.HasPrefix(text, "-ERR") {
		return text, fmt.Errorf("esl: sendmsg %s: %s", uuid, text)
	}
	return text, nil
}

// profileHeaders maps caller-profile field names (what switch_channel_get_variable falls back to) to the
// headers of the connect reply that carry them.
var profileHeaders = map[string]string{
	"dialplan": "Caller-Dialplan", "username": "Caller-Username", "context": "Caller-Context",
	"destination_number": "Caller-Destination-Number", "caller_id_name": "Caller-Caller-ID-Name",
	"caller_id_number": "Caller-Caller-ID-Number", "orig_caller_id_name": "Caller-Orig-Caller-ID-Name",
	"orig_caller_id_number": "Caller-Orig-Caller-ID-Number", "callee_id_name": "Caller-Callee-ID-Name",
	"callee_id_number": "Caller-Callee-ID-Number", "ani": "Caller-ANI", "aniii": "Caller-ANI-II",
	"network_addr": "Caller-Network-Addr", "rdnis": "Caller-RDNIS", "uuid": "Caller-Unique-ID",
	"source": "Caller-Source", "transfer_source": "Caller-Transfer-Source", "chan_name": "Caller-Channel-Name",
	"profile_index": "Caller-Profile-Index", "screen_bit": "Caller-Screen-Bit",
	"privacy_hide_name": "Caller-Privacy-Hide-Name", "privacy_hide_number": "Caller-Privacy-Hide-Number",
	"created_time": "Caller-Channel-Created-Time", "answered_time": "Caller-Channel-Answered-Time",
	"progress_time": "Caller-Channel-Progress-Time", "progress_media_time": "Caller-Channel-Progress-Media-Time",
	"hungup_time": "Caller-Channel-Hangup-Time", "transferred_time": "Caller-Channel-Transfer-Time",
	"profile_created_time": "Caller-Profile-Created-Time",
}

// ProfileVariable returns a caller-profile field (caller_id_number, destination_number, context...) as
// the connect reply reported it; names are case-insensitive, as in FreeSWITCH.
func (s *Session) ProfileVariable(name string) (string, bool) {
	h, ok := profileHeaders[strings.ToLower(name)]
	if !ok || s.info == nil || s.info.Data == nil {
		return "", false
	}
	return s.info.Data.Headers.Lookup(h)
}
