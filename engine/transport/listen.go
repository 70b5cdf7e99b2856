package transport

import (
	"context"
	"crypto/tls"
	"errors"
	"net"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/sirupsen/logrus"
)

// ListenConfig describes one listening socket.
type ListenConfig struct {
	Addr      string        // host:port; port 0 picks a free port
	TLS       *tls.Config   // nil = plain TCP
	Allow     *Allowlist    // nil = everyone
	KeepAlive time.Duration // TCP keepalive period; 0 = off
	MaxConns  int           // 0 = unlimited; over the cap a connection is closed at once and logged
	Log       *logrus.Entry
	OnRefuse  func(c net.Conn, reason string) // optional: say something protocol-specific before close
	// OnRefused, optional, is told of every refused connection (also those
	// closed without OnRefuse past maxRefusing), e.g. to count them. It runs
	// on the accept loop and must not block.
	OnRefused func(reason string)
	// HandshakeTimeout bounds a TLS handshake, from accept to its end; 0 means
	// DefaultHandshakeTimeout. A peer that is not done by then is closed.
	HandshakeTimeout time.Duration
	// OnHandshakeFailure, optional, is told of every failed TLS handshake
	// (reason HandshakeTimedOut or HandshakeFailed), e.g. to count it.
	OnHandshakeFailure func(reason string)
}

// DefaultHandshakeTimeout is the TLS handshake limit of a listener that sets none.
const DefaultHandshakeTimeout = 10 * time.Second

// refuseTimeout bounds what OnRefuse may spend writing to a refused peer.
const refuseTimeout = time.Second

// maxRefusing bounds the refused connections held open at once while OnRefuse
// writes to them (each holds a file descriptor for up to refuseTimeout); past
// it a refused connection is closed without a word, so a flood over the cap
// cannot use up the process's descriptors through refusals.
const maxRefusing = 16

// Reasons a connection is refused, as passed to OnRefuse and logged.
const (
	ReasonNotAllowed  = "address not allowed"
	ReasonTooManyConn = "too many connections"
)

// Reasons a TLS handshake fails, as passed to OnHandshakeFailure and logged.
const (
	HandshakeTimedOut = "timeout"
	HandshakeFailed   = "failed"
)

// Listen binds cfg.Addr and returns a listener whose Accept returns only
// admitted connections: allowed by cfg.Allow and within cfg.MaxConns. Refused
// connections are logged (remote address and reason), passed to cfg.OnRefuse
// if set, and closed. Closing an accepted connection frees its slot under the
// cap. With cfg.TLS the returned connections are *tls.Conn whose handshake is
// done: the listener runs it (holding the connection's slot) within
// cfg.HandshakeTimeout, and logs and closes peers that fail it. TLS is 1.2 or
// later, and 1.2 only with the AEAD suites of ModernCipherSuites unless the
// config names its own. Close stops accepting and waits for in-flight
// admission checks and handshakes.
func Listen(cfg ListenConfig) (net.Listener, error) {
	if cfg.TLS != nil {
		c := cfg.TLS.Clone()
		c.MinVersion = max(c.MinVersion, tls.VersionTLS12)
		if c.CipherSuites == nil {
			c.CipherSuites = ModernCipherSuites()
		}
		cfg.TLS = c
	}
	if cfg.HandshakeTimeout <= 0 {
		cfg.HandshakeTimeout = DefaultHandshakeTimeout
	}
	if cfg.Log == nil {
		l := logrus.New()
		l.Out = discard{}
		cfg.Log = logrus.NewEntry(l)
	}
	lc := net.ListenConfig{KeepAlive: -1}
	if cfg.KeepAlive > 0 {
		lc.KeepAlive = cfg.KeepAlive
	}
	inner, err := lc.Listen(context.Background(), "tcp", cfg.Addr)
	if err != nil {
		return nil, err // net's error names the operation and the address: listen tcp 0.0.0.0:5000: bind: ...
	}
	ctx, cancel := context.WithCancel(context.Background())
	l := &listener{
		inner:  inner,
		cfg:    cfg,
		ctx:    ctx,
		cancel: cancel,
		conns:  make(chan net.Conn),
		done:   make(chan struct{}),
	}
	l.wg.Add(1)
	go l.acceptLoop()
	return l, nil
}

