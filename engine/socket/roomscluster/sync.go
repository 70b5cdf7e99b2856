package roomscluster

import (
	"context"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"maps"
	"math"
	"slices"
	"strings"
	"sync/atomic"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/sirupsen/logrus"

	"github.com/switchboard/switchboard/engine/cluster"
	"github.com/switchboard/switchboard/engine/socket"
)

// An event on the rooms subject: a chat message or a room's destruction, from one node to the others.
//
//	event = kind(1) uvarint-len node  uvarint-len room  uvarint-len from  varint sentAt(unix ns)  message
//
// kind is 'c' (chat; message is its JSON, as the server writes it) or 'd' (destroy; no message).
type event struct {
	kind    byte
	room    string
	from    string
	at      time.Time
	message any
}

const (
	kindChat    = 'c'
	kindDestroy = 'd'
)

// maxEventNameBytes bounds the node, room and sender fields of a decoded event.
const maxEventNameBytes = 4096

func appendEvent(b []byte, node string, ev event) ([]byte, error) {
	b = append(b, ev.kind)
	for _, s := range []string{node, ev.room, ev.from} {
		b = binary.AppendUvarint(b, uint64(len(s)))
		b = append(b, s...)
	}
	var at int64
	if !ev.at.IsZero() {
		at = ev.at.UnixNano()
	}
	b = binary.AppendVarint(b, at)
	if ev.kind == kindChat {
		return socket.AppendJSON(b, ev.message)
	}
	return b, nil
}

var errBadEvent = errors.New("roomscluster: not a rooms event")

// decodeEvent reverses appendEvent; the message stays JSON (raw).
func decodeEvent(data []byte) (node string, ev event, raw []byte, err error) {
	if len(data) == 0 || (data[0] != kindChat && data[0] != kindDestroy) {
		return "", ev, nil, errBadEvent
	}
	ev.kind = data[0]
	rest := data[1:]
	var fields [3]string
	for i := range fields {
		n, w := binary.Uvarint(rest)
		if w <= 0 || n > maxEventNameBytes || n > uint64(len(rest)-w) {
			return "", ev, nil, fmt.Errorf("%w: field %d past the end", errBadEvent, i)
		}
		fields[i] = string(rest[w : w+int(n)])
		rest = rest[w+int(n):]
	}
	at, w := binary.Varint(rest)
	if w <= 0 {
		return "", ev, nil, fmt.Errorf("%w: no time", errBadEvent)
	}
	rest = rest[w:]
	node, ev.room, ev.from = fields[0], fields[1], fields[2]
	if at != 0 {
		ev.at = time.Unix(0, at)
	}
	if ev.kind == kindChat {
		if len(rest) == 0 {
			return "", ev, nil, fmt.Errorf("%w: chat without a message", errBadEvent)
		}
		return node, ev, rest, nil
	}
	if len(rest) != 0 {
		return "", ev, nil, fmt.Errorf("%w: bytes after a destroy", errBadEvent)
	}
	return node, ev, nil, nil
}

// publish sends ev to the other nodes, counting and logging what cannot be sent.
func (r *Rooms) publish(ev event) {
	nc := r.n.Conn()
	if !nc.IsConnected() {
		r.unsentf("disconnected", errors.New("NATS is unreachable"), ev)
		return
	}
	data, err := appendEvent(make([]byte, 0, 128), r.n.ID(), ev)
	if err != nil {
		r.unsentf("not_encodable", err, ev)
		return
	}
	if int64(len(data)+len(r.subject)+64) > nc.MaxPayload() {
		r.unsentf("too_large", fmt.Errorf("the message takes %d bytes, more than NATS's max_payload (%d)", len(data), nc.MaxPayload()), ev)
		return
	}
	if err := nc.Publish(r.subject, data); err != nil {
		reason := "other"
		if errors.Is(err, nats.ErrConnectionClosed) || errors.Is(err, nats.ErrConnectionReconnecting) ||
			errors.Is(err, nats.ErrReconnectBufExceeded) || !nc.IsConnected() {
			reason = "disconnected"
		}
		r.unsentf(reason, err, ev)
		return
	}
	r.sent.Inc()
}

