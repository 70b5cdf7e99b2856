package relay

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
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
	Index int

	r      *Relay
	dialer *transport.Dialer
	log    *logrus.Entry
	queue  chan []byte  // batches of "T@now|params\n" lines (non-guaranteed mode)
	queued atomic.Int64 // lines in queue
	qbytes atomic.Int64 // bytes in queue and direct (relay.center_queue_bytes)
	free   chan []byte  // written batches, for clients to fill again
	direct chan []byte  // R lines answering this center's E
	up     atomic.Bool

	out, dropped, acksOK, acksErr prometheus.Counter
	upGauge                       prometheus.Gauge
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
// the link has one, so a steady stream allocates none.
func (c *Center) batchBuf() []byte {
	select {
	case b := <-c.free:
		return b[:0]
	default:
		return make([]byte, 0, batchMax+1024)
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

// session is one connection to the center.
func (c *Center) session(ctx context.Context, conn net.Conn) error {
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	w := bufio.NewWriterSize(conn, 64<<10)
	var seq int64
	line := make([]byte, 0, 256)
	line = AppendHeader(line, 'L', seq, time.Now().UnixMilli())
	line = AppendParams(line, []Param{{Key: "I", Val: Value{Kind: KindString, S: c.r.cfg.ID}}})
	line = append(line, '\n')
	if _, err := w.Write(line); err != nil {
		return fmt.Errorf("relay: center %s: login: %w", c.Name, err)
	}
	if err := w.Flush(); err != nil {
		return fmt.Errorf("relay: center %s: login: %w", c.Name, err)
	}
	seq++

	var fl *inflight
	if c.r.journal != nil {
		fl = &inflight{}
		fl.scanned = c.r.journal.Cursor(c.Name) - 1
	}
	loggedIn := make(chan struct{})
	readDone := make(chan error, 1)
	go func() { readDone <- c.readLoop(ctx, conn, fl, loggedIn) }()
	defer func() {
		conn.Close()
		<-readDone
		c.up.Store(false)
		c.upGauge.Set(0)
		if fl != nil {
			_ = c.r.journal.SetCursor(c.Name, fl.cursor())
		}
	}()

	select {
	case <-loggedIn:
	case err := <-readDone:
		readDone <- err
		return fmt.Errorf("relay: center %s: login: %w", c.Name, err)
	case <-ctx.Done():
		return nil
	case <-time.After(10 * time.Second):
		return fmt.Errorf("relay: center %s: login: no status within 10s", c.Name)
	}
	c.up.Store(true)
	c.upGauge.Set(1)
	c.connects.Inc()
	c.log.Info("center logged in")
	c.r.centerUp()

	// write sends one "T@now|params" line as "T#seq@now|params"
	write := func(l []byte) error {
		line = line[:0]
		line = append(line, l[0])
		line = append(line, '#')
		line = strconv.AppendInt(line, seq, 10)
		line = append(line, l[1:]...)
		line = append(line, '\n')
		seq++
		if c.r.msgLog != nil {
			c.r.msgLog.write("out", c.Name, line[:len(line)-1])
		}
		_, err := w.Write(line)
		c.out.Inc()
		return err
	}
	// writeDirect sends a line taken from c.direct
	writeDirect := func(l []byte) error {
		c.qbytes.Add(-int64(len(l)))
		return write(l)
	}
	// writeBatch sends a queued batch of '\n'-terminated lines
	writeBatch := func(b []byte) error {
		c.queued.Add(-int64(bytes.Count(b, nl)))
		c.qbytes.Add(-int64(len(b)))
		n := 0
		defer func() { c.out.Add(float64(n)) }()
		for len(b) > 0 {
			i := bytes.IndexByte(b, '\n')
			l := b[:i]
			b = b[i+1:]
			line = line[:0]
			line = append(line, l[0], '#')
			line = strconv.AppendInt(line, seq, 10)
			line = append(line, l[1:]...)
			line = append(line, '\n')
			seq++
			n++
			if c.r.msgLog != nil {
				c.r.msgLog.write("out", c.Name, line[:len(line)-1])
			}
			if _, err := w.Write(line); err != nil {
				return err
			}
		}
		return nil
	}

	if fl == nil {
		for {
			select {
			case b := <-c.queue:
				if err := writeBatch(b); err != nil {
					return fmt.Errorf("relay: center %s: write: %w", c.Name, err)
				}
				c.recycle(b)
			case l := <-c.direct:
				if err := writeDirect(l); err != nil {
					return fmt.Errorf("relay: center %s: write: %w", c.Name, err)
				}
			case err := <-readDone:
				readDone <- err
				return err
			case <-ctx.Done():
				_ = w.Flush()
				return nil
			}
			// drain what is ready (yielding once so that producers can add to a small batch), then flush once
			for round := 0; round < 2; round++ {
				for more := true; more; {
					select {
					case b := <-c.queue:
						if err := writeBatch(b); err != nil {
							return fmt.Errorf("relay: center %s: write: %w", c.Name, err)
						}
						c.recycle(b)
					default:
						more = false
					}
				}
				if round == 0 && w.Buffered() < 8<<10 {
					runtime.Gosched()
				}
			}
			if err := w.Flush(); err != nil {
				return fmt.Errorf("relay: center %s: write: %w", c.Name, err)
			}
		}
	}

	// guaranteed: read the journal from the cursor
	jr := c.r.journal.Reader(fl.cursor())
	defer jr.Close()
	window := c.r.cfg.CenterQueue
	tick := time.NewTicker(100 * time.Millisecond)
	defer tick.Stop()
	for {
		durable, moved := c.r.journal.Durable()
		var wait <-chan struct{} = moved
		wrote := false
		for jr.next <= durable {
			if fl.len() >= window {
				wait = nil // the ticker wakes us to look again once acks drain the window
				break
			}
			idx, set, rec, err := jr.Next(ctx)
			if err != nil {
				return fmt.Errorf("relay: center %s: %w", c.Name, err)
			}
			if !set.Has(c.Index) {
				fl.skip(idx)
				continue
			}
			fl.push(seq, idx)
			if err := write(rec); err != nil {
				return fmt.Errorf("relay: center %s: write: %w", c.Name, err)
			}
			wrote = true
		}
		for more := true; more; {
			select {
			case l := <-c.direct:
				if err := writeDirect(l); err != nil {
					return fmt.Errorf("relay: center %s: write: %w", c.Name, err)
				}
				wrote = true
			default:
				more = false
			}
		}
		if wrote {
			if err := w.Flush(); err != nil {
				return fmt.Errorf("relay: center %s: write: %w", c.Name, err)
			}
		}
		select {
		case <-wait:
		case l := <-c.direct:
			if err := writeDirect(l); err != nil {
				return fmt.Errorf("relay: center %s: write: %w", c.Name, err)
			}
			if err := w.Flush(); err != nil {
				return fmt.Errorf("relay: center %s: write: %w", c.Name, err)
			}
		case <-tick.C:
			if err := c.r.journal.SetCursor(c.Name, fl.cursor()); err != nil {
				c.log.WithError(err).Warn("cursor not saved")
			}
			c.r.journal.Collect(c.r.centerNames)
		case err := <-readDone:
			readDone <- err
			return err
		case <-ctx.Done():
			return nil
		}
	}
}

// readLoop reads statuses (M) and commands (E) from the center.
func (c *Center) readLoop(ctx context.Context, conn net.Conn, fl *inflight, loggedIn chan struct{}) error {
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
