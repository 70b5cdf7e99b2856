// Package roomscluster keeps the socket server's chat rooms in a cluster of engines (socket.Rooms over
// engine/cluster): every node sees every room and every member, and a say or a broadcast reaches the members
// on every node. The engine uses it when cluster.nats_url is set; a single engine keeps socket.LocalRooms
// and none of this is on its path. docs/architecture.md, "Cluster", "Socket rooms" explains the design.
package roomscluster

import (
	"cmp"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"maps"
	"math"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/sirupsen/logrus"

	"github.com/switchboard/switchboard/engine/cluster"
	"github.com/switchboard/switchboard/engine/socket"
	"github.com/switchboard/switchboard/internal/prom"
)

// MaxRoomBytes bounds a room's name in a cluster (it is part of a KV key and of every chat message).
const MaxRoomBytes = 512

// memberTTL is how long a member's record lives in the members bucket after its last write; its node
// rewrites it every refreshEvery, so only the records of a node that is gone (and that no survivor
// purged: the whole cluster stopped) age out, and so do delete markers.
const (
	memberTTL    = 30 * time.Minute
	refreshEvery = memberTTL / 6
)

// pendingBytes bounds what NATS buffers of the chat messages of the other nodes before they are delivered
// here; past it NATS drops them (switchboard_cluster_errors_total{kind="slow_consumer"}).
const pendingBytes = 64 << 20

// ErrRoomName refuses a room whose name is longer than MaxRoomBytes.
var ErrRoomName = fmt.Errorf("a room's name takes at most %d bytes in a cluster", MaxRoomBytes)

// Options are the collaborators of Rooms.
type Options struct {
	// Starting rooms are created at Start (those that exist already are kept as they are).
	Starting []string
	// Autocreate: joining a room that does not exist creates it (socket.rooms.autocreate).
	Autocreate bool
	Log        *logrus.Entry
	Metrics    prometheus.Registerer
}

// Rooms is socket.Rooms shared by the nodes of a cluster.
//
//   - Room names live in the KV bucket <name>_rooms (one key per room); each node keeps a copy, watched,
//     so that listing rooms and checking one costs no round trip (a name missing from the copy is asked of
//     the bucket, so a room created a moment ago on another node is found).
//   - Members live in the KV bucket <name>_roommembers, one key per (room, connection) with the member's
//     node and record. This node's own members are kept in a socket.LocalRooms (what IsMember and Local
//     read: no network on a say's path); the other nodes' are a watched copy. A view is both, in join
//     order, minus the members of nodes that no longer heartbeat (cluster.LiveNodes): a node killed with
//     kill -9 loses its members from every view within cluster.MembersTTL, and the live node with the
//     smallest id then deletes their records.
//   - Chat messages (says, the server's broadcasts) and room destructions travel on the subject
//     <name>.rooms, every node subscribed; each node delivers to its own members (socket.Server.Deliver,
//     payload hooks per receiver on the receiving node).
//
// While NATS is unreachable local rooms keep working: joins and leaves are kept here and written when it
// returns, says reach this node's members and are counted as unsent for the others
// (switchboard_cluster_room_messages_unsent_total, a warning a second at most). Creating or destroying a
// room needs NATS.
type Rooms struct {
	n          *cluster.Node
	cfg        cluster.RoomsConfig
	log        *logrus.Entry
	autocreate bool
	starting   []string
	subject    string

	local *socket.LocalRooms // this node's members
	srv   atomic.Pointer[socket.Server]
	live  *cluster.LiveNodes

	mu         sync.RWMutex
	names      map[string]bool                    // rooms (copy of the rooms bucket)
	remote     map[string]map[string]remoteMember // room → connection id → member on another node
	own        map[string]ownKey                  // this node's records in the bucket, as the watch saw them
	pendingDel map[string]bool                    // records to delete when NATS returns
	needStart  bool                               // starting rooms not created yet

	kvMu               sync.Mutex
	roomsKV, membersKV jetstream.KeyValue

	sub    *nats.Subscription
	ctx    context.Context
	cancel context.CancelFunc
	done   chan struct{}

	sent, received, purged prometheus.Counter
	unsent, bad            *prometheus.CounterVec
	failLog, badLog        atomic.Int64
}

