package relay

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/sirupsen/logrus"
)

// objectSink keeps the object index in a KV bucket (relay.journal = jetstream), so that the node that
// takes over knows where each object went and who sent it. Changes are written behind, every 200 ms
// (several changes of one object in that time are one write); the key "applied" then says which stream
// sequence the bucket reflects. A node that becomes active reads the bucket and replays the journal's
// records past "applied" (the stream keeps them: it is not purged past applied), so its index is the one
// the previous node had, whatever that node wrote last.
//
// An object's key is o.<32 hex digits>: the first 16 bytes of SHA-256 over its application, type and id.
// Deleted and forgotten objects are purged, their markers removed after a minute.
type objectSink struct {
	x       *ObjectIndex
	kv      jetstream.KeyValue
	js      jetstream.JetStream
	subject string // $KV.<bucket>.
	log     *logrus.Entry
	// toSlots translates the relay's center indexes to the journal's slots (entries name centers by slot)
	toSlots func(CenterSet) CenterSet

	mu      sync.Mutex
	dirty   map[[16]byte]objOp
	applied atomic.Uint64
	warn    time.Time
}

type objOp struct {
	del        bool
	set        CenterSet // the relay's center indexes
	login, typ string
	idKey      []byte
}

// newObjectSink makes the sink of x; its bucket is set when the node first becomes active (the index is
// not used before: a standby node takes no application).
func newObjectSink(x *ObjectIndex, log *logrus.Entry) *objectSink {
	return &objectSink{x: x, log: log, dirty: map[[16]byte]objOp{}}
}

// objectKVKey names an object in the bucket.
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

func objectKey16(k [16]byte) string { return "o." + hex.EncodeToString(k[:]) }

// record takes a change (under the object's shard lock).
func (s *objectSink) record(ch *objChange) {
	s.mu.Lock()
	if ch.evicted {
		s.dirty[ch.evictedKV] = objOp{del: true}
	}
	switch {
	case ch.del:
		s.dirty[ch.kv] = objOp{del: true}
	case ch.put:
		s.dirty[ch.kv] = objOp{set: ch.set, login: ch.login, typ: strings.Clone(ch.typ), idKey: bytes.Clone(ch.idKey)}
	}
	s.mu.Unlock()
}

func (s *objectSink) appliedSeq() uint64 { return s.applied.Load() }

// flush writes the changes recorded so far; durable is a stream sequence read before the call (every
// change of the records up to it was recorded before it was durable).
func (s *objectSink) flush(ctx context.Context, durable uint64) {
	s.mu.Lock()
	dirty := s.dirty
	if len(dirty) > 0 {
		s.dirty = make(map[[16]byte]objOp, len(dirty))
	}
	s.mu.Unlock()
	if len(dirty) == 0 {
		if durable > s.applied.Load() {
			s.putApplied(ctx, durable)
		}
		return
	}
	type sent struct {
		key [16]byte
		op  objOp
		f   jetstream.PubAckFuture
	}
	var futures []sent
	failed := 0
	var firstErr error
	for k, op := range dirty {
		m := nats.NewMsg(s.subject + objectKey16(k))
		if op.del {
			m.Header.Set("KV-Operation", "PURGE")
			m.Header.Set(jetstream.MsgRollup, jetstream.MsgRollupSubject)
			m.Header.Set(jetstream.MsgTTLHeader, "60s")
		} else {
			m.Data = appendJSObject(nil, s.slots(op.set), op.login, op.typ, op.idKey)
		}
		f, err := s.js.PublishMsgAsync(m)
		if err != nil {
			failed++
			firstErr = err
			s.again(k, op)
			continue
		}
		futures = append(futures, sent{k, op, f})
	}
	wctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	for _, f := range futures {
		select {
		case <-f.f.Ok():
		case err := <-f.f.Err():
			failed++
			firstErr = err
			s.again(f.key, f.op)
		case <-wctx.Done():
			failed++
			firstErr = wctx.Err()
			s.again(f.key, f.op)
		}
	}
	if failed > 0 {
		if time.Since(s.warn) > 5*time.Second {
			s.warn = time.Now()
			s.log.WithError(firstErr).WithField("entries", failed).Warn("object index: entries not written to the bucket (tried again)")
		}
		return
	}
	s.putApplied(ctx, durable)
}

// slots translates the relay's center indexes to slots.
func (s *objectSink) slots(set CenterSet) CenterSet {
	if s.toSlots == nil {
		return set
	}
	return s.toSlots(set)
}

