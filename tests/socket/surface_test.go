package socket

import (
	"encoding/json"
	"net"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"

	"github.com/switchboard/switchboard/tests/harness"
)

// Issue 14: actionhero's server-side room, chat-middleware and connection API, ported to Lua. Each test is a
// script written for it, run by the engine and driven over TCP in the shape of actionhero's own cases
// (__tests__/core/chatRoom, the socket server plugin's tests).

// tailRe is a reply's tail: the request's id and count.
var tailRe = regexp.MustCompile(`,"messageId":"[0-9a-f-]{36}","messageCount":[0-9]+}$`)

// body is a reply without its tail (which it must have), for exact comparisons.
func body(t *testing.T, reply string) string {
	t.Helper()
	if !tailRe.MatchString(reply) {
		t.Fatalf("reply without messageId and messageCount: %s", reply)
	}
	return tailRe.ReplaceAllString(reply, "}")
}

// say is a chat line decoded.
type sayLine struct {
	Message any
	Room    string
	From    any
	Context string
	SentAt  int64
}

func chat(t *testing.T, line string) sayLine {
	t.Helper()
	var m sayLine
	if err := json.Unmarshal([]byte(line), &m); err != nil || m.Context != "user" || m.SentAt == 0 {
		t.Fatalf("not a chat line: %s (%v)", line, err)
	}
	return m
}

// welcomed dials and reads the welcome line.
func welcomed(t *testing.T, addr string) (*client, string) {
	t.Helper()
	c := dial(t, addr)
	c.line()
	var d struct{ Data struct{ ID string } }
	if err := json.Unmarshal([]byte(c.do("detailsView")), &d); err != nil || d.Data.ID == "" {
		t.Fatalf("detailsView: %v", err)
	}
	return c, d.Data.ID
}

const announceScript = `
local sb = require "switchboard"
sb.rooms.middleware{
  name = "announce",
  join = function(conn, room)
    sb.rooms.broadcast(room, "I have entered the room: " .. conn.id)
  end,
  leave = function(conn, room)
    sb.rooms.broadcast(room, "I have left the room: " .. conn.id)
  end,
}
`

// Items 2 and 3: actionhero's announce fixture: A joins, B joins, B leaves; A's last two messages are "entered
// B" and "left B", sent by the server (from 0, context user). Hooks run before the change, so the joiner does
// not hear its own announcement and the leaver hears its own goodbye (in actionhero both are a race).
func TestJoinAnnouncedToOthersFromZero(t *testing.T) {
	e := harness.Start(t, plainYAML, harness.Options{Scripts: map[string]string{"a.lua": announceScript}})
	addr := e.Addr(t, "socket")
	a, _ := welcomed(t, addr)
	b, bID := welcomed(t, addr)
	if got := body(t, a.do("roomAdd defaultRoom")); got != `{"status":"OK","context":"response","data":true}` {
		t.Fatalf("a roomAdd: %s", got)
	}
	if got := body(t, b.do("roomAdd defaultRoom")); got != `{"status":"OK","context":"response","data":true}` {
		t.Fatalf("b roomAdd: %s", got)
	}
	entered := a.line()
	match(t, entered, `{"message":"I have entered the room: `+bID+`","room":"defaultRoom","from":0,"context":"user","sentAt":MS}`)
	ownGoodbye := chat(t, b.do("roomLeave defaultRoom"))
	if got := body(t, b.line()); got != `{"status":"OK","context":"response","data":true}` {
		t.Fatalf("b roomLeave: %s", got)
	}
	left := chat(t, a.line())
	if left.Message != "I have left the room: "+bID || left.From != float64(0) || left.Room != "defaultRoom" || ownGoodbye != left {
		t.Fatalf("left: %+v, b heard %+v", left, ownGoodbye)
	}
	// b heard nothing of its own join: its next line is the reply to its next request.
	if got := body(t, b.do("paramsView")); got != `{"status":"OK","context":"response","data":{}}` {
		t.Fatalf("b after leaving: %s", got)
	}
	// Leaving by closing the connection runs the leave hook too.
	c, cID := welcomed(t, addr)
	c.do("roomAdd defaultRoom")
	chat(t, a.line()) // entered c
	c.c.Close()
	if m := chat(t, a.line()); m.Message != "I have left the room: "+cID || m.From != float64(0) {
		t.Fatalf("close: %+v", m)
	}
}

