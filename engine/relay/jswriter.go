package relay

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strconv"
	"sync"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/sirupsen/logrus"
)

// jsWriter appends the records of one active term to the journal stream. Records are published as they
// come, without waiting for the previous acknowledgement (the server batches them into its replication
// log: that is the group commit), each with Nats-Expected-Last-Sequence set to the sequence the record
// before it gets. The stream therefore stores a node's records in append order or not at all: when one
// fails (no stream leader during an election, a lost server, a timeout), every record after it is
// refused too, and the writer looks at the stream (recover) to learn which records are stored, then sends
// the others again in order. A record is durable when its PubAck arrives: for an R3 stream the write is
// then on a quorum of servers. Another writer (a node that still believes it is active) is detected the
// same way and its records are handed to onForeign.
type jsWriter struct {
	nc         *nats.Conn
	subject    string
	epoch      uint64 // the lease revision of this term
	ackTimeout time.Duration
	maxBytes   int64 // bytes of records sent and not acknowledged
	log        *logrus.Entry
	// lookup reads the stream: its last sequence, and the data of one message.
	last      func(ctx context.Context) (uint64, error)
	get       func(ctx context.Context, seq uint64) ([]byte, error)
	onForeign func(seq uint64, data []byte)
	onResent  func(records int) // counts the records sent again

	inbox  string
	sub    *nats.Subscription
	status chan nats.Status // reconnections: what was in flight may be lost

	mu         sync.Mutex
	gen        uint64   // bumped by recover: replies to earlier sends are ignored
	pending    []*jsRec // appended, not sent (in ticket order)
	inflight   []*jsRec // sent, not acknowledged (in ticket order)
	spare      []*jsRec // reusable records
	flBytes    int64    // bytes in inflight
	lastTicket uint64   // last ticket handed out
	durable    uint64   // every ticket up to it is stored
	durableSeq uint64   // stream sequence of the last record known stored (this writer's or not)
	nextSeq    uint64   // the sequence the next record sent gets
	durCh      chan struct{}
	broken     bool  // a send failed: recover before sending more
	err        error // the writer is stopped (waitDurable fails past durable)
	wake       chan struct{}
	stopped    chan struct{}
	cancel     context.CancelFunc
}

// jsRec is one record in the writer's queues.
type jsRec struct {
	ticket uint64
	seq    uint64 // the stream sequence it was sent for
	sent   time.Time
	data   []byte
	hdr    nats.Header
}

// errLostRole fails the appends of a node that is no longer the active one.
var errLostRole = errors.New("relay: this relay node is no longer the active one")

// newJSWriter starts a writer whose first record gets sequence last+1.
func newJSWriter(nc *nats.Conn, subject string, epoch, last uint64, ackTimeout time.Duration, maxBytes int64, log *logrus.Entry,
	lastFn func(context.Context) (uint64, error), getFn func(context.Context, uint64) ([]byte, error), onForeign func(uint64, []byte)) (*jsWriter, error) {
	w := &jsWriter{nc: nc, subject: subject, epoch: epoch, ackTimeout: ackTimeout, maxBytes: maxBytes, log: log,
		last: lastFn, get: getFn, onForeign: onForeign,
		inbox: nc.NewRespInbox(), durableSeq: last, nextSeq: last + 1, durCh: make(chan struct{}),
		wake: make(chan struct{}, 1), stopped: make(chan struct{})}
	sub, err := nc.Subscribe(w.inbox+".>", w.onReply)
	if err != nil {
		return nil, fmt.Errorf("relay: journal: subscribe to acknowledgements: %w", err)
	}
	// acknowledgements are small and many: the subscription may hold a lot of them, never the records
	_ = sub.SetPendingLimits(-1, 64<<20)
	w.sub = sub
	w.status = nc.StatusChanged(nats.CONNECTED)
	ctx, cancel := context.WithCancel(context.Background())
	w.cancel = cancel
	go w.run(ctx)
	return w, nil
}

