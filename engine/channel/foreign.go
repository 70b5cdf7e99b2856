package channel

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"time"

	"github.com/switchboard/switchboard/engine/transport"
)

// maxForeignFetches bounds the absolute-URL fetches (follow_absolute) in flight per channel; each holds at
// most max_header_size + max_message_size bytes and lasts at most dial_timeout + response_timeout.
const maxForeignFetches = 8

// foreignTimeout bounds a fetch when response_timeout is 0.
const foreignTimeout = 30 * time.Second

// fetch sends an http request for an absolute URL of another server on a connection of its own (closed after
// the response); the response goes through the in transform to w, topic_in or Receive like any other.
func (c *Channel) fetch(r *httpRequest, w *waiter) error {
	b, err := r.encode(r.url.Host, true)
	if err != nil {
		c.m.dropped("encode").Inc()
		return fmt.Errorf("channel %s: %w", c.cfg.Name, err)
	}
	select {
	case c.foreign <- struct{}{}:
	default:
		c.m.dropped("buffer_full").Inc()
		return fmt.Errorf("channel %s: %w (%d absolute-URL fetches in flight)", c.cfg.Name, ErrBufferFull, maxForeignFetches)
	}
	where := r.url.Redacted()
	ok := c.set.spawn(func(ctx context.Context) {
		defer func() { <-c.foreign }()
		payload, err := c.fetchOnce(ctx, r, b)
		if err != nil {
			err = fmt.Errorf("channel %s: fetch %s: %w", c.cfg.Name, where, err)
			if w == nil || !w.send(reply{err: err}) {
				c.m.dropped("reply_lost").Inc()
				c.warn("fetch", time.Second, c.log.WithError(err), "absolute-URL fetch failed")
			}
			return
		}
		c.m.msgsIn.Inc()
		c.deliver(ctx, payload, w)
	})
	if !ok {
		<-c.foreign
		return ErrStopped
	}
	c.m.msgsOut.Inc()
	return nil
}

func (c *Channel) fetchOnce(ctx context.Context, r *httpRequest, b []byte) (any, error) {
	var tc *tls.Config
	if r.url.Scheme == "https" {
		var err error
		if tc, err = transport.ClientTLS(r.url.Hostname(), ""); err != nil {
			return nil, err
		}
	}
	d := &transport.Dialer{Addr: r.hostPort(), TLS: tc, Timeout: c.cfg.DialTimeout, KeepAlive: c.cfg.KeepAlive}
	conn, err := d.Dial(ctx)
	if err != nil {
		return nil, err
	}
	defer conn.Close()
	stop := context.AfterFunc(ctx, func() { conn.Close() })
	defer stop()
	limit := c.cfg.ResponseTimeout
	if limit <= 0 {
		limit = foreignTimeout
	}
	_ = conn.SetDeadline(time.Now().Add(limit))
	if _, err := conn.Write(b); err != nil {
		return nil, fmt.Errorf("write: %w", err)
	}
	dec := NewHTTPDecoder(conn, c.cfg.MaxHeaderSize, c.cfg.MaxMessageSize)
	dec.Method = func() string { return r.method }
	msg, err := dec.Decode()
	switch {
	case err == nil:
		return msg, nil
	case isTimeout(err):
		return nil, fmt.Errorf("%w %v", ErrResponseTimeout, limit)
	case errors.Is(err, io.EOF):
		return nil, errors.New("closed by peer before the response")
	}
	return nil, err
}