func (s *objectSink) again(k [16]byte, op objOp) {
	s.mu.Lock()
	if _, newer := s.dirty[k]; !newer {
		s.dirty[k] = op
	}
	s.mu.Unlock()
}

func (s *objectSink) putApplied(ctx context.Context, seq uint64) {
	if _, err := s.kv.Put(ctx, "applied", strconv.AppendUint(nil, seq, 10)); err != nil {
		return
	}
	s.applied.Store(seq)
}

// restore rebuilds the index: the bucket's entries, then the journal's records from "applied" to last.
func (s *objectSink) restore(ctx context.Context, j *jsJournal, last uint64) error {
	start := time.Now()
	s.x.reset()
	s.mu.Lock()
	s.dirty = map[[16]byte]objOp{}
	s.mu.Unlock()
	var applied uint64
	e, err := s.kv.Get(ctx, "applied")
	switch {
	case errors.Is(err, jetstream.ErrKeyNotFound):
	case err != nil:
		return fmt.Errorf("relay: bucket %s: %w", s.kv.Bucket(), err)
	default:
		applied, _ = strconv.ParseUint(string(e.Value()), 10, 64)
	}
	w, err := s.kv.WatchAll(ctx, jetstream.IgnoreDeletes())
	if err != nil {
		return fmt.Errorf("relay: bucket %s: %w", s.kv.Bucket(), err)
	}
	entries := 0
	for done := false; !done; {
		select {
		case e := <-w.Updates():
			if e == nil {
				done = true
				break
			}
			k, ok := strings.CutPrefix(e.Key(), "o.")
			var kv [16]byte
			if !ok || hex.DecodedLen(len(k)) != 16 {
				continue
			}
			if _, err := hex.Decode(kv[:], []byte(k)); err != nil {
				continue
			}
			o, err := decodeJSObject(e.Value())
			if err != nil {
				s.log.WithError(err).WithField("key", e.Key()).Warn("object index: entry skipped")
				continue
			}
			s.x.restore(o.login, o.typ, o.idKey, j.centersOf(o.centers), kv)
			entries++
		case <-ctx.Done():
			_ = w.Stop()
			return ctx.Err()
		}
	}
	_ = w.Stop()
	replayed, err := s.replayFrom(ctx, j, max(applied+1, j.firstSeq.Load()), last)
	if err != nil {
		return err
	}
	s.applied.Store(applied)
	s.log.WithFields(logrus.Fields{"entries": entries, "replayed": replayed, "from": applied + 1, "to": last,
		"took": time.Since(start).Round(time.Millisecond).String()}).Info("object index restored")
	return nil
}

// replayFrom applies the journal's records in [from, last] to the index.
func (s *objectSink) replayFrom(ctx context.Context, j *jsJournal, from, last uint64) (int, error) {
	if from > last {
		return 0, nil
	}
	cctx, cancel := context.WithCancel(ctx)
	defer cancel()
	cons, err := j.stream.OrderedConsumer(cctx, jetstream.OrderedConsumerConfig{
		DeliverPolicy: jetstream.DeliverByStartSequencePolicy, OptStartSeq: from})
	if err != nil {
		return 0, fmt.Errorf("relay: journal stream %s: replay: %w", j.names.stream, err)
	}
	it, err := cons.Messages(jetstream.PullMaxBytes(1 << 20))
	if err != nil {
		return 0, fmt.Errorf("relay: journal stream %s: replay: %w", j.names.stream, err)
	}
	defer it.Stop()
	n := 0
	for {
		m, err := it.Next(jetstream.NextMaxWait(30 * time.Second))
		if err != nil {
			return n, fmt.Errorf("relay: journal stream %s: replay: %w", j.names.stream, err)
		}
		meta, err := m.Metadata()
		if err != nil {
			continue
		}
		if rec, err := decodeJSRecord(m.Data()); err == nil {
			s.replay(j, rec)
			n++
		}
		if meta.Sequence.Stream >= last {
			return n, nil
		}
	}
}

// replay applies one journal record to the index.
func (s *objectSink) replay(j *jsJournal, rec jsRecord) {
	var m Message
	if len(rec.line) == 0 || (rec.line[0] != 'O' && rec.line[0] != 'D') || ParseInto(&m, rec.line) != nil {
		return
	}
	s.x.Follow(s.x.Owner(string(rec.login)), &m, j.centersOf(rec.centers), FollowOff)
}