type discard struct{}

func (discard) Write(p []byte) (int, error) { return len(p), nil }

type listener struct {
	inner  net.Listener
	cfg    ListenConfig
	ctx    context.Context
	cancel context.CancelFunc
	conns  chan net.Conn
	active atomic.Int64
	// refusing counts refused connections still open while OnRefuse writes.
	refusing atomic.Int64
	wg       sync.WaitGroup

	closeOnce sync.Once
	done      chan struct{} // closed when the accept loop ends
	err       error         // why the accept loop ended; read after done
}

func (l *listener) Addr() net.Addr { return l.inner.Addr() }

func (l *listener) Accept() (net.Conn, error) {
	select {
	case c := <-l.conns:
		return c, nil
	case <-l.done:
		// a conn handed over concurrently wins over the close
		select {
		case c := <-l.conns:
			return c, nil
		default:
		}
		return nil, l.err
	}
}

func (l *listener) Close() error {
	var err error
	l.closeOnce.Do(func() {
		l.cancel()
		err = l.inner.Close()
		l.wg.Wait()
	})
	return err
}

func (l *listener) acceptLoop() {
	defer l.wg.Done()
	defer close(l.done)
	var backoff time.Duration
	for {
		c, err := l.inner.Accept()
		if err != nil {
			if l.ctx.Err() != nil || errors.Is(err, net.ErrClosed) {
				l.err = net.ErrClosed
				return
			}
			if !temporary(err) {
				l.err = err // accept tcp <addr>: ...
				l.cfg.Log.WithError(err).Error("accept failed; listener stopped")
				return
			}
			if backoff == 0 {
				backoff = 5 * time.Millisecond
			} else if backoff *= 2; backoff > time.Second {
				backoff = time.Second
			}
			l.cfg.Log.WithError(err).WithField("retry_in", backoff).Warn("accept failed, retrying")
			select {
			case <-time.After(backoff):
			case <-l.ctx.Done():
				l.err = net.ErrClosed
				return
			}
			continue
		}
		backoff = 0
		ip := remoteIP(c)
		if l.cfg.Allow == nil || l.cfg.Allow.quick(ip) {
			l.admit(c)
			continue
		}
		if len(l.cfg.Allow.hosts) == 0 {
			l.refuse(c, ReasonNotAllowed)
			continue
		}
		// a hostname check may take a DNS round trip: don't hold up other peers
		l.wg.Add(1)
		go func() {
			defer l.wg.Done()
			if l.cfg.Allow.Allows(l.ctx, ip) {
				l.admit(c)
			} else {
				l.refuse(c, ReasonNotAllowed)
			}
		}()
	}
}

// quick reports whether ip is allowed by an IP or CIDR pattern.
func (a *Allowlist) quick(ip net.IP) bool {
	if ip4 := ip.To4(); ip4 != nil {
		ip = ip4
	}
	for _, n := range a.nets {
		if n.Contains(ip) {
			return true
		}
	}
	return false
}

func (l *listener) admit(c net.Conn) {
	var conn net.Conn = c
	if max := l.cfg.MaxConns; max > 0 {
		if l.active.Add(1) > int64(max) {
			l.active.Add(-1)
			l.refuse(c, ReasonTooManyConn)
			return
		}
		conn = &capConn{Conn: c, l: l}
	}
	if l.cfg.TLS != nil {
		// The handshake runs here, bounded, so a peer that never sends a
		// ClientHello cannot hold a connection (and its part's goroutines)
		// forever; it must not hold up the accept loop either.
		l.wg.Add(1)
		go func() {
			defer l.wg.Done()
			if tc, ok := l.handshake(conn); ok {
				l.handOver(tc)
			}
		}()
		return
	}
	l.handOver(conn)
}

