package esl

import (
	"context"
	"errors"
	"fmt"
	"net"
	"strings"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/sirupsen/logrus"

	"github.com/switchboard/switchboard/engine/esl/dbh"
	"github.com/switchboard/switchboard/engine/transport"
	"github.com/switchboard/switchboard/internal/lifecycle"
)

// Server accepts FreeSWITCH's outbound sockets and runs each call's flow in its own goroutine. Build it
// with New, Start it (or Serve a listener of your own), stop it with Shutdown: it is one of the engine's
// parts (engine.Part).
type Server struct {
	cfg     Config
	resolve FlowResolver
	log     *logrus.Entry
	metrics *metrics
	bodies  *BodyBudget // large bodies being read, all calls (esl.bodies_in_flight_bytes)

	ctx    context.Context
	cancel context.CancelFunc

	db *dbh.Pools // freeswitch.Dbh pools, shared by the calls; closed at shutdown

	mu        sync.Mutex
	listeners map[net.Listener]struct{}
	sessions  map[*Session]struct{}
	closing   bool
	wg        sync.WaitGroup

	bound  net.Listener // the listener Start opened; nil before
	served chan error   // Serve's result on bound; read once, by the first Shutdown
	stop   lifecycle.StopOnce
}

// Options are the server's collaborators.
type Options struct {
	// Flows picks each call's flow (sb.flow and mod_lua-style scripts through esllua, or Go funcs).
	Flows FlowResolver
	Log   *logrus.Entry // nil: nothing logged
	// Metrics registers the switchboard_esl_* collectors; nil registers nothing.
	Metrics prometheus.Registerer
}

// New makes a server; nothing listens until Start. Zero values in cfg take their defaults (DefaultConfig);
// the engine validates its configuration before (Config.Validate).
func New(cfg Config, opts Options) (*Server, error) {
	log := opts.Log
	if log == nil {
		l := logrus.New()
		l.SetLevel(logrus.PanicLevel)
		log = logrus.NewEntry(l)
	}
	if cfg.CommandTimeout <= 0 {
		cfg.CommandTimeout = 5 * time.Second
	}
	if cfg.ConnectTimeout <= 0 {
		cfg.ConnectTimeout = 5 * time.Second
	}
	if cfg.EventFormat == "" {
		cfg.EventFormat = "plain"
	}
	def := DefaultConfig()
	if cfg.BodiesInFlightBytes <= 0 {
		cfg.BodiesInFlightBytes = def.BodiesInFlightBytes
	}
	if cfg.MaxVariablesBytes <= 0 {
		cfg.MaxVariablesBytes = def.MaxVariablesBytes
	}
	if cfg.DTMFQueueBytes <= 0 {
		cfg.DTMFQueueBytes = def.DTMFQueueBytes
	}
	if cfg.EventQueueBytes <= 0 {
		cfg.EventQueueBytes = def.EventQueueBytes
	}
	if cfg.DataDir == "" {
		cfg.DataDir = def.DataDir
	}
	if cfg.OriginateTimeout <= 0 {
		cfg.OriginateTimeout = def.OriginateTimeout
	}
	bodies := NewBodyBudget(int64(cfg.BodiesInFlightBytes))
	m, err := newMetrics(opts.Metrics, cfg.MaxFlowSeries, bodies)
	if err != nil {
		return nil, err
	}
	ctx, cancel := context.WithCancel(context.Background())
	db := dbh.NewPools(dbh.Config{DataDir: cfg.DataDir, MaxConns: cfg.DBHMaxConns, IdleTimeout: cfg.DBHIdleTimeout,
		QueryTimeout: cfg.DBHQueryTimeout, MaxRowBytes: cfg.DBHMaxRowBytes, ODBC: cfg.ODBC})
	return &Server{cfg: cfg, resolve: opts.Flows, db: db, log: log.WithField("part", "esl"), metrics: m,
		bodies: bodies, ctx: ctx, cancel: cancel, listeners: map[net.Listener]struct{}{}, sessions: map[*Session]struct{}{}}, nil
}