type remoteMember struct {
	node string
	rev  uint64
	m    socket.Member
}

type ownKey struct {
	room, id string
	rev      uint64
}

var _ socket.Rooms = (*Rooms)(nil)

// New builds the rooms of node n; Start wires them to the server.
func New(n *cluster.Node, opts Options) (*Rooms, error) {
	log := opts.Log
	if log == nil {
		l := logrus.New()
		l.SetLevel(logrus.PanicLevel)
		log = logrus.NewEntry(l)
	}
	for _, name := range opts.Starting {
		if len(name) > MaxRoomBytes {
			return nil, fmt.Errorf("socket.rooms.starting: %q: %w", clip(name), ErrRoomName)
		}
	}
	r := &Rooms{n: n, cfg: n.Config().Rooms, log: log.WithFields(logrus.Fields{"part": "socket", "node": n.ID()}),
		autocreate: opts.Autocreate, starting: opts.Starting, subject: n.Subject("rooms"),
		local: socket.NewLocalRooms(nil, true), names: map[string]bool{}, remote: map[string]map[string]remoteMember{},
		own: map[string]ownKey{}, pendingDel: map[string]bool{}, needStart: len(opts.Starting) > 0, done: make(chan struct{})}
	for _, name := range opts.Starting {
		r.names[name] = true // usable at once, here, even before NATS answers
	}
	reg := prom.On(opts.Metrics)
	r.sent = prom.Register(reg, prometheus.NewCounter(prometheus.CounterOpts{Name: "switchboard_cluster_room_messages_sent_total",
		Help: "Chat messages and room destructions sent to the other nodes."}))
	r.received = prom.Register(reg, prometheus.NewCounter(prometheus.CounterOpts{Name: "switchboard_cluster_room_messages_received_total",
		Help: "Chat messages and room destructions received from the other nodes."}))
	r.purged = prom.Register(reg, prometheus.NewCounter(prometheus.CounterOpts{Name: "switchboard_cluster_room_members_purged_total",
		Help: "Member records of nodes gone without leaving that this node deleted."}))
	r.unsent = prom.Register(reg, prometheus.NewCounterVec(prometheus.CounterOpts{Name: "switchboard_cluster_room_messages_unsent_total",
		Help: "Chat messages that reached this node's members only, by reason (disconnected, too_large, not_encodable, other)."}, []string{"reason"}))
	r.bad = prom.Register(reg, prometheus.NewCounterVec(prometheus.CounterOpts{Name: "switchboard_cluster_room_messages_bad_total",
		Help: "Messages on the rooms subject that could not be decoded, and member records that could not, by reason."}, []string{"reason"}))
	if err := reg.Err(); err != nil {
		return nil, err
	}
	return r, nil
}

// Start wires the rooms to srv (which must have been built with them) and starts following the cluster:
// the chat subject, the buckets and the node list, until Close.
func (r *Rooms) Start(srv *socket.Server) error {
	r.srv.Store(srv)
	r.ctx, r.cancel = context.WithCancel(context.Background())
	sub, err := r.n.Conn().Subscribe(r.subject, r.receive)
	if err != nil {
		r.cancel()
		return fmt.Errorf("cluster: subscribe %s: %w", r.subject, err)
	}
	_ = sub.SetPendingLimits(-1, pendingBytes)
	r.sub = sub
	r.live = r.n.WatchNodes(r.ctx)
	go r.run()
	return nil
}

// Close stops following the cluster and deletes the records of this node's members still in a room (the
// server has shut down: normally none). It waits for the watch to end, within ctx.
func (r *Rooms) Close(ctx context.Context) {
	if r.cancel == nil {
		return
	}
	r.cancel()
	if r.sub != nil {
		_ = r.sub.Unsubscribe()
	}
	select {
	case <-r.done:
	case <-ctx.Done():
	}
	if r.live != nil {
		select {
		case <-r.live.Done():
		case <-ctx.Done():
		}
	}
	if !r.n.Conn().IsConnected() {
		return
	}
	r.mu.RLock()
	keys := slices.Collect(maps.Keys(r.own))
	r.mu.RUnlock()
	for _, k := range keys {
		r.deleteRecord(ctx, k)
	}
}

