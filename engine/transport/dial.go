package transport

import (
	"context"
	"crypto/tls"
	"errors"
	"math"
	"math/rand/v2"
	"net"
	"time"

	"github.com/sirupsen/logrus"
)

// Backoff computes reconnection delays: Initial * Multiplier^attempt, capped
// at Max, then spread by ±Jitter (a fraction). Zero fields take the defaults
// 100ms, 30s, 2 and 0.2; a negative Jitter means none.
type Backoff struct {
	Initial, Max       time.Duration
	Multiplier, Jitter float64
}

// Delay returns the wait before retry number attempt (0-based). The result is
// never above Max.
func (b Backoff) Delay(attempt int) time.Duration {
	initial, max, mult, jitter := b.Initial, b.Max, b.Multiplier, b.Jitter
	if initial <= 0 {
		initial = 100 * time.Millisecond
	}
	if max <= 0 {
		max = 30 * time.Second
	}
	if max < initial {
		max = initial
	}
	if mult <= 0 {
		mult = 2
	}
	if jitter == 0 {
		jitter = 0.2
	} else if jitter < 0 {
		jitter = 0
	}
	if attempt < 0 {
		attempt = 0
	}
	d := float64(initial) * math.Pow(mult, float64(attempt))
	if d > float64(max) || math.IsInf(d, 0) || math.IsNaN(d) {
		d = float64(max)
	}
	if jitter > 0 {
		d *= 1 + jitter*(2*rand.Float64()-1)
	}
	if d > float64(max) {
		d = float64(max)
	}
	if d < 0 {
		d = 0
	}
	return time.Duration(d)
}

// DefaultDialTimeout applies when Dialer.Timeout is 0.
const DefaultDialTimeout = 10 * time.Second

// Dialer opens outbound connections (TCP, or TLS when TLS is set) and keeps
// one alive with Run.
type Dialer struct {
	Addr      string
	TLS       *tls.Config   // nil = plain TCP; an empty ServerName is taken from Addr
	Timeout   time.Duration // per attempt, including the TLS handshake; 0 = DefaultDialTimeout
	KeepAlive time.Duration // TCP keepalive period; 0 = off
	Backoff   Backoff
	Log       *logrus.Entry
	// OnDialError, when set, is called by Run after every failed connection attempt with the error and the
	// wait before the next attempt (so the owner can show the link as down).
	OnDialError func(err error, next time.Duration)
	// Quiet: Run does not log connections made and sessions ended (the session logs them itself); failed
	// attempts are still logged, rate-limited.
	Quiet bool
}

// sessionEnd marks how a session ended, for Run (see Unserved and RedialNow).
type sessionEnd struct {
	err      error
	redial   bool // ended in good order; reconnect at once
	unserved bool // the peer never proved alive; count as a failed attempt
}

func (e *sessionEnd) Error() string {
	if e.err == nil {
		return "session ended"
	}
	return e.err.Error()
}

func (e *sessionEnd) Unwrap() error { return e.err }

// Unserved marks the error of a session that ended before the peer proved alive (it accepted and closed at
// once, or never answered): Run counts it as a failed attempt, so the backoff keeps growing instead of
// starting again. The error's text is err's.
func Unserved(err error) error { return &sessionEnd{err: err, unserved: true} }

// RedialNow marks the end (err may be nil) of a session that ended in good order and wants a new connection
// at once, such as an HTTP server that closes the connection after a response: Run redials without waiting
// and the backoff starts again.
func RedialNow(err error) error { return &sessionEnd{err: err, redial: true} }

// Dial makes one connection attempt, bounded by ctx and d.Timeout.
func (d *Dialer) Dial(ctx context.Context) (net.Conn, error) {
	timeout := d.Timeout
	if timeout <= 0 {
		timeout = DefaultDialTimeout
	}
	nd := &net.Dialer{Timeout: timeout, KeepAlive: -1}
	if d.KeepAlive > 0 {
		nd.KeepAlive = d.KeepAlive
	}
	var c net.Conn
	var err error
	if d.TLS != nil {
		cfg := d.TLS
		if cfg.MinVersion < tls.VersionTLS12 {
			cfg = cfg.Clone()
			cfg.MinVersion = tls.VersionTLS12
		}
		c, err = (&tls.Dialer{NetDialer: nd, Config: cfg}).DialContext(ctx, "tcp", d.Addr)
	} else {
		c, err = nd.DialContext(ctx, "tcp", d.Addr)
	}
	if err != nil {
		return nil, err // dial tcp <addr>: ...
	}
	return c, nil
}

// failLogEvery rate-limits the log of repeated failed dials.
const failLogEvery = 5 * time.Second

// Run keeps a connection: it dials (retrying with backoff), runs session with
// the connection, closes the connection when session returns, waits
// Backoff.Delay and redials. The attempt counter restarts after every
// session that served (see Unserved and RedialNow for how a session says
// otherwise). Run returns ctx.Err() once ctx is done; the session must
// return when its ctx is done.
func (d *Dialer) Run(ctx context.Context, session func(ctx context.Context, c net.Conn) error) error {
	log := d.Log
	if log == nil {
		l := logrus.New()
		l.Out = discard{}
		log = logrus.NewEntry(l)
	}
	log = log.WithField("addr", d.Addr)
	attempt := 0
	var lastLog time.Time
	failed := 0
	for {
		if err := ctx.Err(); err != nil {
			return err
		}
		c, err := d.Dial(ctx)
		if err != nil {
			if ctx.Err() != nil {
				return ctx.Err()
			}
			delay := d.Backoff.Delay(attempt)
			attempt++
			failed++
			if now := time.Now(); now.Sub(lastLog) >= failLogEvery {
				log.WithError(err).WithFields(logrus.Fields{"failures": failed, "next_in": delay}).Warn("connect failed")
				lastLog, failed = now, 0
			}
			if d.OnDialError != nil {
				d.OnDialError(err, delay)
			}
			if !Sleep(ctx, delay) {
				return ctx.Err()
			}
			continue
		}
		if !d.Quiet {
			log.Info("connected")
		}
		err = session(ctx, c)
		c.Close()
		if ctx.Err() != nil {
			return ctx.Err()
		}
		var end *sessionEnd
		errors.As(err, &end)
		switch {
		case end != nil && end.redial:
			attempt = 0
			lastLog, failed = time.Time{}, 0
			continue
		case end != nil && end.unserved:
			// The backoff goes on growing, as after a failed dial.
		default:
			attempt = 0
			lastLog, failed = time.Time{}, 0
		}
		delay := d.Backoff.Delay(attempt)
		attempt++
		if !d.Quiet {
			entry := log.WithField("next_in", delay)
			if err != nil {
				entry = entry.WithError(err)
			}
			entry.Warn("connection lost")
		}
		if !Sleep(ctx, delay) {
			return ctx.Err()
		}
	}
}

// Sleep waits d, or less when ctx ends first: it reports whether the whole wait passed.
func Sleep(ctx context.Context, d time.Duration) bool {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return true
	case <-ctx.Done():
		return false
	}
}
