package relay

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"
	"unicode/utf8"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/sirupsen/logrus"

	"github.com/switchboard/switchboard/engine/transport"
)

// client is one application connection.
type client struct {
	r      *Relay
	conn   net.Conn
	out    *transport.Outbox
	queued atomic.Int64 // bytes given to out and not yet written (relay.client_queue_bytes)
	slow   atomic.Bool  // disconnected for not reading: what waits for it is dropped, not flushed

	deadlineMu  sync.Mutex              // orders writtenCounter's deadlines with the outbox's cut
	deadlineCut bool                    // the outbox's Close cut its writes short: no new write deadline
	direct      *transport.DirectWriter // nil: every write is queued (TLS, non-unix)
	log         *logrus.Entry
	login       string
	appName     string // the app label value of this session (labels.Set), "" before the login
	owner       Owner  // login as the object index records it
	quiet       bool
	crlf        bool
	seq         int64 // implicit sequence number for instructions without #
	msg         Message
	arena       lineArena // the strings of msg (clone those kept past the next line)
	routing     RouteScratch
	acks        chan pendingAck    // guaranteed mode: statuses waiting for the journal
	ackNow      time.Time          // time the current status batch is written (acker goroutine)
	appIn       prometheus.Counter // this application's instructions (after login)
	once        sync.Once
	done        chan struct{}

	// State of the current read burst (reader goroutine only). Everything a
	// burst produces is sent when the reader is about to read again
	// (burstReader), so many lines share one outbox entry, one queue entry
	// per center, and one update of each metric.
	now       time.Time // time the burst arrived
	nowDigits []byte    // now in Unix milliseconds, as text (headers and statuses)
	batch     []byte    // statuses (non-guaranteed mode)
	acked     [2]int    // statuses in batch: OK, error
	inTypes   [len(knownTypes)]int
	inApp     int
	line      []byte   // scratch for one routed line (guaranteed mode)
	centerBuf [][]byte // routed lines per center, "T@now|params\n" (non-guaranteed mode)
	centerN   []int    // lines in centerBuf
}

// errSlowClient ends a connection whose statuses could not be queued.
var errSlowClient = errors.New("relay: application does not read its statuses")

// burstReader is the connection as the line reader sees it: before each read
// (the reader has no complete line left) it sends what the burst produced,
// and after it takes the clock once for the lines that arrived.
type burstReader struct{ cl *client }

func (b burstReader) Read(p []byte) (int, error) {
	if !b.cl.flushBurst() {
		return 0, errSlowClient
	}
	n, err := b.cl.conn.Read(p)
	if n > 0 {
		b.cl.setNow(time.Now())
	}
	return n, err
}

func (cl *client) setNow(t time.Time) {
	cl.now = t
	cl.nowDigits = strconv.AppendInt(cl.nowDigits[:0], t.UnixMilli(), 10)
}

type pendingAck struct {
	seq  int64
	idx  uint64 // journal index to wait for; 0 = none
	at   time.Time
	code int
	text string
}

func newClient(r *Relay, c net.Conn) *client {
	cl := &client{r: r, conn: c, crlf: r.cfg.SendCR,
		log: r.log.WithField("peer", c.RemoteAddr().String()), done: make(chan struct{})}
	// The outbox is bounded in bytes (sendRaw); its count of entries is a backstop sized so that entries of a
	// few bytes cannot cost more than the bytes themselves.
	cl.out = transport.NewOutbox(writtenCounter{Conn: c, queued: &cl.queued, timeout: r.cfg.WriteTimeout, cl: cl}, max(64, r.cfg.ClientQueueBytes/64))
	cl.direct = transport.NewDirectWriter(c)
	if r.journal != nil {
		cl.acks = make(chan pendingAck, r.cfg.ClientQueue)
	} else {
		cl.centerBuf, cl.centerN = make([][]byte, len(r.centers)), make([]int, len(r.centers))
	}
	cl.setNow(time.Now())
	return cl
}

// stopping reports whether stop was called.
func (cl *client) stopping() bool {
	select {
	case <-cl.done:
		return true
	default:
		return false
	}
}

// stop makes serve return (shutdown).
func (cl *client) stop() {
	cl.once.Do(func() { close(cl.done) })
	_ = cl.conn.SetReadDeadline(time.Unix(1, 0))
}

