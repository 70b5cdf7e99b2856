package relay

import (
	"context"
	"errors"
	"fmt"
	"math/bits"
	"os"
	"sort"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/sirupsen/logrus"
)

// ClusterOptions connect a relay to a NATS cluster (relay.journal = jetstream): guaranteed mode journals to
// a replicated JetStream stream, one relay node at a time is active (a lease in a KV bucket), and the
// centers' cursors and the object index are kept in KV buckets, so another node can take over.
type ClusterOptions struct {
	Conn   *nats.Conn
	Name   string // the cluster's name (cluster.name): a part of every stream, subject and bucket name
	NodeID string // this engine (cluster.node_id): names the active node in leases, logs and refusals
}

// jsJournal is the JetStream journal: records are messages of one stream (their index is the stream
// sequence), centers are named by slot in the state bucket's key "centers" (as the local journal's file
// does), and each center's cursor is the key cursor.<center> of that bucket. Only the active node writes
// (jsWriter, one per term); cursors are cached here and written by keep.
type jsJournal struct {
	cfg     Config
	names   jsNames
	nc      *nats.Conn
	js      jetstream.JetStream
	node    string
	log     *logrus.Entry
	centers []string // the relay's centers, in index order

	// set by setup
	stream  jetstream.Stream
	state   jetstream.KeyValue
	leaseKV jetstream.KeyValue
	leaseNC *nats.Conn       // the lease's own connection: renewals never wait behind journal records on one socket
	objLog  jetstream.Stream // the object index log (nil without an object index)

	mu         sync.Mutex
	w          *jsWriter // nil while standby
	slots      map[string]int
	fromSlot   [MaxCenters]int8 // slot -> the relay's center index (-1: not configured)
	toSlot     [MaxCenters]uint8
	cursors    map[string]uint64
	dirty      map[string]uint64 // cursors not yet written
	orphans    map[string]bool   // centers with a slot that are no longer configured
	epoch      uint64
	lastSeq    atomic.Uint64 // the stream's last sequence known stored
	firstSeq   atomic.Uint64 // the stream's first sequence at the last look
	bytes      atomic.Int64  // the stream's bytes at the last look
	purged     uint64        // the floor of the last purge
	cursorWarn time.Time
	objects    *objectSink // nil without an object index
	onDropped  func(center string, records uint64)
	onResent   func(records int)
}

// newJSJournal makes the JetStream journal of a relay; nothing is read or written until setup.
func newJSJournal(cfg Config, opts ClusterOptions, centers []string, log *logrus.Entry) (*jsJournal, error) {
	if opts.Conn == nil {
		return nil, errors.New("relay.journal: jetstream needs a NATS connection (cluster.nats_url)")
	}
	js, err := jetstream.New(opts.Conn)
	if err != nil {
		return nil, fmt.Errorf("relay: journal: jetstream: %w", err)
	}
	if opts.Name == "" {
		opts.Name = "switchboard"
	}
	if opts.NodeID == "" {
		host, _ := os.Hostname()
		opts.NodeID = fmt.Sprintf("%s:pid%d", host, os.Getpid())
	}
	j := &jsJournal{cfg: cfg, names: newJSNames(opts.Name, cfg.ID), nc: opts.Conn, js: js, node: opts.NodeID,
		log: log, centers: centers, slots: map[string]int{}, cursors: map[string]uint64{}, dirty: map[string]uint64{},
		orphans: map[string]bool{}}
	for i := range j.fromSlot {
		j.fromSlot[i] = -1
	}
	return j, nil
}

