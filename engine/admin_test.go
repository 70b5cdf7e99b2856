package engine_test

import (
	"bufio"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/switchboard/switchboard/engine"
	"github.com/switchboard/switchboard/internal/testutil"
	"github.com/switchboard/switchboard/tests/harness"
)

// adminDo sends method path to the admin listener with the given Host and headers and returns the status
// and body.
func adminDo(t *testing.T, addr, method, path, host string, headers ...string) (int, string) {
	t.Helper()
	req, err := http.NewRequest(method, "http://"+addr+path, nil)
	if err != nil {
		t.Fatal(err)
	}
	if host != "" {
		req.Host = host
	}
	for i := 0; i+1 < len(headers); i += 2 {
		req.Header.Set(headers[i], headers[i+1])
	}
	c := &http.Client{Timeout: 10 * time.Second}
	resp, err := c.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, strings.TrimSpace(string(body))
}

func expectAdmin(t *testing.T, addr, method, path, host string, wantCode int, wantBody string, headers ...string) {
	t.Helper()
	code, body := adminDo(t, addr, method, path, host, headers...)
	if code != wantCode || !strings.Contains(body, wantBody) {
		t.Fatalf("%s %s (Host %q, %q): %d %s; want %d with %s", method, path, host, headers, code, body, wantCode, wantBody)
	}
}

// socketBystander connects to the socket part and returns a check that it is still served.
func socketBystander(t *testing.T, addr string) func() {
	c := harness.Dial(t, addr)
	r := bufio.NewReader(c)
	if _, err := r.ReadString('\n'); err != nil {
		t.Fatal(err)
	}
	return func() {
		t.Helper()
		if _, err := c.Write([]byte("paramsView\n")); err != nil {
			t.Fatal(err)
		}
		line, err := r.ReadString('\n')
		if err != nil || !strings.HasPrefix(line, `{"status":"OK","context":"response","data":{}`) {
			t.Fatalf("bystander: %q %v", line, err)
		}
	}
}

// TestAdminRefusesCrossOriginWrites (issue 10 item 16): POST /reload from another web origin or through
// another host name (DNS rebinding) gets 403 with a clear body; the admin's own address, localhost and
// curl-style requests without Origin are served; GET /healthz and /metrics stay open.
func TestAdminRefusesCrossOriginWrites(t *testing.T) {
	e := harness.Start(t, "socket:\n  listen: 127.0.0.1:0\n", harness.Options{})
	addr := e.Addr(t, "admin")
	_, port, _ := net.SplitHostPort(addr)
	stillServed := socketBystander(t, e.Addr(t, "socket"))

	const hostRefused = `{"error":"the Host header \"evil.example\" does not name this admin listener (add the name to admin.hosts to allow it)","status":"forbidden"}`
	expectAdmin(t, addr, "POST", "/reload", "evil.example", 403, hostRefused)
	expectAdmin(t, addr, "POST", "/reload", "evil.example:"+port, 403, `"status":"forbidden"`)
	expectAdmin(t, addr, "POST", "/reload", "", 403, `{"error":"requests from the web origin \"http://evil.example\" are not accepted","status":"forbidden"}`, "Origin", "http://evil.example")
	expectAdmin(t, addr, "POST", "/reload", "", 403, `web origin \"null\"`, "Origin", "null")
	expectAdmin(t, addr, "POST", "/reload", "", 403, "forbidden", "Origin", "http://127.0.0.1.evil.example:"+port)
	expectAdmin(t, addr, "PUT", "/anything", "evil.example", 403, "forbidden") // every write, not only /reload
	e.Logs.WaitFor(t, "admin request refused", 5*time.Second)
	stillServed()

	expectAdmin(t, addr, "POST", "/reload", "", 200, `"status":"reloaded"`)
	expectAdmin(t, addr, "POST", "/reload", "localhost:"+port, 200, `"status":"reloaded"`, "Origin", "http://localhost:"+port)
	expectAdmin(t, addr, "POST", "/reload", "[::1]:"+port, 200, `"status":"reloaded"`)
	expectAdmin(t, addr, "POST", "/reload", "", 200, `"status":"reloaded"`, "Origin", "https://127.0.0.1:"+port)
	expectAdmin(t, addr, "GET", "/healthz", "evil.example", 200, `"status":"ok"`, "Origin", "http://evil.example")
	expectAdmin(t, addr, "GET", "/metrics", "evil.example", 200, "switchboard_lua_reloads_total")
	expectAdmin(t, addr, "GET", "/reload", "", 405, "use POST /reload")
	stillServed()
}

