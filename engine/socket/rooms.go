package socket

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"time"
)

// Rooms is the server's chat rooms: which exist and who is in each, in join order.
type Rooms struct {
	mu         sync.RWMutex
	autocreate bool
	rooms      map[string]*room
}

type room struct {
	members []member
}

type member struct {
	c        *Conn
	joinedAt time.Time
}

// ErrNoRoom is returned by Join for a room that does not exist (and autocreate is off).
var ErrNoRoom = errors.New("room does not exist")

// NewRooms creates the starting rooms.
func NewRooms(starting []string, autocreate bool) *Rooms {
	r := &Rooms{autocreate: autocreate, rooms: make(map[string]*room, len(starting))}
	for _, name := range starting {
		r.rooms[name] = &room{}
	}
	return r
}

// Create adds an empty room; it reports false if the room existed.
func (r *Rooms) Create(name string) bool {
	r.mu.Lock()
	defer r.mu.Unlock()
	if _, ok := r.rooms[name]; ok {
		return false
	}
	r.rooms[name] = &room{}
	return true
}

// Exists reports whether a room exists.
func (r *Rooms) Exists(name string) bool {
	r.mu.RLock()
	defer r.mu.RUnlock()
	_, ok := r.rooms[name]
	return ok
}

func notIn(name string) error { return fmt.Errorf("connection not in this room (%s)", name) }

// join adds c to a room (the Conn records its own side).
func (r *Rooms) join(c *Conn, name string, now time.Time) error {
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
	for _, m := range rm.members {
		if m.c == c {
			return fmt.Errorf("connection already in this room (%s)", name)
		}
	}
	rm.members = append(rm.members, member{c: c, joinedAt: now})
	return nil
}

func (r *Rooms) leave(c *Conn, name string) error {
	r.mu.Lock()
	defer r.mu.Unlock()
	rm, ok := r.rooms[name]
	if !ok {
		return notIn(name)
	}
	for i, m := range rm.members {
		if m.c == c {
			rm.members = append(rm.members[:i:i], rm.members[i+1:]...)
			return nil
		}
	}
	return notIn(name)
}

func (r *Rooms) isMember(c *Conn, name string) bool {
	r.mu.RLock()
	defer r.mu.RUnlock()
	if rm, ok := r.rooms[name]; ok {
		for _, m := range rm.members {
			if m.c == c {
				return true
			}
		}
	}
	return false
}

// view renders roomView's data: {"room","members":{id:{"id","joinedAt"}},"membersCount"}.
func (r *Rooms) view(c *Conn, name string) (Object, error) {
	r.mu.RLock()
	defer r.mu.RUnlock()
	rm, ok := r.rooms[name]
	if !ok {
		return nil, notIn(name)
	}
	in := false
	members := make(Object, 0, len(rm.members))
	for _, m := range rm.members {
		if m.c == c {
			in = true
		}
		members = append(members, Field{Key: m.c.id, Value: Object{{"id", m.c.id}, {"joinedAt", m.joinedAt}}})
	}
	if !in {
		return nil, notIn(name)
	}
	return Object{{"room", name}, {"members", members}, {"membersCount", len(rm.members)}}, nil
}

// members returns the connections in a room now.
func (r *Rooms) members(name string) []*Conn {
	r.mu.RLock()
	defer r.mu.RUnlock()
	rm, ok := r.rooms[name]
	if !ok {
		return nil
	}
	out := make([]*Conn, len(rm.members))
	for i, m := range rm.members {
		out[i] = m.c
	}
	return out
}

// Say sends text to every member of room (the connection must be in it), through the say hook.
func (c *Conn) Say(ctx context.Context, room, text string) error {
	if !c.srv.rooms.isMember(c, room) {
		return notIn(room)
	}
	out, keep, err := c.srv.sayHook(ctx, c, room, text)
	if err != nil {
		return err
	}
	if keep {
		c.srv.Broadcast(room, c.id, out)
	}
	return nil
}

// Broadcast delivers a chat line to every member of room (the sender included, as in the reference).
// The members share one copy of the line (no writer modifies what it is given), so a large message said
// to a large room costs its size once, not once per member; each member's queue still counts it in
// full against its own bound.
func (s *Server) Broadcast(room, from, text string) int {
	line := chatLine(text, room, from, s.now().UnixMilli())
	n := 0
	for _, m := range s.rooms.members(room) {
		if m.write(line) == nil {
			n++
		}
	}
	s.metrics.chat.Inc()
	return n
}

func (s *Server) sayHook(ctx context.Context, c *Conn, room, text string) (string, bool, error) {
	if s.opts.Hooks == nil {
		return text, true, nil
	}
	return s.opts.Hooks.Say(ctx, c, room, text)
}
