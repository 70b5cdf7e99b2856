package roomscluster

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"net"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/switchboard/switchboard/engine/cluster"
	"github.com/switchboard/switchboard/engine/cluster/clustertest"
	"github.com/switchboard/switchboard/engine/socket"
)

// node is one engine's worth of the cluster in this process: a cluster node, its rooms and a socket
// server on 127.0.0.1:0.
type node struct {
	id    string
	n     *cluster.Node
	rooms *Rooms
	srv   *socket.Server
	addr  string
}

func startNodes(t *testing.T, url, name string, count int, hooks func(i int) socket.RoomHooks) []*node {
	t.Helper()
	nodes := make([]*node, count)
	for i := range count {
		id := fmt.Sprintf("node-%d", i)
		cc := cluster.DefaultConfig()
		cc.NATSURL, cc.Name, cc.NodeID, cc.ReconnectWait = url, name, id, 100*time.Millisecond
		n, err := cluster.New(cc, cluster.Options{})
		if err != nil {
			t.Fatal(err)
		}
		cfg := socket.DefaultConfig()
		cfg.Listen = "127.0.0.1:0"
		cfg.PublicDir = ""
		r, err := New(n, Options{Starting: cfg.Rooms.Starting})
		if err != nil {
			t.Fatal(err)
		}
		opts := socket.Options{Rooms: r, ID: id}
		if hooks != nil {
			opts.RoomHooks = hooks(i)
		}
		srv, err := socket.New(cfg, opts)
		if err != nil {
			t.Fatal(err)
		}
		if err := r.Start(srv); err != nil {
			t.Fatal(err)
		}
		if err := srv.Start(context.Background()); err != nil {
			t.Fatal(err)
		}
		nodes[i] = &node{id: id, n: n, rooms: r, srv: srv, addr: srv.Addrs()["socket"].String()}
		t.Cleanup(func() {
			ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
			defer cancel()
			_ = srv.Shutdown(ctx)
			r.Close(ctx)
			_ = n.Shutdown(ctx)
		})
	}
	return nodes
}

// client speaks the line protocol; a goroutine reads every line it is sent.
type client struct {
	t     *testing.T
	c     net.Conn
	id    string
	lines chan string
}

func dial(t *testing.T, addr string) *client {
	t.Helper()
	c, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	cl := &client{t: t, c: c, lines: make(chan string, 1024)}
	go func() {
		defer close(cl.lines)
		r := bufio.NewReader(c)
		for {
			line, err := r.ReadString('\n')
			if err != nil {
				return
			}
			cl.lines <- strings.TrimRight(line, "\r\n")
		}
	}()
	welcome := cl.next()
	if !strings.Contains(welcome, `"welcome"`) {
		t.Fatalf("welcome: %s", welcome)
	}
	var d struct {
		Data struct {
			ID string `json:"id"`
		} `json:"data"`
	}
	_ = json.Unmarshal([]byte(cl.call("detailsView")), &d)
	cl.id = d.Data.ID
	if cl.id == "" {
		t.Fatal("detailsView gave no id")
	}
	return cl
}

func (c *client) next() string {
	c.t.Helper()
	select {
	case l, ok := <-c.lines:
		if !ok {
			c.t.Fatal("connection closed")
		}
		return l
	case <-time.After(20 * time.Second):
		c.t.Fatal("no line within 20 s")
	}
	return ""
}

// call sends a verb and returns its reply (chat lines before it are skipped).
func (c *client) call(line string) string {
	c.t.Helper()
	if _, err := c.c.Write([]byte(line + "\n")); err != nil {
		c.t.Fatal(err)
	}
	for {
		if l := c.next(); strings.Contains(l, `"context":"response"`) {
			return l
		}
	}
}

// chat returns the next chat line (replies are skipped).
func (c *client) chat() string {
	c.t.Helper()
	for {
		if l := c.next(); !strings.Contains(l, `"context":"response"`) {
			return l
		}
	}
}

// quiet checks no chat line is waiting after the others got theirs.
func (c *client) noChat() {
	c.t.Helper()
	for {
		select {
		case l := <-c.lines:
			if strings.Contains(l, `"context":"user"`) {
				c.t.Fatalf("unexpected chat line: %s", l)
			}
		default:
			return
		}
	}
}