// setup creates (or updates) the stream and the buckets.
func (j *jsJournal) setup(ctx context.Context) error {
	jc := j.cfg.JetStream
	maxBytes := j.cfg.JournalRetentionBytes
	if maxBytes == 0 {
		maxBytes = -1
	}
	st, err := j.js.CreateOrUpdateStream(ctx, jetstream.StreamConfig{
		Name:        j.names.stream,
		Description: "switchboard relay " + j.cfg.ID + ": guaranteed-mode journal",
		Subjects:    []string{j.names.subject},
		Storage:     jetstream.FileStorage,
		Replicas:    jc.Replicas,
		Retention:   jetstream.LimitsPolicy,
		Discard:     jetstream.DiscardOld,
		MaxBytes:    maxBytes,
		MaxAge:      j.cfg.JournalRetentionAge,
		AllowDirect: true,
	})
	if err != nil {
		return fmt.Errorf("relay: journal stream %s: %w", j.names.stream, err)
	}
	kv := func(cfg jetstream.KeyValueConfig) (jetstream.KeyValue, error) {
		cfg.Replicas, cfg.Storage = jc.Replicas, jetstream.FileStorage
		b, err := j.js.CreateOrUpdateKeyValue(ctx, cfg)
		if err != nil {
			return nil, fmt.Errorf("relay: bucket %s: %w", cfg.Bucket, err)
		}
		return b, nil
	}
	state, err := kv(jetstream.KeyValueConfig{Bucket: j.names.state, Description: "switchboard relay " + j.cfg.ID + ": centers and cursors"})
	if err != nil {
		return err
	}
	if _, err := kv(jetstream.KeyValueConfig{Bucket: j.names.lease, Description: "switchboard relay " + j.cfg.ID + ": the active node", TTL: jc.LeaseTTL}); err != nil {
		return err
	}
	lease, err := j.leaseBucket(ctx)
	if err != nil {
		return err
	}
	var objs jetstream.Stream
	if j.cfg.RoutesCacheSize > 0 {
		objs, err = j.js.CreateOrUpdateStream(ctx, jetstream.StreamConfig{
			Name:        j.names.objects,
			Description: "switchboard relay " + j.cfg.ID + ": object index (snapshots and deltas)",
			Subjects:    []string{j.names.objSubj},
			Storage:     jetstream.FileStorage,
			Replicas:    jc.Replicas,
			Retention:   jetstream.LimitsPolicy,
		})
		if err != nil {
			return fmt.Errorf("relay: object index stream %s: %w", j.names.objects, err)
		}
	}
	j.mu.Lock()
	j.stream, j.state, j.leaseKV, j.objLog = st, state, lease, objs
	j.mu.Unlock()
	return nil
}

// leaseBucket opens the lease bucket on a second connection made with the first one's options (same
// servers, credentials and TLS), so a renewal is not queued behind megabytes of journal records on one
// socket; without one it uses the journal's connection.
func (j *jsJournal) leaseBucket(ctx context.Context) (jetstream.KeyValue, error) {
	js := j.js
	if j.leaseNC == nil {
		opts := j.nc.Opts
		opts.Name += " (relay lease)"
		// the owner's handlers count and log its own connections: this one logs for itself
		log := j.log.WithField("conn", "relay lease")
		opts.ConnectedCB, opts.ReconnectedCB, opts.ClosedCB, opts.DisconnectedCB = nil, nil, nil, nil
		opts.DisconnectedErrCB = func(_ *nats.Conn, err error) {
			log.WithError(err).Debug("relay: the lease's NATS connection is lost (reconnecting)")
		}
		opts.AsyncErrorCB = func(_ *nats.Conn, _ *nats.Subscription, err error) {
			log.WithError(err).Warn("relay: NATS reported an error on the lease's connection")
		}
		if lc, err := opts.Connect(); err == nil {
			j.leaseNC = lc
		} else {
			j.log.WithError(err).Warn("relay: no second NATS connection for the lease: it shares the journal's")
		}
	}
	if j.leaseNC != nil {
		var err error
		if js, err = jetstream.New(j.leaseNC); err != nil {
			return nil, fmt.Errorf("relay: jetstream: %w", err)
		}
	}
	kv, err := js.KeyValue(ctx, j.names.lease)
	if err != nil {
		return nil, fmt.Errorf("relay: bucket %s: %w", j.names.lease, err)
	}
	return kv, nil
}

// activate starts a term as the active node (epoch: the lease revision): it reads the stream's last
// sequence, the centers' slots and cursors, restores the object index (objects may be nil), and starts
// the writer.
func (j *jsJournal) activate(ctx context.Context, epoch uint64, objects *objectSink) error {
	info, err := j.stream.Info(ctx)
	if err != nil {
		return fmt.Errorf("relay: journal stream %s: %w", j.names.stream, err)
	}
	last, first := info.State.LastSeq, info.State.FirstSeq
	j.lastSeq.Store(last)
	j.firstSeq.Store(first)
	j.bytes.Store(int64(info.State.Bytes))
	if err := j.loadSlots(ctx, last); err != nil {
		return err
	}
	if objects != nil {
		objects.js, objects.stream, objects.subject = j.js, j.objLog, j.names.objSubj
		objects.toSlots = func(set CenterSet) CenterSet {
			j.mu.Lock()
			defer j.mu.Unlock()
			return j.slotsOf(set)
		}
		objects.fromSlots = j.centersOf
		if err := objects.restore(ctx, j, last); err != nil {
			return err
		}
	}
	w, err := newJSWriter(j.nc, j.names.subject, epoch, last, j.cfg.JetStream.AckTimeout, j.cfg.JetStream.MaxInflightBytes,
		j.log.WithField("epoch", epoch), j.lastSequence, j.getRecord, j.foreign)
	if err != nil {
		return err
	}
	w.onResent = j.onResent
	j.mu.Lock()
	j.w, j.epoch, j.objects = w, epoch, objects
	j.purged = 0
	j.mu.Unlock()
	return nil
}