// Start listens on cfg.Listen (with the allowlist esl.allow, keepalive and the cap esl.max_calls) and
// serves calls in the background until Shutdown.
func (srv *Server) Start(ctx context.Context) error {
	lc, err := srv.cfg.Section().ListenConfig()
	if err != nil {
		return err
	}
	lc.Log = srv.log
	l, err := transport.Listen(lc)
	if err != nil {
		return err
	}
	served := make(chan error, 1)
	srv.mu.Lock()
	srv.bound, srv.served = l, served
	srv.mu.Unlock()
	srv.log.WithField("addr", l.Addr().String()).Info("listening")
	go func() { served <- srv.Serve(l) }()
	return nil
}

// Addrs names the address Start bound: {"esl": addr}; nil before Start.
func (srv *Server) Addrs() map[string]net.Addr {
	srv.mu.Lock()
	defer srv.mu.Unlock()
	if srv.bound == nil {
		return nil
	}
	return map[string]net.Addr{"esl": srv.bound.Addr()}
}

// ErrServerClosed is returned by Serve after Shutdown.
var ErrServerClosed = errors.New("esl: server closed")

// Serve accepts calls on l until l is closed or Shutdown.
func (srv *Server) Serve(l net.Listener) error {
	srv.mu.Lock()
	if srv.closing {
		srv.mu.Unlock()
		l.Close()
		return ErrServerClosed
	}
	srv.listeners[l] = struct{}{}
	srv.wg.Add(1)
	srv.mu.Unlock()
	defer srv.wg.Done()
	for {
		c, err := l.Accept()
		if err != nil {
			srv.mu.Lock()
			closing := srv.closing
			delete(srv.listeners, l)
			srv.mu.Unlock()
			if closing {
				return ErrServerClosed
			}
			return err // accept tcp <addr>: ...
		}
		srv.mu.Lock()
		if srv.closing {
			srv.mu.Unlock()
			c.Close()
			continue
		}
		srv.wg.Add(1)
		srv.mu.Unlock()
		go func() {
			defer srv.wg.Done()
			srv.serveCall(c)
		}()
	}
}

// Active counts connected calls.
func (srv *Server) Active() int {
	srv.mu.Lock()
	defer srv.mu.Unlock()
	return len(srv.sessions)
}

// Shutdown stops accepting, cancels every flow's context (their blocking calls return), hangs calls up per
// auto_hangup and waits for them until ctx is done; then it closes the sockets that are left. It is
// idempotent (a second call waits for the first) and safe on a server that never started.
func (srv *Server) Shutdown(ctx context.Context) error {
	return srv.stop.Do(ctx, func() error {
		err := srv.shutdown(ctx)
		srv.mu.Lock()
		served := srv.served
		srv.mu.Unlock()
		if served != nil {
			if serr := <-served; serr != nil && !errors.Is(serr, ErrServerClosed) && err == nil {
				err = serr
			}
		}
		return err
	})
}

func (srv *Server) shutdown(ctx context.Context) error {
	srv.mu.Lock()
	srv.closing = true
	for l := range srv.listeners {
		l.Close()
	}
	srv.mu.Unlock()
	srv.cancel()
	done := make(chan struct{})
	go func() { srv.wg.Wait(); close(done) }()
	select {
	case <-done:
		_ = srv.db.Close()
		return nil
	case <-ctx.Done():
	}
	srv.mu.Lock()
	for s := range srv.sessions {
		s.conn.Close()
	}
	srv.mu.Unlock()
	<-done
	_ = srv.db.Close()
	return ctx.Err()
}

// DB is the server's freeswitch.Dbh pools (one per DSN, shared by every call).
func (srv *Server) DB() *dbh.Pools { return srv.db }

// DB is the database pools of the call's server.
func (s *Session) DB() *dbh.Pools { return s.srv.db }