func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(20 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

type view struct {
	Status string `json:"status"`
	Error  string `json:"error"`
	Data   struct {
		Room         string                    `json:"room"`
		Members      map[string]map[string]any `json:"members"`
		MembersCount int                       `json:"membersCount"`
	} `json:"data"`
}

func (c *client) view(room string) view {
	c.t.Helper()
	var v view
	line := c.call("roomView " + room)
	if err := json.Unmarshal([]byte(line), &v); err != nil {
		c.t.Fatalf("roomView: %v: %s", err, line)
	}
	return v
}

func ok(t *testing.T, reply string) {
	t.Helper()
	if !strings.Contains(reply, `"status":"OK"`) {
		t.Fatalf("reply: %s", reply)
	}
}

func TestSayViewBroadcastAcrossThreeNodes(t *testing.T) {
	ns := clustertest.Start(t)
	nodes := startNodes(t, ns.URL(), "rooms", 3, nil)
	clients := make([]*client, 3)
	for i, n := range nodes {
		clients[i] = dial(t, n.addr)
		ok(t, clients[i].call("roomAdd defaultRoom"))
	}
	// roomView, on any node, counts and lists the members of every node.
	for _, c := range clients {
		waitFor(t, "3 members in every view", func() bool { return c.view("defaultRoom").Data.MembersCount == 3 })
		v := c.view("defaultRoom")
		for _, o := range clients {
			if m := v.Data.Members[o.id]; m == nil || m["id"] != o.id || m["joinedAt"] == nil {
				t.Fatalf("member %s in the view of %s: %v", o.id, c.id, v.Data.Members)
			}
		}
	}

	// A say reaches the members of all three nodes, the sender included, as the same line.
	ok(t, clients[1].call("say defaultRoom hello  there"))
	want := clients[1].chat()
	if !strings.HasPrefix(want, `{"message":"hello  there","room":"defaultRoom","from":"`+clients[1].id+`","context":"user","sentAt":`) {
		t.Fatalf("chat line: %s", want)
	}
	for _, c := range []*client{clients[0], clients[2]} {
		if got := c.chat(); got != want {
			t.Fatalf("on another node: %s, want %s", got, want)
		}
	}

	// The server's broadcast ("from":0) from node 2, with a JSON value: every member gets it.
	if err := nodes[2].srv.Broadcast(context.Background(), "defaultRoom", obj("alert", "maintenance", "in", 5)); err != nil {
		t.Fatal(err)
	}
	for _, c := range clients {
		if got := c.chat(); !strings.HasPrefix(got, `{"message":{"alert":"maintenance","in":5},"room":"defaultRoom","from":0,"context":"user","sentAt":`) {
			t.Fatalf("broadcast: %s", got)
		}
	}

	// A member that leaves on node 2 leaves every view and gets no more says.
	ok(t, clients[2].call("roomLeave defaultRoom"))
	waitFor(t, "2 members seen from node 0", func() bool { return clients[0].view("defaultRoom").Data.MembersCount == 2 })
	ok(t, clients[0].call("say defaultRoom after leave"))
	clients[0].chat()
	if got := clients[1].chat(); !strings.Contains(got, `"message":"after leave"`) {
		t.Fatalf("say after leave: %s", got)
	}
	clients[2].noChat()

	// A room created on node 0 can be joined on node 2 at once; it is listed everywhere.
	if err := nodes[0].srv.CreateRoom(context.Background(), "ops"); err != nil {
		t.Fatal(err)
	}
	ok(t, clients[2].call("roomAdd ops"))
	if err := nodes[1].srv.CreateRoom(context.Background(), "ops"); err != socket.ErrRoomExists {
		t.Fatalf("creating a room another node created: %v", err)
	}
	waitFor(t, "ops listed on node 1", func() bool {
		names, total, _ := nodes[1].srv.RoomNames(context.Background(), 0, 10)
		return total == 2 && len(names) == 2 && names[0] == "defaultRoom" && names[1] == "ops"
	})

	// Destroyed on node 0: node 1's member is told, leaves (detailsView lists no room), the room is gone.
	if err := nodes[0].srv.DestroyRoom(context.Background(), "defaultRoom"); err != nil {
		t.Fatal(err)
	}
	for _, c := range clients[:2] {
		if got := c.chat(); !strings.HasPrefix(got, `{"message":"this room has been deleted","room":"defaultRoom","from":0,`) {
			t.Fatalf("destroy notice: %s", got)
		}
	}
	waitFor(t, "node 1's member to forget the room", func() bool {
		return !strings.Contains(clients[1].call("detailsView"), "defaultRoom")
	})
	if v := clients[1].view("defaultRoom"); v.Error != "connection not in this room (defaultRoom)" {
		t.Fatalf("roomView of a destroyed room: %+v", v)
	}
	if got := clients[1].call("roomAdd defaultRoom"); !strings.Contains(got, `"error":"room does not exist"`) {
		t.Fatalf("roomAdd of a destroyed room: %s", got)
	}
	if n := testutil.ToFloat64(nodes[0].rooms.unsent.WithLabelValues("disconnected")); n != 0 {
		t.Fatalf("unsent while connected: %v", n)
	}
}

// hooks are a script's room hooks, recording where each ran.
type hooks struct {
	node string
	mu   sync.Mutex
	log  []string
}

func (h *hooks) note(s string) {
	h.mu.Lock()
	h.log = append(h.log, s)
	h.mu.Unlock()
}

func (h *hooks) has(s string) bool {
	h.mu.Lock()
	defer h.mu.Unlock()
	for _, l := range h.log {
		if l == s {
			return true
		}
	}
	return false
}

func (h *hooks) Join(ctx context.Context, c *socket.Conn, room string) error {
	h.note("join " + room)
	if room == "vip" {
		return fmt.Errorf("vip is closed on %s", h.node)
	}
	return nil
}

func (h *hooks) Leave(ctx context.Context, c *socket.Conn, room string) error {
	h.note("leave " + room + " " + c.ID())
	return nil
}

func (h *hooks) MemberDetails(ctx context.Context, c *socket.Conn, room string, joinedAt time.Time) (socket.Object, error) {
	return obj("id", c.ID(), "joinedAt", joinedAt, "host", h.node, "nick", "from "+h.node), nil
}

func (h *hooks) SanitizeMembers(ctx context.Context, room string, records []socket.Object) ([]socket.Object, error) {
	out := make([]socket.Object, len(records))
	for i, r := range records {
		nick, _ := r.Get("nick")
		host, _ := r.Get("host")
		out[i] = obj("nick", nick, "host", host, "viewedOn", h.node)
	}
	return out, nil
}

func (h *hooks) ReceiveSay(ctx context.Context, from *socket.Conn, msg *socket.Chat) (bool, error) {
	if s, ok := msg.Message.(string); ok {
		msg.Message = s + " (checked on " + h.node + ")"
	}
	return true, nil
}

func (h *hooks) Payload(ctx context.Context, msg socket.Chat) (socket.Object, error) {
	return obj("text", msg.Message, "from", msg.FromValue(), "shapedOn", h.node), nil
}

func (h *hooks) SayTo(ctx context.Context, to []*socket.Conn, msg socket.Chat, payload socket.Object) ([]socket.Object, error) {
	return nil, nil
}

func TestRoomHooksRunWhereTheyBelong(t *testing.T) {
	ns := clustertest.Start(t)
	hs := []*hooks{{node: "node-0"}, {node: "node-1"}}
	nodes := startNodes(t, ns.URL(), "hooks", 2, func(i int) socket.RoomHooks { return hs[i] })
	c0, c1 := dial(t, nodes[0].addr), dial(t, nodes[1].addr)
	ok(t, c0.call("roomAdd defaultRoom"))
	ok(t, c1.call("roomAdd defaultRoom"))
	if got := c1.call("roomAdd vip"); !strings.Contains(got, `"error":"room does not exist"`) {
		t.Fatalf("roomAdd of a room that does not exist: %s", got)
	}
	if err := nodes[0].srv.CreateRoom(context.Background(), "vip"); err != nil {
		t.Fatal(err)
	}
	if got := c1.call("roomAdd vip"); !strings.Contains(got, `"error":"vip is closed on node-1"`) {
		t.Fatalf("join hook of node 1: %s", got)
	}
	// The view, asked on node 1, shows node 0's member with the record node 0's hook made, sanitized
	// by node 1's hook.
	var v view
	waitFor(t, "both members in node 1's view", func() bool { v = c1.view("defaultRoom"); return v.Data.MembersCount == 2 })
	if m := v.Data.Members[c0.id]; m["nick"] != "from node-0" || m["host"] != "node-0" || m["viewedOn"] != "node-1" {
		t.Fatalf("node 0's member seen from node 1: %v", m)
	}
	if m := v.Data.Members[c1.id]; m["nick"] != "from node-1" || m["host"] != "node-1" || m["viewedOn"] != "node-1" {
		t.Fatalf("node 1's member seen from node 1: %v", m)
	}
	// onSayReceive runs on the sender's node; the payload is shaped on each receiving node.
	ok(t, c0.call("say defaultRoom hi"))
	if got := c0.chat(); got != `{"text":"hi (checked on node-0)","from":"`+c0.id+`","shapedOn":"node-0"}` {
		t.Fatalf("on the sender's node: %s", got)
	}
	if got := c1.chat(); got != `{"text":"hi (checked on node-0)","from":"`+c0.id+`","shapedOn":"node-1"}` {
		t.Fatalf("on the other node: %s", got)
	}
	// A room destroyed on node 0: node 1's leave hook runs for its member.
	if err := nodes[0].srv.DestroyRoom(context.Background(), "defaultRoom"); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "node 1's leave hook", func() bool { return hs[1].has("leave defaultRoom " + c1.id) })
	if !hs[0].has("leave defaultRoom " + c0.id) {
		t.Fatalf("node 0's leave hook did not run: %v", hs[0].log)
	}
	if hs[0].has("leave defaultRoom "+c1.id) || hs[1].has("leave defaultRoom "+c0.id) {
		t.Fatal("a leave hook ran for another node's member")
	}
}

