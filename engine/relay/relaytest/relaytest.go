// Package relaytest provides a test AMI center (accepts relay logins, acks
// every instruction, records what it receives) and a small AMI application
// client, for tests, examples and sbbench.
package relaytest

import (
	"bufio"
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"net"
	"strings"
	"sync"
	"time"

	"github.com/switchboard/switchboard/engine/relay"
	"github.com/switchboard/switchboard/engine/transport"
)

// Received is one instruction a center got: the relay's login id, the
// message as parsed, and its strict form without sequence number and time.
type Received struct {
	Relay string
	Msg   relay.Message
	Body  string // e.g. O|T="Order"|I="o1"
}

// Center is a test AMI center listening on 127.0.0.1.
type Center struct {
	ln     net.Listener
	cancel context.CancelFunc
	wg     sync.WaitGroup

	mu     sync.Mutex
	got    []Received
	conns  map[net.Conn]*bufio.Writer
	logins int
	notify chan struct{}
	// Silent makes the center stop acking (to test windows and replay).
	silent bool
	// Store keeps every received message (off for load tests: count only).
	Store bool
	count int
	acked int           // instructions whose status was flushed to the relay
	gate  chan struct{} // non-nil: reading is stopped until it is closed (StopReading)
}

// NewCenter listens on addr ("127.0.0.1:0" for a free port).
func NewCenter(addr string) (*Center, error) { return NewCenterTLS(addr, nil) }

// NewCenterTLS is NewCenter speaking TLS with cfg (nil = plain TCP).
func NewCenterTLS(addr string, cfg *tls.Config) (*Center, error) {
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return nil, fmt.Errorf("relaytest: center: %w", err)
	}
	if cfg != nil {
		ln = tls.NewListener(ln, cfg)
	}
	ctx, cancel := context.WithCancel(context.Background())
	c := &Center{ln: ln, cancel: cancel, conns: map[net.Conn]*bufio.Writer{}, notify: make(chan struct{}), Store: true}
	c.wg.Add(1)
	go func() {
		defer c.wg.Done()
		for {
			conn, err := ln.Accept()
			if err != nil {
				return
			}
			c.wg.Add(1)
			go func() {
				defer c.wg.Done()
				c.serve(ctx, conn)
			}()
		}
	}()
	return c, nil
}

// Addr is the listening address.
func (c *Center) Addr() string { return c.ln.Addr().String() }

// Close stops the center and waits for its goroutines.
func (c *Center) Close() {
	c.cancel()
	c.ln.Close()
	c.mu.Lock()
	for conn := range c.conns {
		conn.Close()
	}
	c.mu.Unlock()
	c.wg.Wait()
}

// Drop closes every relay connection (the relay reconnects).
func (c *Center) Drop() {
	c.mu.Lock()
	defer c.mu.Unlock()
	for conn := range c.conns {
		conn.Close()
	}
}

// Logins counts relay logins so far.
func (c *Center) Logins() int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.logins
}

// Count is the number of non-login instructions received.
func (c *Center) Count() int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.count
}

// Received returns a copy of what the center got.
func (c *Center) Received() []Received {
	c.mu.Lock()
	defer c.mu.Unlock()
	return append([]Received(nil), c.got...)
}

// Bodies returns the Body of every received instruction.
func (c *Center) Bodies() []string {
	var out []string
	for _, r := range c.Received() {
		out = append(out, r.Body)
	}
	return out
}

// Reset forgets what was received.
func (c *Center) Reset() {
	c.mu.Lock()
	c.got, c.count = nil, 0
	c.mu.Unlock()
}

// WaitCount waits until at least n instructions arrived.
func (c *Center) WaitCount(n int, timeout time.Duration) error {
	deadline := time.Now().Add(timeout)
	for {
		c.mu.Lock()
		got, ch := c.count, c.notify
		c.mu.Unlock()
		if got >= n {
			return nil
		}
		left := time.Until(deadline)
		if left <= 0 {
			return fmt.Errorf("relaytest: center got %d of %d instructions", got, n)
		}
		select {
		case <-ch:
		case <-time.After(left):
		}
	}
}

// WaitLogin waits until the relay has logged in n times in total.
func (c *Center) WaitLogin(n int, timeout time.Duration) error {
	deadline := time.Now().Add(timeout)
	for c.Logins() < n {
		if time.Now().After(deadline) {
			return fmt.Errorf("relaytest: %d of %d relay logins", c.Logins(), n)
		}
		time.Sleep(5 * time.Millisecond)
	}
	return nil
}

