package socket

import (
	"context"
	"errors"
	"fmt"
	"time"
)

// RoomHooks are actionhero's chat middleware (join, leave, onSayReceive, say) and its member and message
// shaping (generateMemberDetails, sanitizeMemberDetails, generateMessagePayload), asked of scripts. Each
// method answers at once when no script set that hook (nil results mean "the default"), so the server's
// paths cost nothing more without them. The server never holds a lock while it calls them: a hook may
// call back into the server (join another room, broadcast); ctx carries the caller's deadline and, from a
// Lua handler, its depth (luabind bounds nested handlers).
type RoomHooks interface {
	// Join runs before c joins room (once the room exists and c is not in it); an error refuses the join
	// and its message is what the client reads.
	Join(ctx context.Context, c *Conn, room string) error
	// Leave runs before c leaves room; an error keeps it in. When the connection closes or the room is
	// destroyed the error is logged and c leaves anyway.
	Leave(ctx context.Context, c *Conn, room string) error
	// MemberDetails is the record kept for c's membership (generateMemberDetails); nil keeps the default
	// {id, joinedAt, host}. An error refuses the join.
	MemberDetails(ctx context.Context, c *Conn, room string, joinedAt time.Time) (Object, error)
	// SanitizeMembers turns records (Member.Record) into what roomView shows (sanitizeMemberDetails), one
	// per member; nil keeps the default {id, joinedAt}.
	SanitizeMembers(ctx context.Context, room string, records []Object) ([]Object, error)
	// ReceiveSay runs once per message, on the sender's node, from nil for the server's own broadcasts
	// (onSayReceive): it may change msg.Message, or drop the message (keep false). An error refuses it:
	// the sender reads the error.
	ReceiveSay(ctx context.Context, from *Conn, msg *Chat) (keep bool, err error)
	// Payload is the line members get (generateMessagePayload); nil keeps Chat.Payload.
	Payload(ctx context.Context, msg Chat) (Object, error)
	// SayTo runs per recipient (the say middleware) with payload (nil: Chat.Payload) and returns what each
	// gets, nil for one that gets nothing; a nil slice means every recipient gets payload.
	SayTo(ctx context.Context, to []*Conn, msg Chat, payload Object) ([]Object, error)
}

// ID is the server's id (Options.ID): the "host" of the default member record.
func (s *Server) ID() string { return s.id }

// CreateRoom adds an empty room (actionhero's chatRoom.add): ErrRoomRequired, ErrRoomExists.
func (s *Server) CreateRoom(ctx context.Context, room string) error {
	if room == "" {
		return ErrRoomRequired
	}
	return s.rooms.Create(ctx, room)
}

// RoomExists reports whether a room exists.
func (s *Server) RoomExists(ctx context.Context, room string) (bool, error) {
	return s.rooms.Exists(ctx, room)
}

// RoomNames returns the room names sorted, from offset, at most limit of them, and how many exist.
func (s *Server) RoomNames(ctx context.Context, offset, limit int) ([]string, int, error) {
	return s.rooms.List(ctx, offset, limit)
}

// RoomMembers returns a room's members in join order, from offset, at most limit of them, and how many
// there are: ErrRoomRequired, ErrNoRoom.
func (s *Server) RoomMembers(ctx context.Context, room string, offset, limit int) ([]Member, int, error) {
	if room == "" {
		return nil, 0, ErrRoomRequired
	}
	return s.rooms.Members(ctx, room, offset, limit)
}

// RoomStatus is actionhero's roomStatus, what roomView shows: {"room", "members": {id: record as
// sanitized}, "membersCount"}, the members from offset, at most limit of them (membersCount counts all).
func (s *Server) RoomStatus(ctx context.Context, room string, offset, limit int) (Object, error) {
	members, total, err := s.RoomMembers(ctx, room, offset, limit)
	if err != nil {
		return nil, err
	}
	var sanitized []Object
	if rh := s.opts.RoomHooks; rh != nil && len(members) > 0 {
		records := make([]Object, len(members))
		for i, m := range members {
			records[i] = m.Record(s.id)
		}
		if sanitized, err = rh.SanitizeMembers(ctx, room, records); err != nil {
			return nil, err
		}
	}
	out := make(Object, len(members))
	for i, m := range members {
		var shown any = Object{{"id", m.ID}, {"joinedAt", m.JoinedAt}}
		if i < len(sanitized) && sanitized[i] != nil {
			shown = sanitized[i]
		}
		out[i] = Field{Key: m.ID, Value: shown}
	}
	return Object{{"room", room}, {"members", out}, {"membersCount", total}}, nil
}

