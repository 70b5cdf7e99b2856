package socket

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"sync"
	"time"
)

// Rooms is where the chat rooms live: which rooms exist, who is in each (in join order, with the record
// kept at join), and how a chat message reaches members on other nodes. The server keeps its rooms in a
// LocalRooms (this process only) unless Options.Rooms gives another store: a cluster backs this interface
// with a store every node shares (docs/architecture.md, "Socket rooms").
//
// The server calls the methods from any goroutine. It runs the scripts' hooks (RoomHooks) itself, never
// while a method of Rooms runs, so a store may block on the network (ctx bounds it) and a hook may call
// back into the server. Errors a client sees are the store's: ErrNoRoom, ErrRoomExists, AlreadyInRoom and
// NotInRoom, with actionhero's texts.
type Rooms interface {
	// Create adds an empty room: ErrRoomExists if it exists.
	Create(ctx context.Context, room string) error
	// Destroy removes a room with its members and returns the members connected to this node, in join
	// order: ErrNoRoom if it does not exist.
	Destroy(ctx context.Context, room string) ([]*Conn, error)
	// Exists reports whether a room exists.
	Exists(ctx context.Context, room string) (bool, error)
	// List returns the room names sorted, from offset, at most limit of them (limit 0: none, just the
	// total), and how many rooms exist.
	List(ctx context.Context, offset, limit int) (rooms []string, total int, err error)
	// Join adds m (m.Conn is the connection, on this node) to a room: ErrNoRoom when the room does not
	// exist (a store created with autocreate creates it instead), AlreadyInRoom when it is a member.
	Join(ctx context.Context, room string, m Member) error
	// Leave removes a connection of this node from a room: NotInRoom when it is not a member.
	Leave(ctx context.Context, room string, c *Conn) error
	// Members returns a room's members in join order, from offset, at most limit of them (limit 0: none,
	// just the total), on every node (Member.Conn is nil for a member on another node): ErrNoRoom when
	// the room does not exist.
	Members(ctx context.Context, room string, offset, limit int) (members []Member, total int, err error)
	// IsMember reports whether a connection of this node is in a room (each say asks: it must not wait).
	IsMember(room string, c *Conn) bool
	// Local returns the room's members connected to this node, in join order (each delivery asks).
	Local(room string) []*Conn
	// Publish hands a chat message to the members on the other nodes; the server delivers it to its own
	// members itself (Server.Deliver, which the other nodes call on receipt). LocalRooms has no other node.
	Publish(ctx context.Context, msg Chat) error
}

// Member is one connection's membership of a room.
type Member struct {
	ID       string    // the connection's id
	JoinedAt time.Time // when it joined
	// Details is the record RoomHooks.MemberDetails made at join; nil for the default, {id, joinedAt,
	// host} (Record).
	Details Object
	Conn    *Conn // the connection when it is on this node, else nil
}

// Record is the member's record as actionhero's generateMemberDetails makes it: its Details, or the
// default {"id", "joinedAt", "host"} with host the server's id.
func (m Member) Record(host string) Object {
	if m.Details != nil {
		return m.Details
	}
	return Object{{"id", m.ID}, {"joinedAt", m.JoinedAt}, {"host", host}}
}

// Chat is one chat message: a connection's say, or a broadcast by the server (From "").
type Chat struct {
	Room    string
	From    string // the sender's connection id; "" for the server, shown as "from":0
	Message any    // the text of a say; any JSON value from a script (sb.rooms.broadcast, onSayReceive)
	SentAt  time.Time
}

// FromValue is the message's "from" as clients see it: the sender's id, or 0 for the server (actionhero
// v20 writes the number 0 for its own broadcasts).
func (m Chat) FromValue() any {
	if m.From == "" {
		return 0
	}
	return m.From
}

// Payload is the line every member gets by default (actionhero's generateMessagePayload), in its order:
// {"message", "room", "from", "context":"user", "sentAt"}.
func (m Chat) Payload() Object {
	return Object{{"message", m.Message}, {"room", m.Room}, {"from", m.FromValue()}, {"context", "user"}, {"sentAt", m.SentAt}}
}

// Errors of room operations, with actionhero's texts (what the client reads in {"error":...}).
var (
	ErrNoRoom       = errors.New("room does not exist")
	ErrRoomExists   = errors.New("room exists")
	ErrRoomRequired = errors.New("a room is required")
)

// AlreadyInRoom is the error of a join by a member of the room.
func AlreadyInRoom(room string) error {
	return fmt.Errorf("connection already in this room (%s)", room)
}