// Append queues data (an encoded record, without its ticket: see encode) and returns its ticket.
func (w *jsWriter) Append(encode func(ticket uint64, b []byte) []byte) (uint64, error) {
	w.mu.Lock()
	if w.err != nil {
		err := w.err
		w.mu.Unlock()
		return 0, err
	}
	w.lastTicket++
	var rec *jsRec
	if n := len(w.spare); n > 0 {
		rec = w.spare[n-1]
		w.spare = w.spare[:n-1]
	} else {
		rec = &jsRec{hdr: nats.Header{}}
	}
	rec.ticket = w.lastTicket
	rec.data = encode(rec.ticket, rec.data[:0])
	w.pending = append(w.pending, rec)
	t := rec.ticket
	w.mu.Unlock()
	select {
	case w.wake <- struct{}{}:
	default:
	}
	return t, nil
}

// waitDurable blocks until ticket is stored, the writer stops, or ctx ends.
func (w *jsWriter) waitDurable(ctx context.Context, ticket uint64) (uint64, error) {
	for {
		w.mu.Lock()
		d, ch, err := w.durable, w.durCh, w.err
		w.mu.Unlock()
		if d >= ticket {
			return d, nil
		}
		if err != nil {
			return 0, err
		}
		select {
		case <-ch:
		case <-ctx.Done():
			return 0, ctx.Err()
		}
	}
}

// DurableSeq is the stream sequence of the last record known stored.
func (w *jsWriter) DurableSeq() uint64 {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.durableSeq
}

// pubAck is a JetStream publish acknowledgement.
type pubAck struct {
	Stream string `json:"stream"`
	Seq    uint64 `json:"seq"`
	Error  *struct {
		Code        int    `json:"code"`
		ErrCode     int    `json:"err_code"`
		Description string `json:"description"`
	} `json:"error"`
}

// onReply takes a PubAck (inbox.<gen>.<ticket>).
func (w *jsWriter) onReply(m *nats.Msg) {
	rest := m.Subject[len(w.inbox)+1:]
	dot := bytes.IndexByte([]byte(rest), '.')
	if dot < 0 {
		return
	}
	gen, err1 := strconv.ParseUint(rest[:dot], 10, 64)
	ticket, err2 := strconv.ParseUint(rest[dot+1:], 10, 64)
	if err1 != nil || err2 != nil {
		return
	}
	var pa pubAck
	var why string
	switch {
	case len(m.Data) == 0 && m.Header.Get("Status") != "":
		why = "status " + m.Header.Get("Status") + " " + m.Header.Get("Description") // 503: no stream leader now
	case json.Unmarshal(m.Data, &pa) != nil:
		why = "unreadable acknowledgement"
	case pa.Error != nil:
		why = pa.Error.Description
	}
	w.mu.Lock()
	defer w.mu.Unlock()
	if gen != w.gen || len(w.inflight) == 0 || ticket < w.inflight[0].ticket {
		return // an earlier attempt's answer, or resolved by recover
	}
	i := int(ticket - w.inflight[0].ticket)
	if i >= len(w.inflight) {
		return
	}
	rec := w.inflight[i]
	if why == "" && pa.Seq != rec.seq {
		why = fmt.Sprintf("stored at sequence %d, expected %d", pa.Seq, rec.seq)
	}
	if why != "" {
		if !w.broken {
			w.log.WithFields(logrus.Fields{"sequence": rec.seq, "reason": why}).Debug("journal: a record was not stored: looking at the stream")
		}
		w.broken = true
		select {
		case w.wake <- struct{}{}:
		default:
		}
		return
	}
	rec.sent = time.Time{} // acknowledged
	w.advance()
}

// advance moves durable over the acknowledged records at the head of inflight (under mu).
func (w *jsWriter) advance() {
	n := 0
	for n < len(w.inflight) && w.inflight[n].sent.IsZero() {
		n++
	}
	if n == 0 {
		return
	}
	last := w.inflight[n-1]
	w.durable, w.durableSeq = last.ticket, last.seq
	for _, rec := range w.inflight[:n] {
		w.flBytes -= int64(len(rec.data))
		w.recycle(rec)
	}
	w.inflight = w.inflight[n:]
	close(w.durCh)
	w.durCh = make(chan struct{})
}

