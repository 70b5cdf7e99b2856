package relay

import (
	"bytes"
	"context"
	"crypto/sha256"
	"fmt"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/nats-io/nats.go/jetstream"
	"github.com/sirupsen/logrus"
)

// objectSink keeps the object index in a JetStream stream (relay.journal = jetstream), so that the node
// that takes over knows where each object went and who sent it. The active node appends, every 200 ms,
// one delta message holding the changes since the last one (several changes of an object in that time
// are one entry; nothing is written when nothing changed), and once the deltas since the last snapshot
// hold more entries than the index, a snapshot of the whole index (in chunks of at most 256 KiB), after
// which the older messages are purged. Each message says which journal sequence the log reflects up to
// (applied). A node that becomes active reads the last complete snapshot and the deltas after it, then
// replays the journal's records past applied (the journal is not purged past applied), so its index is
// the one the previous node had, whatever that node wrote last.
//
// One replicated write per flush, not per object: a bucket entry per object would cost a replicated write
// for every new object, on top of its journal record.
type objectSink struct {
	x   *ObjectIndex
	log *logrus.Entry

	// set when the node becomes active
	js        jetstream.JetStream
	stream    jetstream.Stream
	subject   string
	toSlots   func(CenterSet) CenterSet // the relay's center indexes -> the journal's slots
	fromSlots func(CenterSet) CenterSet

	mu      sync.Mutex
	live    map[[16]byte]idxEntry // every object the index knows, with its identity (set: the relay's indexes)
	dirty   map[[16]byte]idxEntry // changes not yet written
	applied atomic.Uint64
	logged  int       // entries written in deltas since the last snapshot (flush goroutine)
	wrote   time.Time // the last message written (flush goroutine)
	warn    time.Time
}

// idxChunk bounds one message of the log.
const idxChunk = 256 << 10

// newObjectSink makes the sink of x; its stream is set when the node becomes active (the index is not
// used before: a standby node takes no application).
func newObjectSink(x *ObjectIndex, log *logrus.Entry) *objectSink {
	return &objectSink{x: x, log: log, live: map[[16]byte]idxEntry{}, dirty: map[[16]byte]idxEntry{}}
}

// objectKVKey names an object in the log: the first 16 bytes of SHA-256 over its application, type and
// id key.
func objectKVKey(login, typ string, idKey []byte) [16]byte {
	h := sha256.New()
	h.Write([]byte(login))
	h.Write([]byte{0})
	h.Write([]byte(typ))
	h.Write([]byte{0})
	h.Write(idKey)
	var k [16]byte
	copy(k[:], h.Sum(nil))
	return k
}

// record takes a change (under the object's shard lock: the sink sees an object's changes in order).
func (s *objectSink) record(ch *objChange) {
	s.mu.Lock()
	if ch.evicted {
		delete(s.live, ch.evictedKV)
		s.dirty[ch.evictedKV] = idxEntry{key: ch.evictedKV, gone: true}
	}
	switch {
	case ch.del:
		delete(s.live, ch.kv)
		s.dirty[ch.kv] = idxEntry{key: ch.kv, gone: true}
	case ch.put:
		e := s.live[ch.kv]
		if e.login == "" && e.typ == "" && e.idKey == nil {
			e = idxEntry{key: ch.kv, login: ch.login, typ: strings.Clone(ch.typ), idKey: bytes.Clone(ch.idKey)}
		}
		e.slots = ch.set
		s.live[ch.kv] = e
		s.dirty[ch.kv] = e
	}
	s.mu.Unlock()
}

func (s *objectSink) appliedSeq() uint64 { return s.applied.Load() }