// Live is the node list the views are filtered by (nil before Start).
func (r *Rooms) Live() *cluster.LiveNodes { return r.live }

func memberKey(room, id string) string { return cluster.EncodeKey(room) + "." + cluster.EncodeKey(id) }

func clip(s string) string {
	if len(s) > 64 {
		return s[:64] + "…"
	}
	return s
}

// Create adds an empty room in the rooms bucket: socket.ErrRoomExists when any node made it already.
func (r *Rooms) Create(ctx context.Context, room string) error {
	if len(room) > MaxRoomBytes {
		return ErrRoomName
	}
	kv, err := r.bucket(ctx, true)
	if err != nil {
		return err
	}
	ctx, cancel := r.n.Context(ctx)
	defer cancel()
	val, _ := json.Marshal(map[string]any{"node": r.n.ID(), "created": time.Now().UnixMilli()})
	_, err = kv.Create(ctx, cluster.EncodeKey(room), val)
	switch {
	case errors.Is(err, jetstream.ErrKeyExists):
		r.addName(room)
		return socket.ErrRoomExists
	case err != nil:
		return fmt.Errorf("room %q not created: %w", clip(room), roomsErr(err))
	}
	r.addName(room)
	return nil
}

// roomsErr explains an error of the rooms buckets to a client.
func roomsErr(err error) error {
	if strings.Contains(err.Error(), "maximum bytes") || strings.Contains(err.Error(), "resource limits") {
		return fmt.Errorf("the cluster's rooms are full (cluster.rooms.max_bytes): %w", err)
	}
	if errors.Is(err, nats.ErrConnectionClosed) || errors.Is(err, nats.ErrConnectionReconnecting) || errors.Is(err, nats.ErrNoResponders) ||
		errors.Is(err, context.DeadlineExceeded) || errors.Is(err, nats.ErrTimeout) {
		return fmt.Errorf("the cluster is unreachable: %w", err)
	}
	return err
}

func (r *Rooms) addName(room string) {
	r.mu.Lock()
	r.names[room] = true
	r.mu.Unlock()
}

// Destroy removes the room from the bucket, tells the other nodes (their members leave, with their leave
// hooks) and returns this node's members.
func (r *Rooms) Destroy(ctx context.Context, room string) ([]*socket.Conn, error) {
	ok, err := r.Exists(ctx, room)
	if err != nil {
		return nil, err
	}
	if !ok {
		return nil, socket.ErrNoRoom
	}
	kv, err := r.bucket(ctx, true)
	if err != nil {
		return nil, err
	}
	dctx, cancel := r.n.Context(ctx)
	err = kv.Delete(dctx, cluster.EncodeKey(room))
	cancel()
	if err != nil {
		return nil, fmt.Errorf("room %q not destroyed: %w", clip(room), roomsErr(err))
	}
	r.publish(event{kind: kindDestroy, room: room})
	return r.dropRoom(ctx, room), nil
}

// dropRoom forgets a destroyed room here and deletes the records of this node's members.
func (r *Rooms) dropRoom(ctx context.Context, room string) []*socket.Conn {
	r.mu.Lock()
	delete(r.names, room)
	delete(r.remote, room)
	r.mu.Unlock()
	conns, _ := r.local.Destroy(ctx, room)
	for _, c := range conns {
		if c != nil {
			r.deleteRecord(ctx, memberKey(room, c.ID()))
		}
	}
	return conns
}