// deactivate ends the term: appends not stored yet fail with cause (the applications are gone by then:
// Shutdown waits for their statuses, a lost lease disconnects them). Cursors and the object index are
// written a last time.
func (j *jsJournal) deactivate(ctx context.Context, cause error) {
	j.mu.Lock()
	w := j.w
	j.mu.Unlock()
	if w == nil {
		return
	}
	w.Stop(cause)
	j.lastSeq.Store(max(j.lastSeq.Load(), w.DurableSeq()))
	fctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 2*time.Second)
	defer cancel()
	j.flushCursors(fctx)
	if j.objects != nil {
		j.objects.flush(fctx, w.DurableSeq())
	}
	j.mu.Lock()
	j.w = nil
	j.mu.Unlock()
}

func (j *jsJournal) writer() *jsWriter {
	j.mu.Lock()
	defer j.mu.Unlock()
	return j.w
}

func (j *jsJournal) Append(centers CenterSet, login string, line []byte) (uint64, error) {
	j.mu.Lock()
	w := j.w
	epoch := j.epoch
	slots := j.slotsOf(centers)
	j.mu.Unlock()
	if w == nil {
		return 0, errLostRole
	}
	return w.Append(func(ticket uint64, b []byte) []byte {
		return appendJSRecord(b, slots, epoch, ticket, login, line)
	})
}

// slotsOf translates the relay's center indexes into slots (under mu).
func (j *jsJournal) slotsOf(set CenterSet) CenterSet { return mapSlots(set, &j.toSlot) }

// centersOf translates slots into the relay's center indexes (slots of centers not configured are left
// out).
func (j *jsJournal) centersOf(slots CenterSet) CenterSet {
	j.mu.Lock()
	defer j.mu.Unlock()
	var out CenterSet
	for slots != 0 {
		s := bits.TrailingZeros64(uint64(slots))
		slots &^= 1 << uint(s)
		if i := j.fromSlot[s]; i >= 0 {
			out |= 1 << uint(i)
		}
	}
	return out
}

func (j *jsJournal) waitDurable(ctx context.Context, ticket uint64) (uint64, error) {
	w := j.writer()
	if w == nil {
		return 0, errLostRole
	}
	return w.waitDurable(ctx, ticket)
}

func (j *jsJournal) Cursor(center string) uint64 {
	j.mu.Lock()
	defer j.mu.Unlock()
	c, ok := j.cursors[center]
	if !ok {
		return j.lastSeq.Load() + 1
	}
	return max(c, 1)
}

// SetCursor records center's cursor; keep writes it to the state bucket (a cursor written late only
// makes a center get records again after a takeover, never fewer).
func (j *jsJournal) SetCursor(center string, next uint64) error {
	j.mu.Lock()
	if j.cursors[center] != next {
		j.cursors[center] = next
		j.dirty[center] = next
	}
	j.mu.Unlock()
	return nil
}

// flushCursors writes the cursors that changed.
func (j *jsJournal) flushCursors(ctx context.Context) {
	j.mu.Lock()
	if len(j.dirty) == 0 {
		j.mu.Unlock()
		return
	}
	dirty := j.dirty
	j.dirty = map[string]uint64{}
	j.mu.Unlock()
	for c, next := range dirty {
		if _, err := j.state.Put(ctx, cursorKey(c), strconv.AppendUint(nil, next, 10)); err != nil {
			if now := time.Now(); now.Sub(j.cursorWarn) > 5*time.Second {
				j.cursorWarn = now
				j.log.WithError(err).WithField("center", c).Warn("journal: cursor not saved (tried again every 100 ms; logged every 5 s)")
			}
			j.mu.Lock()
			if _, newer := j.dirty[c]; !newer {
				j.dirty[c] = next
			}
			j.mu.Unlock()
		}
	}
}

