package relay

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"runtime"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/sirupsen/logrus"

	"github.com/switchboard/switchboard/engine/transport"
)

// Center is one outbound link to an AMI center. It logs in as the relay and
// forwards routed messages with its own sequence numbers. In non-guaranteed
// mode messages wait in a bounded queue (dropped and counted when it is
// full); in guaranteed mode the center reads the journal from its cursor,
// which advances as the center acknowledges.
type Center struct {
	Name  string
	Index int // bit in the routes' CenterSet

	slot   int // bit in journal records (guaranteed mode; Journal.Slot)
	r      *Relay
	dialer *transport.Dialer
	log    *logrus.Entry
	queue  chan []byte  // batches of "T@now|params\n" lines (non-guaranteed mode)
	queued atomic.Int64 // lines in queue
	qbytes atomic.Int64 // bytes in queue and direct (relay.center_queue_bytes)
	free   chan []byte  // written batches, for clients to fill again
	direct chan []byte  // R lines answering this center's E
	up     atomic.Bool

	writing atomic.Int64 // start of the write in progress (unix ns); 0 = none (State)
	connMu  sync.Mutex
	conn    net.Conn // the session's connection, for cut
	cutting bool     // shutdown: no new session

	out, dropped, acksOK, acksErr prometheus.Counter
	upGauge, stalledGauge         prometheus.Gauge
	connects                      prometheus.Counter
	status                        centerStatus // last error and progress, for the status page (status.go)
}

// Connected reports whether the center's link is logged in.
func (c *Center) Connected() bool { return c.up.Load() }

// QueueLen is the number of messages waiting for the center (non-guaranteed mode).
func (c *Center) QueueLen() int { return int(c.queued.Load()) }

// enqueue queues a batch of n lines for the center without blocking
// (non-guaranteed mode); past relay.center_queue lines or
// relay.center_queue_bytes bytes the batch is dropped.
func (c *Center) enqueue(lines []byte, n int) {
	size := int64(len(lines))
	q, b := c.queued.Add(int64(n)), c.qbytes.Add(size)
	if q <= int64(c.r.cfg.CenterQueue) && b <= int64(c.r.cfg.CenterQueueBytes) {
		select {
		case c.queue <- lines:
			return
		default:
		}
	}
	c.queued.Add(-int64(n))
	c.qbytes.Add(-size)
	c.dropped.Add(float64(n))
	c.r.warnEvery(&c.r.dropWarn, c.log, "center queue full: messages dropped")
}

// batchBuf returns an empty buffer for a batch of lines: a recycled one when
// the link has one, so a steady stream allocates none. A new one starts at
// 4 KiB (a read burst's lines for one center are usually fewer bytes than
// that) and grows with append; recycled buffers keep what they grew to.
func (c *Center) batchBuf() []byte {
	select {
	case b := <-c.free:
		return b[:0]
	default:
		return make([]byte, 0, 4<<10)
	}
}

// recycle offers a written batch's buffer for reuse.
func (c *Center) recycle(b []byte) {
	if cap(b) > 4*batchMax {
		return
	}
	select {
	case c.free <- b[:0]:
	default:
	}
}

// sendDirect queues a line that bypasses routing and the journal (R answers),
// within relay.center_queue_bytes.
func (c *Center) sendDirect(line []byte) bool {
	size := int64(len(line))
	if c.qbytes.Add(size) <= int64(c.r.cfg.CenterQueueBytes) {
		select {
		case c.direct <- line:
			return true
		default:
		}
	}
	c.qbytes.Add(-size)
	return false
}

// run keeps the link up until ctx ends.
func (c *Center) run(ctx context.Context) {
	_ = c.dialer.Run(ctx, c.observedSession)
}

// inflight maps center sequence numbers to journal indexes (guaranteed mode).
type inflight struct {
	mu      sync.Mutex
	seqs    []int64
	idxs    []uint64
	scanned uint64 // last journal index looked at
}