// Exists reports whether the room exists: from this node's copy, else asked of the bucket.
func (r *Rooms) Exists(ctx context.Context, room string) (bool, error) {
	if room == "" || len(room) > MaxRoomBytes {
		return false, nil
	}
	r.mu.RLock()
	ok := r.names[room]
	r.mu.RUnlock()
	if ok || !r.n.Conn().IsConnected() {
		return ok, nil
	}
	kv, err := r.bucket(ctx, true)
	if err != nil {
		return false, nil // the copy answers while the bucket cannot
	}
	gctx, cancel := r.n.Context(ctx)
	defer cancel()
	_, err = kv.Get(gctx, cluster.EncodeKey(room))
	switch {
	case err == nil:
		r.addName(room)
		return true, nil
	case errors.Is(err, jetstream.ErrKeyNotFound):
		return false, nil
	}
	r.log.WithError(err).WithField("room", clip(room)).Debug("cluster: room lookup failed; answered from this node's copy")
	return false, nil
}

// List returns the room names sorted, from this node's copy of the bucket.
func (r *Rooms) List(_ context.Context, offset, limit int) ([]string, int, error) {
	r.mu.RLock()
	total := len(r.names)
	if limit <= 0 || offset >= total || offset < 0 {
		r.mu.RUnlock()
		return nil, total, nil
	}
	names := make([]string, 0, total)
	for name := range r.names {
		names = append(names, name)
	}
	r.mu.RUnlock()
	slices.Sort(names)
	return names[offset : offset+min(limit, total-offset)], total, nil
}

// Join adds m to the room here, then writes its record for the other nodes. While NATS is unreachable the
// member is kept here and its record written when NATS returns; when NATS refuses the record (the bucket
// is full) the join is refused.
func (r *Rooms) Join(ctx context.Context, room string, m socket.Member) error {
	if room == "" {
		return socket.ErrNoRoom
	}
	if len(room) > MaxRoomBytes {
		return ErrRoomName
	}
	ok, err := r.Exists(ctx, room)
	if err != nil {
		return err
	}
	if !ok {
		if !r.autocreate {
			return socket.ErrNoRoom
		}
		if err := r.Create(ctx, room); err != nil && !errors.Is(err, socket.ErrRoomExists) {
			return err
		}
	}
	rec, err := r.record(room, m)
	if err != nil {
		return err
	}
	if err := r.local.Join(ctx, room, m); err != nil {
		return err
	}
	if err := r.putRecord(ctx, room, m.ID, rec); err != nil && r.n.Conn().IsConnected() {
		_ = r.local.Leave(ctx, room, m.Conn)
		return fmt.Errorf("room %q not joined: %w", clip(room), roomsErr(err))
	}
	return nil
}

// Leave removes c from the room here and deletes its record (later, if NATS is unreachable).
func (r *Rooms) Leave(ctx context.Context, room string, c *socket.Conn) error {
	if err := r.local.Leave(ctx, room, c); err != nil {
		return err
	}
	r.deleteRecord(ctx, memberKey(room, c.ID()))
	return nil
}

// Members returns the room's members on every live node, in join order (then by id).
func (r *Rooms) Members(ctx context.Context, room string, offset, limit int) ([]socket.Member, int, error) {
	ok, err := r.Exists(ctx, room)
	if err != nil {
		return nil, 0, err
	}
	if !ok {
		return nil, 0, socket.ErrNoRoom
	}
	all, _, err := r.local.Members(ctx, room, 0, math.MaxInt)
	if err != nil {
		all = nil
	}
	nLocal := len(all)
	r.mu.RLock()
	for _, rm := range r.remote[room] {
		if r.live != nil && r.live.Alive(rm.node) { // before Start no other node is known
			all = append(all, rm.m)
		}
	}
	r.mu.RUnlock()
	if len(all) > nLocal {
		slices.SortStableFunc(all, func(a, b socket.Member) int {
			return cmp.Or(a.JoinedAt.Compare(b.JoinedAt), cmp.Compare(a.ID, b.ID))
		})
	}
	total := len(all)
	if limit <= 0 || offset < 0 || offset >= total {
		return nil, total, nil
	}
	return all[offset : offset+min(limit, total-offset)], total, nil
}

// IsMember reports whether a connection of this node is in the room (no network).
func (r *Rooms) IsMember(room string, c *socket.Conn) bool { return r.local.IsMember(room, c) }

// Local returns the room's members on this node (no network).
func (r *Rooms) Local(room string) []*socket.Conn { return r.local.Local(room) }

