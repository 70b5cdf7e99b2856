package socket

import "context"

// What a Rooms store shared by several nodes (engine/socket/roomscluster) needs of the server beyond
// Deliver: the chat values in the server's own JSON (key order kept), and the departure of this node's
// members from a room another node destroyed.

// AppendJSON appends v as the server writes it (an Object keeps its key order; see Object).
func AppendJSON(b []byte, v any) ([]byte, error) { return appendJSON(b, v, 0) }

// DecodeJSON decodes one JSON value as the server reads requests: objects as Object in key order, arrays
// as []any, numbers as json.Number (exact), so that AppendJSON writes the same text back.
func DecodeJSON(data []byte) (any, error) { return decodeJSON(data) }

// RoomDestroyed takes this node's members out of a room destroyed on another node (that node told its own
// members; every member got "this room has been deleted" there first): the leave hooks run for each member
// (a refusal is logged: the room is gone), then drop removes the room from the store and returns the
// members it held, and each forgets the room (detailsView no longer lists it).
func (s *Server) RoomDestroyed(ctx context.Context, room string, drop func() []*Conn) {
	for _, c := range s.rooms.Local(room) {
		s.leaveHook(ctx, c, room, "the room is destroyed")
	}
	for _, c := range drop() {
		if c != nil {
			c.forgetRoom(room)
		}
	}
}