// serveCall is one call from connect to close.
func (srv *Server) serveCall(c net.Conn) {
	s := newSession(srv, c)
	s.started = time.Now()
	s.rconn = &stampedConn{Conn: c}
	r := NewReader(s.rconn, Limits{MaxHeaderBytes: srv.cfg.MaxFrameBytes, Bodies: srv.bodies})
	r.ReuseBody = true // events are parsed (copied) at once; read copies reply bodies
	// The reader goroutine is owned by this call: it ends when the socket closes, and serveCall closes the
	// socket and waits for it before returning.
	go s.read(r)
	defer func() { c.Close(); <-s.done }()

	// Only the connect reply is needed to start; FreeSWITCH sends nothing before it.
	s.info = &CallInfo{Remote: c.RemoteAddr()}
	f, err := s.Command(srv.ctx, &Command{Line: "connect"}, srv.cfg.ConnectTimeout)
	if err != nil {
		s.Log().WithError(err).Warn("connect failed")
		srv.metrics.calls.WithLabelValues("", "setup_failed").Inc()
		return
	}
	data := &Event{Headers: f.Headers}
	info := s.info
	info.vars = s.Variable
	info.UUID = data.Get("Unique-ID")
	info.Async = strings.EqualFold(data.Get("Socket-Mode"), "async")
	info.Full = strings.EqualFold(data.Get("Control"), "full")
	info.Path, _ = data.Variable("socket_path")
	// Variables go to the session's cache; Data keeps the rest (a real connect reply has ~150 variables).
	s.mu.Lock()
	rest := make(Headers, 0, len(data.Headers)/2)
	for _, h := range data.Headers {
		if strings.HasPrefix(h.Name, "variable_") {
			s.setVarLocked(h.Name[len("variable_"):], h.Value)
		} else {
			rest = append(rest, h)
		}
	}
	info.Data = &Event{Headers: rest}
	if data.Get("Answer-State") == "answered" {
		s.answered, s.media = true, true
	}
	s.state = data.Get("Channel-State")
	s.mu.Unlock()
	info.Flow, info.Args = srv.flowName(info)
	s.mu.Lock()
	s.logUUID, s.logFlow = info.UUID, info.Flow
	s.mu.Unlock()

	srv.mu.Lock()
	srv.sessions[s] = struct{}{}
	srv.mu.Unlock()
	srv.metrics.active.Inc()
	defer func() {
		srv.mu.Lock()
		delete(srv.sessions, s)
		srv.mu.Unlock()
		srv.metrics.active.Dec()
		if cause := s.HangupCause(); cause != "" {
			srv.metrics.causes.WithLabelValues(causeLabel(cause)).Inc()
		}
	}()

	if err := srv.subscribe(s); err != nil {
		s.Log().WithError(err).Warn("event subscription failed")
		srv.metrics.calls.WithLabelValues("", "setup_failed").Inc()
		return
	}

	flow, err := srv.resolve(info)
	s.mu.Lock()
	s.logFlow = info.Flow // the resolver may have split arguments off the name
	s.mu.Unlock()
	if err != nil || flow == nil {
		if err == nil {
			err = fmt.Errorf("no flow")
		}
		s.Log().WithError(err).Error("no flow for call: hanging up")
		srv.metrics.calls.WithLabelValues("", "no_flow").Inc() // the name is the caller's: no series of its own
		hctx, hcancel := context.WithTimeout(context.Background(), srv.cfg.CommandTimeout)
		_ = s.Hangup(hctx, "NO_ROUTE_DESTINATION")
		hcancel()
		srv.finish(s)
		return
	}

	// The flow's context: cancelled at shutdown, and esl.flow_grace after the call ended (hangup or socket
	// gone) so a flow that keeps running after its caller left cannot run forever.
	ctx, cancel := context.WithCancelCause(srv.ctx)
	defer cancel(nil)
	var graceMu sync.Mutex
	var grace *time.Timer
	startGrace := func() {
		graceMu.Lock()
		grace = time.AfterFunc(srv.cfg.FlowGrace, func() { cancel(ErrFlowGrace) })
		graceMu.Unlock()
	}
	defer func() {
		graceMu.Lock()
		if grace != nil {
			grace.Stop()
		}
		graceMu.Unlock()
	}()
	s.mu.Lock()
	gone := s.hungup
	if !gone {
		s.onGone = startGrace
	}
	s.mu.Unlock()
	if gone {
		startGrace()
	}

	s.Log().Debug("call started")
	err = runFlow(ctx, flow, s)
	// The goodbye must go out even when the server is shutting down, within a bounded time.
	hctx, hcancel := context.WithTimeout(context.Background(), srv.cfg.CommandTimeout)
	defer hcancel()
	outcome := "completed"
	switch {
	case err != nil && errors.Is(err, ErrHungUp):
		outcome = "hungup"
		s.Log().Debug("flow ended: caller hung up")
	case err != nil && errors.Is(err, ErrFlowGrace):
		outcome = "cancelled"
		s.Log().WithError(err).WithField("flow_grace", srv.cfg.FlowGrace.String()).Warn("flow cancelled: still running esl.flow_grace after the call ended")
	case err != nil && srv.ctx.Err() != nil:
		outcome = "shutdown"
		s.Log().Info("engine shutting down: hanging up")
		_ = s.Hangup(hctx, "SYSTEM_SHUTDOWN")
	case err != nil:
		outcome = "error"
		s.Log().WithError(err).Error("flow failed: hanging up")
		_ = s.Hangup(hctx, "NORMAL_TEMPORARY_FAILURE")
	}
	if err == nil && s.AutoHangup() {
		_ = s.Hangup(hctx, "NORMAL_CLEARING")
	}
	srv.metrics.calls.WithLabelValues(srv.metrics.flows.Acquire(info.Flow), outcome).Inc()
	srv.finish(s)
}