// Publish sends a chat message to the other nodes. It does not fail: what cannot be sent is counted
// (switchboard_cluster_room_messages_unsent_total{reason}) and logged here, at most once a second.
func (r *Rooms) Publish(_ context.Context, msg socket.Chat) error {
	r.publish(event{kind: kindChat, room: msg.Room, from: msg.From, at: msg.SentAt, message: msg.Message})
	return nil
}

// record is m's record for the other nodes, within cluster.rooms.member_bytes.
func (r *Rooms) record(room string, m socket.Member) ([]byte, error) {
	host := "switchboard"
	if srv := r.srv.Load(); srv != nil {
		host = srv.ID()
	}
	details, err := socket.AppendJSON(nil, m.Record(host))
	if err != nil {
		return nil, fmt.Errorf("member record: %w", err)
	}
	rec, err := json.Marshal(memberRecord{Node: r.n.ID(), Room: room, ID: m.ID, Joined: m.JoinedAt.UnixNano(), Record: details})
	if err != nil {
		return nil, fmt.Errorf("member record: %w", err)
	}
	if len(rec) > r.cfg.MemberBytes {
		return nil, fmt.Errorf("the member's record takes %d bytes, more than cluster.rooms.member_bytes (%d)", len(rec), r.cfg.MemberBytes)
	}
	return rec, nil
}

// memberRecord is a member's value in the members bucket.
type memberRecord struct {
	Node   string          `json:"node"`
	Room   string          `json:"room"`
	ID     string          `json:"id"`
	Joined int64           `json:"joined"` // unix nanoseconds
	Record json.RawMessage `json:"record"` // socket.Member.Record as the node that holds the member made it
}

func (r *Rooms) putRecord(ctx context.Context, room, id string, rec []byte) error {
	kv, err := r.bucket(ctx, false)
	if err != nil {
		return err
	}
	ctx, cancel := r.n.Context(ctx)
	defer cancel()
	key := memberKey(room, id)
	if _, err := kv.Put(ctx, key, rec); err != nil {
		return err
	}
	r.mu.Lock()
	delete(r.pendingDel, key)
	r.mu.Unlock()
	return nil
}

// deleteRecord deletes a record of this node, or remembers to when NATS returns.
func (r *Rooms) deleteRecord(ctx context.Context, key string) {
	err := errors.New("cluster: disconnected")
	if r.n.Conn().IsConnected() {
		var kv jetstream.KeyValue
		if kv, err = r.bucket(ctx, false); err == nil {
			dctx, cancel := r.n.Context(ctx)
			err = kv.Delete(dctx, key)
			cancel()
		}
	}
	r.mu.Lock()
	if err != nil {
		r.pendingDel[key] = true
	} else {
		delete(r.pendingDel, key)
	}
	r.mu.Unlock()
}

// bucket opens (creating or updating) the rooms bucket or the members bucket.
func (r *Rooms) bucket(ctx context.Context, rooms bool) (jetstream.KeyValue, error) {
	r.kvMu.Lock()
	defer r.kvMu.Unlock()
	if rooms && r.roomsKV != nil {
		return r.roomsKV, nil
	}
	if !rooms && r.membersKV != nil {
		return r.membersKV, nil
	}
	ctx, cancel := r.n.Context(ctx)
	defer cancel()
	cfg := jetstream.KeyValueConfig{Bucket: r.n.Bucket("rooms"), History: 1, MaxBytes: r.cfg.MaxBytes,
		Description: "switchboard socket rooms (names)"}
	if !rooms {
		cfg = jetstream.KeyValueConfig{Bucket: r.n.Bucket("roommembers"), History: 1, MaxBytes: r.cfg.MaxBytes, TTL: memberTTL,
			Description: "switchboard socket room members (rewritten by their node every " + refreshEvery.String() + ")"}
	}
	kv, err := r.n.JetStream().CreateOrUpdateKeyValue(ctx, cfg)
	if err != nil {
		return nil, fmt.Errorf("cluster: bucket %s: %w", cfg.Bucket, err)
	}
	if rooms {
		r.roomsKV = kv
	} else {
		r.membersKV = kv
	}
	return kv, nil
}
