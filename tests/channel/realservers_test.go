package channel

// Active sockets against servers nobody here wrote: nginx, python3 -m http.server and redis-server, each
// started by the test as a child process on a 127.0.0.1 port with its own files in t.TempDir(). `.ci/run`
// installs nginx-light and redis-server; under CI (CI set) a missing binary fails the test, elsewhere the test
// is skipped.

import (
	"bufio"
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/switchboard/switchboard/engine"
	"github.com/switchboard/switchboard/internal/testutil"
	"github.com/switchboard/switchboard/tests/harness"
)

// need returns the path of a program the test runs, or skips (fails under CI) when it is missing.
func need(t *testing.T, name string) string {
	t.Helper()
	p, err := exec.LookPath(name)
	if err != nil {
		if os.Getenv("CI") != "" {
			t.Fatalf("%s is not installed (.ci/run installs it; CI is set, so this is a failure, not a skip): %v", name, err)
		}
		t.Skipf("%s is not installed: %v", name, err)
	}
	return p
}

func freePort(t *testing.T) int {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	return ln.Addr().(*net.TCPAddr).Port
}

// syncBuffer collects a child's output.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}
func (s *syncBuffer) String() string { s.mu.Lock(); defer s.mu.Unlock(); return s.b.String() }

// process is a server started by a test (in the foreground, never as a daemon).
type process struct {
	cmd  *exec.Cmd
	out  *syncBuffer
	done chan struct{}
}

// startProcess runs bin with args in dir and waits until every port in ports accepts connections. The
// process is stopped (SIGCONT, SIGTERM, then SIGKILL after 10 s) when the test ends.
func startProcess(t *testing.T, dir string, ports []int, bin string, args ...string) *process {
	t.Helper()
	p := &process{cmd: exec.Command(bin, args...), out: &syncBuffer{}, done: make(chan struct{})}
	p.cmd.Dir = dir
	p.cmd.Stdout, p.cmd.Stderr = p.out, p.out
	if err := p.cmd.Start(); err != nil {
		t.Fatalf("start %s: %v", bin, err)
	}
	go func() { _ = p.cmd.Wait(); close(p.done) }()
	t.Cleanup(func() {
		_ = p.cmd.Process.Signal(syscall.SIGCONT)
		_ = p.cmd.Process.Signal(syscall.SIGTERM)
		select {
		case <-p.done:
		case <-time.After(10 * time.Second):
			_ = p.cmd.Process.Kill()
			<-p.done
		}
	})
	deadline := time.Now().Add(15 * time.Second)
	for _, port := range ports {
		for {
			c, err := net.DialTimeout("tcp", fmt.Sprintf("127.0.0.1:%d", port), time.Second)
			if err == nil {
				c.Close()
				break
			}
			select {
			case <-p.done:
				t.Fatalf("%s exited: %s", bin, p.out.String())
			default:
			}
			if time.Now().After(deadline) {
				t.Fatalf("%s not listening on %d: %s", bin, port, p.out.String())
			}
			time.Sleep(20 * time.Millisecond)
		}
	}
	return p
}

func (p *process) signal(t *testing.T, sig syscall.Signal) {
	t.Helper()
	if err := p.cmd.Process.Signal(sig); err != nil {
		t.Fatal(err)
	}
}

const realScript = `
local sb = require "switchboard"
-- the documented example: drop every response but a 200
sb.transform("webt", "in", function(r) if r.status ~= 200 then return nil end return r end)
sb.subscribe("web.in", function(r)
  sb.cache.save("web.in", (sb.cache.load("web.in") or 0) + 1)
  -- responses to what was published on web.out (requests "?tN"), apart from the replies to request()
  -- that redirect_in also publishes here
  if type(r) == "table" and tostring(r.body):find("?t", 1, true) then
    sb.cache.save("web.in.t", (sb.cache.load("web.in.t") or 0) + 1)
  end
end)
sb.action{ name = "req", timeout = 20000,
  inputs = { ch = { required = true }, msg = {}, json = {}, ms = { default = "5000" } },
  run = function(conn, params)
    local msg = params.msg
    if params.json then msg = sb.json.decode(params.json) end
    local r, err = sb.channel(params.ch):request(msg, tonumber(params.ms))
    if r == nil then return { err = err } end
    return { reply = r }
  end }
sb.action{ name = "pub", inputs = { topic = { required = true }, msg = { required = true } },
  run = function(conn, params) return { n = sb.publish(params.topic, params.msg) } end }
sb.action{ name = "recv", inputs = { ch = { required = true } },
  run = function(conn, params)
    local msg, err = sb.channel(params.ch):receive(2000)
    return { msg = msg, err = err }
  end }
sb.action{ name = "count", inputs = { key = { required = true } },
  run = function(conn, params) return { n = sb.cache.load(params.key) or 0 } end }
sb.action{ name = "state", inputs = { ch = { required = true } },
  run = function(conn, params)
    local st, last = sb.channel(params.ch):state()
    return { state = st, last = last }
  end }
`

