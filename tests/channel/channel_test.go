// Package channel tests active sockets end to end: the engine started from YAML (the seed's keys), Lua
// transforms and topic bridges, driven through socket-server actions over real TCP, against loopback
// upstreams that are killed, restarted and misbehave.
package channel

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"

	"go.uber.org/goleak"

	"github.com/switchboard/switchboard/internal/testutil"
	"github.com/switchboard/switchboard/tests/harness"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

// server is a loopback upstream on a port that survives restarts.
type server struct {
	addr   string
	handle func(net.Conn)
	mu     sync.Mutex
	ln     net.Listener
	conns  []net.Conn
	wg     sync.WaitGroup
}

func startServer(t *testing.T, handle func(net.Conn)) *server {
	s := &server{addr: "127.0.0.1:0", handle: handle}
	s.start(t)
	t.Cleanup(s.stop)
	return s
}

func (s *server) start(t *testing.T) {
	t.Helper()
	var err error
	var ln net.Listener
	if !testutil.Poll(2*time.Second, func() bool { ln, err = net.Listen("tcp", s.addr); return err == nil }) {
		t.Fatal(err)
	}
	s.mu.Lock()
	s.ln, s.addr = ln, ln.Addr().String()
	s.mu.Unlock()
	s.wg.Add(1)
	go func() {
		defer s.wg.Done()
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			s.mu.Lock()
			s.conns = append(s.conns, c)
			s.mu.Unlock()
			s.wg.Add(1)
			go func() { defer s.wg.Done(); defer c.Close(); s.handle(c) }()
		}
	}()
}

func (s *server) stop() {
	s.mu.Lock()
	s.ln.Close()
	for _, c := range s.conns {
		c.Close()
	}
	s.conns = nil
	s.mu.Unlock()
	s.wg.Wait()
}

func (s *server) port() string { _, p, _ := net.SplitHostPort(s.addr); return p }

const script = `
local sb = require "switchboard"
sb.transform("echo", "out", function(msg) if msg == "secret" then return nil end return msg end)
sb.transform("echo", "in", function(msg) return string.upper(msg) end)
sb.subscribe("echo.in", function(msg)
  local got = sb.cache.load("got") or ""
  sb.cache.save("got", got .. msg .. ",")
end)
sb.action{ name = "pub", inputs = { msg = { required = true }, topic = { default = "echo.out" } },
  run = function(conn, params) return { delivered = sb.publish(params.topic, params.msg) } end }
sb.action{ name = "got", run = function(conn, params) return { got = sb.cache.load("got") or "" } end }
sb.action{ name = "state", inputs = { name = { required = true } },
  run = function(conn, params)
    local ch, err = sb.channel(params.name)
    if not ch then return { error = err } end
    local st, last = ch:state()
    return { state = st, last = last }
  end }
`

type client struct {
	t *testing.T
	c net.Conn
	r *bufio.Reader
}

func (c *client) do(action string, params map[string]string) map[string]any {
	c.t.Helper()
	b, _ := json.Marshal(map[string]any{"action": action, "params": params})
	if _, err := c.c.Write(append(b, '\n')); err != nil {
		c.t.Fatal(err)
	}
	line, err := c.r.ReadString('\n')
	if err != nil {
		c.t.Fatalf("read: %v", err)
	}
	var m map[string]any
	if err := json.Unmarshal([]byte(line), &m); err != nil {
		c.t.Fatalf("%q: %v", line, err)
	}
	return m
}

func (c *client) waitGot(want string) {
	c.t.Helper()
	var got any
	if !testutil.Poll(testutil.Wait, func() bool { got = c.do("got", nil)["got"]; return got == want }) {
		c.t.Fatalf("topic_in got %q, want %q", got, want)
	}
}

func start(t *testing.T, yaml string) (*harness.Engine, *client) {
	e := harness.Start(t, "socket:\n  listen: 127.0.0.1:0\n"+yaml, harness.Options{Scripts: map[string]string{"chan.lua": script}})
	conn := harness.Dial(t, e.Addr(t, "socket"))
	c := &client{t: t, c: conn, r: bufio.NewReader(conn)}
	if _, err := c.r.ReadString('\n'); err != nil {
		t.Fatal(err)
	}
	return e, c
}

