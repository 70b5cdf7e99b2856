package socket

import (
	"context"
	"crypto/tls"
	"errors"
	"net"
	"sync"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/sirupsen/logrus"

	"github.com/switchboard/switchboard/engine/transport"
	"github.com/switchboard/switchboard/internal/lifecycle"
	"github.com/switchboard/switchboard/internal/uuid"
)

// Options are the server's collaborators. Everything but Actions may be nil.
type Options struct {
	Actions Actions
	Verbs   Verbs
	Hooks   Hooks
	// RoomHooks are the chat middleware and member/message shaping of scripts (nil: actionhero's defaults).
	RoomHooks RoomHooks
	// Rooms is where rooms live; nil keeps them in this process (NewLocalRooms with the configured
	// starting rooms). A cluster passes a store shared by its nodes.
	Rooms Rooms
	// ID names this server (the "host" of actionhero's default member record); "" = "switchboard".
	ID  string
	Log *logrus.Entry
	// Metrics registers the switchboard_socket_* collectors; nil registers nothing.
	Metrics prometheus.Registerer
	// TLS overrides the certificate files of the config (tests); nil with secure=true loads them.
	TLS *tls.Config
	// Now is the clock (tests); nil = time.Now.
	Now func() time.Time
}

// Server is the actionhero-compatible socket server: build it with New, Start it (or Serve a listener of
// your own), and stop it with Shutdown. It is one of the engine's parts (engine.Part).
type Server struct {
	cfg     Config
	opts    Options
	log     *logrus.Entry
	tls     *tls.Config
	id      string
	created time.Time // when New made the server (sb.server's uptime counts from it)
	rooms   Rooms
	metrics *metrics
	now     func() time.Time
	delim   []byte
	splitCR bool

	mu        sync.Mutex
	listeners map[net.Listener]struct{}
	conns     map[string]*Conn // by id
	wg        sync.WaitGroup   // connections being served (Done by forget)

	workers *workers
	stall   stallWatch

	bound  net.Listener // the listener Start opened; nil before
	served chan error   // Serve's result on bound; read once, by the first Shutdown
	stop   lifecycle.StopOnce

	shutting   atomic.Bool
	shutdownCh chan struct{} // closed when Shutdown starts
	drainCtx   context.Context
	drainStop  context.CancelFunc
}

// New checks cfg and builds a server.
func New(cfg Config, opts Options) (*Server, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	if opts.Actions == nil {
		opts.Actions = ActionMap{}
	}
	log := opts.Log
	if log == nil {
		l := logrus.New()
		l.SetLevel(logrus.WarnLevel)
		log = logrus.NewEntry(l)
	}
	s := &Server{
		cfg: cfg, opts: opts, log: log.WithField("part", "socket"),
		id:         opts.ID,
		rooms:      opts.Rooms,
		now:        opts.Now,
		delim:      []byte(cfg.Delimiter),
		splitCR:    cfg.Delimiter == "\n",
		listeners:  map[net.Listener]struct{}{},
		conns:      map[string]*Conn{},
		shutdownCh: make(chan struct{}),
		workers:    newWorkers(10 * time.Second),
	}
	if s.rooms == nil {
		s.rooms = NewLocalRooms(cfg.Rooms.Starting, cfg.Rooms.Autocreate)
	}
	if s.id == "" {
		s.id = "switchboard"
	}
	s.stall.init()
	s.drainCtx, s.drainStop = context.WithCancel(context.Background())
	if s.now == nil {
		s.now = time.Now
	}
	s.created = s.now()
	s.tls = opts.TLS
	if !cfg.Secure {
		s.tls = nil
	}
	m, err := newMetrics(opts.Metrics)
	if err != nil {
		return nil, err
	}
	s.metrics = m
	return s, nil
}

// Created is when the server was made (sb.server's uptime counts from it).
func (s *Server) Created() time.Time { return s.created }

// Now is the server's clock.
func (s *Server) Now() time.Time { return s.now() }

// Rooms returns where the server's chat rooms live.
func (s *Server) Rooms() Rooms { return s.rooms }

// Config returns the configuration the server runs with.
func (s *Server) Config() Config { return s.cfg }

// Start binds the configured address (TLS when secure, with the connection cap, keepalive and handshake
// timeout of the config; the listener logs refused connections itself) and serves it in the background
// until Shutdown.
func (s *Server) Start(ctx context.Context) error {
	l, err := s.listen()
	if err != nil {
		return err
	}
	served := make(chan error, 1)
	s.mu.Lock()
	s.bound, s.served = l, served
	s.mu.Unlock()
	go func() { served <- s.Serve(l) }()
	return nil
}