func (j *jsJournal) Backlog(center string) int64 {
	last := j.lastSeq.Load()
	if w := j.writer(); w != nil {
		last = max(last, w.DurableSeq())
	}
	if cur := j.Cursor(center); cur <= last {
		return int64(last - cur + 1)
	}
	return 0
}

func (j *jsJournal) Slot(center string) int {
	j.mu.Lock()
	defer j.mu.Unlock()
	if s, ok := j.slots[center]; ok {
		return s
	}
	return -1
}

// Size is the stream's bytes at the last look (keep looks every second while active).
func (j *jsJournal) Size() int64 { return j.bytes.Load() }

// Shutdown closes the lease connection (the stream's writes end with the node's term, before this).
func (j *jsJournal) Shutdown(context.Context) error {
	if j.leaseNC != nil {
		j.leaseNC.Close()
	}
	return nil
}

// lastSequence is the stream's last sequence (the writer's recover).
func (j *jsJournal) lastSequence(ctx context.Context) (uint64, error) {
	info, err := j.stream.Info(ctx)
	if err != nil {
		return 0, fmt.Errorf("relay: journal stream %s: %w", j.names.stream, err)
	}
	return info.State.LastSeq, nil
}

// getRecord reads one message of the stream.
func (j *jsJournal) getRecord(ctx context.Context, seq uint64) ([]byte, error) {
	m, err := j.stream.GetMsg(ctx, seq)
	if errors.Is(err, jetstream.ErrMsgNotFound) {
		return nil, errNoMessage
	}
	if err != nil {
		return nil, fmt.Errorf("relay: journal stream %s: record %d: %w", j.names.stream, seq, err)
	}
	return m.Data, nil
}

// foreign takes a record another node wrote during this node's term: the object index learns it.
func (j *jsJournal) foreign(seq uint64, data []byte) {
	if j.objects == nil {
		return
	}
	rec, err := decodeJSRecord(data)
	if err != nil {
		return
	}
	j.objects.replay(rec)
}

// loadSlots reads the centers' slots (key "centers") and cursors, and gives a slot to each configured
// center without one (its cursor starts after the stream's last record: none names it).
func (j *jsJournal) loadSlots(ctx context.Context, last uint64) error {
	for attempt := 0; ; attempt++ {
		var rev uint64
		slots := map[string]int{}
		e, err := j.state.Get(ctx, "centers")
		switch {
		case errors.Is(err, jetstream.ErrKeyNotFound):
		case err != nil:
			return fmt.Errorf("relay: bucket %s: centers: %w", j.names.state, err)
		default:
			rev = e.Revision()
			if slots, err = parseSlots(string(e.Value())); err != nil {
				return fmt.Errorf("relay: bucket %s: key centers: %w", j.names.state, err)
			}
		}
		cursors := map[string]uint64{}
		for name := range slots {
			ce, err := j.state.Get(ctx, cursorKey(name))
			if errors.Is(err, jetstream.ErrKeyNotFound) {
				continue
			}
			if err != nil {
				return fmt.Errorf("relay: bucket %s: cursor of %s: %w", j.names.state, name, err)
			}
			if n, err := strconv.ParseUint(string(ce.Value()), 10, 64); err == nil {
				cursors[name] = n
			}
		}
		added, err := assignSlots(slots, j.centers, "bucket "+j.names.state, func(c string) error {
			if _, err := j.state.Put(ctx, cursorKey(c), strconv.AppendUint(nil, last+1, 10)); err != nil {
				return fmt.Errorf("relay: bucket %s: cursor of %s: %w", j.names.state, c, err)
			}
			cursors[c] = last + 1
			return nil
		})
		if err != nil {
			return err
		}
		if added {
			text := formatSlots(slots)
			var err error
			if rev == 0 {
				_, err = j.state.Create(ctx, "centers", []byte(text))
			} else {
				_, err = j.state.Update(ctx, "centers", []byte(text), rev)
			}
			if err != nil {
				if attempt < 3 && (errors.Is(err, jetstream.ErrKeyExists) || isWrongSequence(err)) {
					continue // another node wrote it meanwhile: read again
				}
				return fmt.Errorf("relay: bucket %s: centers: %w", j.names.state, err)
			}
		}
		configured := map[string]bool{}
		for _, c := range j.centers {
			configured[c] = true
		}
		j.mu.Lock()
		j.slots, j.cursors, j.dirty, j.orphans = slots, cursors, map[string]uint64{}, map[string]bool{}
		for i := range j.fromSlot {
			j.fromSlot[i] = -1
		}
		for i, c := range j.centers {
			j.toSlot[i] = uint8(slots[c])
			j.fromSlot[slots[c]] = int8(i)
		}
		for name := range slots {
			if !configured[name] {
				j.orphans[name] = true
			}
		}
		j.mu.Unlock()
		for name := range j.orphans {
			j.log.WithFields(logrus.Fields{"center": name, "from": cursors[name]}).
				Warn("journal holds records for a center that is no longer configured: kept until retention (relay.journal_retention_bytes, relay.journal_retention_age) drops them")
		}
		return nil
	}
}