func (cl *client) serve(ctx context.Context) {
	var ackerDone chan struct{}
	if cl.acks != nil {
		ackerDone = make(chan struct{})
		go func() {
			defer close(ackerDone)
			cl.ackLoop(ctx)
		}()
	}
	defer func() {
		if cl.acks != nil {
			close(cl.acks)
			<-ackerDone
		}
		cl.stop() // the session is over: a write cut short from here on is no slow application
		// what is queued gets 2 s to go out, unless the application was disconnected for not reading it
		flush := 2 * time.Second
		if cl.slow.Load() {
			flush = 0
		}
		cctx, cancel := context.WithTimeout(context.Background(), flush)
		_ = cl.out.Close(cctx)
		cancel()
		cl.conn.Close()
		if cl.appName != "" {
			cl.r.m.apps.Release(cl.appName)
		}
	}()
	rd := transport.NewReader(burstReader{cl}, []byte("\n"), cl.r.cfg.MaxLine)
	for {
		line, err := rd.Next()
		if err != nil {
			if errors.Is(err, transport.ErrTooLong) {
				// answered with the sequence number its header carries (O#41|... gets Q=41), like any
				// other instruction that does not parse
				seq := salvageSeq(rd.Head())
				if seq < 0 {
					seq = cl.seq
				}
				cl.seq = seq + 1
				if !cl.reject(seq, fmt.Sprintf("instruction longer than %d bytes", cl.r.cfg.MaxLine)) {
					return
				}
				continue
			}
			if !errors.Is(err, io.EOF) && !errors.Is(err, net.ErrClosed) {
				select {
				case <-cl.done:
				default:
					cl.log.WithError(err).Debug("connection ended")
				}
			}
			return
		}
		if len(line) == 0 || len(line) == 1 && line[0] == '\r' {
			continue
		}
		ok := cl.handle(ctx, line)
		if !ok || len(cl.batch) >= batchMax {
			if !cl.flushBurst() || !ok {
				return
			}
		}
	}
}

// batchMax bounds the statuses coalesced into one outbound queue entry, and
// the routed lines into one center queue entry.
const batchMax = 16 << 10

// flushBurst sends what the read burst produced: routed lines to their
// centers, then the statuses, and adds the burst's counts to the metrics.
// It returns false when the client is to be disconnected.
func (cl *client) flushBurst() bool {
	for i, n := range cl.centerN {
		if n > 0 {
			cl.r.centers[i].enqueue(cl.centerBuf[i], n)
			cl.centerBuf[i], cl.centerN[i] = nil, 0
		}
	}
	m := cl.r.m
	for i, n := range cl.inTypes {
		if n > 0 {
			m.inByType[i].Add(float64(n))
			cl.inTypes[i] = 0
		}
	}
	if cl.inApp > 0 && cl.appIn != nil {
		cl.appIn.Add(float64(cl.inApp))
	}
	cl.inApp = 0
	if n := cl.acked[0] + cl.acked[1]; n > 0 {
		m.acksOK.Add(float64(cl.acked[0]))
		if cl.acked[1] > 0 {
			m.acksErr.Add(float64(cl.acked[1]))
		}
		m.ackLatency.observeN(time.Since(cl.now), n)
		cl.acked = [2]int{}
	}
	if len(cl.batch) == 0 {
		return true
	}
	taken, ok := cl.send(cl.batch)
	if taken {
		cl.batch = cl.batch[:0] // written: the buffer serves the next burst
	} else {
		cl.batch = make([]byte, 0, 2*len(cl.batch)) // queued: the outbox owns it now
	}
	return ok
}