func (f *inflight) push(seq int64, idx uint64) {
	f.mu.Lock()
	f.seqs = append(f.seqs, seq)
	f.idxs = append(f.idxs, idx)
	f.scanned = idx
	f.mu.Unlock()
}

func (f *inflight) skip(idx uint64) {
	f.mu.Lock()
	f.scanned = idx
	f.mu.Unlock()
}

func (f *inflight) ack(seq int64) {
	f.mu.Lock()
	n := 0
	for n < len(f.seqs) && f.seqs[n] <= seq {
		n++
	}
	f.seqs = f.seqs[n:]
	f.idxs = f.idxs[n:]
	f.mu.Unlock()
}

// cursor is the next index not yet acknowledged.
func (f *inflight) cursor() uint64 {
	f.mu.Lock()
	defer f.mu.Unlock()
	if len(f.idxs) > 0 {
		return f.idxs[0]
	}
	return f.scanned + 1
}

func (f *inflight) len() int {
	f.mu.Lock()
	defer f.mu.Unlock()
	return len(f.seqs)
}

// session is one connection to the center: log in, then forward the queue
// (non-guaranteed mode) or the journal (guaranteed mode) until the link
// breaks or ctx ends.
func (c *Center) session(ctx context.Context, conn net.Conn) error {
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	l := c.newLink(conn)
	if !c.hold(conn) {
		return nil // shutting down
	}
	defer c.release()
	if err := l.login(); err != nil {
		return err
	}
	var fl *inflight
	if c.r.journal != nil {
		fl = &inflight{}
		fl.scanned = c.r.journal.Cursor(c.Name) - 1
	}
	loggedIn := make(chan struct{})
	readDone := make(chan error, 1)
	go func() { readDone <- c.readLoop(ctx, conn, fl, loggedIn, &l.acked) }()
	defer func() {
		conn.Close()
		<-readDone
		c.up.Store(false)
		c.upGauge.Set(0)
		if fl != nil {
			_ = c.r.journal.SetCursor(c.Name, fl.cursor())
		} else {
			l.countUnacked()
		}
	}()
	if err := c.awaitLogin(ctx, loggedIn, readDone); err != nil || ctx.Err() != nil {
		return err
	}
	c.up.Store(true)
	c.upGauge.Set(1)
	c.connects.Inc()
	c.log.Info("center logged in")
	c.r.centerUp()
	if fl == nil {
		return l.forwardQueue(ctx, readDone)
	}
	return l.forwardJournal(ctx, fl, readDone)
}

// awaitLogin waits for the center's status of the relay's login.
func (c *Center) awaitLogin(ctx context.Context, loggedIn <-chan struct{}, readDone chan error) error {
	t := time.NewTimer(10 * time.Second)
	defer t.Stop()
	select {
	case <-loggedIn:
		return nil
	case err := <-readDone:
		readDone <- err
		if err == nil {
			err = io.EOF
		}
		return fmt.Errorf("relay: center %s: login: %w", c.Name, err)
	case <-ctx.Done():
		return nil
	case <-t.C:
		return fmt.Errorf("relay: center %s: login: no status within 10s", c.Name)
	}
}

// hold records the connection of the session in progress, for cut; false when the relay is shutting
// down.
func (c *Center) hold(conn net.Conn) bool {
	c.connMu.Lock()
	defer c.connMu.Unlock()
	if c.cutting {
		return false
	}
	c.conn = conn
	return true
}

func (c *Center) release() {
	c.connMu.Lock()
	c.conn = nil
	c.connMu.Unlock()
}

// cut ends the session in progress at once, even one blocked writing to a center that does not read
// (shutdown, once its time is up), and keeps new ones from starting.
func (c *Center) cut() {
	c.connMu.Lock()
	defer c.connMu.Unlock()
	c.cutting = true
	if c.conn != nil {
		_ = c.conn.SetDeadline(time.Unix(1, 0))
		_ = c.conn.Close()
	}
}