// Item 2: join and leave hooks refuse with the error the client reads, in priority order (lower first, ties in
// the order written); a refused join leaves the connection out; a server-side add (sb.rooms.addMember) meets
// the same hooks.
func TestJoinRefusedWithTheError(t *testing.T) {
	e := harness.Start(t, "socket:\n  listen: 127.0.0.1:0\n  rooms:\n    starting: [defaultRoom, otherRoom, vip]\n", harness.Options{Scripts: map[string]string{"a.lua": `
local sb = require "switchboard"
sb.rooms.middleware{ name = "second", priority = 200, join = function(conn, room)
  if conn:param("pass") ~= "yes" then error("joining rooms blocked") end
end }
sb.rooms.middleware{ name = "first", priority = 50, join = function(conn, room)
  if room == "vip" then return false, "vip is by invitation" end
end, leave = function(conn, room)
  if room == "otherRoom" then return false end
end }
sb.action{ name = "login", inputs = { pass = {} }, run = function() return {} end } -- keeps pass sticky
sb.action{ name = "invite", inputs = { id = { required = true }, room = { required = true } }, run = function(conn, params)
  local ok, err = sb.rooms.addMember(params.id, params.room)
  return { ok = ok or false, err = err or sb.json.null }
end }
`}})
	addr := e.Addr(t, "socket")
	a, aID := welcomed(t, addr)
	if got := body(t, a.do("roomAdd defaultRoom")); got != `{"error":"joining rooms blocked","context":"response"}` {
		t.Fatalf("blocked: %s", got)
	}
	if got := body(t, a.do("roomAdd vip")); got != `{"error":"vip is by invitation","context":"response"}` {
		t.Fatalf("vip (priority 50 runs first): %s", got)
	}
	if got := body(t, a.do("roomView defaultRoom")); got != `{"error":"connection not in this room (defaultRoom)","context":"response"}` {
		t.Fatalf("refused join left it in: %s", got)
	}
	a.do("paramAdd pass=yes")
	if got := body(t, a.do("roomAdd defaultRoom")); got != `{"status":"OK","context":"response","data":true}` {
		t.Fatalf("allowed: %s", got)
	}
	// A server-side add meets the hooks: refused, then allowed.
	b, _ := welcomed(t, addr)
	if got := body(t, b.do(`{"action":"invite","params":{"id":"`+aID+`","room":"vip"}}`)); got != `{"ok":false,"err":"vip is by invitation","context":"response"}` {
		t.Fatalf("invite to vip: %s", got)
	}
	if got := body(t, b.do(`{"action":"invite","params":{"id":"`+aID+`","room":"otherRoom"}}`)); got != `{"ok":true,"err":null,"context":"response"}` {
		t.Fatalf("invite: %s", got)
	}
	if got := body(t, b.do(`{"action":"invite","params":{"id":"nobody","room":"otherRoom"}}`)); got != `{"ok":false,"err":"connection not found (nobody)","context":"response"}` {
		t.Fatalf("invite nobody: %s", got)
	}
	var d struct{ Data struct{ Rooms []string } }
	if err := json.Unmarshal([]byte(a.do("detailsView")), &d); err != nil || strings.Join(d.Data.Rooms, ",") != "defaultRoom,otherRoom" {
		t.Fatalf("rooms %v (%v)", d.Data.Rooms, err)
	}
	if got := body(t, a.do("roomLeave otherRoom")); got != `{"error":"leaving the room was refused (first)","context":"response"}` {
		t.Fatalf("leave refused: %s", got)
	}
}

