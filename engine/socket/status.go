package socket

import (
	"cmp"
	"context"
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
		conns = s.rooms.Local(room)
	} else {
		conns = s.sortedConns()
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
// firstMembers members; total counts the rooms. A room store that fails (a cluster's, unreachable) gives
// an empty page.
func (s *Server) RoomsPage(offset, limit, firstMembers int) (page []RoomStatus, total int) {
	ctx := context.Background()
	names, total, err := s.rooms.List(ctx, offset, limit)
	if err != nil {
		s.log.WithError(err).Warn("status page: rooms not listed")
		return nil, 0
	}
	for _, name := range names {
		st := RoomStatus{Name: name, First: []MemberStatus{}}
		members, n, err := s.rooms.Members(ctx, name, 0, max(firstMembers, 0))
		if err == nil {
			st.Members = n
			for _, m := range members {
				st.First = append(st.First, MemberStatus{ID: m.ID, JoinedAt: m.JoinedAt})
			}
		}
		page = append(page, st)
	}
	return page, total
}

// RoomCount is the number of rooms (0 when the room store fails).
func (s *Server) RoomCount() int {
	_, total, _ := s.rooms.List(context.Background(), 0, 0)
	return total
}

// sortedConns is every open connection, oldest first.
func (s *Server) sortedConns() []*Conn {
	s.mu.Lock()
	conns := make([]*Conn, 0, len(s.conns))
	for _, c := range s.conns {
		conns = append(conns, c)
	}
	s.mu.Unlock()
	slices.SortFunc(conns, func(a, b *Conn) int {
		return cmp.Or(a.connectedAt.Compare(b.connectedAt), cmp.Compare(a.id, b.id))
	})
	return conns
}

// window is list[offset:offset+limit], clamped.
func window[T any](list []T, offset, limit int) []T {
	if offset < 0 || offset >= len(list) || limit <= 0 {
		return nil
	}
	return list[offset : offset+min(len(list)-offset, limit)]
}
