package socket

import (
	"cmp"
	"net"
	"slices"
	"strconv"
	"time"
)

// ConnStatus is what the status page shows of one connection.
type ConnStatus struct {
	ID          string    `json:"id"`
	Remote      string    `json:"remote"`
	ConnectedAt time.Time `json:"connected_at"`
	AgeSeconds  float64   `json:"age_s"`
	Rooms       []string  `json:"rooms"`
	Pending     int       `json:"pending_actions"` // actions running or waiting for a worker
	Actions     int64     `json:"actions"`         // actions asked for since it connected
	Requests    int64     `json:"requests"`        // requests received (its messageCount)
}

// RoomStatus is one room with its member count and the first members, in join order.
type RoomStatus struct {
	Name    string         `json:"name"`
	Members int            `json:"members"`
	First   []MemberStatus `json:"first_members"`
}

// MemberStatus is one member of a room.
type MemberStatus struct {
	ID       string    `json:"id"`
	JoinedAt time.Time `json:"joined_at"`
}

// ConnsPage returns the connections, oldest first, from offset, at most limit of them, and how many there
// are in all. With room set, only that room's members are listed, in join order (total is the room's size;
// 0 and no error when the room does not exist). Only the page's connections are read, so a page of 100 out
// of 10,000 costs one sort of pointers.
func (s *Server) ConnsPage(room string, offset, limit int) (page []ConnStatus, total int) {
	var conns []*Conn
	if room != "" {
		conns = s.rooms.members(room)
	} else {
		s.mu.Lock()
		conns = make([]*Conn, 0, len(s.conns))
		for c := range s.conns {
			conns = append(conns, c)
		}
		s.mu.Unlock()
		slices.SortFunc(conns, func(a, b *Conn) int {
			return cmp.Or(a.connectedAt.Compare(b.connectedAt), cmp.Compare(a.id, b.id))
		})
	}
	total = len(conns)
	now := s.now()
	for _, c := range window(conns, offset, limit) {
		st := ConnStatus{ID: c.id, Remote: c.remoteIP, ConnectedAt: c.connectedAt, AgeSeconds: now.Sub(c.connectedAt).Seconds()}
		if c.remotePort != 0 {
			st.Remote = net.JoinHostPort(c.remoteIP, strconv.Itoa(c.remotePort))
		}
		c.mu.Lock()
		st.Rooms = append([]string{}, c.rooms...)
		st.Pending, st.Actions, st.Requests = c.pending, c.totalActions, c.count
		c.mu.Unlock()
		page = append(page, st)
	}
	return page, total
}

// RoomsPage returns the rooms sorted by name, from offset, at most limit of them, each with at most
// firstMembers members; total counts the rooms.
func (s *Server) RoomsPage(offset, limit, firstMembers int) (page []RoomStatus, total int) {
	r := s.rooms
	r.mu.RLock()
	names := make([]string, 0, len(r.rooms))
	for name := range r.rooms {
		names = append(names, name)
	}
	r.mu.RUnlock()
	slices.Sort(names)
	total = len(names)
	for _, name := range window(names, offset, limit) {
		st := RoomStatus{Name: name, First: []MemberStatus{}}
		r.mu.RLock()
		if rm, ok := r.rooms[name]; ok {
			st.Members = len(rm.members)
			for _, m := range rm.members[:min(len(rm.members), max(firstMembers, 0))] {
				st.First = append(st.First, MemberStatus{ID: m.c.id, JoinedAt: m.joinedAt})
			}
		}
		r.mu.RUnlock()
		page = append(page, st)
	}
	return page, total
}

// RoomCount is the number of rooms.
func (s *Server) RoomCount() int {
	s.rooms.mu.RLock()
	defer s.rooms.mu.RUnlock()
	return len(s.rooms.rooms)
}

// window is list[offset:offset+limit], clamped.
func window[T any](list []T, offset, limit int) []T {
	if offset < 0 || offset >= len(list) || limit <= 0 {
		return nil
	}
	return list[offset:min(len(list), offset+limit)]
}