// TestAdminBearerToken: with admin.token_file, POST /reload needs "Authorization: Bearer <token>" (401
// otherwise, with WWW-Authenticate); reads stay open. admin.token works the same way.
func TestAdminBearerToken(t *testing.T) {
	tokenFile := filepath.Join(t.TempDir(), "admin.token")
	if err := os.WriteFile(tokenFile, []byte("s3cret-token\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	for name, yaml := range map[string]string{
		"token_file": fmt.Sprintf("admin:\n  listen: 127.0.0.1:0\n  token_file: %s\nsocket:\n  listen: 127.0.0.1:0\n", tokenFile),
		"token":      "admin:\n  listen: 127.0.0.1:0\n  token: s3cret-token\nsocket:\n  listen: 127.0.0.1:0\n",
	} {
		t.Run(name, func(t *testing.T) {
			e := harness.Start(t, yaml, harness.Options{})
			addr := e.Addr(t, "admin")
			stillServed := socketBystander(t, e.Addr(t, "socket"))
			code, body := adminDo(t, addr, "POST", "/reload", "")
			if code != 401 || body != `{"error":"this request needs the admin token: Authorization: Bearer <admin.token>","status":"unauthorized"}` {
				t.Fatalf("no token: %d %s", code, body)
			}
			expectAdmin(t, addr, "POST", "/reload", "", 401, `{"error":"the admin token is wrong","status":"unauthorized"}`, "Authorization", "Bearer s3cret-tokeN")
			expectAdmin(t, addr, "POST", "/reload", "", 401, "wrong", "Authorization", "Basic s3cret-token")
			expectAdmin(t, addr, "POST", "/reload", "", 401, "wrong", "Authorization", "Bearer s3cret-token-and-more")
			// The Host check comes first: a right token from a rebound name is still refused.
			expectAdmin(t, addr, "POST", "/reload", "evil.example", 403, "forbidden", "Authorization", "Bearer s3cret-token")
			expectAdmin(t, addr, "POST", "/reload", "", 200, `"status":"reloaded"`, "Authorization", "Bearer s3cret-token")
			expectAdmin(t, addr, "GET", "/healthz", "", 200, `"status":"ok"`)
			expectAdmin(t, addr, "GET", "/metrics", "", 200, "switchboard_lua_generation")
			stillServed()
		})
	}
}

// A wildcard admin listener accepts IP literals and the names in admin.hosts, nothing else.
func TestAdminWildcardHosts(t *testing.T) {
	e := harness.Start(t, "admin:\n  listen: 0.0.0.0:0\n  hosts: [switchboard.example.net]\n", harness.Options{})
	_, port, _ := net.SplitHostPort(e.Addr(t, "admin"))
	addr := "127.0.0.1:" + port
	expectAdmin(t, addr, "POST", "/reload", "10.1.2.3:"+port, 200, "reloaded")
	expectAdmin(t, addr, "POST", "/reload", "localhost", 200, "reloaded")
	expectAdmin(t, addr, "POST", "/reload", "Switchboard.Example.NET.:"+port, 200, "reloaded", "Origin", "https://switchboard.example.net")
	expectAdmin(t, addr, "POST", "/reload", "other.example.net", 403, "forbidden")
}

func TestAdminConfigErrors(t *testing.T) {
	for yaml, want := range map[string]string{
		"admin:\n  token: a\n  token_file: b\n": "admin.token_file: expected either admin.token or admin.token_file, got both",
		"admin:\n  max_connections: 0\n":        "admin.max_connections: expected a positive number, got 0",
		"admin:\n  hosts: [\"http://x\"]\n":     `admin.hosts[0]: expected a host name without port or scheme`,
	} {
		f := filepath.Join(t.TempDir(), "c.yaml")
		os.WriteFile(f, []byte(yaml), 0o644)
		if _, err := engine.LoadConfig(engine.ConfigSource{File: f}); err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("%q: %v, want %q", yaml, err, want)
		}
	}
	// An empty or missing token file stops the start with a clear error.
	empty := filepath.Join(t.TempDir(), "empty")
	os.WriteFile(empty, []byte(" \n"), 0o600)
	for file, want := range map[string]string{empty: "is empty", filepath.Join(t.TempDir(), "missing"): "no such file"} {
		cfg := engine.DefaultConfig()
		cfg.Admin.Listen, cfg.Admin.TokenFile = "127.0.0.1:0", file
		cfg.Socket.Enabled, cfg.Relay.Enabled, cfg.ESL.Enabled = false, false, false
		cfg.Lua.ScriptsDir = t.TempDir()
		e, err := engine.New(engine.Options{Config: cfg})
		if err != nil {
			t.Fatal(err)
		}
		err = e.Start(t.Context())
		if err == nil || !strings.Contains(err.Error(), "admin.token_file") || !strings.Contains(err.Error(), want) {
			t.Errorf("token file %s: start error %v, want admin.token_file ... %s", file, err, want)
		}
		_ = e.Shutdown(t.Context())
	}
}

// The admin listener has its own connection cap: past admin.max_connections a connection is closed at once
// (logged), and a slot frees when a connection goes.
func TestAdminConnectionCap(t *testing.T) {
	e := harness.Start(t, "admin:\n  listen: 127.0.0.1:0\n  max_connections: 2\n", harness.Options{})
	addr := e.Addr(t, "admin")
	held := []net.Conn{harness.Dial(t, addr), harness.Dial(t, addr)}
	for _, c := range held { // make sure both are accepted: each gets an answer
		fmt.Fprintf(c, "GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n")
		if line, err := bufio.NewReader(c).ReadString('\n'); err != nil || !strings.HasPrefix(line, "HTTP/1.1 200") {
			t.Fatalf("held connection: %q %v", line, err)
		}
	}
	third := harness.Dial(t, addr)
	_ = third.SetReadDeadline(time.Now().Add(10 * time.Second))
	if n, err := third.Read(make([]byte, 1)); err == nil {
		t.Fatalf("the third connection was served (%d bytes)", n)
	}
	e.Logs.WaitFor(t, "too many connections", 5*time.Second)
	held[0].Close()
	testutil.WaitFor(t, "a slot freed after a connection closed", func() bool {
		code, _ := adminDoTry(addr)
		return code == 200
	})
}

func adminDoTry(addr string) (int, error) {
	c := &http.Client{Timeout: 2 * time.Second, Transport: &http.Transport{DisableKeepAlives: true}}
	resp, err := c.Get("http://" + addr + "/healthz")
	if err != nil {
		return 0, err
	}
	resp.Body.Close()
	return resp.StatusCode, nil
}