func isWrongSequence(err error) bool {
	var apiErr *jetstream.APIError
	return errors.As(err, &apiErr) && apiErr.ErrorCode == jetstream.JSErrCodeStreamWrongLastSequence
}

// parseSlots reads "<slot> <name>" lines.
func parseSlots(text string) (map[string]int, error) {
	slots := map[string]int{}
	used := map[int]bool{}
	for n, line := range strings.Split(strings.TrimSpace(text), "\n") {
		line = strings.TrimSpace(line)
		if line == "" {
			continue
		}
		slot, name, ok := strings.Cut(line, " ")
		i, err := strconv.Atoi(slot)
		if !ok || err != nil || i < 0 || i >= MaxCenters || !validCenterName(name) {
			return nil, fmt.Errorf("line %d: expected \"<slot> <name>\", got %q", n+1, line)
		}
		if _, dup := slots[name]; dup || used[i] {
			return nil, fmt.Errorf("line %d: %q: slot or name given twice", n+1, line)
		}
		slots[name], used[i] = i, true
	}
	return slots, nil
}

func formatSlots(slots map[string]int) string {
	names := make([]string, 0, len(slots))
	for n := range slots {
		names = append(names, n)
	}
	sort.Slice(names, func(a, b int) bool { return slots[names[a]] < slots[names[b]] })
	var b strings.Builder
	for _, n := range names {
		fmt.Fprintf(&b, "%d %s\n", slots[n], n)
	}
	return b.String()
}

// keep runs while the node is active: cursors are written every 100 ms, the object index every 200 ms,
// and every period the stream is looked at (bytes, first sequence) and purged below what every center
// (configured, or no longer configured and still holding records) and the object index have passed.
func (j *jsJournal) keep(ctx context.Context, r *Relay, period time.Duration) {
	fast := time.NewTicker(100 * time.Millisecond)
	defer fast.Stop()
	slow := time.NewTicker(period)
	defer slow.Stop()
	n := 0
	for {
		select {
		case <-ctx.Done():
			return
		case <-fast.C:
			n++
			j.flushCursors(ctx)
			if j.objects != nil && n%2 == 0 {
				if w := j.writer(); w != nil {
					j.objects.flush(ctx, w.DurableSeq())
				}
			}
		case <-slow.C:
			j.purge(ctx)
		}
	}
}

// purge removes the records every center has acknowledged, and forgets the centers no longer configured
// whose records retention dropped.
func (j *jsJournal) purge(ctx context.Context) {
	info, err := j.stream.Info(ctx)
	if err != nil {
		j.log.WithError(err).Debug("journal: stream info")
		return
	}
	j.bytes.Store(int64(info.State.Bytes))
	j.firstSeq.Store(info.State.FirstSeq)
	w := j.writer()
	if w == nil {
		return
	}
	floor := w.DurableSeq() + 1
	j.mu.Lock()
	for c := range j.slots {
		if cur, ok := j.cursors[c]; ok && cur < floor {
			floor = cur
		}
	}
	var forget []string
	for c := range j.orphans {
		if j.cursors[c] < info.State.FirstSeq || j.cursors[c] > w.DurableSeq() {
			forget = append(forget, c)
		}
	}
	j.mu.Unlock()
	if j.objects != nil {
		floor = min(floor, j.objects.appliedSeq()+1)
	}
	for _, c := range forget {
		j.forget(ctx, c)
	}
	j.mu.Lock()
	purged := j.purged
	j.mu.Unlock()
	if floor <= info.State.FirstSeq || floor <= purged {
		return
	}
	if err := j.stream.Purge(ctx, jetstream.WithPurgeSequence(floor)); err != nil {
		j.log.WithError(err).Debug("journal: purge")
		return
	}
	j.mu.Lock()
	j.purged = floor
	j.mu.Unlock()
}