// Item 1: rooms from Lua: createChatRoom as actionhero's default project has it, and exists, list,
// members (roomStatus) and destroy; a destroyed room's members are told by the server and leave it.
func TestRoomLifecycleFromLua(t *testing.T) {
	actions := readShipped(t, "actions.lua")
	e := harness.Start(t, plainYAML, harness.Options{Scripts: map[string]string{"actions.lua": actions, "rooms.lua": `
local sb = require "switchboard"
sb.action{ name = "roomInfo", inputs = { name = { required = true } }, run = function(conn, params)
  local names, total = sb.rooms.list()
  local page = sb.rooms.list(1, 1)
  local status, err = sb.rooms.members(params.name)
  return { exists = sb.rooms.exists(params.name), names = names, total = total, page = page,
           status = status or sb.json.null, err = err or sb.json.null }
end }
sb.action{ name = "destroyRoom", inputs = { name = { required = true } }, run = function(conn, params)
  local ok, err = sb.rooms.destroy(params.name)
  if not ok then return nil, err end
  return { destroyed = true, rooms = conn:rooms() }
end }
`}})
	addr := e.Addr(t, "socket")
	a, aID := welcomed(t, addr)
	if got := body(t, a.do(`{"action":"createChatRoom","params":{"name":"newRoom"}}`)); got != `{"didCreate":1,"context":"response"}` {
		t.Fatalf("createChatRoom: %s", got)
	}
	if got := body(t, a.do(`{"action":"createChatRoom","params":{"name":"newRoom"}}`)); got != `{"error":"room exists","context":"response"}` {
		t.Fatalf("createChatRoom again: %s", got)
	}
	if got := body(t, a.do(`{"action":"createChatRoom","params":{}}`)); got != `{"error":"name is a required parameter for this action","context":"response"}` {
		t.Fatalf("createChatRoom without a name: %s", got)
	}
	a.do("roomAdd newRoom")
	got := body(t, a.do(`{"action":"roomInfo","params":{"name":"newRoom"}}`))
	match(t, got, `{"exists":true,"names":["defaultRoom","newRoom"],"total":2,"page":["newRoom"],"status":{"room":"newRoom","members":{"`+aID+`":{"id":"`+aID+`","joinedAt":MS}},"membersCount":1},"err":null,"context":"response"}`)
	if got := body(t, a.do(`{"action":"roomInfo","params":{"name":"nowhere"}}`)); got != `{"exists":false,"names":["defaultRoom","newRoom"],"total":2,"page":["newRoom"],"status":null,"err":"room does not exist","context":"response"}` {
		t.Fatalf("roomInfo nowhere: %s", got)
	}
	b, _ := welcomed(t, addr)
	deleted := `{"message":"this room has been deleted","room":"newRoom","from":0,"context":"user","sentAt":MS}`
	reply := b.do(`{"action":"destroyRoom","params":{"name":"newRoom"}}`)
	if body(t, reply) != `{"destroyed":true,"rooms":[],"context":"response"}` {
		t.Fatalf("destroy: %s", reply)
	}
	match(t, a.line(), deleted)
	if got := body(t, a.do("detailsView")); !strings.Contains(got, `"rooms":[]`) {
		t.Fatalf("a still in the destroyed room: %s", got)
	}
	if got := body(t, a.do("roomAdd newRoom")); got != `{"error":"room does not exist","context":"response"}` {
		t.Fatalf("roomAdd destroyed: %s", got)
	}
	if got := body(t, b.do(`{"action":"destroyRoom","params":{"name":"newRoom"}}`)); got != `{"error":"room does not exist","context":"response"}` {
		t.Fatalf("destroy twice: %s", got)
	}
}

// Item 4: member details with an extra field (actionhero's plugin test: generate and sanitize both add
// type = "socket", and roomView shows it).
func TestMemberDetailsWithAnExtraField(t *testing.T) {
	e := harness.Start(t, plainYAML, harness.Options{Scripts: map[string]string{"a.lua": `
local sb = require "switchboard"
sb.rooms.generateMemberDetails(function(conn, room, details)
  details.type = "socket"
  return details
end)
sb.rooms.sanitizeMemberDetails(function(details)
  return { id = details.id, joinedAt = details.joinedAt, type = details.type }
end)
`}})
	a, aID := welcomed(t, e.Addr(t, "socket"))
	a.do("roomAdd defaultRoom")
	match(t, body(t, a.do("roomView defaultRoom")),
		`{"status":"OK","context":"response","data":{"room":"defaultRoom","members":{"`+aID+`":{"id":"`+aID+`","joinedAt":MS,"type":"socket"}},"membersCount":1}}`)
}