// State is "down" (not logged in), "stalled" (logged in, but a write to it has been blocked for more than
// a second: it does not read) or "up".
func (c *Center) State() string {
	if !c.up.Load() {
		return "down"
	}
	if since := c.writing.Load(); since != 0 && time.Since(time.Unix(0, since)) > c.stallAfter() {
		return "stalled"
	}
	return "up"
}

// stallAfter is how long a write may block before the center counts as stalled.
func (c *Center) stallAfter() time.Duration { return min(time.Second, c.r.cfg.WriteTimeout/2) }

// link is the writing side of one session: the connection behind a buffer,
// and the center's sequence numbers (0 is the relay's login).
type link struct {
	c     *Center
	w     *bufio.Writer
	seq   int64        // next sequence number
	acked atomic.Int64 // highest sequence number the center acknowledged (non-guaranteed mode)
	line  []byte
}

func (c *Center) newLink(conn net.Conn) *link {
	dw := &deadlineWriter{conn: conn, timeout: c.r.cfg.WriteTimeout, since: &c.writing}
	return &link{c: c, w: bufio.NewWriterSize(dw, 64<<10), line: make([]byte, 0, 256)}
}

// deadlineWriter writes to a connection with relay.write_timeout per write, and shows the write in
// progress (State: a center that does not read is stalled, then cut off).
type deadlineWriter struct {
	conn    net.Conn
	timeout time.Duration
	since   *atomic.Int64
}

func (d *deadlineWriter) Write(p []byte) (int, error) {
	now := time.Now()
	d.since.Store(now.UnixNano())
	_ = d.conn.SetWriteDeadline(now.Add(d.timeout))
	n, err := d.conn.Write(p)
	d.since.Store(0)
	if errors.Is(err, os.ErrDeadlineExceeded) {
		err = fmt.Errorf("no progress for relay.write_timeout (%v): the center does not read: %w", d.timeout, err)
	}
	return n, err
}

func (l *link) login() error {
	l.line = AppendHeader(l.line[:0], 'L', l.seq, time.Now().UnixMilli())
	l.line = AppendParams(l.line, []Param{{Key: "I", Val: Value{Kind: KindString, S: l.c.r.cfg.ID}}})
	l.line = append(l.line, '\n')
	l.seq++
	if _, err := l.w.Write(l.line); err != nil {
		return fmt.Errorf("relay: center %s: login: %w", l.c.Name, err)
	}
	if err := l.w.Flush(); err != nil {
		return fmt.Errorf("relay: center %s: login: %w", l.c.Name, err)
	}
	return nil
}

// write sends one "T@now|params" line as "T#seq@now|params".
func (l *link) write(rec []byte) error {
	l.line = append(l.line[:0], rec[0], '#')
	l.line = strconv.AppendInt(l.line, l.seq, 10)
	l.line = append(l.line, rec[1:]...)
	l.line = append(l.line, '\n')
	l.seq++
	if l.c.r.msgLog != nil {
		l.c.r.msgLog.write("out", l.c.Name, l.line[:len(l.line)-1])
	}
	_, err := l.w.Write(l.line)
	l.c.out.Inc()
	return err
}

// writeDirect sends a line taken from c.direct (an R answer).
func (l *link) writeDirect(rec []byte) error {
	l.c.qbytes.Add(-int64(len(rec)))
	return l.write(rec)
}

// writeBatch sends a queued batch of '\n'-terminated lines. When a write fails, the lines of the batch not
// written are counted as dropped.
func (l *link) writeBatch(b []byte) error {
	c := l.c
	c.queued.Add(-int64(bytes.Count(b, nl)))
	c.qbytes.Add(-int64(len(b)))
	n := 0
	defer func() { c.out.Add(float64(n)) }()
	for len(b) > 0 {
		i := bytes.IndexByte(b, '\n')
		rec := b[:i]
		b = b[i+1:]
		l.line = append(l.line[:0], rec[0], '#')
		l.line = strconv.AppendInt(l.line, l.seq, 10)
		l.line = append(l.line, rec[1:]...)
		l.line = append(l.line, '\n')
		l.seq++
		n++
		if c.r.msgLog != nil {
			c.r.msgLog.write("out", c.Name, l.line[:len(l.line)-1])
		}
		if _, err := l.w.Write(l.line); err != nil {
			if rest := bytes.Count(b, nl); rest > 0 {
				c.dropped.Add(float64(rest))
			}
			return err
		}
	}
	return nil
}