// flush writes the changes recorded so far as a delta (and a snapshot when the deltas grew past the
// index); durable is a journal sequence read before the call (every change made by the records up to it
// was recorded before it was durable).
func (s *objectSink) flush(ctx context.Context, durable uint64) {
	s.mu.Lock()
	var dirty map[[16]byte]idxEntry
	if len(s.dirty) > 0 {
		dirty, s.dirty = s.dirty, make(map[[16]byte]idxEntry, len(s.dirty))
	}
	s.mu.Unlock()
	if len(dirty) == 0 && (durable <= s.applied.Load() || time.Since(s.wrote) < time.Second) {
		return // nothing changed; applied moves at most once a second (the journal's purge waits for it)
	}
	var msgs [][]byte
	b := appendIdxDeltaHeader(nil, durable)
	n := 0
	for _, e := range dirty {
		if len(b) > idxChunk {
			msgs = append(msgs, b)
			b = appendIdxDeltaHeader(nil, durable)
		}
		if !e.gone {
			e.slots = s.toSlots(e.slots)
		}
		b = appendIdxEntry(b, &e)
		n++
	}
	msgs = append(msgs, b)
	for _, m := range msgs {
		if _, err := s.js.Publish(ctx, s.subject, m); err != nil {
			s.mu.Lock()
			for k, e := range dirty {
				if _, newer := s.dirty[k]; !newer {
					s.dirty[k] = e
				}
			}
			s.mu.Unlock()
			if time.Since(s.warn) > 5*time.Second {
				s.warn = time.Now()
				s.log.WithError(err).WithField("entries", n).Warn("object index: changes not written to the stream (tried again)")
			}
			return
		}
	}
	s.wrote = time.Now()
	s.applied.Store(durable)
	s.logged += n
	s.mu.Lock()
	size := len(s.live)
	s.mu.Unlock()
	if s.logged > max(size, 4096) {
		if err := s.snapshot(ctx, durable); err != nil && time.Since(s.warn) > 5*time.Second {
			s.warn = time.Now()
			s.log.WithError(err).Warn("object index: snapshot not written (tried again later)")
		}
	}
}

// snapshot writes the whole index, then purges the log before it.
func (s *objectSink) snapshot(ctx context.Context, durable uint64) error {
	s.mu.Lock()
	entries := make([]idxEntry, 0, len(s.live))
	for _, e := range s.live {
		entries = append(entries, e)
	}
	s.mu.Unlock()
	var chunks [][]byte
	var b []byte
	for i := range entries {
		if b == nil || len(b) > idxChunk {
			if b != nil {
				chunks = append(chunks, b)
			}
			b = make([]byte, 25, idxChunk+1024) // the header is written below, once the count is known
		}
		e := entries[i]
		e.slots = s.toSlots(e.slots)
		b = appendIdxEntry(b, &e)
	}
	if b == nil {
		b = make([]byte, 25)
	}
	chunks = append(chunks, b)
	id := uint64(time.Now().UnixNano())
	var first uint64
	for i, c := range chunks {
		appendIdxSnapshotHeader(c[:0], id, uint32(i), uint32(len(chunks)), durable)
		ack, err := s.js.Publish(ctx, s.subject, c)
		if err != nil {
			return fmt.Errorf("relay: object index snapshot: %w", err)
		}
		if i == 0 {
			first = ack.Sequence
		}
	}
	s.logged = 0
	if err := s.stream.Purge(ctx, jetstream.WithPurgeSequence(first)); err != nil {
		return fmt.Errorf("relay: object index: purge before the snapshot: %w", err)
	}
	return nil
}