func TestNATSRestartLocalRoomsKeepWorking(t *testing.T) {
	ns := clustertest.Start(t)
	nodes := startNodes(t, ns.URL(), "restart", 2, nil)
	a, b, far := dial(t, nodes[0].addr), dial(t, nodes[0].addr), dial(t, nodes[1].addr)
	for _, c := range []*client{a, b, far} {
		ok(t, c.call("roomAdd defaultRoom"))
	}
	waitFor(t, "3 members", func() bool { return a.view("defaultRoom").Data.MembersCount == 3 })

	ns.Stop()
	waitFor(t, "node 0 to notice", func() bool { return !nodes[0].n.Conn().IsConnected() })
	// Local rooms keep working: joins, says, views of this node's members.
	c := dial(t, nodes[0].addr)
	ok(t, c.call("roomAdd defaultRoom"))
	ok(t, a.call("say defaultRoom while down"))
	for _, x := range []*client{a, b, c} {
		if got := x.chat(); !strings.Contains(got, `"message":"while down"`) {
			t.Fatalf("local say while NATS is down: %s", got)
		}
	}
	// (the server delivers here before it hands the message to the other nodes: wait for the count)
	waitFor(t, "the say counted as unsent", func() bool {
		return testutil.ToFloat64(nodes[0].rooms.unsent.WithLabelValues("disconnected")) >= 1
	})
	ok(t, b.call("roomLeave defaultRoom"))
	// Once the other node's heartbeats are older than the TTL, node 0 shows its own members only.
	waitFor(t, "node 0's view without node 1", func() bool {
		v := a.view("defaultRoom")
		return v.Data.MembersCount == 2 && v.Data.Members[far.id] == nil
	})

	ns.Restart()
	// Cross-node service resumes: the join made while down and the leave reach node 1.
	waitFor(t, "node 1 to see node 0's members as they are now", func() bool {
		v := far.view("defaultRoom")
		return v.Data.MembersCount == 3 && v.Data.Members[c.id] != nil && v.Data.Members[b.id] == nil
	})
	waitFor(t, "a say from node 0 to reach node 1", func() bool {
		ok(t, a.call("say defaultRoom back"))
		select {
		case l := <-far.lines:
			return strings.Contains(l, `"message":"back"`)
		case <-time.After(200 * time.Millisecond):
			return false
		}
	})
}