func (w *jsWriter) recycle(rec *jsRec) {
	if cap(rec.data) <= 4096 && len(w.spare) < 4096 {
		w.spare = append(w.spare, rec)
	}
}

// run sends what is appended, and recovers when a send fails or goes unanswered for ackTimeout.
func (w *jsWriter) run(ctx context.Context) {
	defer close(w.stopped)
	tick := time.NewTicker(max(w.ackTimeout/4, 10*time.Millisecond))
	defer tick.Stop()
	var batch []*jsRec
	for {
		select {
		case <-w.wake:
		case <-tick.C:
		case <-w.status:
			// reconnected: publishes in flight to the server that went away got no answer
			w.mu.Lock()
			w.broken = len(w.inflight) > 0
			w.mu.Unlock()
		case <-ctx.Done():
			return
		}
		for {
			w.mu.Lock()
			if w.err != nil {
				w.mu.Unlock()
				return
			}
			timedOut := len(w.inflight) > 0 && time.Since(w.inflight[0].sent) > w.ackTimeout && !w.inflight[0].sent.IsZero()
			if w.broken || timedOut {
				w.mu.Unlock()
				w.recover(ctx)
				continue
			}
			batch = batch[:0]
			now := time.Now()
			for len(w.pending) > 0 && (w.flBytes < w.maxBytes || len(w.inflight) == 0) {
				rec := w.pending[0]
				w.pending[0] = nil
				w.pending = w.pending[1:]
				rec.seq, rec.sent = w.nextSeq, now
				w.nextSeq++
				w.inflight = append(w.inflight, rec)
				w.flBytes += int64(len(rec.data))
				batch = append(batch, rec)
			}
			gen := w.gen
			w.mu.Unlock()
			if len(batch) == 0 {
				break
			}
			w.send(gen, batch)
		}
	}
}

// send publishes records (outside mu: their replies may come before send returns).
func (w *jsWriter) send(gen uint64, batch []*jsRec) {
	prefix := w.inbox + "." + strconv.FormatUint(gen, 10) + "."
	for _, rec := range batch {
		rec.hdr.Set("Nats-Expected-Last-Sequence", strconv.FormatUint(rec.seq-1, 10))
		m := &nats.Msg{Subject: w.subject, Reply: prefix + strconv.FormatUint(rec.ticket, 10), Data: rec.data, Header: rec.hdr}
		if err := w.nc.PublishMsg(m); err != nil {
			// not connected: the records wait in inflight until recover finds the stream again
			w.mu.Lock()
			w.broken = true
			w.mu.Unlock()
			return
		}
	}
}

// recover finds out which in-flight records the stream holds (the last sequence, and the records past
// the last one known), marks those stored, and queues the others to be sent again, in order, after the
// stream's last record. While the stream cannot be read it tries again, backing off.
func (w *jsWriter) recover(ctx context.Context) {
	w.log.Debug("journal: recover")
	w.mu.Lock()
	w.gen++ // answers to what was sent so far no longer count
	w.mu.Unlock()
	backoff := 100 * time.Millisecond
	var lastLog time.Time
	for attempt := 0; ; attempt++ {
		if ctx.Err() != nil {
			return
		}
		err := w.reconcile(ctx)
		if err == nil {
			return
		}
		w.log.WithError(err).WithField("attempt", attempt).Debug("journal: stream not readable")
		if time.Since(lastLog) > 5*time.Second {
			w.mu.Lock()
			waiting := len(w.pending) + len(w.inflight)
			w.mu.Unlock()
			w.log.WithError(err).WithField("records_waiting", waiting).Warn("journal stream unavailable: records wait (applications get their statuses once they are stored)")
			lastLog = time.Now()
		}
		t := time.NewTimer(backoff)
		select {
		case <-t.C:
		case <-ctx.Done():
			t.Stop()
			return
		}
		backoff = min(2*backoff, 2*time.Second)
	}
}