func (r *Rooms) unsentf(reason string, err error, ev event) {
	r.unsent.WithLabelValues(reason).Inc()
	if !every(&r.failLog, time.Second) {
		return
	}
	what := "chat message"
	if ev.kind == kindDestroy {
		what = "room destruction"
	}
	r.log.WithError(err).WithFields(logrus.Fields{"room": clip(ev.room), "reason": reason}).
		Warn("cluster: " + what + " not sent to the other nodes (this node's members got it; counted in switchboard_cluster_room_messages_unsent_total)")
}

// every reports true at most once per d (a rate limit for logs).
func every(last *atomic.Int64, d time.Duration) bool {
	now := time.Now().UnixNano()
	l := last.Load()
	return now-l >= int64(d) && last.CompareAndSwap(l, now)
}

// receive handles an event of another node (on the subscription's goroutine, in the order sent).
func (r *Rooms) receive(m *nats.Msg) {
	node, ev, raw, err := decodeEvent(m.Data)
	if err != nil {
		r.badf("event", err)
		return
	}
	if node == r.n.ID() {
		return // our own, delivered here already
	}
	srv := r.srv.Load()
	if srv == nil {
		return
	}
	r.received.Inc()
	switch ev.kind {
	case kindChat:
		msg, err := socket.DecodeJSON(raw)
		if err != nil {
			r.badf("message", err)
			return
		}
		srv.Deliver(r.ctx, socket.Chat{Room: ev.room, From: ev.from, Message: msg, SentAt: ev.at})
	case kindDestroy:
		srv.RoomDestroyed(r.ctx, ev.room, func() []*socket.Conn { return r.dropRoom(r.ctx, ev.room) })
	}
}

func (r *Rooms) badf(reason string, err error) {
	r.bad.WithLabelValues(reason).Inc()
	if every(&r.badLog, time.Second) {
		r.log.WithError(err).WithField("reason", reason).Warn("cluster: dropped a rooms message or record from NATS that is not ours")
	}
}

// run follows the buckets while connected, starting again after each reconnection, until Close.
func (r *Rooms) run() {
	defer close(r.done)
	for r.ctx.Err() == nil {
		if r.n.Conn().IsConnected() {
			if err := r.follow(); err != nil && r.ctx.Err() == nil && every(&r.failLog, time.Second) {
				r.log.WithError(err).Warn("cluster: following the rooms failed; retrying")
			}
		}
		select {
		case <-r.ctx.Done():
		case <-time.After(100 * time.Millisecond):
		}
	}
}

// follow reads both buckets whole into fresh copies, swaps them in, writes what this node owes the
// cluster (resync), then applies every change until the connection is re-established, a watcher ends or
// Close. Each second it also deletes stale records of this node, rewrites its members every refreshEvery,
// and (on the smallest live node) deletes the members of nodes that are gone.
func (r *Rooms) follow() error {
	ctx, cancel := context.WithCancel(r.ctx)
	defer cancel()
	roomsKV, err := r.bucket(ctx, true)
	if err != nil {
		return err
	}
	membersKV, err := r.bucket(ctx, false)
	if err != nil {
		return err
	}
	reconnects := r.n.Conn().Stats().Reconnects
	rw, err := roomsKV.WatchAll(ctx)
	if err != nil {
		return fmt.Errorf("cluster: watch %s: %w", r.n.Bucket("rooms"), err)
	}
	defer func() { _ = rw.Stop() }()
	mw, err := membersKV.WatchAll(ctx)
	if err != nil {
		return fmt.Errorf("cluster: watch %s: %w", r.n.Bucket("roommembers"), err)
	}
	defer func() { _ = mw.Stop() }()

	names := map[string]bool{}
	remote := map[string]map[string]remoteMember{}
	own := map[string]ownKey{}
	roomsIn, membersIn, loaded := false, false, false
	tick := time.NewTicker(time.Second)
	defer tick.Stop()
	var refreshed time.Time
	for {
		select {
		case <-ctx.Done():
			return nil
		case e, ok := <-rw.Updates():
			if !ok {
				return errors.New("cluster: the rooms watch ended")
			}
			if e == nil {
				roomsIn = true
			} else if loaded {
				r.mu.Lock()
				applyRoom(r.names, e)
				r.mu.Unlock()
			} else {
				applyRoom(names, e)
			}
		case e, ok := <-mw.Updates():
			if !ok {
				return errors.New("cluster: the members watch ended")
			}
			if e == nil {
				membersIn = true
			} else if loaded {
				r.mu.Lock()
				r.applyMember(r.remote, r.own, e)
				r.mu.Unlock()
			} else {
				r.applyMember(remote, own, e)
			}
		case <-tick.C:
			nc := r.n.Conn()
			if nc.Stats().Reconnects != reconnects || !nc.IsConnected() {
				return nil
			}
			if !loaded {
				continue
			}
			r.cleanOwn(ctx)
			if time.Since(refreshed) >= refreshEvery {
				r.refresh(ctx)
				refreshed = time.Now()
			}
			r.purgeGone(ctx)
		}
		if !loaded && roomsIn && membersIn {
			loaded = true
			r.swap(ctx, names, remote, own)
			r.resync(ctx)
			refreshed = time.Now()
		}
	}
}