// realEngine starts the engine with realScript and returns a function that opens a socket client.
func realEngine(t *testing.T, yaml string) (*harness.Engine, func() *client) {
	t.Helper()
	e := harness.Start(t, "socket:\n  listen: 127.0.0.1:0\n  simultaneous_actions: 50\n"+yaml,
		harness.Options{Scripts: map[string]string{"real.lua": realScript}})
	return e, func() *client {
		conn := harness.Dial(t, e.Addr(t, "socket"))
		c := &client{t: t, c: conn, r: bufio.NewReader(conn)}
		if _, err := c.r.ReadString('\n'); err != nil {
			t.Fatal(err)
		}
		return c
	}
}

// reply is the req action's answer: the channel's reply, or its error.
func (c *client) req(params map[string]string) (any, string) {
	c.t.Helper()
	m := c.do("req", params)
	if e, ok := m["err"].(string); ok {
		return nil, e
	}
	if e, ok := m["error"].(string); ok {
		c.t.Fatalf("action failed: %s", e)
	}
	return m["reply"], ""
}

func jsonParam(t *testing.T, v any) string {
	b, err := json.Marshal(v)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

// parallel runs n calls of fn at once, each with its own socket client.
func parallel(n int, dial func() *client, fn func(i int, c *client)) {
	clients := make([]*client, n)
	for i := range clients {
		clients[i] = dial()
	}
	var wg sync.WaitGroup
	for i := 0; i < n; i++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			fn(i, clients[i])
		}()
	}
	wg.Wait()
}