// countUnacked counts as dropped what was written to the center and not acknowledged when the session
// ends (non-guaranteed mode: no journal will send it again). A center that received a message but whose
// ack was lost with the link makes this count one too many, never one too few.
func (l *link) countUnacked() {
	sent := l.seq - 1 // 0 was the login
	if n := sent - l.acked.Load(); n > 0 && sent > 0 {
		l.c.dropped.Add(float64(n))
		l.c.log.WithField("messages", n).Warn("the link closed before the center acknowledged these messages: counted as dropped")
	}
}

func (l *link) flush() error {
	if err := l.w.Flush(); err != nil {
		return fmt.Errorf("relay: center %s: write: %w", l.c.Name, err)
	}
	return nil
}

// forwardQueue writes the center's queue (non-guaranteed mode) until the link breaks or ctx ends.
func (l *link) forwardQueue(ctx context.Context, readDone chan error) error {
	c := l.c
	for {
		select {
		case b := <-c.queue:
			if err := l.writeBatch(b); err != nil {
				return fmt.Errorf("relay: center %s: write: %w", c.Name, err)
			}
			c.recycle(b)
		case rec := <-c.direct:
			if err := l.writeDirect(rec); err != nil {
				return fmt.Errorf("relay: center %s: write: %w", c.Name, err)
			}
		case err := <-readDone:
			readDone <- err
			return err
		case <-ctx.Done():
			_ = l.w.Flush() // within relay.write_timeout, or until shutdown cuts the link
			return nil
		}
		// drain what is ready (yielding once so that producers can add to a small batch), then flush once
		for round := 0; round < 2; round++ {
			for more := true; more; {
				select {
				case b := <-c.queue:
					if err := l.writeBatch(b); err != nil {
						return fmt.Errorf("relay: center %s: write: %w", c.Name, err)
					}
					c.recycle(b)
				default:
					more = false
				}
			}
			if round == 0 && l.w.Buffered() < 8<<10 {
				runtime.Gosched()
			}
		}
		if err := l.flush(); err != nil {
			return err
		}
	}
}

// forwardJournal writes the journal from the center's cursor (guaranteed mode), at most
// relay.center_queue records ahead of the center's acks, until the link breaks or ctx ends.
func (l *link) forwardJournal(ctx context.Context, fl *inflight, readDone chan error) error {
	c := l.c
	j := c.r.journal
	jr, err := j.openReader(c, fl.cursor())
	if err != nil {
		return fmt.Errorf("relay: center %s: %w", c.Name, err)
	}
	defer jr.Close()
	window := c.r.cfg.CenterQueue
	tick := time.NewTicker(100 * time.Millisecond)
	defer tick.Stop()
	for {
		var wait <-chan struct{}
		wrote := false
		for {
			if fl.len() >= window {
				break // the ticker wakes us to look again once acks drain the window
			}
			idx, set, rec, ok, err := jr.next(ctx)
			if err != nil {
				return fmt.Errorf("relay: center %s: %w", c.Name, err)
			}
			if !ok {
				wait = jr.ready()
				break
			}
			if !set.Has(c.slot) {
				fl.skip(idx)
				continue
			}
			fl.push(l.seq, idx)
			if err := l.write(rec); err != nil {
				return fmt.Errorf("relay: center %s: write: %w", c.Name, err)
			}
			wrote = true
		}
		if n, err := l.drainDirect(); err != nil {
			return err
		} else if n > 0 {
			wrote = true
		}
		if wrote {
			if err := l.flush(); err != nil {
				return err
			}
		}
		select {
		case <-wait:
		case rec := <-c.direct:
			if err := l.writeDirect(rec); err != nil {
				return fmt.Errorf("relay: center %s: write: %w", c.Name, err)
			}
			if err := l.flush(); err != nil {
				return err
			}
		case <-tick.C:
			if err := j.SetCursor(c.Name, fl.cursor()); err != nil {
				c.log.WithError(err).Warn("cursor not saved")
			}
		case err := <-readDone:
			readDone <- err
			return err
		case <-ctx.Done():
			return nil
		}
	}
}