// swap makes freshly read copies the node's, keeping the rooms that exist here meanwhile (starting rooms
// not yet created, rooms with members here).
func (r *Rooms) swap(ctx context.Context, names map[string]bool, remote map[string]map[string]remoteMember, own map[string]ownKey) {
	localRooms, _, _ := r.local.List(ctx, 0, math.MaxInt)
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.needStart {
		for _, name := range r.starting {
			names[name] = true
		}
	}
	for _, name := range localRooms {
		if len(r.local.Local(name)) > 0 {
			names[name] = true
		}
	}
	r.names, r.remote, r.own = names, remote, own
}

// resync writes what this node owes the cluster after a (re)connection: the starting rooms, the rooms its
// members are in (a NATS server that lost its store), its members' records, the deletes it could not make.
func (r *Rooms) resync(ctx context.Context) {
	r.mu.RLock()
	needStart := r.needStart
	r.mu.RUnlock()
	if needStart {
		failed := false
		for _, name := range r.starting {
			if err := r.Create(ctx, name); err != nil && !errors.Is(err, socket.ErrRoomExists) {
				failed = true
				r.log.WithError(err).WithField("room", clip(name)).Warn("cluster: starting room not created; retried at the next reconnection")
			}
		}
		r.mu.Lock()
		r.needStart = failed
		r.mu.Unlock()
	}
	localRooms, _, _ := r.local.List(ctx, 0, math.MaxInt)
	for _, name := range localRooms {
		if len(r.local.Local(name)) == 0 {
			continue
		}
		if err := r.Create(ctx, name); err != nil && !errors.Is(err, socket.ErrRoomExists) {
			r.log.WithError(err).WithField("room", clip(name)).Warn("cluster: room of this node's members not recreated")
		}
	}
	r.refresh(ctx)
	r.mu.RLock()
	keys := slices.Collect(maps.Keys(r.pendingDel))
	r.mu.RUnlock()
	for _, k := range keys {
		r.deleteRecord(ctx, k)
	}
}

// refresh rewrites the record of every member of this node (their TTL starts again; a record lost or
// deleted by mistake comes back).
func (r *Rooms) refresh(ctx context.Context) {
	rooms, _, _ := r.local.List(ctx, 0, math.MaxInt)
	for _, room := range rooms {
		members, _, _ := r.local.Members(ctx, room, 0, math.MaxInt)
		for _, m := range members {
			if m.Conn == nil || !r.local.IsMember(room, m.Conn) {
				continue
			}
			rec, err := r.record(room, m)
			if err != nil {
				continue
			}
			if err := r.putRecord(ctx, room, m.ID, rec); err != nil {
				if every(&r.failLog, time.Second) {
					r.log.WithError(err).Warn("cluster: member records not rewritten; retried later")
				}
				return
			}
		}
	}
}