// restore rebuilds the index from the log (the last complete snapshot and the deltas after it), then
// from the journal's records past applied up to last.
func (s *objectSink) restore(ctx context.Context, j *jsJournal, last uint64) error {
	start := time.Now()
	info, err := s.stream.Info(ctx)
	if err != nil {
		return fmt.Errorf("relay: object index stream: %w", err)
	}
	cur := map[[16]byte]idxEntry{}
	var applied uint64
	messages, deltas := 0, 0
	if info.State.Msgs > 0 {
		var snap map[[16]byte]idxEntry // a snapshot being read
		var snapID uint64
		var snapNext uint32
		err := readStream(ctx, s.stream, info.State.FirstSeq, info.State.LastSeq, func(seq uint64, data []byte) {
			m, err := decodeIdxMsg(data)
			if err != nil {
				s.log.WithError(err).WithField("sequence", seq).Warn("object index: log message skipped")
				return
			}
			messages++
			switch m.kind {
			case idxSnapshot:
				if m.chunk == 0 {
					snap, snapID, snapNext = map[[16]byte]idxEntry{}, m.snap, 0
				}
				if snap == nil || m.snap != snapID || m.chunk != snapNext {
					snap = nil // an incomplete snapshot (its writer stopped): the state before it stands
					return
				}
				for _, e := range m.entries {
					e.idKey = bytes.Clone(e.idKey)
					snap[e.key] = e
				}
				snapNext++
				if snapNext == m.chunks {
					cur, applied, deltas, snap = snap, m.applied, 0, nil
				}
			case idxDelta:
				snap = nil
				for _, e := range m.entries {
					if e.gone {
						delete(cur, e.key)
						continue
					}
					e.idKey = bytes.Clone(e.idKey)
					cur[e.key] = e
				}
				deltas += len(m.entries)
				applied = max(applied, m.applied)
			}
		})
		if err != nil {
			return err
		}
	}
	s.x.reset()
	live := make(map[[16]byte]idxEntry, len(cur))
	for k, e := range cur {
		e.slots = s.fromSlots(e.slots)
		live[k] = e
		s.x.restore(e.login, e.typ, e.idKey, e.slots, k)
	}
	s.mu.Lock()
	s.live, s.dirty = live, map[[16]byte]idxEntry{}
	s.mu.Unlock()
	s.logged, s.wrote = deltas, time.Time{}
	from := max(applied+1, j.firstSeq.Load())
	replayed := 0
	if from <= last {
		err := readStream(ctx, j.stream, from, last, func(_ uint64, data []byte) {
			if rec, err := decodeJSRecord(data); err == nil {
				s.replay(rec)
				replayed++
			}
		})
		if err != nil {
			return err
		}
	}
	s.applied.Store(applied)
	s.log.WithFields(logrus.Fields{"objects": len(live), "log_messages": messages, "replayed": replayed, "from": from, "to": last,
		"took": time.Since(start).Round(time.Millisecond).String()}).Info("object index restored")
	return nil
}

// readStream calls fn for each message of st in [from, to] (an ordered consumer; messages purged or
// deleted meanwhile are skipped).
func readStream(ctx context.Context, st jetstream.Stream, from, to uint64, fn func(seq uint64, data []byte)) error {
	if from > to {
		return nil
	}
	cctx, cancel := context.WithCancel(ctx)
	defer cancel()
	name := st.CachedInfo().Config.Name
	cons, err := st.OrderedConsumer(cctx, jetstream.OrderedConsumerConfig{
		DeliverPolicy: jetstream.DeliverByStartSequencePolicy, OptStartSeq: from})
	if err != nil {
		return fmt.Errorf("relay: stream %s: read: %w", name, err)
	}
	it, err := cons.Messages(jetstream.PullMaxBytes(1 << 20))
	if err != nil {
		return fmt.Errorf("relay: stream %s: read: %w", name, err)
	}
	defer it.Stop()
	for {
		m, err := it.Next(jetstream.NextMaxWait(10 * time.Second))
		if err != nil {
			return fmt.Errorf("relay: stream %s: read up to %d: %w", name, to, err)
		}
		meta, err := m.Metadata()
		if err != nil {
			continue
		}
		seq := meta.Sequence.Stream
		if seq > to {
			return nil
		}
		fn(seq, m.Data())
		if seq == to || meta.NumPending == 0 {
			return nil
		}
	}
}

// replay applies one journal record to the index (its changes reach the sink like any other).
func (s *objectSink) replay(rec jsRecord) {
	var m Message
	if len(rec.line) == 0 || (rec.line[0] != 'O' && rec.line[0] != 'D') || ParseInto(&m, rec.line) != nil {
		return
	}
	s.x.Follow(s.x.Owner(string(rec.login)), &m, s.fromSlots(rec.centers), FollowOff)
}