// handle processes one instruction; false ends the connection.
func (cl *client) handle(ctx context.Context, line []byte) bool {
	at := cl.now // the read burst's time (see serve)
	if cl.r.msgLog != nil {
		cl.r.msgLog.write("in", cl.peerName(), line)
	}
	m := &cl.msg
	if err := parseInto(m, line, &cl.arena); err != nil {
		seq := salvageSeq(line)
		if seq < 0 {
			seq = cl.seq
		}
		cl.seq = seq + 1
		return cl.reject(seq, "Parse error: "+err.Error())
	}
	seq := m.Seq
	if seq < 0 {
		seq = cl.seq
	}
	cl.seq = seq + 1
	cl.inTypes[strings.IndexByte(knownTypes, m.Type)]++
	if cl.appIn != nil {
		cl.inApp++
	}

	if cl.login == "" && m.Type != 'L' {
		return cl.reject(seq, "Login required: the first instruction must be L with I")
	}
	switch m.Type {
	case 'L':
		return cl.onLogin(ctx, seq, m)
	case 'O':
		if miss := missing(m, "T"); miss != "" {
			return cl.reject(seq, miss)
		}
		return cl.route(seq, m, at)
	case 'D':
		if miss := missing(m, "I", "T"); miss != "" {
			return cl.reject(seq, miss)
		}
		return cl.route(seq, m, at)
	case 'C':
		if miss := missing(m, "I"); miss != "" {
			return cl.reject(seq, miss)
		}
		id, _ := m.Get("I")
		lvl, hasLevel := m.Get("L")
		remove := hasLevel && (lvl.Kind == KindInt || lvl.Kind == KindLong) && lvl.I == 0
		if refused := cl.r.registerCommand(textOf(id), cl.login, remove); refused != "" {
			return cl.reject(seq, refused)
		}
		return cl.route(seq, m, at)
	case 'A':
		if miss := missing(m, "I", "L", "T"); miss != "" {
			return cl.reject(seq, miss)
		}
		return cl.route(seq, m, at)
	case 'S':
		return cl.route(seq, m, at)
	case 'R':
		if miss := missing(m, "I"); miss != "" {
			return cl.reject(seq, miss)
		}
		id, _ := m.Get("I")
		c, ok := cl.r.takeRequest(textOf(id), cl.login)
		if !ok {
			return cl.reject(seq, fmt.Sprintf("Unknown request id %s: no pending E for this application", textOf(id)))
		}
		out := AppendHeader(make([]byte, 0, len(line)+16), 'R', -1, cl.nowOr(m.Now))
		out = AppendParams(out, m.Params)
		if !c.sendDirect(out) {
			return cl.rejectCode(seq, 2, "center "+c.Name+" is busy; response not forwarded")
		}
		return cl.ok(seq, pendingAck{}, at)
	case 'X':
		cl.ok(seq, pendingAck{}, at)
		return false
	case 'P':
		d, ok := m.Get("D")
		if !ok || (d.Kind != KindInt && d.Kind != KindLong) || d.I < 0 {
			return cl.reject(seq, "Missing required Fields: D (pause in ms)")
		}
		pause := time.Duration(d.I) * time.Millisecond
		if pause > cl.r.cfg.MaxPause {
			pause = cl.r.cfg.MaxPause
		}
		if !cl.ok(seq, pendingAck{}, at) || !cl.flushBurst() {
			return false
		}
		t := time.NewTimer(pause)
		defer t.Stop()
		select {
		case <-t.C:
		case <-cl.done:
		case <-ctx.Done():
		}
		return true
	case 'H':
		return cl.okText(seq, helpText, at)
	}
	return cl.reject(seq, fmt.Sprintf("Instruction type %c is sent by the relay, not to it", m.Type))
}

const helpText = "AMI relay. Instructions: L login (I required), O object (T required), D delete (I,T), C command (I), " +
	"R response (I), S status, X exit, P pause (D ms), H help. Acks: M@now|Q=seq|S=code|M=text."

func (cl *client) peerName() string {
	if cl.login != "" {
		return cl.login
	}
	return cl.conn.RemoteAddr().String()
}

func textOf(v Value) string {
	if v.Kind == KindString || v.Kind == KindEnum {
		return v.S
	}
	return string(AppendValue(nil, v))
}

func (cl *client) nowOr(n int64) int64 {
	if n >= 0 {
		return n
	}
	return cl.now.UnixMilli()
}

// missing names required keys that are absent, 3forge style.
func missing(m *Message, keys ...string) string {
	var miss []string
	for _, k := range keys {
		if v, ok := m.Get(k); !ok || v.Kind == KindNull {
			miss = append(miss, k)
		}
	}
	if len(miss) == 0 {
		return ""
	}
	return "Missing required Fields: " + strings.Join(miss, ",")
}