// SendE sends an E (execute command) line to every connected relay.
func (c *Center) SendE(params string) error {
	c.mu.Lock()
	defer c.mu.Unlock()
	if len(c.conns) == 0 {
		return errors.New("relaytest: no relay connected")
	}
	for _, w := range c.conns {
		fmt.Fprintf(w, "E@%d|%s\n", time.Now().UnixMilli(), params)
		if err := w.Flush(); err != nil {
			return err
		}
	}
	return nil
}

func (c *Center) serve(ctx context.Context, conn net.Conn) {
	w := bufio.NewWriterSize(conn, 32<<10)
	c.mu.Lock()
	c.conns[conn] = w
	c.mu.Unlock()
	defer func() {
		c.mu.Lock()
		delete(c.conns, conn)
		c.mu.Unlock()
		conn.Close()
	}()
	rd := transport.NewReader(gatedReader{c: c, ctx: ctx, conn: conn}, []byte("\n"), 1<<20)
	var relayID string
	var m relay.Message
	var out []byte
	var sinkNow int64
	unflushed := 0 // statuses written to w and not yet flushed
	for {
		line, err := rd.Next()
		if err != nil {
			return
		}
		if !c.Store && len(line) > 2 && line[0] != 'L' {
			// load-test sink: count and ack without a full parse
			seq := int64(0)
			for k := 2; k < len(line) && line[1] == '#' && line[k] >= '0' && line[k] <= '9'; k++ {
				seq = seq*10 + int64(line[k]-'0')
			}
			c.mu.Lock()
			c.count++
			silent := c.silent
			if !silent {
				if sinkNow == 0 {
					sinkNow = time.Now().UnixMilli() // one clock read per read burst
				}
				out = relay.AppendStatus(out[:0], sinkNow, seq, 0, "OK")
				out = append(out, '\n')
				w.Write(out)
				unflushed++
				if rd.Buffered() == 0 {
					if w.Flush() == nil {
						c.acked += unflushed
					}
					unflushed = 0
					sinkNow = 0
				}
			}
			c.mu.Unlock()
			continue
		}
		perr := relay.ParseInto(&m, line)
		c.mu.Lock()
		if perr == nil && m.Type == 'L' {
			relayID, _ = m.Text("I")
			c.logins++
		} else if perr == nil {
			c.count++
			if c.Store {
				body := relay.Message{Type: m.Type, Seq: -1, Now: -1, Params: m.Params}
				c.got = append(c.got, Received{Relay: relayID, Msg: cloneMsg(m), Body: body.String()})
			}
			close(c.notify)
			c.notify = make(chan struct{})
		}
		silent := c.silent
		c.mu.Unlock()
		if silent {
			continue
		}
		code, text := 0, "OK"
		if perr != nil {
			code, text = 1, perr.Error()
		}
		out = relay.AppendStatus(out[:0], time.Now().UnixMilli(), m.Seq, code, text)
		out = append(out, '\n')
		c.mu.Lock()
		_, werr := w.Write(out)
		if perr == nil && m.Type != 'L' {
			unflushed++
		}
		if werr == nil && rd.Buffered() == 0 {
			if werr = w.Flush(); werr == nil {
				c.acked += unflushed
			}
			unflushed = 0
		}
		c.mu.Unlock()
		if werr != nil || ctx.Err() != nil {
			return
		}
	}
}

// gatedReader is a relay connection as the center reads it: StopReading holds reads back.
type gatedReader struct {
	c    *Center
	ctx  context.Context
	conn net.Conn
}

func (g gatedReader) Read(p []byte) (int, error) {
	g.c.mu.Lock()
	gate := g.c.gate
	g.c.mu.Unlock()
	if gate != nil {
		select {
		case <-gate:
		case <-g.ctx.Done():
			return 0, g.ctx.Err()
		}
	}
	return g.conn.Read(p)
}

// StopReading makes the center stop reading its relay connections (true): the relay's writes block once
// the socket buffers are full, as with a center that hangs. false reads again.
func (c *Center) StopReading(stop bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	switch {
	case stop && c.gate == nil:
		c.gate = make(chan struct{})
	case !stop && c.gate != nil:
		close(c.gate)
		c.gate = nil
	}
}

// Acked is the number of non-login instructions whose status the center flushed to the relay (a
// message counted by Count may still lose its status if the link breaks).
func (c *Center) Acked() int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.acked
}

// SetSilent stops (true) or resumes (false) acknowledging.
func (c *Center) SetSilent(s bool) {
	c.mu.Lock()
	c.silent = s
	c.mu.Unlock()
}

