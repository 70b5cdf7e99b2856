package socket

import (
	"bufio"
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
	"testing"
	"time"

	"github.com/switchboard/switchboard/engine/relay/relaytest"
	"github.com/switchboard/switchboard/internal/testutil"
	"github.com/switchboard/switchboard/tests/harness"
)

// limitedProcess is the built binary run under a lowered RLIMIT_NOFILE (soft and hard, set by sh's
// ulimit, so the Go runtime cannot raise it), with its JSON log lines collected.
type limitedProcess struct {
	mu    sync.Mutex
	lines []map[string]any
	logs  strings.Builder
	done  chan struct{}
}

func startLimited(t *testing.T, nofile int, yaml string) *limitedProcess {
	t.Helper()
	dir := t.TempDir()
	scripts := filepath.Join(dir, "scripts")
	if err := os.MkdirAll(scripts, 0o755); err != nil {
		t.Fatal(err)
	}
	for name, src := range scriptsWith(t, "") {
		if err := os.WriteFile(filepath.Join(scripts, name), []byte(src), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	cfgFile := filepath.Join(dir, "switchboard.yaml")
	if err := os.WriteFile(cfgFile, []byte(harness.Complete(yaml, scripts)), 0o644); err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command("/bin/sh", "-c", `ulimit -n "$0" && exec "$@"`, fmt.Sprint(nofile),
		harness.Binary(t), "run", "-c", cfgFile, "--log-format", "json")
	cmd.Dir = dir
	stderr, err := cmd.StderrPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	p := &limitedProcess{done: make(chan struct{})}
	go func() {
		defer close(p.done)
		sc := bufio.NewScanner(stderr)
		sc.Buffer(make([]byte, 64<<10), 1<<20)
		for sc.Scan() {
			var rec map[string]any
			_ = json.Unmarshal(sc.Bytes(), &rec)
			p.mu.Lock()
			p.logs.WriteString(sc.Text() + "\n")
			if rec != nil {
				p.lines = append(p.lines, rec)
			}
			p.mu.Unlock()
		}
		_ = cmd.Wait()
	}()
	t.Cleanup(func() {
		_ = cmd.Process.Kill()
		<-p.done
	})
	return p
}

// find waits for a log record with msg and the given field values.
func (p *limitedProcess) find(t *testing.T, msg string, fields map[string]any) map[string]any {
	t.Helper()
	deadline := time.Now().Add(20 * time.Second)
	for {
		p.mu.Lock()
		for _, rec := range p.lines {
			ok := rec["msg"] == msg
			for k, v := range fields {
				ok = ok && fmt.Sprint(rec[k]) == fmt.Sprint(v)
			}
			if ok {
				p.mu.Unlock()
				return rec
			}
		}
		logs := p.logs.String()
		p.mu.Unlock()
		select {
		case <-p.done:
			t.Fatalf("switchboard exited; logs:\n%s", logs)
		default:
		}
		if time.Now().After(deadline) {
			t.Fatalf("no log %q %v; logs:\n%s", msg, fields, logs)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// TestConnectionFloodLeavesAdminAndOtherPartsReachable (issue 10 item 12): under RLIMIT_NOFILE 256, 600
// connections to the socket port used to take every descriptor (accept fails with EMFILE everywhere), so
// the admin port and the relay stopped answering. With the caps derived from the limit
// (engine/connbudget.go), the flood is refused past the socket's share while /healthz, the relay and
// /metrics keep answering, and the socket serves again once the flood goes.
func TestConnectionFloodLeavesAdminAndOtherPartsReachable(t *testing.T) {
	if _, err := os.Stat("/bin/sh"); err != nil {
		t.Skip("no /bin/sh to lower the descriptor limit with")
	}
	routes := filepath.Join(t.TempDir(), "relay.routes")
	if err := os.WriteFile(routes, nil, 0o644); err != nil {
		t.Fatal(err)
	}
	p := startLimited(t, 256, fmt.Sprintf("socket:\n  listen: 127.0.0.1:0\nrelay:\n  listen: 127.0.0.1:0\n  routes_file: %s\n  persist_dir: %s\n",
		routes, t.TempDir()))
	addrOf := func(part string) string {
		return p.find(t, "listening", map[string]any{"part": part})["addr"].(string)
	}
	socketAddr, relayAddr, adminAddr := addrOf("socket"), addrOf("relay"), addrOf("admin")
	// 256 - (64 + 16 + 16 admin + 16 relay + 2 x 16 listeners) = 112; two parts: 56 each; a socket
	// connection may hold a public file too: 28 connections.
	p.find(t, "connection cap derived from the file descriptor limit", map[string]any{"part": "socket", "cap": 28, "fd_limit": 256})
	p.find(t, "connection cap derived from the file descriptor limit", map[string]any{"part": "relay", "cap": 56})

	var flood []net.Conn
	defer func() {
		for _, c := range flood {
			c.Close()
		}
	}()
	for i := 0; i < 600; i++ {
		c, err := net.DialTimeout("tcp", socketAddr, 5*time.Second)
		if err != nil {
			t.Fatalf("flood connection %d: %v", i, err)
		}
		flood = append(flood, c)
	}
	// The last flood connection is refused with the protocol's error line, not left hanging.
	last := bufio.NewReader(flood[len(flood)-1])
	_ = flood[len(flood)-1].SetReadDeadline(time.Now().Add(15 * time.Second))
	line, _ := last.ReadString('\n')
	if !strings.HasPrefix(line, `{"error":"too many connections"`) {
		if line != "" || !waitRefused(flood[len(flood)-1]) {
			t.Fatalf("a flood connection past the cap read %q", line)
		}
	}

	client := &http.Client{Timeout: 10 * time.Second}
	resp, err := client.Get("http://" + adminAddr + "/healthz")
	if err != nil {
		t.Fatalf("/healthz during the flood: %v", err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != 200 || !strings.Contains(string(body), `"status":"ok"`) {
		t.Fatalf("/healthz during the flood: %d %s", resp.StatusCode, body)
	}
	app, err := relaytest.Dial(relayAddr, "app1", "")
	if err != nil {
		t.Fatalf("relay login during the flood: %v", err)
	}
	app.Close()
	resp, err = client.Get("http://" + adminAddr + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	body, _ = io.ReadAll(resp.Body)
	resp.Body.Close()
	if !strings.Contains(string(body), "switchboard_socket_connections 28\n") {
		t.Fatalf("/metrics: want 28 open socket connections:\n%s", grepLines(string(body), "switchboard_socket_connections"))
	}

	for _, c := range flood {
		c.Close()
	}
	flood = nil
	testutil.WaitWithin(t, 20*time.Second, "the socket port to serve again after the flood", func() bool {
		c, err := net.DialTimeout("tcp", socketAddr, 5*time.Second)
		if err != nil {
			return false
		}
		defer c.Close()
		_ = c.SetReadDeadline(time.Now().Add(10 * time.Second))
		welcome, _ := bufio.NewReader(c).ReadString('\n')
		return strings.Contains(welcome, `"welcome"`)
	})
}

// waitRefused reports whether the server closed c (a refusal past the 16 being told why is silent).
func waitRefused(c net.Conn) bool {
	_ = c.SetReadDeadline(time.Now().Add(15 * time.Second))
	_, err := c.Read(make([]byte, 1))
	return err != nil
}