// salvageSeq reads the sequence number from the header of an instruction that is not parsed (a syntax
// error, or longer than relay.max_line): `O#41|...`, and the lenient forms `O|#41|...`, `O@<now>#41|...`
// (the header is everything before the first key). It returns -1 when the header has none.
func salvageSeq(line []byte) int64 {
	i := 1
	for i < len(line) {
		switch line[i] {
		case '|':
			i++
			continue
		case '@', '#':
			mark := line[i]
			i++
			start := i
			for i < len(line) && isDigit(line[i]) {
				i++
			}
			if i == start {
				return -1
			}
			if mark == '#' {
				n, err := strconv.ParseInt(string(line[start:i]), 10, 64)
				if err != nil {
					return -1
				}
				return n
			}
			continue
		}
		break
	}
	return -1
}

func (cl *client) onLogin(ctx context.Context, seq int64, m *Message) bool {
	if cl.login != "" {
		return cl.reject(seq, "Already logged in as "+cl.login)
	}
	if !cl.r.Active() {
		// relay.journal = jetstream: only the active node takes applications
		cl.reject(seq, cl.r.standbyText())
		return false
	}
	id, ok := m.Get("I")
	if !ok || id.Kind == KindNull || textOf(id) == "" {
		return cl.reject(seq, "Missing required Fields: I")
	}
	if n := len(textOf(id)); n > cl.r.cfg.MaxLoginBytes {
		return cl.reject(seq, fmt.Sprintf("Login id of %d bytes: at most %d (relay.max_login_bytes)", n, cl.r.cfg.MaxLoginBytes))
	}
	if o, ok := m.Text("O"); ok {
		for _, opt := range strings.Split(o, ",") {
			switch strings.ToUpper(strings.TrimSpace(opt)) {
			case "QUIET":
				cl.quiet = true
			case "WINDOWS":
				cl.crlf = true
			case "UNIX":
				cl.crlf = false
			case "LOG", "TTY", "":
			default:
				return cl.reject(seq, fmt.Sprintf("Unknown login option %q (expected QUIET, LOG, UNIX, WINDOWS, TTY)", opt))
			}
		}
	}
	if w := cl.r.cfg.WaitForCenter; w > 0 && len(cl.r.centers) > 0 {
		t := time.NewTimer(w)
		for {
			up, ch := cl.r.anyCenterUp()
			if up {
				break
			}
			select {
			case <-ch:
				continue
			case <-t.C:
			case <-cl.done:
			case <-ctx.Done():
			}
			break
		}
		t.Stop()
	}
	cl.login = strings.Clone(textOf(id))
	cl.owner = cl.r.objects.Owner(cl.login)
	cl.appName = cl.r.m.apps.Acquire(cl.login)
	cl.appIn = cl.r.m.appIn.WithLabelValues(cl.appName)
	cl.appIn.Inc()
	cl.log = cl.log.WithField("app", cl.login)
	cl.r.mu.Lock()
	cl.r.sessions[cl.login] = cl
	cl.r.mu.Unlock()
	cl.log.Debug("application logged in")
	cl.setNow(time.Now()) // the login may have waited for a center
	return cl.ok(seq, pendingAck{}, cl.now)
}

// route sends a routable instruction to its centers (or to the journal).
func (cl *client) route(seq int64, m *Message, at time.Time) bool {
	r := cl.r
	set, _ := r.Table().Route(m, &cl.routing) // failed expressions are counted and logged by exprFailed
	set = r.objects.Follow(cl.owner, m, set, r.follow)
	if set == 0 {
		r.m.unrouted.Inc()
		return cl.ok(seq, pendingAck{}, at)
	}
	if r.journal != nil {
		cl.line = cl.appendRouted(cl.line[:0], m)
		idx, err := r.journal.Append(set, cl.login, cl.line)
		if err != nil {
			return cl.rejectCode(seq, 3, "Not persisted: "+err.Error())
		}
		return cl.ok(seq, pendingAck{idx: idx}, at)
	}
	// encoded once, into the first center's burst buffer, and copied to the others
	var line []byte
	for i := range cl.centerBuf {
		if !set.Has(i) {
			continue
		}
		b := cl.centerBuf[i]
		if b == nil {
			b = r.centers[i].batchBuf()
		}
		if line == nil {
			start := len(b)
			b = append(cl.appendRouted(b, m), '\n')
			line = b[start:]
		} else {
			b = append(b, line...)
		}
		cl.centerBuf[i] = b
		cl.centerN[i]++
	}
	// full batches go now (only after line was copied everywhere: a queued
	// buffer belongs to its center, which recycles it once written)
	for i, b := range cl.centerBuf {
		if len(b) >= batchMax {
			r.centers[i].enqueue(b, cl.centerN[i])
			cl.centerBuf[i], cl.centerN[i] = nil, 0
		}
	}
	return cl.ok(seq, pendingAck{}, at)
}