// DestroyRoom removes a room (actionhero's chatRoom.destroy): its members are told "this room has been
// deleted" by the server, each leaves (leave hooks run; a refusal is logged, the member leaves anyway: the
// room is gone), then the room goes. ErrRoomRequired, ErrNoRoom.
func (s *Server) DestroyRoom(ctx context.Context, room string) error {
	if room == "" {
		return ErrRoomRequired
	}
	ok, err := s.rooms.Exists(ctx, room)
	if err != nil {
		return err
	}
	if !ok {
		return ErrNoRoom
	}
	if err := s.Broadcast(ctx, room, msgRoomDeleted); err != nil {
		s.log.WithError(err).WithField("room", room).Warn("room destroyed without its notice: the notice failed")
	}
	for _, c := range s.rooms.Local(room) {
		s.leaveHook(ctx, c, room, "the room is destroyed")
	}
	conns, err := s.rooms.Destroy(ctx, room)
	if err != nil {
		return err
	}
	for _, c := range conns {
		if c != nil {
			c.forgetRoom(room)
		}
	}
	return nil
}

const msgRoomDeleted = "this room has been deleted"

// leaveHook runs the leave hooks for a leave that happens whatever they say (a closing connection, a room
// destroyed): a refusal is logged.
func (s *Server) leaveHook(ctx context.Context, c *Conn, room, why string) {
	rh := s.opts.RoomHooks
	if rh == nil {
		return
	}
	if err := rh.Leave(ctx, c, room); err != nil {
		c.log.WithError(err).WithField("room", room).Warn("leave hook refused, but " + why + ": the connection leaves")
	}
}

// Join adds the connection to a room (actionhero's roomAdd and chatRoom.addMember): the join hooks run
// first and may refuse with their error; the record kept is MemberDetails' or the default. Errors: room
// does not exist, connection already in this room (r), or a hook's.
func (c *Conn) Join(ctx context.Context, room string) error {
	s := c.srv
	if room == "" {
		return ErrNoRoom
	}
	if s.rooms.IsMember(room, c) {
		return AlreadyInRoom(room)
	}
	if !s.cfg.Rooms.Autocreate {
		ok, err := s.rooms.Exists(ctx, room)
		if err != nil {
			return err
		}
		if !ok {
			return ErrNoRoom
		}
	}
	now := s.now()
	var details Object
	if rh := s.opts.RoomHooks; rh != nil {
		if err := rh.Join(ctx, c, room); err != nil {
			return err
		}
		var err error
		if details, err = rh.MemberDetails(ctx, c, room, now); err != nil {
			return err
		}
	}
	c.roomMu.Lock()
	defer c.roomMu.Unlock()
	if c.closed.Load() {
		return errConnClosed
	}
	if err := s.rooms.Join(ctx, room, Member{ID: c.id, JoinedAt: now, Details: details, Conn: c}); err != nil {
		return err
	}
	c.mu.Lock()
	c.rooms = append(c.rooms, room)
	c.mu.Unlock()
	return nil
}

// Leave removes the connection from a room (roomLeave, chatRoom.removeMember): the leave hooks run first
// and may keep it in with their error.
func (c *Conn) Leave(ctx context.Context, room string) error {
	s := c.srv
	if !s.rooms.IsMember(room, c) {
		return NotInRoom(room)
	}
	if rh := s.opts.RoomHooks; rh != nil {
		if err := rh.Leave(ctx, c, room); err != nil {
			return err
		}
	}
	c.roomMu.Lock()
	defer c.roomMu.Unlock()
	if err := s.rooms.Leave(ctx, room, c); err != nil {
		return err
	}
	c.forgetRoom(room)
	return nil
}