// handOver passes an admitted connection to Accept.
func (l *listener) handOver(conn net.Conn) {
	select {
	case l.conns <- conn:
	case <-l.ctx.Done():
		conn.Close()
	}
}

// handshake runs the TLS server handshake on conn within the handshake
// timeout; on failure it logs, reports and closes the connection.
func (l *listener) handshake(conn net.Conn) (*tls.Conn, bool) {
	tc := tls.Server(conn, l.cfg.TLS)
	ctx, cancel := context.WithTimeout(l.ctx, l.cfg.HandshakeTimeout)
	err := tc.HandshakeContext(ctx)
	timedOut := ctx.Err() == context.DeadlineExceeded
	cancel()
	if err == nil {
		return tc, true
	}
	tc.Close()
	if l.ctx.Err() != nil {
		return nil, false // the listener is closing
	}
	reason := HandshakeFailed
	if timedOut {
		reason = HandshakeTimedOut
	}
	l.cfg.Log.WithFields(logrus.Fields{"remote": conn.RemoteAddr().String(), "reason": reason}).WithError(err).
		Info("TLS handshake failed; connection closed")
	if l.cfg.OnHandshakeFailure != nil {
		l.cfg.OnHandshakeFailure(reason)
	}
	return nil, false
}

func (l *listener) refuse(c net.Conn, reason string) {
	l.cfg.Log.WithFields(logrus.Fields{"remote": c.RemoteAddr().String(), "reason": reason}).Warn("connection refused")
	if l.cfg.OnRefused != nil {
		l.cfg.OnRefused(reason)
	}
	if l.cfg.OnRefuse == nil {
		c.Close()
		return
	}
	if l.refusing.Add(1) > maxRefusing {
		l.refusing.Add(-1)
		c.Close()
		return
	}
	l.wg.Add(1)
	go func() {
		defer l.wg.Done()
		defer l.refusing.Add(-1)
		defer c.Close()
		_ = c.SetDeadline(time.Now().Add(refuseTimeout))
		var conn net.Conn = c
		if l.cfg.TLS != nil {
			conn = tls.Server(c, l.cfg.TLS)
		}
		l.cfg.OnRefuse(conn, reason)
	}()
}

func remoteIP(c net.Conn) net.IP {
	if a, ok := c.RemoteAddr().(*net.TCPAddr); ok {
		return a.IP
	}
	host, _, _ := net.SplitHostPort(c.RemoteAddr().String())
	return net.ParseIP(host)
}

func temporary(err error) bool {
	var ne net.Error
	if errors.As(err, &ne) && ne.Timeout() {
		return true
	}
	return errors.Is(err, syscall.ECONNABORTED) || errors.Is(err, syscall.ECONNRESET) ||
		errors.Is(err, syscall.EMFILE) || errors.Is(err, syscall.ENFILE) ||
		errors.Is(err, syscall.ENOBUFS) || errors.Is(err, syscall.ENOMEM) ||
		errors.Is(err, syscall.EINTR) || errors.Is(err, syscall.EAGAIN)
}

// capConn frees its listener slot on the first Close.
type capConn struct {
	net.Conn
	l      *listener
	closed atomic.Bool
}

func (c *capConn) Close() error {
	if c.closed.CompareAndSwap(false, true) {
		c.l.active.Add(-1)
	}
	return c.Conn.Close()
}

// NetConn returns the underlying connection.
func (c *capConn) NetConn() net.Conn { return c.Conn }

// TCPConn unwraps c (through *tls.Conn and the listener's own wrappers) to the
// underlying *net.TCPConn, e.g. to change keepalive at run time.
func TCPConn(c net.Conn) (*net.TCPConn, bool) {
	for {
		switch t := c.(type) {
		case *net.TCPConn:
			return t, true
		case interface{ NetConn() net.Conn }:
			c = t.NetConn()
		default:
			return nil, false
		}
	}
}