// drainDirect writes the R answers waiting, without blocking for more.
func (l *link) drainDirect() (int, error) {
	n := 0
	for {
		select {
		case rec := <-l.c.direct:
			if err := l.writeDirect(rec); err != nil {
				return n, fmt.Errorf("relay: center %s: write: %w", l.c.Name, err)
			}
			n++
		default:
			return n, nil
		}
	}
}

// readLoop reads statuses (M) and commands (E) from the center.
func (c *Center) readLoop(ctx context.Context, conn net.Conn, fl *inflight, loggedIn chan struct{}, acked *atomic.Int64) error {
	rd := transport.NewReader(conn, []byte("\n"), c.r.cfg.MaxLine)
	var m Message
	first := true
	for {
		raw, err := rd.Next()
		if err != nil {
			if errors.Is(err, transport.ErrTooLong) {
				c.log.Warn("over-long line from center skipped")
				continue
			}
			if errors.Is(err, io.EOF) || ctx.Err() != nil {
				return nil
			}
			return fmt.Errorf("relay: center %s: read: %w", c.Name, err)
		}
		if !first {
			// hot path: a plain OK status only bumps a counter (and the window)
			if q, code, ok := quickStatus(raw); ok && code == 0 {
				c.acksOK.Inc()
				if fl != nil {
					fl.ack(q)
				} else if q > acked.Load() {
					acked.Store(q)
				}
				continue
			}
		}
		if err := ParseInto(&m, raw); err != nil {
			c.log.WithError(err).Warn("malformed line from center")
			continue
		}
		switch m.Type {
		case 'M':
			q, _ := m.Get("Q")
			s, _ := m.Get("S")
			if first {
				first = false
				if s.I != 0 {
					txt, _ := m.Text("M")
					return fmt.Errorf("relay: center %s: login refused: %s", c.Name, txt)
				}
				close(loggedIn)
				continue
			}
			if s.I == 0 {
				c.acksOK.Inc()
			} else {
				c.acksErr.Inc()
				txt, _ := m.Text("M")
				c.r.warnEvery(&c.r.nakWarn, c.log.WithFields(logrus.Fields{"q": q.I, "status": s.I, "reason": txt}), "center rejected a message")
			}
			if fl != nil {
				fl.ack(q.I)
			} else if q.I > acked.Load() {
				acked.Store(q.I)
			}
		case 'E':
			c.r.deliverCommand(c, &m)
		}
	}
}

var nl = []byte{'\n'}

// quickStatus reads Q and S of a strict status line `M@now|Q=n|S=n|...`
// without a full parse; ok is false for anything else.
func quickStatus(line []byte) (q int64, code int, ok bool) {
	if len(line) < 8 || line[0] != 'M' {
		return 0, 0, false
	}
	i := bytes.Index(line, []byte("|Q="))
	if i < 0 {
		return 0, 0, false
	}
	j := i + 3
	for ; j < len(line) && j-i < 21 && line[j] >= '0' && line[j] <= '9'; j++ {
		q = q*10 + int64(line[j]-'0')
	}
	if j == i+3 || j+3 > len(line) || string(line[j:j+3]) != "|S=" {
		return 0, 0, false
	}
	k := j + 3
	for ; k < len(line) && k-j < 12 && line[k] >= '0' && line[k] <= '9'; k++ {
		code = code*10 + int(line[k]-'0')
	}
	if k == j+3 || (k < len(line) && line[k] != '|') {
		return 0, 0, false
	}
	return q, code, true
}
