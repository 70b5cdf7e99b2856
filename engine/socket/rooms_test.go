package socket

import (
	"context"
	"errors"
	"strings"
	"sync"
	"testing"
	"time"
)

// goRoomHooks is a RoomHooks in plain Go: the server's room paths are driven without Lua.
type goRoomHooks struct{}

func (goRoomHooks) Join(ctx context.Context, c *Conn, room string) error {
	if room == "closed" {
		return errors.New("joining rooms blocked")
	}
	return nil
}

func (goRoomHooks) Leave(ctx context.Context, c *Conn, room string) error {
	if room == "sticky" {
		return errors.New("you cannot leave")
	}
	return nil
}

func (goRoomHooks) MemberDetails(ctx context.Context, c *Conn, room string, joinedAt time.Time) (Object, error) {
	return append(Member{ID: c.ID(), JoinedAt: joinedAt}.Record(c.Server().ID()), Field{"type", "socket"}), nil
}

func (goRoomHooks) SanitizeMembers(ctx context.Context, room string, records []Object) ([]Object, error) {
	out := make([]Object, len(records))
	for i, r := range records {
		id, _ := r.Get("id")
		host, _ := r.Get("host")
		kind, _ := r.Get("type")
		out[i] = Object{{"id", id}, {"host", host}, {"type", kind}}
	}
	return out, nil
}

func (goRoomHooks) ReceiveSay(ctx context.Context, from *Conn, msg *Chat) (bool, error) {
	switch msg.Message {
	case "forbidden":
		return false, errors.New("that word is not allowed")
	case "quiet":
		return false, nil
	}
	if s, ok := msg.Message.(string); ok {
		msg.Message = "[" + s + "]"
	}
	return true, nil
}

func (goRoomHooks) Payload(ctx context.Context, msg Chat) (Object, error) {
	return Object{{"said", msg.Message}, {"room", msg.Room}, {"from", msg.FromValue()}}, nil
}

func (goRoomHooks) SayTo(ctx context.Context, to []*Conn, msg Chat, payload Object) ([]Object, error) {
	out := make([]Object, len(to))
	for i, c := range to {
		if p := c.Params(); p.String("deaf") == "" {
			out[i] = append(append(Object(nil), payload...), Field{"to", c.ID()})
		}
	}
	return out, nil
}

// publishingRooms is a store other than LocalRooms, as a cluster passes one: it records what the server
// hands to the other nodes.
type publishingRooms struct {
	*LocalRooms
	mu   sync.Mutex
	sent []Chat
}

func (r *publishingRooms) Publish(ctx context.Context, msg Chat) error {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.sent = append(r.sent, msg)
	return nil
}

func (r *publishingRooms) published() []Chat {
	r.mu.Lock()
	defer r.mu.Unlock()
	return append([]Chat(nil), r.sent...)
}

func TestRoomHooksAndStoreInGo(t *testing.T) {
	store := &publishingRooms{LocalRooms: NewLocalRooms([]string{"defaultRoom", "closed", "sticky"}, false)}
	ts := startServer(t, func(cfg *Config, o *Options) {
		o.RoomHooks, o.Rooms, o.ID = goRoomHooks{}, store, "node-a"
	})
	a, b := dial(t, ts.addr), dial(t, ts.addr)
	a.line()
	b.line()
	a.send("roomAdd closed\n")
	expectShape(t, a.line(), `{"error":"joining rooms blocked","context":"response","messageId":"UUID","messageCount":1}`)
	a.send("roomAdd defaultRoom\n")
	a.line()
	a.send("roomView defaultRoom\n")
	expectShape(t, a.line(), `{"status":"OK","context":"response","data":{"room":"defaultRoom","members":{"UUID":{"id":"UUID","host":"node-a","type":"socket"}},"membersCount":1},"messageId":"UUID","messageCount":3}`)
	a.send("roomAdd sticky\nroomLeave sticky\n")
	a.line()
	expectShape(t, a.line(), `{"error":"you cannot leave","context":"response","messageId":"UUID","messageCount":5}`)

	b.send("roomAdd defaultRoom\n")
	b.line()
	a.send("say defaultRoom forbidden\n")
	expectShape(t, a.line(), `{"error":"that word is not allowed","context":"response","messageId":"UUID","messageCount":6}`)
	a.send("say defaultRoom quiet\n")
	expectShape(t, a.line(), `{"status":"OK","context":"response","messageId":"UUID","messageCount":7}`)
	a.send("say defaultRoom hi\n")
	expectShape(t, a.line(), `{"status":"OK","context":"response","messageId":"UUID","messageCount":8}`)
	expectShape(t, a.line(), `{"said":"[hi]","room":"defaultRoom","from":"UUID","to":"UUID"}`)
	expectShape(t, b.line(), `{"said":"[hi]","room":"defaultRoom","from":"UUID","to":"UUID"}`)
	if err := ts.Broadcast(context.Background(), "defaultRoom", "hello"); err != nil {
		t.Fatal(err)
	}
	expectShape(t, a.line(), `{"said":"[hello]","room":"defaultRoom","from":0,"to":"UUID"}`)
	expectShape(t, b.line(), `{"said":"[hello]","room":"defaultRoom","from":0,"to":"UUID"}`)
	// The store got each message delivered here, once, for the other nodes.
	sent := store.published()
	if len(sent) != 2 || sent[0].Message != "[hi]" || sent[0].From == "" || sent[1].Message != "[hello]" || sent[1].From != "" {
		t.Fatalf("published %+v", sent)
	}
	// A message from another node is delivered to this node's members.
	if n := ts.Deliver(context.Background(), Chat{Room: "defaultRoom", From: "remote-conn", Message: "from afar", SentAt: time.Now()}); n != 2 {
		t.Fatalf("delivered to %d", n)
	}
	expectShape(t, a.line(), `{"said":"from afar","room":"defaultRoom","from":"remote-conn","to":"UUID"}`)
	expectShape(t, b.line(), `{"said":"from afar","room":"defaultRoom","from":"remote-conn","to":"UUID"}`)

	// Destroying a room tells its members and takes them out, whatever the leave hook says.
	if err := ts.DestroyRoom(context.Background(), "sticky"); err != nil {
		t.Fatal(err)
	}
	expectShape(t, a.line(), `{"said":"[this room has been deleted]","room":"sticky","from":0,"to":"UUID"}`)
	a.send("detailsView\n")
	if got := shape(a.line()); !strings.Contains(got, `"rooms":["defaultRoom"]`) {
		t.Fatalf("after destroy: %s", got)
	}
	if ok, _ := ts.RoomExists(context.Background(), "sticky"); ok {
		t.Fatal("sticky still exists")
	}
}