// forgetRoom drops room from the connection's own list.
func (c *Conn) forgetRoom(room string) {
	c.mu.Lock()
	defer c.mu.Unlock()
	for i, r := range c.rooms {
		if r == room {
			c.rooms = append(c.rooms[:i:i], c.rooms[i+1:]...)
			return
		}
	}
}

// leaveAll takes a closing connection out of its rooms (leave hooks run; a refusal is only logged).
func (c *Conn) leaveAll(ctx context.Context) {
	s := c.srv
	c.roomMu.Lock()
	c.mu.Lock()
	rooms := c.rooms
	c.rooms = nil
	c.mu.Unlock()
	c.roomMu.Unlock()
	for _, r := range rooms {
		s.leaveHook(ctx, c, r, "the connection is closing")
		if err := s.rooms.Leave(ctx, r, c); err != nil && !errors.Is(err, ErrNoRoom) {
			c.log.WithError(err).WithField("room", r).Debug("leaving a room at close")
		}
	}
}

// Say sends text to every member of room as the connection (the connection must be in it), through the
// say hooks (Hooks.Say, then RoomHooks.ReceiveSay).
func (c *Conn) Say(ctx context.Context, room, text string) error {
	msg, keep, err := c.srv.prepareSay(ctx, c, room, text)
	var he sayHookError
	if errors.As(err, &he) {
		return he.err // a script asked: it reads its hook's own error
	}
	if err != nil || !keep {
		return err
	}
	c.srv.send(ctx, msg)
	return nil
}

// prepareSay checks a say and runs the sender-side hooks; keep false: nobody gets it (the sender is told OK).
func (s *Server) prepareSay(ctx context.Context, c *Conn, room, text string) (Chat, bool, error) {
	if room == "" || text == "" {
		return Chat{}, false, errSayArgs
	}
	if !s.rooms.IsMember(room, c) {
		return Chat{}, false, NotInRoom(room)
	}
	if s.opts.Hooks != nil {
		out, keep, err := s.opts.Hooks.Say(ctx, c, room, text)
		if err != nil {
			c.log.WithError(err).WithField("room", room).Warn("say hook failed; message dropped")
			return Chat{}, false, sayHookError{err}
		}
		if !keep {
			return Chat{}, false, nil
		}
		text = out
	}
	msg := Chat{Room: room, From: c.id, Message: text, SentAt: s.now()}
	keep, err := s.receive(ctx, c, &msg)
	return msg, keep, err
}

// sayHookError is a socket.say hook's failure: the say verb answers errSayHook (the client is not told a
// script's internals), conn:say returns the hook's own error.
type sayHookError struct{ err error }

func (e sayHookError) Error() string { return errSayHook.Error() }
func (e sayHookError) Unwrap() error { return e.err }

// receive runs the onSayReceive hooks of a message.
func (s *Server) receive(ctx context.Context, from *Conn, msg *Chat) (bool, error) {
	if s.opts.RoomHooks == nil {
		return true, nil
	}
	return s.opts.RoomHooks.ReceiveSay(ctx, from, msg)
}

// Broadcast sends message to every member of room from the server itself ("from":0, actionhero's
// chatRoom.broadcast with no connection), through the onSayReceive hooks (their error is returned).
// message is any JSON value; room and a non-empty message are required. The room's existence is not
// checked (as in actionhero): a room without members delivers to nobody.
func (s *Server) Broadcast(ctx context.Context, room string, message any) error {
	if room == "" || message == nil || message == "" {
		return errSayArgs
	}
	msg := Chat{Room: room, Message: message, SentAt: s.now()}
	keep, err := s.receive(ctx, nil, &msg)
	if err != nil || !keep {
		return err
	}
	s.send(ctx, msg)
	return nil
}

// send delivers a message here and hands it to the other nodes.
func (s *Server) send(ctx context.Context, msg Chat) {
	s.Deliver(ctx, msg)
	if err := s.rooms.Publish(ctx, msg); err != nil {
		s.log.WithError(err).WithField("room", msg.Room).Warn("chat message not sent to the other nodes")
	}
}