// Item 4: the message payload reshaped (actionhero's fixture: {thing = "stuff", room, from}); the say
// middleware shapes what each receiver gets, and onSayReceive can refuse a message with the error the
// sender reads.
func TestMessagePayloadReshaped(t *testing.T) {
	e := harness.Start(t, plainYAML, harness.Options{Scripts: map[string]string{"a.lua": `
local sb = require "switchboard"
sb.rooms.generateMessagePayload(function(msg)
  return { thing = "stuff", room = msg.room, from = msg.from, said = msg.message }
end)
sb.rooms.middleware{ name = "filter",
  onSayReceive = function(conn, room, payload)
    if payload.said == "forbidden" then error("that word is not allowed") end
    if payload.said == "quiet" then return false end
  end,
  say = function(conn, room, payload)
    payload.to = conn.id
    if conn:param("deaf") == "yes" then return false end
    return payload
  end,
}
sb.action{ name = "settings", inputs = { deaf = {} }, run = function() return {} end } -- keeps deaf sticky
`}})
	addr := e.Addr(t, "socket")
	a, aID := welcomed(t, addr)
	b, bID := welcomed(t, addr)
	c, _ := welcomed(t, addr)
	for _, x := range []*client{a, b, c} {
		x.do("roomAdd defaultRoom")
	}
	c.do("paramAdd deaf=yes")
	if got := body(t, a.do("say defaultRoom hi")); got != `{"status":"OK","context":"response"}` {
		t.Fatalf("say: %s", got)
	}
	if got := a.line(); got != `{"thing":"stuff","room":"defaultRoom","from":"`+aID+`","said":"hi","to":"`+aID+`"}` {
		t.Fatalf("a got %s", got)
	}
	if got := b.line(); got != `{"thing":"stuff","room":"defaultRoom","from":"`+aID+`","said":"hi","to":"`+bID+`"}` {
		t.Fatalf("b got %s", got)
	}
	if got := body(t, a.do("say defaultRoom forbidden")); got != `{"error":"that word is not allowed","context":"response"}` {
		t.Fatalf("refused: %s", got)
	}
	if got := body(t, a.do("say defaultRoom quiet")); got != `{"status":"OK","context":"response"}` {
		t.Fatalf("dropped: %s", got)
	}
	// Nothing was delivered for the refused and dropped messages: each client's next line is its next reply.
	for _, x := range []*client{a, b, c} {
		if got := body(t, x.do("paramView nothing")); got != `{"status":"OK","context":"response"}` {
			t.Fatalf("a message leaked: %s", got)
		}
	}
}