// appendRouted appends the line centers receive, `T@now|params` (each center
// inserts its own #seq): the application's @now or the burst's time, and the
// params in strict form (copied when the input already was).
func (cl *client) appendRouted(b []byte, m *Message) []byte {
	b = append(b, m.Type, '@')
	if m.Now >= 0 {
		b = strconv.AppendInt(b, m.Now, 10)
	} else {
		b = append(b, cl.nowDigits...)
	}
	return m.AppendParamsTo(b)
}

func (cl *client) reject(seq int64, text string) bool { return cl.rejectCode(seq, 1, text) }

func (cl *client) rejectCode(seq int64, code int, text string) bool {
	cl.r.m.rejected.Inc()
	return cl.status(pendingAck{seq: seq, code: code, text: clipText(text), at: cl.now})
}

// maxStatusText bounds the text of an error status: errors quote what the application sent, which may be
// as long as an instruction.
const maxStatusText = 512

// clipText cuts text to maxStatusText bytes (at a rune boundary) with "..." appended.
func clipText(text string) string {
	if len(text) <= maxStatusText {
		return text
	}
	cut := maxStatusText - 3
	for cut > 0 && !utf8.RuneStart(text[cut]) {
		cut--
	}
	return text[:cut] + "..."
}

func (cl *client) ok(seq int64, p pendingAck, at time.Time) bool {
	p.seq, p.at, p.text = seq, at, "OK"
	return cl.status(p)
}

func (cl *client) okText(seq int64, text string, at time.Time) bool {
	return cl.status(pendingAck{seq: seq, at: at, text: text})
}

// status queues a status line; in guaranteed mode it goes through the acker
// so statuses stay in order behind journal writes.
func (cl *client) status(p pendingAck) bool {
	if cl.acks != nil {
		select {
		case cl.acks <- p:
			return true
		case <-cl.done:
			return false
		}
	}
	return cl.sendStatus(p)
}

// sendStatus writes one status: into the read burst's batch on the reader
// goroutine (non-guaranteed mode), or straight to the outbox from the acker.
func (cl *client) sendStatus(p pendingAck) bool {
	if p.code == 0 {
		cl.acked[0]++
	} else {
		cl.acked[1]++
	}
	if cl.quiet {
		return true
	}
	start := len(cl.batch)
	cl.batch = appendStatusDigits(cl.batch, cl.nowDigits, p.seq, p.code, p.text)
	if cl.r.msgLog != nil {
		cl.r.msgLog.write("out", cl.peerName(), cl.batch[start:])
	}
	cl.batch = cl.appendEOL(cl.batch)
	return true
}

func (cl *client) appendEOL(b []byte) []byte {
	if cl.crlf {
		return append(b, '\r', '\n')
	}
	return append(b, '\n')
}

// sendLine queues one line to the application; a client that does not read
// is disconnected once its queue is full.
func (cl *client) sendLine(b []byte) bool {
	if cl.r.msgLog != nil {
		cl.r.msgLog.write("out", cl.peerName(), b)
	}
	return cl.sendRaw(cl.appendEOL(b))
}

// sendRaw sends terminated lines (see send).
func (cl *client) sendRaw(b []byte) bool {
	_, ok := cl.send(b)
	return ok
}

// send writes terminated lines at once on this goroutine when nothing is queued and the socket takes
// them (a plain TCP connection: this spares the outbox's writer a wake-up per read burst), else queues
// what is left, in order, behind it (transport.DirectWriter.Send). taken says the socket took b whole, so
// nothing refers to it any more (a queued b belongs to the outbox); ok is false when the application is
// to be disconnected.
func (cl *client) send(b []byte) (taken, ok bool) {
	taken, err := cl.direct.Send(cl.out, b, cl.queue)
	if err != nil {
		cl.stop()
		return false, false
	}
	return taken, true
}