// Addrs names the address Start bound: {"socket": addr}; nil before Start.
func (s *Server) Addrs() map[string]net.Addr {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.bound == nil {
		return nil
	}
	return map[string]net.Addr{"socket": s.bound.Addr()}
}

func (s *Server) listen() (net.Listener, error) {
	sec := s.cfg.Section()
	if s.tls != nil {
		sec.TLS = nil // Options.TLS replaces the files
	}
	lc, err := sec.ListenConfig()
	if err != nil {
		return nil, err
	}
	if s.tls != nil {
		lc.TLS, lc.HandshakeTimeout = s.tls, s.cfg.TLS.HandshakeTimeout
	}
	lc.Log = s.log
	lc.OnRefuse = func(c net.Conn, reason string) {
		_, _ = c.Write(errorReply("too many connections", msgID{s: uuid.New()}, 0))
	}
	lc.OnRefused = func(string) { s.metrics.refused.Inc() }
	lc.OnHandshakeFailure = func(reason string) { s.metrics.handshakes.WithLabelValues(reason).Inc() }
	l, err := transport.Listen(lc)
	if err != nil {
		return nil, err
	}
	s.log.WithField("addr", l.Addr().String()).Info("listening")
	return l, nil
}

// Serve accepts connections on l until Shutdown (returns nil) or an accept error.
func (s *Server) Serve(l net.Listener) error {
	s.mu.Lock()
	if s.shutting.Load() {
		s.mu.Unlock()
		_ = l.Close()
		return nil
	}
	s.listeners[l] = struct{}{}
	s.mu.Unlock()
	s.stall.start()
	defer func() {
		s.mu.Lock()
		delete(s.listeners, l)
		s.mu.Unlock()
	}()
	var tempDelay time.Duration
	for {
		nc, err := l.Accept()
		if err != nil {
			if s.shutting.Load() {
				return nil
			}
			var ne net.Error
			if errors.As(err, &ne) && ne.Timeout() {
				if tempDelay == 0 {
					tempDelay = 5 * time.Millisecond
				} else if tempDelay *= 2; tempDelay > time.Second {
					tempDelay = time.Second
				}
				time.Sleep(tempDelay)
				continue
			}
			return err // accept tcp <addr>: ...
		}
		tempDelay = 0
		c := s.newConn(nc)
		s.mu.Lock()
		if s.shutting.Load() {
			s.mu.Unlock()
			_ = nc.Close()
			continue
		}
		s.conns[c.id] = c
		s.wg.Add(1)
		s.mu.Unlock()
		go c.serve()
	}
}

// forget drops a finished connection (called once by the goroutine that finished it).
func (s *Server) forget(c *Conn) {
	s.mu.Lock()
	delete(s.conns, c.id)
	s.mu.Unlock()
	s.wg.Done()
}

// Shutdown stops accepting, lets every connection finish its pending actions (their replies are sent),
// then says goodbye and closes it. When ctx ends first, the remaining connections are closed at once. It
// is idempotent (a second call waits for the first) and safe on a server that never started.
func (s *Server) Shutdown(ctx context.Context) error {
	return s.stop.Do(ctx, func() error {
		err := s.shutdown(ctx)
		s.mu.Lock()
		served := s.served
		s.mu.Unlock()
		if served != nil {
			if serr := <-served; serr != nil && err == nil {
				err = serr
			}
		}
		return err
	})
}

func (s *Server) shutdown(ctx context.Context) error {
	s.mu.Lock()
	first := !s.shutting.Swap(true)
	for l := range s.listeners {
		_ = l.Close()
	}
	conns := make([]*Conn, 0, len(s.conns))
	for _, c := range s.conns {
		conns = append(conns, c)
	}
	s.mu.Unlock()
	if first {
		close(s.shutdownCh)
	}
	for _, c := range conns {
		c.interruptRead()
	}
	done := make(chan struct{})
	go func() { s.wg.Wait(); close(done) }()
	s.stall.stop()
	select {
	case <-done:
		s.workers.stop()
		return nil
	case <-ctx.Done():
	}
	s.drainStop() // connections stop waiting for actions and for their outboxes
	s.mu.Lock()
	for _, c := range s.conns {
		c.abort("shutdown deadline")
	}
	s.mu.Unlock()
	<-done
	s.workers.stop()
	return ctx.Err()
}

// Conns counts the open connections.
func (s *Server) Conns() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return len(s.conns)
}