func cloneMsg(m relay.Message) relay.Message {
	m.Params = append([]relay.Param(nil), m.Params...)
	return m
}

// Client is an AMI application connection.
type Client struct {
	conn net.Conn
	rd   *transport.Reader
	w    *bufio.Writer
	seq  int64
}

// Dial connects to a relay and logs in with id (plus extra login params such
// as `O="QUIET"`), returning the login status error if it is not S=0.
func Dial(addr, id, extra string) (*Client, error) { return DialTLS(addr, nil, id, extra) }

// DialTLS is Dial over TLS with cfg (nil = plain TCP).
func DialTLS(addr string, cfg *tls.Config, id, extra string) (*Client, error) {
	var conn net.Conn
	var err error
	if cfg != nil {
		conn, err = tls.DialWithDialer(&net.Dialer{Timeout: 5 * time.Second}, "tcp", addr, cfg)
	} else {
		conn, err = net.DialTimeout("tcp", addr, 5*time.Second)
	}
	if err != nil {
		return nil, fmt.Errorf("relaytest: dial %s: %w", addr, err)
	}
	cl := &Client{conn: conn, rd: transport.NewReader(conn, []byte("\n"), 1<<20), w: bufio.NewWriterSize(conn, 64<<10)}
	login := fmt.Sprintf(`I="%s"`, id)
	if extra != "" {
		login += "|" + extra
	}
	if err := cl.Send('L', login); err != nil {
		conn.Close()
		return nil, err
	}
	if strings.Contains(extra, "QUIET") {
		return cl, nil
	}
	st, err := cl.ReadStatus(5 * time.Second)
	if err != nil {
		conn.Close()
		return nil, err
	}
	if st.Code != 0 {
		conn.Close()
		return nil, fmt.Errorf("relaytest: login refused: %s", st.Text)
	}
	return cl, nil
}

// Conn is the underlying connection.
func (c *Client) Conn() net.Conn { return c.conn }

// Close closes the connection.
func (c *Client) Close() error { return c.conn.Close() }

// Send writes `<typ>#<seq>|<params>` and flushes; it returns the seq used.
func (c *Client) Send(typ byte, params string) error {
	_, err := c.Queue(typ, params)
	if err != nil {
		return err
	}
	return c.Flush()
}

// Queue buffers one instruction with the next sequence number.
func (c *Client) Queue(typ byte, params string) (int64, error) {
	seq := c.seq
	c.seq++
	var b []byte
	b = relay.AppendHeader(b, typ, seq, -1)
	if params != "" {
		b = append(b, '|')
		b = append(b, params...)
	}
	b = append(b, '\n')
	_, err := c.w.Write(b)
	return seq, err
}

// Flush writes what Queue buffered.
func (c *Client) Flush() error { return c.w.Flush() }

// Raw writes bytes as they are (for bad-input tests); it does not number them.
func (c *Client) Raw(s string) error {
	if _, err := c.w.WriteString(s); err != nil {
		return err
	}
	return c.w.Flush()
}

// Status is one M line.
type Status struct {
	Seq  int64
	Code int
	Text string
	Line string
}

// ReadLine reads the next line from the relay.
func (c *Client) ReadLine(timeout time.Duration) (string, error) {
	_ = c.conn.SetReadDeadline(time.Now().Add(timeout))
	line, err := c.rd.Next()
	if err != nil {
		return "", fmt.Errorf("relaytest: read: %w", err)
	}
	return string(line), nil
}

// ReadStatus reads the next line and parses it as an M status.
func (c *Client) ReadStatus(timeout time.Duration) (Status, error) {
	line, err := c.ReadLine(timeout)
	if err != nil {
		return Status{}, err
	}
	m, err := relay.Parse([]byte(line))
	if err != nil || m.Type != 'M' {
		return Status{}, fmt.Errorf("relaytest: expected a status, got %q", line)
	}
	q, _ := m.Get("Q")
	s, _ := m.Get("S")
	t, _ := m.Text("M")
	return Status{Seq: q.I, Code: int(s.I), Text: t, Line: line}, nil
}

// DialRaw connects without logging in (for tests of the login rules).
func DialRaw(addr string) (*Client, error) {
	conn, err := net.DialTimeout("tcp", addr, 5*time.Second)
	if err != nil {
		return nil, fmt.Errorf("relaytest: dial %s: %w", addr, err)
	}
	return &Client{conn: conn, rd: transport.NewReader(conn, []byte("\n"), 1<<20), w: bufio.NewWriterSize(conn, 64<<10)}, nil
}