// queue puts b behind what waits for the application. An application that leaves more than
// relay.client_queue_bytes unread is disconnected and counted (one entry is always taken when nothing is
// waiting).
func (cl *client) queue(b []byte) error {
	n := int64(len(b))
	queued := cl.queued.Add(n)
	err := transport.ErrOutboxFull
	if queued == n || queued <= int64(cl.r.cfg.ClientQueueBytes) {
		err = cl.out.Send(b)
	}
	if err != nil {
		cl.queued.Add(-n)
		if errors.Is(err, transport.ErrOutboxFull) {
			cl.slow.Store(true)
			cl.r.m.slowReaders.Inc()
			cl.log.WithField("queued_bytes", queued-n).Warn("application does not read its statuses: disconnected")
		}
	}
	return err
}

// writtenCounter is the connection as a client's outbox writes to it: it
// takes what was written off the client's queued bytes, and bounds each
// write by relay.write_timeout (an application that takes nothing for that
// long is disconnected).
type writtenCounter struct {
	net.Conn
	queued  *atomic.Int64
	timeout time.Duration
	cl      *client
}

func (w writtenCounter) Write(p []byte) (int, error) {
	w.cl.deadlineMu.Lock()
	if !w.cl.deadlineCut {
		_ = w.Conn.SetWriteDeadline(time.Now().Add(w.timeout))
	}
	w.cl.deadlineMu.Unlock()
	n, err := w.Conn.Write(p)
	w.queued.Add(-int64(n))
	if errors.Is(err, os.ErrDeadlineExceeded) && !w.cl.stopping() {
		w.cl.slow.Store(true)
		w.cl.r.m.slowReaders.Inc()
		w.cl.log.WithField("write_timeout", w.timeout.String()).Warn("application took nothing for relay.write_timeout: disconnected")
		w.cl.stop()
	}
	return n, err
}

// SetWriteDeadline is how the outbox's Close cuts a blocked write short (a past deadline); from then on
// no write of the outbox gets a new relay.write_timeout, so a write that starts after the cut (the writer
// was between two writes) fails at once instead of blocking for relay.write_timeout.
func (w writtenCounter) SetWriteDeadline(t time.Time) error {
	w.cl.deadlineMu.Lock()
	defer w.cl.deadlineMu.Unlock()
	w.cl.deadlineCut = true
	return w.Conn.SetWriteDeadline(t)
}

// ackLoop sends statuses in order, each once its journal record is durable.
// Statuses that are ready together go out as one outbox entry; a status that
// has to wait for the journal first sends those already ready, so no status
// waits for a later group commit than its own.
func (cl *client) ackLoop(ctx context.Context) {
	var (
		batch   []byte
		durable uint64 // journal index known durable (no lock needed up to it)
		failed  bool
	)
	send := func() {
		if failed || len(batch) == 0 {
			batch = batch[:0]
			return
		}
		taken, ok := cl.send(batch)
		failed = !ok
		if taken {
			batch = batch[:0] // written: the buffer serves the next statuses
		} else {
			batch = nil // queued: the outbox owns it now
		}
	}
	p, ok := <-cl.acks
	for ok {
		if failed { // the connection is going away: drain
			p, ok = <-cl.acks
			continue
		}
		if p.idx > durable {
			send()
			d, err := cl.r.journal.waitDurable(ctx, p.idx)
			if err != nil {
				p.code, p.text = 3, "Not persisted: "+err.Error()
			} else {
				durable = d
			}
		}
		if len(batch) == 0 {
			cl.ackNow = time.Now()
		}
		batch = cl.appendAck(batch, p)
		if len(batch) >= batchMax {
			send()
		}
		select {
		case p, ok = <-cl.acks:
			continue
		default:
		}
		send()
		p, ok = <-cl.acks
	}
	// The channel closes once the reader has queued its last status (an X, or the connection ending):
	// what the loop gathered last must still go out, before the outbox closes and the goodbye.
	send()
}

// appendAck counts one status and appends its line (guaranteed mode).
func (cl *client) appendAck(b []byte, p pendingAck) []byte {
	now := cl.ackNow
	if p.code == 0 {
		cl.r.m.acksOK.Inc()
	} else {
		cl.r.m.acksErr.Inc()
	}
	cl.r.m.ackLatency.observeN(now.Sub(p.at), 1)
	if cl.quiet {
		return b
	}
	start := len(b)
	b = AppendStatus(b, now.UnixMilli(), p.seq, p.code, p.text)
	if cl.r.msgLog != nil {
		cl.r.msgLog.write("out", cl.peerName(), b[start:])
	}
	return cl.appendEOL(b)
}
