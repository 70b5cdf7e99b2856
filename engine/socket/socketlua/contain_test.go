package socketlua

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/switchboard/switchboard/engine/socket"
	"github.com/switchboard/switchboard/luabind"
	"github.com/switchboard/switchboard/luabind/luabindtest"
)

// Containment (issue 10) of socket handlers: each test is a script run through the real runtime and a real
// socket server, as users write them.

const depthScript = `
local sb = require "switchboard"
sb.on("socket.say", function(conn, room, text)
  local n = (sb.cache.load("depth") or 0) + 1
  sb.cache.save("depth", n)
  if n > 50 then return end -- keeps the test finite on an engine without a depth limit
  local ok, err = conn:say(room, text .. "+")
  if not ok then sb.cache.save("sayError", err) end
end)
sb.action{ name = "saySpin", timeout = 300, run = function(conn)
  conn:roomAdd("defaultRoom")
  local ok, err = conn:say("defaultRoom", "spin")
  return { ok = tostring(ok), err = tostring(err) }
end }
`

// Item 4: a socket.say hook that calls conn:say stops at luabind.MaxHandlerDepth with a clear error, over a real
// socket, and the engine goes on serving.
func TestReentrantSayStopsAtDepthLimit(t *testing.T) {
	rt, _, _ := newRuntime(t, luabind.DefaultConfig(), map[string]string{"a.lua": depthScript})
	addr := serveSocket(t, rt)
	c := dialPlain(t, addr)
	c.do("roomAdd defaultRoom")
	// Eight broadcasts (each say broadcasts once its hook returns: the deepest first, the verb's own after
	// its reply) and the reply.
	lines := map[string]bool{broadcastText(t, c.do("say defaultRoom x")): true}
	for i := 0; i < luabind.MaxHandlerDepth; i++ {
		lines[broadcastText(t, c.line())] = true
	}
	for i := 1; i <= luabind.MaxHandlerDepth; i++ {
		if msg := "x" + strings.Repeat("+", i-1); !lines[msg] {
			t.Fatalf("no broadcast %q in %v", msg, lines)
		}
	}
	if !lines[`{"status":"OK","context":"response",ID}`] {
		t.Fatalf("no reply in %v", lines)
	}
	cache := rt.Cache()
	e, err := cache.Load("depth")
	if err != nil || e.Value != int64(luabind.MaxHandlerDepth) {
		t.Fatalf("hooks ran %v times (%v), want %d", e.Value, err, luabind.MaxHandlerDepth)
	}
	e, err = cache.Load("sayError")
	if err != nil || !strings.Contains(fmt.Sprint(e.Value), "it would be the 9th handler started from inside another (the limit is 8)") {
		t.Fatalf("say error: %v %v", e.Value, err)
	}
	// The engine answers as usual.
	if got := tail(c.do("roomView defaultRoom")); !strings.Contains(got, `"membersCount":1`) {
		t.Fatalf("after: %s", got)
	}
}

// Item 4: a handler started from inside another inherits its deadline: a hook that spins, started by an
// action with a 300 ms limit, is cancelled at the action's deadline (not at its own one-minute limit, nor
// later through its caller's cancellation), and says so.
func TestNestedHandlerInheritsDeadline(t *testing.T) {
	cfg := luabind.DefaultConfig()
	cfg.HandlerTimeout = time.Minute
	rt, _, _ := newRuntime(t, cfg, map[string]string{"a.lua": `
local sb = require "switchboard"
sb.on("socket.say", function(conn, room, text) if text == "spin" then while true do end end end)
sb.action{ name = "saySpin", timeout = 300, run = function(conn)
  conn:roomAdd("defaultRoom")
  conn:say("defaultRoom", "spin")
  return { reached = true }
end }
`})
	hooks := &recordingHooks{Scripts: NewScripts(rt)}
	addr := serveSocketWith(t, hooks.Scripts, hooks)
	c := dialPlain(t, addr)
	start := time.Now()
	got := tail(c.do("saySpin"))
	if got != `{"error":"the action saySpin did not finish within its time limit of 300ms","context":"response",ID}` {
		t.Fatalf("saySpin: %s", got)
	}
	err := hooks.sayErr()
	if !errors.Is(err, luabind.ErrTimeout) || !strings.Contains(err.Error(), "handler cancelled: the handler that started it reached its time limit") {
		t.Fatalf("hook: %v", err)
	}
	if took := time.Since(start); took > 10*time.Second {
		t.Fatalf("took %v", took)
	}
}

// recordingHooks keeps the last error of the socket.say hooks.
type recordingHooks struct {
	*Scripts
	mu  sync.Mutex
	err error
}

func (h *recordingHooks) Say(ctx context.Context, c *socket.Conn, room, text string) (string, bool, error) {
	out, keep, err := h.Scripts.Say(ctx, c, room, text)
	h.mu.Lock()
	h.err = err
	h.mu.Unlock()
	return out, keep, err
}

