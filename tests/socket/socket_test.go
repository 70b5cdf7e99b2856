// Package socket tests the socket server end to end: the engine started from YAML with the shipped
// scripts, driven over real TCP and TLS connections, and by the third-party actionhero-node-client.
package socket

import (
	"bufio"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"go.uber.org/goleak"

	"github.com/switchboard/switchboard/engine"
	"github.com/switchboard/switchboard/internal/testutil"
	"github.com/switchboard/switchboard/tests/harness"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

const plainYAML = "socket:\n  listen: 127.0.0.1:0\n"

// client speaks the line protocol over any connection.
type client struct {
	t *testing.T
	c net.Conn
	r *bufio.Reader
}

func newClient(t *testing.T, c net.Conn) *client {
	t.Cleanup(func() { c.Close() })
	return &client{t: t, c: c, r: bufio.NewReader(c)}
}

func dial(t *testing.T, addr string) *client { return newClient(t, harness.Dial(t, addr)) }

func (c *client) send(s string) {
	c.t.Helper()
	if _, err := c.c.Write([]byte(s)); err != nil {
		c.t.Fatalf("write: %v", err)
	}
}

// line reads one reply: JSON, ended by \r\n.
func (c *client) line() string {
	c.t.Helper()
	_ = c.c.SetReadDeadline(time.Now().Add(10 * time.Second))
	s, err := c.r.ReadString('\n')
	if err != nil {
		c.t.Fatalf("read: %v (partial %q)", err, s)
	}
	if !strings.HasSuffix(s, "\r\n") {
		c.t.Fatalf("reply %q does not end in \\r\\n", s)
	}
	s = strings.TrimSuffix(s, "\r\n")
	if !json.Valid([]byte(s)) {
		c.t.Fatalf("reply is not JSON: %q", s)
	}
	return s
}

func (c *client) do(req string) string {
	c.t.Helper()
	c.send(req + "\r\n")
	return c.line()
}

func (c *client) expectClosed() {
	c.t.Helper()
	_ = c.c.SetReadDeadline(time.Now().Add(10 * time.Second))
	if s, err := c.r.ReadString('\n'); err == nil {
		c.t.Fatalf("expected the server to close, got %q", s)
	}
}

// match checks a reply against a pattern in which UUID, MS, NUM and PORT stand for values checked by shape.
func match(t *testing.T, got, pattern string) []string {
	t.Helper()
	re := regexp.QuoteMeta(pattern)
	re = strings.NewReplacer(
		"UUID", `([0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12})`,
		"MS", `(1[0-9]{12})`,
		"NUM", `(-?[0-9.e+-]+)`,
		"PORT", `([0-9]{1,5})`,
	).Replace(re)
	m := regexp.MustCompile("^" + re + "$").FindStringSubmatch(got)
	if m == nil {
		t.Fatalf("reply\n got %s\nwant %s", got, pattern)
	}
	return m[1:]
}

// seedSession replays the documented session (socket.md §3, seed 002) and checks every field.
func seedSession(t *testing.T, c *client) {
	match(t, c.line(), `{"welcome":"Hello! Welcome to the switchboard api","context":"api"}`)
	d := match(t, c.do("detailsView"), `{"status":"OK","context":"response","data":{"id":"UUID","fingerprint":"UUID","remoteIP":"127.0.0.1","remotePort":PORT,"params":{},"connectedAt":MS,"rooms":[],"totalActions":0,"pendingActions":0},"messageId":"UUID","messageCount":1}`)
	id := d[0]
	if d[1] != id || d[4] == id {
		t.Fatalf("fingerprint %s / messageId %s vs id %s", d[1], d[4], id)
	}
	r := match(t, c.do("randomNumber"), `{"randomNumber":NUM,"stringRandomNumber":"Your random number is NUM","context":"response","messageId":"UUID","messageCount":2}`)
	if r[0] != r[1] {
		t.Fatalf("randomNumber %s but string says %s", r[0], r[1])
	}
	match(t, c.do("cacheTest"), `{"error":"key is a required parameter for this action","context":"response","messageId":"UUID","messageCount":3}`)
	match(t, c.do("paramAdd key=myKey"), `{"status":"OK","context":"response","messageId":"UUID","messageCount":4}`)
	match(t, c.do("paramAdd value=myValue"), `{"status":"OK","context":"response","messageId":"UUID","messageCount":5}`)
	match(t, c.do("paramsView"), `{"status":"OK","context":"response","data":{"action":"cacheTest","key":"myKey","value":"myValue"},"messageId":"UUID","messageCount":6}`)
	ct := match(t, c.do("cacheTest"), `{"cacheTestResults":{"saveResp":true,"sizeResp":NUM,"loadResp":{"key":"cacheTest_myKey","value":"myValue","expireTimestamp":MS,"createdAt":MS,"lastReadAt":null},"deleteResp":true},"context":"response","messageId":"UUID","messageCount":7}`)
	var expire, created int64
	fmt.Sscan(ct[1], &expire)
	fmt.Sscan(ct[2], &created)
	if expire-created != 5000 {
		t.Fatalf("expireTimestamp - createdAt = %d, want 5000", expire-created)
	}
	match(t, c.do("roomAdd defaultRoom"), `{"status":"OK","context":"response","data":true,"messageId":"UUID","messageCount":8}`)
	match(t, c.do("say defaultRoom hooray!"), `{"status":"OK","context":"response","messageId":"UUID","messageCount":9}`)
	b := match(t, c.line(), `{"message":"hooray!","room":"defaultRoom","from":"UUID","context":"user","sentAt":MS}`)
	if b[0] != id {
		t.Fatalf("broadcast from %s, want the sender %s", b[0], id)
	}
	match(t, c.do("quit"), `{"status":"Bye!","context":"api"}`)
	c.expectClosed()
}

func TestSeedSessionTCP(t *testing.T) {
	e := harness.Start(t, plainYAML, harness.Options{})
	seedSession(t, dial(t, e.Addr(t, "socket")))
	resp, err := http.Get("http://" + e.Addr(t, "admin") + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	for _, want := range []string{
		`switchboard_socket_requests_total{kind="action",name="randomNumber"} 1`,
		`switchboard_socket_requests_total{kind="action",name="cacheTest"} 2`,
		`switchboard_socket_requests_total{kind="verb",name="say"} 1`,
		`switchboard_socket_connections_total 1`,
		`switchboard_socket_action_duration_seconds_count{action="cacheTest"} 2`,
	} {
		if !strings.Contains(string(body), want) {
			t.Errorf("/metrics lacks %s", want)
		}
	}
	e.Logs.WaitFor(t, "listening", time.Second)
	if !regexp.MustCompile(`msg=listening.*part=socket|part=socket.*msg=listening`).MatchString(e.Logs.String()) {
		t.Fatalf("no listening line with part=socket in\n%s", e.Logs.String())
	}
}

func TestSeedSessionTLS(t *testing.T) {
	pair := testutil.SelfSigned(t)
	cert, key := pair.CertFile, pair.KeyFile
	e := harness.Start(t, fmt.Sprintf("socket:\n  listen: 127.0.0.1:0\n  secure: true\n  tls:\n    cert: %s\n    key: %s\n", cert, key), harness.Options{})
	addr := e.Addr(t, "socket")
	pool := x509.NewCertPool()
	pemBytes, _ := os.ReadFile(cert)
	pool.AppendCertsFromPEM(pemBytes)
	tc, err := tls.DialWithDialer(&net.Dialer{Timeout: 5 * time.Second}, "tcp", addr, &tls.Config{RootCAs: pool, ServerName: "localhost"})
	if err != nil {
		t.Fatal(err)
	}
	seedSession(t, newClient(t, tc))

	// A plaintext client on the TLS port gets no protocol reply.
	plain := dial(t, addr)
	plain.send("randomNumber\n")
	_ = plain.c.SetReadDeadline(time.Now().Add(5 * time.Second))
	if s, _ := plain.r.ReadString('\n'); strings.Contains(s, "randomNumber") {
		t.Fatalf("plaintext client was answered: %q", s)
	}
}

func TestTenPipelinedRequests(t *testing.T) {
	e := harness.Start(t, "socket:\n  listen: 127.0.0.1:0\n  simultaneous_actions: 10\n", harness.Options{})
	c := dial(t, e.Addr(t, "socket"))
	c.line()
	var b strings.Builder
	for i := 1; i <= 10; i++ {
		switch i % 3 {
		case 0:
			fmt.Fprintf(&b, `{"action":"cacheTest","params":{"messageId":"req-%d","key":"key%d","value":"value%d"}}`+"\n", i, i, i)
		case 1:
			fmt.Fprintf(&b, `{"action":"randomNumber","params":{"messageId":"req-%d"}}`+"\n", i)
		case 2:
			fmt.Fprintf(&b, `{"action":"sleepTest","params":{"messageId":"req-%d","sleepDuration":20}}`+"\n", i)
		}
	}
	c.send(b.String()) // one write
	seen := map[string]bool{}
	for i := 0; i < 10; i++ {
		var r struct {
			MessageID    string `json:"messageId"`
			MessageCount int    `json:"messageCount"`
			Error        string `json:"error"`
		}
		line := c.line()
		if err := json.Unmarshal([]byte(line), &r); err != nil || r.Error != "" {
			t.Fatalf("reply %s (%v)", line, err)
		}
		if want := fmt.Sprintf("req-%d", r.MessageCount); r.MessageID != want || seen[want] {
			t.Fatalf("reply %s: want messageId %s once", line, want)
		}
		seen[r.MessageID] = true
	}
	// Verbs pipelined with actions keep their own ids (the reference gives a verb the next line's id).
	c.send("paramAdd messageId=v1\nroomAdd defaultRoom\nparamAdd messageId=v2\nrandomNumber\n")
	got := []string{c.line(), c.line(), c.line(), c.line()}
	match(t, got[1], `{"status":"OK","context":"response","data":true,"messageId":"v1","messageCount":12}`)
	match(t, got[3], `{"randomNumber":NUM,"stringRandomNumber":"Your random number is NUM","context":"response","messageId":"v2","messageCount":14}`)
}

const badScript = `
local sb = require "switchboard"
sb.action{ name = "raises", run = function(conn, params) local t = nil; return t.field end }
sb.action{ name = "forever", timeout = 300, run = function(conn, params) while true do end end }
sb.verb("big", function(conn, args) return string.rep("x", 65536) end)
`

func scriptsWith(t *testing.T, extra string) map[string]string {
	t.Helper()
	actions, err := os.ReadFile(filepath.Join(harness.Root(), "scripts", "actions.lua"))
	if err != nil {
		t.Fatal(err)
	}
	return map[string]string{"actions.lua": string(actions), "bad.lua": extra}
}

func TestBadInput(t *testing.T) {
	e := harness.Start(t, "socket:\n  listen: 127.0.0.1:0\n  outbound_queue: 16\n", harness.Options{Scripts: scriptsWith(t, badScript)})
	addr := e.Addr(t, "socket")
	bystander := dial(t, addr)
	bystander.line()
	stillServed := func(t *testing.T) {
		t.Helper()
		match(t, bystander.do("paramsView"), `{"status":"OK","context":"response","data":{},"messageId":"UUID","messageCount":NUM}`)
	}

	t.Run("10MB without a delimiter", func(t *testing.T) {
		c := dial(t, addr)
		c.line()
		errc := make(chan error, 1)
		go func() {
			chunk := []byte(strings.Repeat("z", 1<<20))
			for i := 0; i < 10; i++ {
				if _, err := c.c.Write(chunk); err != nil {
					errc <- err
					return
				}
			}
			_, err := c.c.Write([]byte("\nrandomNumber\n"))
			errc <- err
		}()
		match(t, c.line(), `{"status":"error","error":"data length is too big (more than 1048576 received/1048576 max)","context":"response","messageId":"UUID","messageCount":1}`)
		stillServed(t)
		match(t, c.line(), `{"randomNumber":NUM,"stringRandomNumber":"Your random number is NUM","context":"response","messageId":"UUID","messageCount":2}`)
		if err := <-errc; err != nil {
			t.Fatal(err)
		}
	})
	t.Run("invalid UTF-8", func(t *testing.T) {
		c := dial(t, addr)
		c.line()
		match(t, c.do("\xff\xfe\xfd"), `{"error":"unknown action or invalid apiVersion","context":"response","messageId":"UUID","messageCount":1}`)
		match(t, c.do("paramView action"), "{\"status\":\"OK\",\"context\":\"response\",\"data\":\"\ufffd\ufffd\ufffd\",\"messageId\":\"UUID\",\"messageCount\":2}")
		stillServed(t)
	})
	t.Run("malformed JSON", func(t *testing.T) {
		c := dial(t, addr)
		c.line()
		match(t, c.do(`{"action":"randomNumber","params":{`), `{"error":"unknown action or invalid apiVersion","context":"response","messageId":"UUID","messageCount":1}`)
		stillServed(t)
	})
	t.Run("unknown action", func(t *testing.T) {
		c := dial(t, addr)
		c.line()
		match(t, c.do("noSuchAction"), `{"error":"unknown action or invalid apiVersion","context":"response","messageId":"UUID","messageCount":1}`)
		match(t, c.do(`{"action":"noSuchAction"}`), `{"error":"unknown action or invalid apiVersion","context":"response","messageId":"UUID","messageCount":2}`)
		stillServed(t)
	})
	t.Run("Lua action that raises", func(t *testing.T) {
		c := dial(t, addr)
		c.line()
		match(t, c.do("raises"), `{"error":"attempt to index a non-table object(nil) with key 'field'","context":"response","messageId":"UUID","messageCount":1}`)
		stillServed(t)
		e.Logs.WaitFor(t, "scripts/bad.lua:3:", 2*time.Second)
	})
	t.Run("Lua action that never returns", func(t *testing.T) {
		c := dial(t, addr)
		c.line()
		c.send("forever\n")
		stillServed(t) // answered while the other connection's action spins
		// The spinning action does not hold up its own connection either (its reader hands over, doc.go).
		match(t, c.do("randomNumber"), `{"randomNumber":NUM,"stringRandomNumber":"Your random number is NUM","context":"response","messageId":"UUID","messageCount":2}`)
		match(t, c.line(), `{"error":"the action forever did not finish within its time limit of 300ms","context":"response","messageId":"UUID","messageCount":1}`)
		match(t, c.do("randomNumber"), `{"randomNumber":NUM,"stringRandomNumber":"Your random number is NUM","context":"response","messageId":"UUID","messageCount":3}`)
	})
	t.Run("client that never reads", func(t *testing.T) {
		raw, err := net.Dial("tcp", addr)
		if err != nil {
			t.Fatal(err)
		}
		defer raw.Close()
		_ = raw.(*net.TCPConn).SetReadBuffer(4096)
		done := make(chan struct{})
		go func() {
			defer close(done)
			for i := 0; i < 4000; i++ {
				if _, err := raw.Write([]byte("big\n")); err != nil {
					return // the server hung up
				}
			}
		}()
		e.Logs.WaitFor(t, "client is not reading: outbound queue full, disconnecting", 20*time.Second)
		<-done
		stillServed(t)
	})
}

func TestReloadAppliesToNewRequests(t *testing.T) {
	e := harness.Start(t, plainYAML, harness.Options{Scripts: map[string]string{"a.lua": `
local sb = require "switchboard"
sb.action{ name = "version", run = function() return { version = 1 } end }`}})
	c := dial(t, e.Addr(t, "socket"))
	c.line()
	match(t, c.do("version"), `{"version":1,"context":"response","messageId":"UUID","messageCount":1}`)
	e.WriteScript(t, "a.lua", `
local sb = require "switchboard"
sb.action{ name = "version", run = function() return { version = 2 } end }`)
	if err := e.Reload(t.Context()); err != nil {
		t.Fatal(err)
	}
	match(t, c.do("version"), `{"version":2,"context":"response","messageId":"UUID","messageCount":2}`)
}

const nodeScript = `
const Client = require(process.env.CLIENT_MODULE).default;
const port = Number(process.argv[2]);
const withTimeout = (p, ms, what) => Promise.race([p, new Promise((_, rej) => setTimeout(() => rej(new Error("timeout: " + what)), ms))]);
(async () => {
  const out = {};
  const a = new Client();
  const b = new Client();
  const errors = [];
  a.on("error", (e) => errors.push(String(e)));
  b.on("error", (e) => errors.push(String(e)));
  const details = await a.connect({ host: "127.0.0.1", port, timeout: 5000 });
  out.details = details;
  const ct = await a.actionWithParams("cacheTest", { key: "nodeKey", value: "nodeValue" });
  out.cacheTest = { error: ct.error && ct.error.message, data: ct.data };
  const bad = await a.actionWithParams("cacheTest", { key: "ab", value: "nodeValue" });
  out.cacheTestBad = { error: bad.error && bad.error.message };
  const rn = await a.action("randomNumber");
  out.randomNumber = rn.data;
  // the client's own test: action("status") has no error, uptime above 0 and context "response"
  const st = await a.action("status");
  out.status = { error: st.error && st.error.message, data: st.data };
  await a.roomAdd("defaultRoom");
  await b.connect({ host: "127.0.0.1", port, timeout: 5000 });
  await b.roomAdd("defaultRoom");
  const heard = new Promise((resolve) => b.on("say", resolve));
  await a.say("defaultRoom", "hello from node");
  out.heard = await withTimeout(heard, 5000, "say");
  out.aId = a.id;
  await a.disconnect();
  await b.disconnect();
  console.log(JSON.stringify(out));
  process.exit(0);
})().catch((e) => { console.error(e); process.exit(1); });
`

// skipOrFail skips a test whose third-party tool is missing on a developer's machine, but fails it under CI
// (CI set): CI must not pass with the third-party client silently skipped.
func skipOrFail(t *testing.T, why string) {
	t.Helper()
	if os.Getenv("CI") != "" {
		t.Fatalf("%s (CI is set, so this is a failure, not a skip)", why)
	}
	t.Skip(why)
}

func TestActionheroNodeClient(t *testing.T) {
	dir := os.Getenv("SB_ACTIONHERO_CLIENT_DIR")
	module := filepath.Join(dir, "node_modules", "actionhero-node-client")
	if _, err := exec.LookPath("node"); err != nil {
		skipOrFail(t, "node is not installed; .ci/run installs it with the client (tests/socket/install-client.sh)")
	}
	if _, err := os.Stat(filepath.Join(module, "dist", "client.js")); dir == "" || err != nil {
		skipOrFail(t, "actionhero-node-client not found: run  export SB_ACTIONHERO_CLIENT_DIR=\"$(tests/socket/install-client.sh)\"")
	}
	e := harness.Start(t, plainYAML, harness.Options{})
	_, port, _ := net.SplitHostPort(e.Addr(t, "socket"))
	script := filepath.Join(t.TempDir(), "client.js")
	if err := os.WriteFile(script, []byte(nodeScript), 0o644); err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command("node", script, port)
	cmd.Env = append(os.Environ(), "CLIENT_MODULE="+module)
	var stderr strings.Builder
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("node client: %v\n%s\n%s", err, out, stderr.String())
	}
	var r struct {
		Details struct {
			Status string
			Data   struct{ ID, RemoteIP string }
		}
		CacheTest struct {
			Error *string
			Data  struct {
				CacheTestResults struct {
					SaveResp, DeleteResp bool
					LoadResp             struct{ Key, Value string }
				}
				Context string
			}
		}
		CacheTestBad struct{ Error string }
		RandomNumber struct{ RandomNumber float64 }
		Status       struct {
			Error *string
			Data  struct {
				Uptime   float64
				Context  string
				Problems []string
			}
		}
		Heard struct{ Message, From string }
		AID   string
	}
	if err := json.Unmarshal(out, &r); err != nil {
		t.Fatalf("node output %s: %v", out, err)
	}
	res := r.CacheTest.Data.CacheTestResults
	switch {
	case r.Details.Status != "OK" || r.Details.Data.ID == "" || r.Details.Data.RemoteIP != "127.0.0.1":
		t.Fatalf("details: %s", out)
	case r.CacheTest.Error != nil || !res.SaveResp || !res.DeleteResp || res.LoadResp.Key != "cacheTest_nodeKey" || res.LoadResp.Value != "nodeValue":
		t.Fatalf("cacheTest: %s", out)
	case r.CacheTestBad.Error != "inputs should be at least 3 letters long":
		t.Fatalf("cacheTest with a short key: %s", out)
	case r.RandomNumber.RandomNumber <= 0 || r.RandomNumber.RandomNumber >= 1:
		t.Fatalf("randomNumber: %s", out)
	case r.Status.Error != nil || r.Status.Data.Uptime <= 0 || r.Status.Data.Context != "response" || r.Status.Data.Problems == nil || len(r.Status.Data.Problems) != 0:
		t.Fatalf("status: %s", out)
	case r.Heard.Message != "hello from node" || r.Heard.From != r.AID:
		t.Fatalf("say: %s", out)
	}
}

// TestShippedPublicFile serves the repository's public/hello.txt with the file verb, the way
// `switchboard run` does from the repository root: configs/switchboard.yaml says public_dir: ../public,
// relative to its own folder, which is the repository's public/ whatever the working directory.
func TestShippedPublicFile(t *testing.T) {
	root := harness.Root()
	want, err := os.ReadFile(filepath.Join(root, "public", "hello.txt"))
	if err != nil {
		t.Fatal(err)
	}
	shipped, err := engine.LoadConfig(engine.ConfigSource{File: filepath.Join(root, "configs", "switchboard.yaml")})
	if err != nil {
		t.Fatal(err)
	}
	if shipped.Socket.PublicDir != filepath.Join(root, "public") {
		t.Fatalf("configs/switchboard.yaml: socket.public_dir is %q, not the repository's public/", shipped.Socket.PublicDir)
	}
	e := harness.Start(t, plainYAML+"  public_dir: "+shipped.Socket.PublicDir+"\n", harness.Options{})

	c := dial(t, e.Addr(t, "socket"))
	c.line() // welcome
	c.send("file hello.txt\n")
	got := make([]byte, len(want))
	_ = c.c.SetReadDeadline(time.Now().Add(10 * time.Second))
	if _, err := io.ReadFull(c.r, got); err != nil {
		t.Fatalf("read file: %v (got %q)", err, got)
	}
	if string(got) != string(want) {
		t.Fatalf("file hello.txt: got %q, want %q", got, want)
	}
	// Raw mode sends the bytes alone; the next reply starts right after them.
	match(t, c.do("file ../configs/switchboard.yaml"), `"That file is not found"`)
	match(t, c.do("paramView missing"), `{"status":"OK","context":"response","messageId":"UUID","messageCount":3}`)
}