// Item 5: connections from Lua: an action disconnects every other client at once (actionhero's "can
// disconnect all clients"), after reading each one's address, rooms and params and sending it a message.
func TestActionDisconnectsAllClients(t *testing.T) {
	e := harness.Start(t, plainYAML, harness.Options{Scripts: map[string]string{"a.lua": `
local sb = require "switchboard"
sb.action{ name = "kickAll", run = function(conn)
  local n, seen, offset = 0, {}, 0
  while true do
    local page, total = sb.connections.list(offset, 2)  -- two at a time: the paging works
    if #page == 0 then break end
    for _, c in ipairs(page) do
      if c.id ~= conn.id then
        local d = c:details()
        seen[#seen + 1] = c.remoteIP .. "|" .. tostring(c:param("who")) .. "|" .. table.concat(c:rooms(), ",") .. "|" .. d.id
        c:send{ notice = "you are being disconnected", by = conn.id }
        c:close()
        n = n + 1
      end
    end
    offset = offset + #page
  end
  table.sort(seen)
  local again = sb.connections.get(conn.id)
  return { disconnected = n, seen = seen, me = again and again.id or sb.json.null, missing = sb.connections.get("nope") == nil }
end }
sb.action{ name = "who", inputs = { who = {} }, run = function() return {} end }
`}})
	addr := e.Addr(t, "socket")
	admin, adminID := welcomed(t, addr)
	var others []*client
	var want []string
	for _, who := range []string{"ann", "bob", "cy"} {
		c, id := welcomed(t, addr)
		c.do("paramAdd who=" + who)
		if who == "bob" {
			c.do("roomAdd defaultRoom")
		}
		others = append(others, c)
		room := ""
		if who == "bob" {
			room = "defaultRoom"
		}
		want = append(want, "127.0.0.1|"+who+"|"+room+"|"+id)
	}
	var r struct {
		Disconnected int
		Seen         []string
		Me           string
		Missing      bool
	}
	reply := admin.do("kickAll")
	if err := json.Unmarshal([]byte(reply), &r); err != nil {
		t.Fatal(err)
	}
	wantSeen := append([]string(nil), want...)
	sortStrings(wantSeen)
	if r.Disconnected != 3 || strings.Join(r.Seen, " ") != strings.Join(wantSeen, " ") || r.Me != adminID || !r.Missing {
		t.Fatalf("kickAll: %s\nwant seen %v", reply, wantSeen)
	}
	for _, c := range others {
		match(t, c.line(), `{"notice":"you are being disconnected","by":"`+adminID+`"}`)
		match(t, c.line(), `{"status":"Bye!","context":"api"}`)
		c.expectClosed()
	}
	if got := body(t, admin.do("paramsView")); got != `{"status":"OK","context":"response","data":{"action":"kickAll"}}` {
		t.Fatalf("the caller is still served: %s", got)
	}
}

func sortStrings(s []string) {
	for i := 1; i < len(s); i++ {
		for j := i; j > 0 && s[j] < s[j-1]; j-- {
			s[j], s[j-1] = s[j-1], s[j]
		}
	}
}

// Items 6 and 7: the shipped status action (actionhero's default project) answers with problems: [] and the
// server's identity from sb.server().
func TestStatusAction(t *testing.T) {
	e := harness.Start(t, plainYAML, harness.Options{})
	a, _ := welcomed(t, e.Addr(t, "socket"))
	got := body(t, a.do("status"))
	shape := regexp.MustCompile(`^\{"nodeStatus":"Node Healthy","problems":\[\],"id":"[^"]+","actionheroVersion":"[^"]+","uptime":[0-9]+,"name":"switchboard","description":"[^"]+","version":"[^"]+","consumedMemoryMB":[0-9.]+,"context":"response"\}$`)
	if !shape.MatchString(got) {
		t.Fatalf("status: %s", got)
	}
	var st struct {
		ID               string
		Uptime           int64
		ConsumedMemoryMB float64
	}
	if err := json.Unmarshal([]byte(got), &st); err != nil || st.Uptime <= 0 || st.ConsumedMemoryMB <= 0 || !strings.Contains(st.ID, ":") {
		t.Fatalf("status %s (%v)", got, err)
	}
}