func (h *recordingHooks) sayErr() error {
	h.mu.Lock()
	defer h.mu.Unlock()
	return h.err
}

func serveSocket(t *testing.T, rt *luabind.Runtime) string {
	s := NewScripts(rt)
	return serveSocketWith(t, s, s)
}

func serveSocketWith(t *testing.T, scripts *Scripts, hooks socket.Hooks) string {
	t.Helper()
	scfg := socket.DefaultConfig()
	scfg.Listen = "127.0.0.1:0"
	srv, err := socket.New(scfg, socket.Options{Actions: scripts, Verbs: scripts, Hooks: hooks})
	if err != nil {
		t.Fatal(err)
	}
	if err := srv.Start(context.Background()); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		_ = srv.Shutdown(ctx)
	})
	return srv.Addrs()["socket"].String()
}

// dialPlain connects to a server without a socket.connect hook (only the welcome line comes first).
func dialPlain(t *testing.T, addr string) *luaClient {
	c := dialRaw(t, addr)
	c.line() // welcome
	return c
}

// Item 8: a raised table reaches the client through its __tostring (or a fixed text), never as a heap
// address; shared-reference tables stop at the node budget, quickly.
func TestErrorObjectsAndSharedReferences(t *testing.T) {
	cfg := luabind.DefaultConfig()
	cfg.HandlerTimeout = time.Minute // the node budget, not the time limit, must stop them
	rt, _, _ := newRuntime(t, cfg, map[string]string{"a.lua": `
local sb = require "switchboard"
local E = setmetatable({}, { __tostring = function(e) return "custom failure 42" end })
sb.action{ name = "raiseObj", run = function() error(E) end }
sb.action{ name = "raisePlain", run = function() error({ code = 7 }) end }
sb.action{ name = "raiseBadMeta", run = function() error(setmetatable({}, { __tostring = function() error("nope") end })) end }
sb.action{ name = "raiseFn", run = function() error(print) end }
local function shared(n) local t = {} for i = 1, n do t = { t, t } end return t end
sb.action{ name = "sharedReturn", run = function() return { data = shared(24) } end }
sb.on("sharedEncode", function()
  local s, err = sb.json.encode(shared(24))
  local ok, cerr = pcall(sb.cache.save, "k", shared(24))
  return tostring(s) .. "|" .. tostring(err) .. "|" .. tostring(cerr)
end)
`})
	addr := serveSocket(t, rt)
	c := dialPlain(t, addr)
	for req, want := range map[string]string{
		"raiseObj":     `{"error":"custom failure 42","context":"response",ID}`,
		"raisePlain":   `{"error":"error object is a table without __tostring","context":"response",ID}`,
		"raiseBadMeta": `{"error":"error object is a table whose __tostring failed","context":"response",ID}`,
		"raiseFn":      `{"error":"error object is a function","context":"response",ID}`,
	} {
		if got := tail(c.do(req)); got != want {
			t.Errorf("%s: %s, want %s", req, got, want)
		}
	}
	start := time.Now()
	if got := tail(c.do("sharedReturn")); !strings.Contains(got, `"error":"cannot convert the result: value has more than 1048576 parts`) {
		t.Errorf("sharedReturn: %s", got)
	}
	got, err := luabindtest.CallString(t, rt.Current(), "on", "sharedEncode", "")
	if err != nil || got != "nil|sb.json.encode: value has more than 1048576 parts (a table reached through several references counts each time)|"+
		"scripts/a.lua:12: sb.cache.save: value has more than 1048576 parts (a table reached through several references counts each time)" {
		t.Errorf("sharedEncode: %q %v", got, err)
	}
	if took := time.Since(start); took > 20*time.Second { // three conversions of a million nodes, under -race
		t.Errorf("shared-reference tables took %v", took)
	}
}

// Item 8: a custom verb gets socket.action_timeout (5 s by default), as the error text says, not the 1 s
// handler limit.
func TestVerbGetsActionTimeout(t *testing.T) {
	cfg := luabind.DefaultConfig()
	cfg.HandlerTimeout = 100 * time.Millisecond
	rt, _, _ := newRuntime(t, cfg, map[string]string{"a.lua": `
local sb = require "switchboard"
sb.verb("slow", function(conn, args) sb.sleep(300) return "done" end)
`})
	addr := serveSocket(t, rt)
	c := dialPlain(t, addr)
	if got := tail(c.do("slow")); got != `{"status":"OK","context":"response","data":"done",ID}` {
		t.Fatalf("slow verb: %s", got)
	}
}

// dialRaw connects a line client without reading anything.
func dialRaw(t *testing.T, addr string) *luaClient {
	c, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return &luaClient{t: t, c: c, r: bufio.NewReader(c)}
}

// broadcastText returns the message of a chat line, or the line itself.
func broadcastText(t *testing.T, line string) string {
	var m struct {
		Message *string `json:"message"`
	}
	if err := json.Unmarshal([]byte(line), &m); err != nil || m.Message == nil {
		return tail(line)
	}
	return *m.Message
}