// forget drops a center no longer configured with nothing left for it.
func (j *jsJournal) forget(ctx context.Context, name string) {
	e, err := j.state.Get(ctx, "centers")
	if err != nil {
		return
	}
	slots, err := parseSlots(string(e.Value()))
	if err != nil {
		return
	}
	delete(slots, name)
	if _, err := j.state.Update(ctx, "centers", []byte(formatSlots(slots)), e.Revision()); err != nil {
		return
	}
	_ = j.state.Delete(ctx, cursorKey(name))
	j.mu.Lock()
	if s, ok := j.slots[name]; ok {
		j.fromSlot[s] = -1
	}
	delete(j.slots, name)
	delete(j.orphans, name)
	delete(j.cursors, name)
	delete(j.dirty, name)
	j.mu.Unlock()
	j.log.WithField("center", name).Info("journal: nothing left for a center that is no longer configured: forgotten")
}

// openReader reads the stream from the center's cursor with an ordered consumer (recreated by the client
// when the server holding it goes away), at most 1 MiB of records buffered.
func (j *jsJournal) openReader(c *Center, from uint64) (recordReader, error) {
	ctx, cancel := context.WithCancel(context.Background())
	cons, err := j.stream.OrderedConsumer(ctx, jetstream.OrderedConsumerConfig{
		DeliverPolicy: jetstream.DeliverByStartSequencePolicy, OptStartSeq: max(from, 1)})
	if err != nil {
		cancel()
		return nil, fmt.Errorf("relay: journal stream %s: reader: %w", j.names.stream, err)
	}
	it, err := cons.Messages(jetstream.PullMaxBytes(1 << 20))
	if err != nil {
		cancel()
		return nil, fmt.Errorf("relay: journal stream %s: reader: %w", j.names.stream, err)
	}
	jr := &jsReader{j: j, c: c, it: it, cancel: cancel, recs: make(chan jsRead, 64), notify: make(chan struct{}, 1),
		expect: max(from, 1), done: make(chan struct{}), stop: make(chan struct{})}
	go jr.run()
	return jr, nil
}

// jsReader is a center link's view of the stream.
type jsReader struct {
	j      *jsJournal
	c      *Center
	it     jetstream.MessagesContext
	cancel context.CancelFunc
	recs   chan jsRead
	notify chan struct{}
	expect uint64 // the sequence expected next (a later one means records were dropped)
	done   chan struct{}
	stop   chan struct{} // closed by Close: ends a blocked send of run
}

type jsRead struct {
	seq  uint64
	data []byte
}

func (jr *jsReader) run() {
	defer close(jr.done)
	for {
		m, err := jr.it.Next()
		if err != nil {
			if errors.Is(err, jetstream.ErrMsgIteratorClosed) {
				return
			}
			jr.j.log.WithError(err).WithField("center", jr.c.Name).Debug("journal reader")
			select { // the consumer is being recreated (its server went away): no busy loop
			case <-time.After(50 * time.Millisecond):
			case <-jr.stop:
				return
			}
			continue
		}
		meta, err := m.Metadata()
		if err != nil {
			continue
		}
		select {
		case jr.recs <- jsRead{seq: meta.Sequence.Stream, data: m.Data()}:
		case <-jr.stop:
			return
		}
		select {
		case jr.notify <- struct{}{}:
		default:
		}
	}
}

func (jr *jsReader) next(context.Context) (uint64, CenterSet, []byte, bool, error) {
	select {
	case rd := <-jr.recs:
		if rd.seq > jr.expect {
			// records below were dropped (stream limits: relay.journal_retention_bytes, _age) before this center took them
			if jr.j.onDropped != nil {
				jr.j.onDropped(jr.c.Name, rd.seq-jr.expect)
			}
			jr.j.log.WithFields(logrus.Fields{"center": jr.c.Name, "from": jr.expect, "to": rd.seq, "records": rd.seq - jr.expect}).
				Warn("journal retention: records the center had not acknowledged were dropped by the stream's limits")
		}
		jr.expect = rd.seq + 1
		rec, err := decodeJSRecord(rd.data)
		if err != nil {
			jr.j.log.WithError(err).WithField("sequence", rd.seq).Warn("journal: record skipped")
			return rd.seq, 0, nil, true, nil
		}
		return rd.seq, rec.centers, rec.line, true, nil
	default:
		return 0, 0, nil, false, nil
	}
}

func (jr *jsReader) ready() <-chan struct{} { return jr.notify }

func (jr *jsReader) Close() {
	close(jr.stop)
	jr.it.Stop()
	jr.cancel()
	<-jr.done
}