// readShipped reads a script of the repository's scripts/.
func readShipped(t *testing.T, name string) string {
	t.Helper()
	b, err := os.ReadFile(filepath.Join(harness.Root(), "scripts", name))
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

// A join hook that adds its connection to another room, which runs the hook again, stops at the nesting
// limit (8) with the error, and the engine goes on serving.
func TestRecursiveJoinHookIsBounded(t *testing.T) {
	e := harness.Start(t, "socket:\n  listen: 127.0.0.1:0\n  rooms:\n    autocreate: true\n", harness.Options{Scripts: map[string]string{"a.lua": `
local sb = require "switchboard"
sb.rooms.middleware{ name = "chain", join = function(conn, room)
  local ok, err = sb.rooms.addMember(conn.id, room .. "+")
  if not ok then conn:send{ stopped = room, err = err } end
end }
`}})
	a, _ := welcomed(t, e.Addr(t, "socket"))
	stop := a.do("roomAdd r")
	var s struct{ Stopped, Err string }
	if err := json.Unmarshal([]byte(stop), &s); err != nil || s.Stopped != "r"+strings.Repeat("+", 7) ||
		!strings.Contains(s.Err, "it would be the 9th handler started from inside another (the limit is 8)") {
		t.Fatalf("stop: %s", stop)
	}
	if got := body(t, a.line()); got != `{"status":"OK","context":"response","data":true}` {
		t.Fatalf("roomAdd: %s", got)
	}
	var d struct{ Data struct{ Rooms []string } }
	if err := json.Unmarshal([]byte(a.do("detailsView")), &d); err != nil || len(d.Data.Rooms) != 8 {
		t.Fatalf("rooms: %v (%v)", d.Data.Rooms, err)
	}
}

// Item 6: JSON arrays from Lua over the wire: an empty array marked with sb.json.array, arrays the engine
// hands to Lua (a decoded request param, sb.json.decode, sb.cache, conn:rooms()) stay arrays, empty or not,
// in an action's result, in conn:send and in sb.json.encode.
func TestJSONArraysFromLua(t *testing.T) {
	e := harness.Start(t, plainYAML, harness.Options{Scripts: map[string]string{"a.lua": `
local sb = require "switchboard"
sb.action{ name = "arrays", inputs = { list = {} }, run = function(conn, params)
  sb.cache.save("arrays", { none = sb.json.array() })
  local result = {
    problems = sb.json.array(),
    plain = {},
    list = params.list,
    decoded = sb.json.decode('{"a":[],"b":{}}'),
    cached = sb.cache.load("arrays"),
    rooms = conn:rooms(),
    [1.5] = "a key that is no string takes the general path",
  }
  conn:send{ rooms = conn:rooms(), encoded = sb.json.encode({ problems = sb.json.array() }) }
  return result
end }
`}})
	a, _ := welcomed(t, e.Addr(t, "socket"))
	if got := a.do(`{"action":"arrays","params":{"list":[]}}`); got != `{"rooms":[],"encoded":"{\"problems\":[]}"}` {
		t.Fatalf("send: %s", got)
	}
	var r map[string]any
	got := a.line()
	if err := json.Unmarshal([]byte(got), &r); err != nil {
		t.Fatal(err)
	}
	for key, want := range map[string]string{"problems": `[]`, "plain": `{}`, "list": `[]`, "decoded": `{"a":[],"b":{}}`,
		"cached": `{"none":[]}`, "rooms": `[]`} {
		if b, _ := json.Marshal(r[key]); string(b) != want {
			t.Fatalf("%s: %s, want %s, in %s", key, b, want, got)
		}
	}
}

// Item 8: the documented decisions. A line over max_data_length gets actionhero v20's text with the numbers
// the right way round (v20 swaps them: "20 received/41 max"), and the connection stays open; a client that
// half-closes after a slow action still gets its reply, then the server closes without a goodbye.
func TestDocumentedDecisions(t *testing.T) {
	e := harness.Start(t, "socket:\n  listen: 127.0.0.1:0\n  max_data_length: 20\n", harness.Options{})
	a, _ := welcomed(t, e.Addr(t, "socket"))
	if got := body(t, a.do("paramAdd key="+strings.Repeat("k", 28))); got != `{"status":"error","error":"data length is too big (41 received/20 max)","context":"response"}` {
		t.Fatalf("too long: %s", got)
	}
	if got := body(t, a.do("paramsView")); got != `{"status":"OK","context":"response","data":{}}` {
		t.Fatalf("after: %s", got)
	}
	a.send("sleepTest\r\n") // sleepDuration defaults to 1000 ms
	if err := a.c.(*net.TCPConn).CloseWrite(); err != nil {
		t.Fatal(err)
	}
	var r struct{ SleepDuration int }
	if err := json.Unmarshal([]byte(a.line()), &r); err != nil || r.SleepDuration != 1000 {
		t.Fatalf("the slow action's reply: %+v %v", r, err)
	}
	a.expectClosed()
}