// obj builds an Object from keys and values.
func obj(kv ...any) socket.Object {
	o := make(socket.Object, 0, len(kv)/2)
	for i := 0; i+1 < len(kv); i += 2 {
		o = append(o, socket.Field{Key: kv[i].(string), Value: kv[i+1]})
	}
	return o
}

// bigDetails makes member records past cluster.rooms.member_bytes.
type bigDetails struct{ hooks }

func (b *bigDetails) MemberDetails(ctx context.Context, c *socket.Conn, room string, joinedAt time.Time) (socket.Object, error) {
	return obj("id", c.ID(), "bio", strings.Repeat("x", 5000)), nil
}

func TestMemberRecordBound(t *testing.T) {
	ns := clustertest.Start(t)
	nodes := startNodes(t, ns.URL(), "bound", 1, func(int) socket.RoomHooks { return &bigDetails{hooks{node: "node-0"}} })
	c := dial(t, nodes[0].addr)
	if got := c.call("roomAdd defaultRoom"); !strings.Contains(got, `"error":"the member's record takes `) ||
		!strings.Contains(got, `more than cluster.rooms.member_bytes (4096)"`) {
		t.Fatalf("roomAdd with a record past the bound: %s", got)
	}
	if strings.Contains(c.call("detailsView"), "defaultRoom") {
		t.Fatal("the refused join left the room in detailsView")
	}
	if v := c.view("defaultRoom"); v.Error != "connection not in this room (defaultRoom)" {
		t.Fatalf("roomView: %+v", v)
	}
	long := strings.Repeat("r", MaxRoomBytes+1)
	if err := nodes[0].srv.CreateRoom(context.Background(), long); err != ErrRoomName {
		t.Fatalf("creating a room with a name past the bound: %v", err)
	}
}
