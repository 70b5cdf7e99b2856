// Package example runs examples/http-active-socket end to end: the example's config and script, a Go
// net/http server as the upstream, and a socket client calling the requestPage action.
package example

import (
	"bufio"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"go.uber.org/goleak"

	"github.com/switchboard/switchboard/internal/testutil"
	"github.com/switchboard/switchboard/tests/harness"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

// upstream serves /page and /big on a fixed loopback port so it can be stopped and started again.
type upstream struct {
	addr string
	srv  *http.Server
}

func (u *upstream) start(t *testing.T) {
	t.Helper()
	mux := http.NewServeMux()
	mux.HandleFunc("/{$}", func(w http.ResponseWriter, r *http.Request) {
		fmt.Fprint(w, "<!doctype html><title>home</title>")
	})
	mux.HandleFunc("/page", func(w http.ResponseWriter, r *http.Request) {
		fmt.Fprint(w, "<!DOCTYPE html><title>code</title>")
	})
	var ln net.Listener
	var err error
	if !testutil.Poll(2*time.Second, func() bool { ln, err = net.Listen("tcp", u.addr); return err == nil }) {
		t.Fatal(err)
	}
	u.addr = ln.Addr().String()
	u.srv = &http.Server{Handler: mux}
	go u.srv.Serve(ln)
}

func (u *upstream) stop() { u.srv.Close() }

func (u *upstream) port() int {
	_, p, _ := net.SplitHostPort(u.addr)
	var n int
	fmt.Sscan(p, &n)
	return n
}

func exampleYAML(t *testing.T, port int) string {
	t.Helper()
	b, err := os.ReadFile("switchboard.yaml")
	if err != nil {
		t.Fatal(err)
	}
	return strings.NewReplacer(
		"127.0.0.1:5000", "127.0.0.1:0",
		"127.0.0.1:9090", "127.0.0.1:0",
		"host: www.example.com", "host: 127.0.0.1",
		"port: 80", fmt.Sprintf("port: %d", port),
		"reconnection_timeout: 10s", "reconnection_timeout: 300ms",
	).Replace(string(b))
}

func exampleScripts(t *testing.T) map[string]string {
	t.Helper()
	out := map[string]string{}
	files, _ := filepath.Glob("scripts/*.lua")
	for _, f := range files {
		b, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		out[filepath.Base(f)] = string(b)
	}
	return out
}

func call(t *testing.T, r *bufio.Reader, c net.Conn, page string) map[string]any {
	t.Helper()
	fmt.Fprintf(c, `{"action":"requestPage","params":{"page":%q}}`+"\n", page)
	line, err := r.ReadString('\n')
	if err != nil {
		t.Fatalf("read: %v", err)
	}
	var m map[string]any
	if err := json.Unmarshal([]byte(line), &m); err != nil {
		t.Fatalf("reply %q: %v", line, err)
	}
	return m
}

func TestRequestPage(t *testing.T) {
	u := &upstream{addr: "127.0.0.1:0"}
	u.start(t)
	defer func() { u.stop() }()
	e := harness.Start(t, exampleYAML(t, u.port()), harness.Options{Scripts: exampleScripts(t)})
	e.Logs.WaitFor(t, "channel up", 10*time.Second)
	c := harness.Dial(t, e.Addr(t, "socket"))
	r := bufio.NewReader(c)
	if _, err := r.ReadString('\n'); err != nil { // welcome
		t.Fatal(err)
	}
	m := call(t, r, c, "/page")
	if m["page"] != "/page" || m["body"] != "<!DOCTYPE html><title>code</title>" || m["status"] != float64(200) || m["context"] != "response" {
		t.Fatalf("reply %v", m)
	}
	m = call(t, r, c, "/missing")
	if m["status"] != float64(404) {
		t.Fatalf("404 reply %v", m)
	}
	m = call(t, r, c, "no spaces allowed")
	if e, _ := m["error"].(string); !strings.Contains(e, `http: expected "METHOD /path"`) {
		t.Fatalf("bad page: %v", m)
	}

	// The upstream goes away: the action answers with a clear error, the engine stays up, and once the
	// upstream is back the channel reconnects by itself.
	u.stop()
	e.Logs.WaitFor(t, "channel down", 10*time.Second)
	u.start(t)
	if !testutil.Poll(testutil.Wait, func() bool {
		m = call(t, r, c, "/page")
		return m["body"] == "<!DOCTYPE html><title>code</title>"
	}) {
		t.Fatalf("no page after the upstream came back: %v", m)
	}
}

// TestREADMECommand sends exactly the bytes of the README's `printf '...' | nc 127.0.0.1 5000`, ends its
// side as nc does at the end of its input, and checks the reply lines against those the README shows (…
// stands for any text).
func TestREADMECommand(t *testing.T) {
	readme, err := os.ReadFile("README.md")
	if err != nil {
		t.Fatal(err)
	}
	m := regexp.MustCompile("(?m)^printf '([^']*)' \\| nc 127\\.0\\.0\\.1 5000\n```\n(?s:.*?)```\n((?:\\{.*\n)+)```").FindSubmatch(readme)
	if m == nil {
		t.Fatal("README.md has no `printf '...' | nc 127.0.0.1 5000` block followed by the replies")
	}
	input := strings.NewReplacer(`\r`, "\r", `\n`, "\n", `\\`, `\`).Replace(string(m[1]))
	shown := strings.Split(strings.TrimSpace(string(m[2])), "\n")

	u := &upstream{addr: "127.0.0.1:0"}
	u.start(t)
	defer func() { u.stop() }()
	e := harness.Start(t, exampleYAML(t, u.port()), harness.Options{Scripts: exampleScripts(t)})
	e.Logs.WaitFor(t, "channel up", 10*time.Second)
	c := harness.Dial(t, e.Addr(t, "socket"))
	if _, err := io.WriteString(c, input); err != nil {
		t.Fatal(err)
	}
	if err := c.(*net.TCPConn).CloseWrite(); err != nil {
		t.Fatal(err)
	}
	out, err := io.ReadAll(c) // the server answers what it was sent, then closes
	if err != nil {
		t.Fatal(err)
	}
	got := strings.Split(strings.TrimSpace(string(out)), "\r\n")
	if len(got) != len(shown) {
		t.Fatalf("got %d lines, the README shows %d:\n%s", len(got), len(shown), out)
	}
	for i, want := range shown {
		re := "^" + strings.ReplaceAll(regexp.QuoteMeta(want), "…", ".*") + "$"
		if !regexp.MustCompile(re).MatchString(got[i]) {
			t.Errorf("line %d: got %s\nREADME shows %s", i+1, got[i], want)
		}
	}
}