// reconcile is one attempt of recover.
func (w *jsWriter) reconcile(ctx context.Context) error {
	rctx, cancel := context.WithTimeout(ctx, w.ackTimeout)
	defer cancel()
	last, err := w.last(rctx)
	if err != nil {
		return err
	}
	w.mu.Lock()
	from := w.durableSeq
	w.mu.Unlock()
	if last < from {
		return fmt.Errorf("relay: journal: the stream's last sequence %d is below %d, which it acknowledged (was the stream deleted?)", last, from)
	}
	// Fast path: the stream's records past what is known are the head of inflight, in order.
	if last > from {
		data, err := w.get(rctx, last)
		if err != nil {
			return err
		}
		rec, derr := decodeJSRecord(data)
		w.mu.Lock()
		contiguous := derr == nil && rec.epoch == w.epoch && len(w.inflight) > 0 &&
			rec.ticket >= w.inflight[0].ticket && rec.ticket-w.inflight[0].ticket+1 == last-from
		if contiguous {
			for seq := from + 1; seq <= last; seq++ {
				r := w.inflight[seq-from-1]
				r.seq, r.sent = seq, time.Time{}
			}
			w.advance()
		}
		w.mu.Unlock()
		if !contiguous {
			if err := w.scan(rctx, from, last); err != nil {
				return err
			}
		}
	}
	w.mu.Lock()
	// what is still in flight was not stored: it goes again, first, in order
	n := len(w.inflight)
	if n > 0 {
		for _, rec := range w.inflight {
			w.flBytes -= int64(len(rec.data))
		}
		w.pending = append(append(make([]*jsRec, 0, n+len(w.pending)), w.inflight...), w.pending...)
		w.inflight = w.inflight[:0]
	}
	w.durableSeq = last
	w.nextSeq = last + 1
	w.broken = false
	w.mu.Unlock()
	if n > 0 {
		if w.onResent != nil {
			w.onResent(n)
		}
		w.log.WithFields(logrus.Fields{"records": n, "last_sequence": last}).Info("journal: records the stream did not store are sent again, in order")
	}
	return nil
}

// scan reads the records in (from, last] one by one: this writer's own are marked stored, any other
// writer's go to onForeign.
func (w *jsWriter) scan(ctx context.Context, from, last uint64) error {
	for seq := from + 1; seq <= last; seq++ {
		data, err := w.get(ctx, seq)
		if err != nil {
			if errors.Is(err, errNoMessage) {
				continue // purged or deleted
			}
			return err
		}
		rec, derr := decodeJSRecord(data)
		w.mu.Lock()
		mine := derr == nil && rec.epoch == w.epoch && len(w.inflight) > 0 && rec.ticket == w.inflight[0].ticket
		if mine {
			w.inflight[0].seq, w.inflight[0].sent = seq, time.Time{}
			w.advance()
			w.durableSeq = seq
		}
		w.mu.Unlock()
		if !mine {
			w.log.WithField("sequence", seq).Warn("journal: the stream holds a record this node did not write since it became active (another node wrote while this one held the lease)")
			if w.onForeign != nil {
				w.onForeign(seq, data)
			}
			w.mu.Lock()
			w.durableSeq = seq
			w.mu.Unlock()
		}
	}
	return nil
}

// errNoMessage is the get function's answer for a sequence the stream no longer holds.
var errNoMessage = errors.New("relay: journal: no such record")

// Stop ends the writer: appends not stored fail with err. A second call changes nothing.
func (w *jsWriter) Stop(err error) {
	w.mu.Lock()
	if w.err != nil {
		w.mu.Unlock()
		return
	}
	w.err = err
	close(w.durCh)
	w.durCh = make(chan struct{})
	w.mu.Unlock()
	w.cancel()
	<-w.stopped
	w.nc.RemoveStatusListener(w.status)
	_ = w.sub.Unsubscribe()
}
