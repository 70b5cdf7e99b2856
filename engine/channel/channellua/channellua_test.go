package channellua

import (
	"context"
	"io"
	"net"
	"strings"
	"testing"
	"time"

	"github.com/sirupsen/logrus"
	lua "github.com/yuin/gopher-lua"

	"github.com/switchboard/switchboard/engine/channel"
	"github.com/switchboard/switchboard/internal/testutil"
	"github.com/switchboard/switchboard/luabind"
	"github.com/switchboard/switchboard/luabind/luabindtest"
)

const channelScript = `
local sb = require "switchboard"
sb.transform("echo", "out", function(msg, ch)
  if msg == "drop" then return nil end
  return msg .. ">" .. ch
end)
sb.transform("echo", "in", function(msg) return string.upper(msg) end)
sb.on("channel.up", function(name, info) sb.cache.save("up", name .. " " .. info.addr) end)
sb.on("test.request", function(what)
  local ch = sb.channel("echo")
  if what == "state" then return (ch:state()) end
  if what == "drop" then local ok, err = ch:send("drop"); return tostring(ok) .. " " .. tostring(err) end
  if what == "missing" then local c, err = sb.channel("nope"); return tostring(c) .. " " .. err end
  local reply, err = ch:request(what, 2000)
  return reply or err
end)
`

func TestChannelBindings(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			go func() { defer c.Close(); _, _ = io.Copy(c, c) }()
		}
	}()
	defer ln.Close()

	rt, _, logs := luabindtest.New(t, luabind.DefaultConfig(), map[string]string{"chan.lua": channelScript}, luabindtest.Options{NoLoad: true})
	cfg := channel.DefaultConfig()
	cfg.Name, cfg.Host, cfg.Port, cfg.Permanent = "echo", "127.0.0.1", ln.Addr().(*net.TCPAddr).Port, true
	cfg.ReconnectionTimeout = 100 * time.Millisecond
	l := logrus.New()
	l.SetOutput(io.Discard)
	set, err := channel.New([]channel.Config{cfg}, channel.Options{Log: logrus.NewEntry(l),
		Transform: Transforms(rt), OnEvent: Events(rt)})
	if err != nil {
		t.Fatal(err)
	}
	if err := rt.Bind(New(set)); err != nil {
		t.Fatal(err)
	}
	if err := rt.Load(); err != nil {
		t.Fatal(err)
	}
	if err := set.Start(context.Background()); err != nil {
		t.Fatal(err)
	}
	defer func() {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		_ = set.Shutdown(ctx)
	}()

	call := func(arg string) string {
		t.Helper()
		g := rt.Current()
		hs := g.On("test.request")
		var out string
		err := g.Call(context.Background(), hs[0], "test", 3*time.Second, func(L *lua.LState, r []lua.LValue) error {
			out = r[0].String()
			return nil
		}, lua.LString(arg))
		if err != nil {
			t.Fatalf("%s: %v", arg, err)
		}
		return out
	}
	testutil.WaitFor(t, "the channel to be up", func() bool { return call("state") == "up" })
	if got := call("hello"); got != "HELLO>ECHO" {
		t.Fatalf("request through both transforms: %q", got)
	}
	if got := call("drop"); got != "nil channel: message dropped by the transform" {
		t.Fatalf("drop: %q", got)
	}
	if got := call("missing"); got != "nil no channel named nope" {
		t.Fatalf("missing: %q", got)
	}
	var e luabind.CacheEntry
	if !testutil.Poll(testutil.Wait, func() bool { e, err = rt.Cache().Load("up"); return err == nil }) {
		t.Fatalf("channel.up listener never ran; logs: %s", logs.String())
	}
	if s, _ := e.Value.(string); !strings.HasPrefix(s, "echo 127.0.0.1:") {
		t.Fatalf("channel.up listener got %q", s)
	}
}

func TestTransformRegistrationErrors(t *testing.T) {
	errs := luabindtest.Check(t, luabind.DefaultConfig(), map[string]string{"bad.lua": `require("switchboard").transform("x", "sideways", function() end)`}, New(nil))
	if len(errs) != 1 || !strings.Contains(errs[0].Error(), `direction must be "in" or "out"`) {
		t.Fatalf("got %v", errs)
	}
}

const receiveScript = `
local sb = require "switchboard"
sb.on("channel.down", function(name, info)
  if info.failed then sb.cache.save("failed", name .. " " .. info.error) end
end)
sb.on("test.receive", function(name, ms)
  local msg, err = sb.channel(name):receive(ms)
  if msg == nil then return "nil " .. err end
  return msg
end)
`

// TestChannelReceive: ch:receive takes the messages no request and no topic took, in order, and says
// "timeout" when there is none; channel.down reports failed attempts with info.failed.
func TestChannelReceive(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			go func() {
				defer c.Close()
				io.WriteString(c, "one\ntwo\n")
				io.Copy(io.Discard, c)
			}()
		}
	}()
	closed, _ := net.Listen("tcp", "127.0.0.1:0")
	closedPort := closed.Addr().(*net.TCPAddr).Port
	closed.Close()

	rt, _, _ := luabindtest.New(t, luabind.DefaultConfig(), map[string]string{"recv.lua": receiveScript}, luabindtest.Options{NoLoad: true})
	feed := channel.DefaultConfig()
	feed.Name, feed.Host, feed.Port, feed.Permanent = "feed", "127.0.0.1", ln.Addr().(*net.TCPAddr).Port, true
	gone := channel.DefaultConfig()
	gone.Name, gone.Host, gone.Port, gone.Permanent = "gone", "127.0.0.1", closedPort, true
	l := logrus.New()
	l.SetOutput(io.Discard)
	set, err := channel.New([]channel.Config{feed, gone}, channel.Options{Log: logrus.NewEntry(l),
		Transform: Transforms(rt), OnEvent: Events(rt)})
	if err != nil {
		t.Fatal(err)
	}
	if err := rt.Bind(New(set)); err != nil {
		t.Fatal(err)
	}
	if err := rt.Load(); err != nil {
		t.Fatal(err)
	}
	if err := set.Start(context.Background()); err != nil {
		t.Fatal(err)
	}
	defer func() {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		_ = set.Shutdown(ctx)
	}()
	call := func(name string, ms int) string {
		t.Helper()
		g := rt.Current()
		var out string
		err := g.Call(context.Background(), g.On("test.receive")[0], "test", 5*time.Second, func(L *lua.LState, r []lua.LValue) error {
			out = r[0].String()
			return nil
		}, lua.LString(name), lua.LNumber(ms))
		if err != nil {
			t.Fatal(err)
		}
		return out
	}
	if got := call("feed", 3000); got != "one" {
		t.Fatalf("first: %q", got)
	}
	if got := call("feed", 3000); got != "two" {
		t.Fatalf("second: %q", got)
	}
	if got := call("feed", 50); got != "nil timeout" {
		t.Fatalf("empty: %q", got)
	}
	var e luabind.CacheEntry
	if !testutil.Poll(testutil.Wait, func() bool { e, err = rt.Cache().Load("failed"); return err == nil }) {
		t.Fatal("no channel.down with info.failed for a refused connection")
	}
	if s, _ := e.Value.(string); !strings.HasPrefix(s, "gone ") || !strings.Contains(s, "refused") {
		t.Fatalf("channel.down for a failed attempt: %q", s)
	}
}