func metrics(t *testing.T, e *harness.Engine) string {
	t.Helper()
	resp, err := http.Get("http://" + e.Addr(t, "admin") + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return string(b)
}

func TestNginx(t *testing.T) {
	bin := need(t, "nginx")
	dir := t.TempDir()
	www := filepath.Join(dir, "www")
	if err := os.MkdirAll(www, 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(www, "file.txt"), []byte("a static file\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(www, "big.bin"), bytes.Repeat([]byte("b"), 3_000_000), 0o644); err != nil {
		t.Fatal(err)
	}
	port, other := freePort(t), freePort(t)
	conf := fmt.Sprintf(`daemon off;
master_process off;
worker_processes 1;
pid %[1]s/nginx.pid;
error_log %[1]s/error.log warn;
events { worker_connections 256; }
http {
  access_log off;
  client_body_temp_path %[1]s/body;
  proxy_temp_path %[1]s/proxy;
  fastcgi_temp_path %[1]s/fastcgi;
  uwsgi_temp_path %[1]s/uwsgi;
  scgi_temp_path %[1]s/scgi;
  default_type text/plain;
  keepalive_requests 3;
  server {
    listen 127.0.0.1:%[2]d;
    root %[1]s/www;
    location = /echo { return 200 "echo $request_method $request_uri"; }
  }
  server {
    listen 127.0.0.1:%[3]d;
    location / { return 200 "other $request_uri $http_host"; }
  }
}
`, dir, port, other)
	if err := os.WriteFile(filepath.Join(dir, "nginx.conf"), []byte(conf), 0o644); err != nil {
		t.Fatal(err)
	}
	startProcess(t, dir, []int{port, other}, bin, "-e", filepath.Join(dir, "error.log"), "-p", dir, "-c", filepath.Join(dir, "nginx.conf"))
	nowhere := freePort(t)

	e, dial := realEngine(t, fmt.Sprintf(`channels:
  - {name: web, protocol: http, host: 127.0.0.1, port: %[1]d, permanent: true, reconnection_timeout: 1h, reconnect_max: 1h,
     redirect_in: true, redirect_out: true, topic_in: web.in, topic_out: web.out}
  - {name: webt, protocol: http, host: 127.0.0.1, port: %[1]d, permanent: true, reconnection_timeout: 1h, reconnect_max: 1h}
  - {name: small, protocol: http, host: 127.0.0.1, port: %[1]d, permanent: true, reconnection_timeout: 100ms,
     max_message_size: 1000000}
  - {name: follow, protocol: http, host: 127.0.0.1, port: %[1]d, follow_absolute: true}
  - {name: nowhere, protocol: http, host: 127.0.0.1, port: %[2]d, permanent: true, reconnection_timeout: 50ms}
`, port, nowhere))
	c := dial()
	e.Logs.WaitFor(t, "channel up", 10*time.Second)

	t.Run("item 3: keepalive_requests 3 with pipelined requests", func(t *testing.T) {
		parallel(6, dial, func(i int, c *client) {
			r, err := c.req(map[string]string{"ch": "web", "msg": fmt.Sprintf("GET /echo?%d", i)})
			if want := fmt.Sprintf("echo GET /echo?%d", i); err != "" || r.(map[string]any)["body"] != want {
				t.Errorf("request %d: %v %s", i, r, err)
			}
		})
		// counted apart: the replies to the requests above reach web.in too (redirect_in), some of them
		// perhaps only after this point, so a count of web.in read here would not be a stable base
		for i := 0; i < 6; i++ {
			c.do("pub", map[string]string{"topic": "web.out", "msg": fmt.Sprintf("GET /echo?t%d", i)})
		}
		testutil.WaitFor(t, "web.in to get 6 responses for 6 requests", func() bool {
			return c.do("count", map[string]string{"key": "web.in.t"})["n"].(float64) == 6
		})
		if m := metrics(t, e); strings.Contains(m, `switchboard_channel_dropped_total{channel="web"`) {
			t.Errorf("web dropped messages:\n%s", m)
		}
	})

	t.Run("item 12: HEAD pipelined with GET", func(t *testing.T) {
		parallel(6, dial, func(i int, c *client) {
			if i%2 == 0 {
				r, err := c.req(map[string]string{"ch": "web", "msg": "HEAD /file.txt"})
				m, _ := r.(map[string]any)
				if err != "" || m["status"] != float64(200) || m["body"] != "" || m["headers"].(map[string]any)["Content-Length"] != "14" {
					t.Errorf("HEAD: %v %s", r, err)
				}
				return
			}
			r, err := c.req(map[string]string{"ch": "web", "msg": "GET /file.txt"})
			if err != "" || r.(map[string]any)["body"] != "a static file\n" {
				t.Errorf("GET: %v %s", r, err)
			}
		})
	})

	t.Run("item 2: 100 Continue", func(t *testing.T) {
		r, err := c.req(map[string]string{"ch": "web", "json": jsonParam(t, map[string]any{"method": "POST", "path": "/echo",
			"body": "abc", "headers": map[string]any{"Expect": "100-continue"}})})
		if m, _ := r.(map[string]any); err != "" || m["status"] != float64(200) || m["body"] != "echo POST /echo" {
			t.Fatalf("POST with Expect: %v %s", r, err)
		}
		r, err = c.req(map[string]string{"ch": "web", "msg": "GET /echo?after"})
		if err != "" || r.(map[string]any)["body"] != "echo GET /echo?after" {
			t.Fatalf("GET after the POST: %v %s", r, err)
		}
	})

	t.Run("item 1: the documented in transform", func(t *testing.T) {
		for i := 0; i < 3; i++ {
			if _, err := c.req(map[string]string{"ch": "webt", "msg": "GET /missing"}); !strings.Contains(err, "reply dropped by the in transform") {
				t.Fatalf("404: %s", err)
			}
			r, err := c.req(map[string]string{"ch": "webt", "msg": "GET /echo?ok"})
			if err != "" || r.(map[string]any)["body"] != "echo GET /echo?ok" {
				t.Fatalf("after a 404: %v %s", r, err)
			}
		}
	})

	t.Run("item 6: the caller sees the size limit", func(t *testing.T) {
		_, err := c.req(map[string]string{"ch": "small", "msg": "GET /big.bin"})
		if !strings.Contains(err, "Content-Length 3000000 over max 1000000") {
			t.Fatalf("3 MB body: %s", err)
		}
		testutil.WaitFor(t, "an answer after the big body", func() bool {
			r, err := c.req(map[string]string{"ch": "small", "msg": "GET /echo?next"})
			return err == "" && r.(map[string]any)["body"] == "echo GET /echo?next"
		})
	})

	t.Run("item 12: absolute URLs", func(t *testing.T) {
		foreign := fmt.Sprintf("GET http://127.0.0.1:%d/x?y", other)
		if _, err := c.req(map[string]string{"ch": "web", "msg": foreign}); !strings.Contains(err, "set follow_absolute: true") {
			t.Fatalf("foreign URL without follow_absolute: %s", err)
		}
		r, err := c.req(map[string]string{"ch": "follow", "msg": foreign})
		if want := fmt.Sprintf("other /x?y 127.0.0.1:%d", other); err != "" || r.(map[string]any)["body"] != want {
			t.Fatalf("followed: %v %s", r, err)
		}
		r, err = c.req(map[string]string{"ch": "web", "msg": fmt.Sprintf("GET http://127.0.0.1:%d/echo?own", port)})
		if err != "" || r.(map[string]any)["body"] != "echo GET /echo?own" {
			t.Fatalf("own absolute URL: %v %s", r, err)
		}
	})

	t.Run("item 5: a refused connection shows", func(t *testing.T) {
		m := c.do("state", map[string]string{"ch": "nowhere"})
		if m["state"] != "down" || !strings.Contains(fmt.Sprint(m["last"]), "connection refused") {
			t.Fatalf("state of a channel to a closed port: %v", m)
		}
	})
}

// Item 3: python's http.server answers in HTTP/1.0 and closes after each response; every request is served,
// at once, although reconnection_timeout is an hour.
func TestPythonHTTPServer(t *testing.T) {
	py := need(t, "python3")
	dir := t.TempDir()
	if err := os.WriteFile(filepath.Join(dir, "hello.txt"), []byte("hello from python\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	port := freePort(t)
	startProcess(t, dir, []int{port}, py, "-m", "http.server", fmt.Sprint(port), "--bind", "127.0.0.1", "--directory", dir)
	e, dial := realEngine(t, fmt.Sprintf(`channels:
  - {name: py, protocol: http, host: 127.0.0.1, port: %d, permanent: true, reconnection_timeout: 1h, reconnect_max: 1h}
`, port))
	e.Logs.WaitFor(t, "channel up", 10*time.Second)
	for round := 0; round < 3; round++ {
		parallel(4, dial, func(i int, c *client) {
			r, err := c.req(map[string]string{"ch": "py", "msg": "GET /hello.txt", "ms": "10000"})
			m, _ := r.(map[string]any)
			if err != "" || m["status"] != float64(200) || m["body"] != "hello from python\n" || m["proto"] != "HTTP/1.0" {
				t.Errorf("round %d request %d: %v %s", round, i, r, err)
			}
		})
	}
	if n := strings.Count(e.Logs.String(), "channel down"); n != 0 {
		t.Errorf("%d 'channel down' lines for a server that closes after each response", n)
	}
}

func TestRedis(t *testing.T) {
	bin := need(t, "redis-server")
	dir := t.TempDir()
	port := freePort(t)
	redis := startProcess(t, dir, []int{port}, bin, "--port", fmt.Sprint(port), "--bind", "127.0.0.1", "--save", "",
		"--appendonly", "no", "--dir", dir, "--daemonize", "no")
	e, dial := realEngine(t, fmt.Sprintf(`channels:
  - {name: redis, protocol: resp, host: 127.0.0.1, port: %[1]d, permanent: true, reconnection_timeout: 100ms,
     reconnect_max: 500ms, heartbeat: PING, heartbeat_interval: 200ms, heartbeat_timeout: 600ms}
  - {name: redistext, protocol: text-messages, delimiter: '\r\n', host: 127.0.0.1, port: %[1]d, permanent: true}
`, port))
	c := dial()
	e.Logs.WaitFor(t, "channel=redistext", 10*time.Second)
	testutil.WaitFor(t, "the resp channel to be up", func() bool { return c.do("state", map[string]string{"ch": "redis"})["state"] == "up" })

	t.Run("item 11: resp pairs multi-line replies", func(t *testing.T) {
		r, err := c.req(map[string]string{"ch": "redis", "json": jsonParam(t, []any{"RPUSH", "list", "a", "b c", "d\r\ne"})})
		if err != "" || r != float64(3) {
			t.Fatalf("RPUSH: %v %s", r, err)
		}
		parallel(12, dial, func(i int, c *client) {
			var r any
			var err string
			switch i % 4 {
			case 0:
				r, err = c.req(map[string]string{"ch": "redis", "msg": "LRANGE list 0 -1"})
				if got := fmt.Sprint(r); err != "" || got != "[a b c d\r\ne]" {
					t.Errorf("LRANGE: %q %s", got, err)
				}
			case 1:
				r, err = c.req(map[string]string{"ch": "redis", "msg": "GET missing"})
				if err != "" || r != false {
					t.Errorf("GET of a missing key: %v %s", r, err)
				}
			case 2:
				r, err = c.req(map[string]string{"ch": "redis", "msg": "NOPE x"})
				if m, _ := r.(map[string]any); err != "" || !strings.HasPrefix(fmt.Sprint(m["err"]), "ERR unknown command 'NOPE'") {
					t.Errorf("unknown command: %v %s", r, err)
				}
			case 3:
				r, err = c.req(map[string]string{"ch": "redis", "msg": "INCR counter"})
				if _, ok := r.(float64); err != "" || !ok {
					t.Errorf("INCR: %v %s", r, err)
				}
			}
		})
	})

	t.Run("item 11: the documented limit of text-messages", func(t *testing.T) {
		// An inline command whose reply takes several lines: each line is a message, so the request gets the
		// first line only; the others answer nothing (here they wait for ch:receive; a request made before
		// they arrived would have got the second line).
		r, err := c.req(map[string]string{"ch": "redistext", "msg": "LRANGE list 0 -1"})
		if err != "" || r != "*3" {
			t.Fatalf("LRANGE on text-messages: %v %s", r, err)
		}
		for _, want := range []string{"$1", "a", "$3", "b c"} {
			if m := c.do("recv", map[string]string{"ch": "redistext"}); m["msg"] != want {
				t.Fatalf("next line: %v, want %q", m, want)
			}
		}
	})

	t.Run("item 8: a stopped server is detected and never shown up", func(t *testing.T) {
		redis.signal(t, syscall.SIGSTOP)
		var m map[string]any
		testutil.WaitFor(t, "a stopped redis to show down", func() bool {
			m = c.do("state", map[string]string{"ch": "redis"})
			return m["state"] != "up"
		})
		if !strings.Contains(fmt.Sprint(m["last"]), "heartbeat") {
			t.Fatalf("down without the heartbeat reason: %v", m)
		}
		// Reconnects land in the stopped server's listen queue: the kernel accepts, the server never answers.
		for deadline := time.Now().Add(1500 * time.Millisecond); time.Now().Before(deadline); {
			if m := c.do("state", map[string]string{"ch": "redis"}); m["state"] == "up" {
				t.Fatalf("up while the server is stopped: %v", m)
			}
			time.Sleep(20 * time.Millisecond)
		}
		redis.signal(t, syscall.SIGCONT)
		testutil.WaitFor(t, "up again after SIGCONT", func() bool { return c.do("state", map[string]string{"ch": "redis"})["state"] == "up" })
		if r, err := c.req(map[string]string{"ch": "redis", "msg": "PING"}); err != "" || r != "PONG" {
			t.Fatalf("PING after SIGCONT: %v %s", r, err)
		}
	})
}

// Item 10: redirect_in without permanent connects; an explicit permanent: false that nothing would connect
// is refused by the configuration check (what `switchboard check` runs) with the reason.
func TestRedirectInConfig(t *testing.T) {
	up := startServer(t, func(c net.Conn) { io.WriteString(c, "hello\n"); io.Copy(io.Discard, c) })
	e, dial := realEngine(t, fmt.Sprintf(`channels:
  - {name: feed, host: 127.0.0.1, port: %s, redirect_in: true, topic_in: web.in}
`, up.port()))
	e.Logs.WaitFor(t, "channel up", 10*time.Second)
	c := dial()
	if m := c.do("state", map[string]string{"ch": "feed"}); m["state"] != "up" {
		t.Fatalf("redirect_in channel without permanent: %v", m)
	}
	f := filepath.Join(t.TempDir(), "switchboard.yaml")
	os.WriteFile(f, []byte("channels:\n  - {name: feed, host: 127.0.0.1, port: 1, redirect_in: true, topic_in: t, permanent: false}\n"), 0o644)
	_, err := engine.LoadConfig(engine.ConfigSource{File: f})
	if err == nil || !strings.Contains(err.Error(), "channels[0].permanent: false with redirect_in: true") {
		t.Fatalf("check: %v", err)
	}
}