func TestEchoChannelSurvivesUpstreamRestart(t *testing.T) {
	up := startServer(t, func(c net.Conn) { io.Copy(c, c) })
	e, c := start(t, fmt.Sprintf(`channels:
  - name: echo
    run: true
    protocol: text-messages
    protocol.delimiter: '\n'
    protocol.showmessages: true
    permanent: true
    host: localhost
    port: %s
    redirect-in: true
    redirect-out: true
    topic-in: echo.in
    topic-out: echo.out
    reconnectionTimeout: 1
`, up.port()))
	e.Logs.WaitFor(t, "channel up", 10*time.Second)
	if m := c.do("pub", map[string]string{"msg": "a"}); m["delivered"] != float64(1) {
		t.Fatalf("pub: %v", m)
	}
	c.do("pub", map[string]string{"msg": "secret"}) // dropped by the out transform
	c.do("pub", map[string]string{"msg": "b"})
	c.waitGot("A,B,")
	if !strings.Contains(e.Logs.String(), `channel=echo message="\"a\""`) {
		t.Errorf("showmessages line with channel=echo missing")
	}

	up.stop()
	e.Logs.WaitFor(t, "channel down", 10*time.Second)
	if m := c.do("state", map[string]string{"name": "echo"}); m["state"] == "up" {
		t.Fatalf("state after the upstream died: %v", m)
	}
	for _, m := range []string{"c", "d", "e"} {
		c.do("pub", map[string]string{"msg": m})
	}
	up.start(t)
	c.waitGot("A,B,C,D,E,")
	if m := c.do("state", map[string]string{"name": "echo"}); m["state"] != "up" {
		t.Fatalf("state after reconnect: %v", m)
	}
	if m := c.do("state", map[string]string{"name": "nope"}); m["error"] != "no channel named nope" {
		t.Fatalf("unknown channel: %v", m)
	}
	resp, err := http.Get("http://" + e.Addr(t, "admin") + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	for _, want := range []string{
		`switchboard_channel_up{channel="echo"} 1`,
		`switchboard_channel_reconnects_total{channel="echo"} 1`,
		`switchboard_channel_messages_total{channel="echo",direction="out"} 5`,
		`switchboard_channel_messages_total{channel="echo",direction="in"} 5`,
		`switchboard_channel_dropped_total{channel="echo",reason="transform"} 1`,
		`switchboard_channel_buffered{channel="echo"} 0`,
	} {
		if !strings.Contains(string(body), want) {
			t.Errorf("/metrics lacks %s", want)
		}
	}
}

func TestBadUpstreamsKeepEngineUp(t *testing.T) {
	endless := startServer(t, func(c net.Conn) {
		for {
			if _, err := c.Write([]byte(strings.Repeat("x", 4096))); err != nil {
				return
			}
		}
	})
	badXML := startServer(t, func(c net.Conn) { io.WriteString(c, "<a><b></a>"); io.Copy(io.Discard, c) })
	lying := startServer(t, func(c net.Conn) {
		r := bufio.NewReader(c)
		for {
			line, err := r.ReadString('\n')
			if err != nil {
				return
			}
			if line == "\r\n" {
				io.WriteString(c, "HTTP/1.1 200 OK\r\nContent-Length: 1000\r\n\r\nonly this")
				return
			}
		}
	})
	e, c := start(t, fmt.Sprintf(`channels:
  - {name: endless, host: 127.0.0.1, port: %s, permanent: true, max_message_size: 10000, reconnection_timeout: 200ms}
  - {name: badxml, protocol: xml-messages, host: 127.0.0.1, port: %s, permanent: true, reconnection_timeout: 200ms}
  - {name: lying, protocol: http, host: 127.0.0.1, port: %s, permanent: true, reconnection_timeout: 200ms,
     redirect_out: true, topic_out: http.request}
`, endless.port(), badXML.port(), lying.port()))
	e.Logs.WaitFor(t, "channel=lying", 10*time.Second)
	harness.Dial(t, e.Addr(t, "socket")) // a second client is fine too
	c.do("pub", map[string]string{"msg": "x"})
	c.do("pub", map[string]string{"msg": "GET /", "topic": "http.request"})
	for _, want := range []string{"message too long", "element <b> closed by </a>", "got 9 of Content-Length 1000"} {
		e.Logs.WaitFor(t, want, 10*time.Second)
	}
	// Each bad channel reconnected at least once, and the socket server still answers.
	for _, name := range []string{"endless", "badxml", "lying"} {
		ups := 0
		if !testutil.Poll(testutil.Wait, func() bool {
			ups = 0
			for _, l := range strings.Split(e.Logs.String(), "\n") {
				if strings.Contains(l, `msg="channel up"`) && strings.Contains(l, "channel="+name+" ") {
					ups++
				}
			}
			return ups >= 2
		}) {
			t.Errorf("channel %s: %d connections, want a reconnect", name, ups)
		}
	}
	if m := c.do("got", nil); m["context"] != "response" {
		t.Fatalf("socket server after bad upstreams: %v", m)
	}
}

// TestReloadSwapsTransforms: after a reload the next message uses the new script's transform; the
// connection is not touched.
func TestReloadSwapsTransforms(t *testing.T) {
	up := startServer(t, func(c net.Conn) { io.Copy(c, c) })
	e, c := start(t, fmt.Sprintf("channels:\n  - {name: echo, host: 127.0.0.1, port: %s, permanent: true, redirect_in: true, redirect_out: true, topic_in: echo.in, topic_out: echo.out}\n", up.port()))
	e.Logs.WaitFor(t, "channel up", 10*time.Second)
	c.do("pub", map[string]string{"msg": "a"})
	c.waitGot("A,")
	e.WriteScript(t, "chan.lua", strings.Replace(script, "string.upper(msg)", `"<" .. msg .. ">"`, 1))
	if err := e.Reload(context.Background()); err != nil {
		t.Fatal(err)
	}
	c.do("pub", map[string]string{"msg": "b"})
	c.waitGot("A,<b>,")
	if n := strings.Count(e.Logs.String(), `msg="channel up"`); n != 1 {
		t.Errorf("%d connections; a reload must not reconnect", n)
	}
}