// NotInRoom is the error of an operation that needs membership, by a connection not in the room.
func NotInRoom(room string) error { return fmt.Errorf("connection not in this room (%s)", room) }

// LocalRooms is the in-process Rooms: the rooms of this server alone.
type LocalRooms struct {
	mu         sync.RWMutex
	autocreate bool
	rooms      map[string]*room
}

type room struct {
	members []Member
}

var _ Rooms = (*LocalRooms)(nil)

// NewLocalRooms creates the starting rooms; with autocreate, joining a room that does not exist creates it.
func NewLocalRooms(starting []string, autocreate bool) *LocalRooms {
	r := &LocalRooms{autocreate: autocreate, rooms: make(map[string]*room, len(starting))}
	for _, name := range starting {
		r.rooms[name] = &room{}
	}
	return r
}

// Create adds an empty room.
func (r *LocalRooms) Create(_ context.Context, name string) error {
	r.mu.Lock()
	defer r.mu.Unlock()
	if _, ok := r.rooms[name]; ok {
		return ErrRoomExists
	}
	r.rooms[name] = &room{}
	return nil
}

// Destroy removes a room and returns its members.
func (r *LocalRooms) Destroy(_ context.Context, name string) ([]*Conn, error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	rm, ok := r.rooms[name]
	if !ok {
		return nil, ErrNoRoom
	}
	delete(r.rooms, name)
	out := make([]*Conn, len(rm.members))
	for i, m := range rm.members {
		out[i] = m.Conn
	}
	return out, nil
}

// Exists reports whether a room exists.
func (r *LocalRooms) Exists(_ context.Context, name string) (bool, error) {
	r.mu.RLock()
	defer r.mu.RUnlock()
	_, ok := r.rooms[name]
	return ok, nil
}

// List returns the room names sorted, from offset, at most limit of them.
func (r *LocalRooms) List(_ context.Context, offset, limit int) ([]string, int, error) {
	r.mu.RLock()
	total := len(r.rooms)
	if limit <= 0 || offset >= total {
		r.mu.RUnlock()
		return nil, total, nil
	}
	names := make([]string, 0, total)
	for name := range r.rooms {
		names = append(names, name)
	}
	r.mu.RUnlock()
	slices.Sort(names)
	return window(names, offset, limit), total, nil
}

// Join adds m to a room (creating it with autocreate).
func (r *LocalRooms) Join(_ context.Context, name string, m Member) error {
	r.mu.Lock()
	defer r.mu.Unlock()
	rm, ok := r.rooms[name]
	if !ok {
		if !r.autocreate || name == "" {
			return ErrNoRoom
		}
		rm = &room{}
		r.rooms[name] = rm
	}
	for _, x := range rm.members {
		if x.Conn == m.Conn {
			return AlreadyInRoom(name)
		}
	}
	rm.members = append(rm.members, m)
	return nil
}

// Leave removes c from a room.
func (r *LocalRooms) Leave(_ context.Context, name string, c *Conn) error {
	r.mu.Lock()
	defer r.mu.Unlock()
	rm, ok := r.rooms[name]
	if !ok {
		return NotInRoom(name)
	}
	for i, m := range rm.members {
		if m.Conn == c {
			rm.members = append(rm.members[:i:i], rm.members[i+1:]...)
			return nil
		}
	}
	return NotInRoom(name)
}

// Members returns a room's members in join order, from offset, at most limit of them.
func (r *LocalRooms) Members(_ context.Context, name string, offset, limit int) ([]Member, int, error) {
	r.mu.RLock()
	defer r.mu.RUnlock()
	rm, ok := r.rooms[name]
	if !ok {
		return nil, 0, ErrNoRoom
	}
	return slices.Clone(window(rm.members, offset, limit)), len(rm.members), nil
}

// IsMember reports whether c is in a room.
func (r *LocalRooms) IsMember(name string, c *Conn) bool {
	r.mu.RLock()
	defer r.mu.RUnlock()
	if rm, ok := r.rooms[name]; ok {
		for _, m := range rm.members {
			if m.Conn == c {
				return true
			}
		}
	}
	return false
}

// Local returns the connections in a room now.
func (r *LocalRooms) Local(name string) []*Conn {
	r.mu.RLock()
	defer r.mu.RUnlock()
	rm, ok := r.rooms[name]
	if !ok {
		return nil
	}
	out := make([]*Conn, len(rm.members))
	for i, m := range rm.members {
		out[i] = m.Conn
	}
	return out
}

// Publish does nothing: every member is on this node.
func (r *LocalRooms) Publish(context.Context, Chat) error { return nil }