// Deliver writes a chat message to the room's members on this node (the sender included, as in the
// reference), shaped by the Payload and SayTo hooks, and returns how many got it. Without those hooks the
// members share one copy of the line (no writer modifies what it is given), so a large message said to a
// large room costs its size once, not once per member; each member's queue still counts it in full.
func (s *Server) Deliver(ctx context.Context, msg Chat) int {
	s.metrics.chat.Inc()
	members := s.rooms.Local(msg.Room)
	if len(members) == 0 {
		return 0
	}
	var payload Object
	var per []Object
	if rh := s.opts.RoomHooks; rh != nil {
		var err error
		if payload, err = rh.Payload(ctx, msg); err != nil {
			s.log.WithError(err).WithField("room", msg.Room).Warn("message payload hook failed; message not delivered")
			return 0
		}
		if per, err = rh.SayTo(ctx, members, msg, payload); err != nil {
			s.log.WithError(err).WithField("room", msg.Room).Warn("say hooks failed; message not delivered")
			return 0
		}
	}
	n := 0
	if per != nil {
		for i, m := range members {
			if i >= len(per) || per[i] == nil {
				continue
			}
			line, err := appendJSON(make([]byte, 0, 128), per[i], 0)
			if err != nil {
				m.log.WithError(err).Warn("chat message cannot be encoded; not delivered")
				continue
			}
			if m.write(append(line, crlf...)) == nil {
				n++
			}
		}
		return n
	}
	line, err := chatLine(msg, payload)
	if err != nil {
		s.log.WithError(err).WithField("room", msg.Room).Warn("chat message cannot be encoded; not delivered")
		return 0
	}
	for _, m := range members {
		if m.write(line) == nil {
			n++
		}
	}
	return n
}

// chatLine renders a chat line: payload when a hook made one, else the default (a text said by a
// connection takes the short path).
func chatLine(msg Chat, payload Object) ([]byte, error) {
	if text, ok := msg.Message.(string); ok && payload == nil && msg.From != "" {
		return chatTextLine(text, msg.Room, msg.From, msg.SentAt.UnixMilli()), nil
	}
	if payload == nil {
		payload = msg.Payload()
	}
	b, err := appendJSON(make([]byte, 0, 128), payload, 0)
	if err != nil {
		return nil, err
	}
	return append(b, crlf...), nil
}

// AddMember adds the connection id of this server to a room (actionhero's chatRoom.addMember), through the
// join hooks as roomAdd: ErrNoConn for an id not connected here.
func (s *Server) AddMember(ctx context.Context, id, room string) error {
	c, ok := s.Conn(id)
	if !ok {
		return NoConn(id)
	}
	return c.Join(ctx, room)
}

// RemoveMember takes the connection id of this server out of a room (chatRoom.removeMember), through the
// leave hooks as roomLeave.
func (s *Server) RemoveMember(ctx context.Context, id, room string) error {
	c, ok := s.Conn(id)
	if !ok {
		return NoConn(id)
	}
	return c.Leave(ctx, room)
}

// NoConn is the error of an operation on a connection id that is not connected to this server (actionhero
// has no such error: it waits for a cluster answer that never comes).
func NoConn(id string) error { return fmt.Errorf("connection not found (%s)", id) }

// Server is the server the connection belongs to.
func (c *Conn) Server() *Server { return c.srv }

// Details is what detailsView shows of the connection: id, fingerprint, remoteIP, remotePort, params,
// connectedAt, rooms, totalActions, pendingActions.
func (c *Conn) Details() Object { return c.details() }

// Conn finds an open connection of this server by id.
func (s *Server) Conn(id string) (*Conn, bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	c, ok := s.conns[id]
	return c, ok
}

// Connections returns the open connections oldest first, from offset, at most limit of them, and how many
// are open.
func (s *Server) Connections(offset, limit int) ([]*Conn, int) {
	conns := s.sortedConns()
	return window(conns, offset, limit), len(conns)
}

// errConnClosed refuses a join by a connection that is closing (it would never leave).
var errConnClosed = errors.New("the connection is closed")