// cleanOwn deletes the records of this node whose member is no longer here (a leave whose delete crossed
// a refresh, a previous run of this node id): only the revision seen, so a rejoin written since stays.
func (r *Rooms) cleanOwn(ctx context.Context) {
	srv := r.srv.Load()
	if srv == nil {
		return
	}
	type stale struct {
		key string
		rev uint64
	}
	var gone []stale
	r.mu.RLock()
	for key, k := range r.own {
		c, ok := srv.Conn(k.id)
		if !ok || !r.local.IsMember(k.room, c) {
			gone = append(gone, stale{key, k.rev})
		}
	}
	r.mu.RUnlock()
	if len(gone) == 0 {
		return
	}
	kv, err := r.bucket(ctx, false)
	if err != nil {
		return
	}
	for _, g := range gone {
		dctx, cancel := r.n.Context(ctx)
		_ = kv.Delete(dctx, g.key, jetstream.LastRevision(g.rev))
		cancel()
	}
}

// purgeGone deletes the records of members whose node stopped heartbeating, on the smallest live node
// only, and only once this node's view of the node list is settled (not just reconnected).
func (r *Rooms) purgeGone(ctx context.Context) {
	if !r.live.Settled() || r.live.List()[0] != r.n.ID() {
		return
	}
	type stale struct {
		key, node string
		rev       uint64
	}
	var gone []stale
	r.mu.RLock()
	for room, members := range r.remote {
		for id, rm := range members {
			if !r.live.Alive(rm.node) {
				gone = append(gone, stale{memberKey(room, id), rm.node, rm.rev})
			}
		}
	}
	r.mu.RUnlock()
	if len(gone) == 0 {
		return
	}
	kv, err := r.bucket(ctx, false)
	if err != nil {
		return
	}
	nodes := map[string]int{}
	for _, g := range gone {
		dctx, cancel := r.n.Context(ctx)
		err := kv.Delete(dctx, g.key, jetstream.LastRevision(g.rev))
		cancel()
		if err == nil {
			r.purged.Inc()
			nodes[g.node]++
		}
	}
	for node, n := range nodes {
		r.log.WithFields(logrus.Fields{"gone": node, "members": n}).Warn("cluster: deleted the room members of a node that stopped heartbeating")
	}
}

func applyRoom(names map[string]bool, e jetstream.KeyValueEntry) {
	name, err := cluster.DecodeKey(e.Key())
	if err != nil {
		return
	}
	if e.Operation() == jetstream.KeyValuePut {
		names[name] = true
	} else {
		delete(names, name)
	}
}

// splitKey reverses memberKey.
func splitKey(key string) (room, id string, ok bool) {
	a, b, found := strings.Cut(key, ".")
	if !found {
		return "", "", false
	}
	room, err1 := cluster.DecodeKey(a)
	id, err2 := cluster.DecodeKey(b)
	return room, id, err1 == nil && err2 == nil
}

func (r *Rooms) applyMember(remote map[string]map[string]remoteMember, own map[string]ownKey, e jetstream.KeyValueEntry) {
	room, id, ok := splitKey(e.Key())
	if !ok {
		r.badf("record", fmt.Errorf("key %q", clip(e.Key())))
		return
	}
	if e.Operation() != jetstream.KeyValuePut {
		delete(own, e.Key())
		if members := remote[room]; members != nil {
			delete(members, id)
			if len(members) == 0 {
				delete(remote, room)
			}
		}
		return
	}
	var rec memberRecord
	if err := json.Unmarshal(e.Value(), &rec); err != nil {
		r.badf("record", err)
		return
	}
	if rec.Node == r.n.ID() {
		own[e.Key()] = ownKey{room: room, id: id, rev: e.Revision()}
		return
	}
	var details socket.Object
	if v, err := socket.DecodeJSON(rec.Record); err == nil {
		details, _ = v.(socket.Object)
	}
	members := remote[room]
	if members == nil {
		members = map[string]remoteMember{}
		remote[room] = members
	}
	members[id] = remoteMember{node: rec.Node, rev: e.Revision(), m: socket.Member{ID: id, JoinedAt: time.Unix(0, rec.Joined), Details: details}}
}