// runFlow runs the flow, turning a panic into an error so one call cannot take the engine down.
func runFlow(ctx context.Context, flow Flow, s *Session) (err error) {
	defer func() {
		if p := recover(); p != nil {
			err = fmt.Errorf("esl: flow panicked: %v", p)
		}
	}()
	return flow.Run(ctx, s)
}

// finish says goodbye: exit, then wait briefly for FreeSWITCH's disconnect notice and close.
func (srv *Server) finish(s *Session) {
	ctx, cancel := context.WithTimeout(context.Background(), srv.cfg.CommandTimeout)
	defer cancel()
	select {
	case <-s.done:
		return
	default:
	}
	_, _ = s.Raw(ctx, "exit")
	select {
	case <-s.done:
	case <-ctx.Done():
	}
}

func (srv *Server) subscribe(s *Session) error {
	ctx := srv.ctx
	format := srv.cfg.EventFormat
	if _, err := s.Raw(ctx, "myevents "+format); err != nil {
		return err
	}
	if !s.info.Full {
		return nil // event, linger and friends answer -ERR command not found without full
	}
	if _, err := s.Raw(ctx, "event "+format+" BACKGROUND_JOB"); err != nil {
		return err
	}
	if srv.cfg.Linger {
		if _, err := s.Raw(ctx, "linger"); err != nil {
			return err
		}
	}
	return nil
}

// flowName picks the flow: the socket path, else the flow variable, else the default. A flow variable
// may carry arguments after the name, as the lua application's data does ("voicemail check default"):
// they are split as FreeSWITCH splits them. Arguments in a socket path are segments after the flow's
// name, split off by the resolver, which knows the names.
func (srv *Server) flowName(info *CallInfo) (string, []string) {
	if p := strings.Trim(info.Path, "/ "); p != "" {
		return p, nil
	}
	if srv.cfg.FlowVariable != "" {
		if v := strings.TrimSpace(info.Variable(srv.cfg.FlowVariable)); v != "" {
			args := SplitArgs(v)
			if len(args) == 0 {
				return v, nil
			}
			return args[0], args[1:]
		}
	}
	return srv.cfg.DefaultFlow, nil
}
