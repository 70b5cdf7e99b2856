// Package deploy tests what an operator deploys: the stamped release binary (version, build_info metric,
// systemd readiness), the systemd unit and the Dockerfile.
package deploy

import (
	"bufio"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"runtime"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/switchboard/switchboard/tests/harness"
)

const (
	stampPkg     = "github.com/switchboard/switchboard/internal/buildinfo"
	stampVersion = "v9.8.7-test"
	stampCommit  = "0123456789abcdef0123456789abcdef01234567"
	stampDate    = "2026-01-02T03:04:05Z"
)

var stamped struct {
	once sync.Once
	bin  string
	err  error
}

func TestMain(m *testing.M) {
	code := m.Run()
	if stamped.bin != "" {
		_ = os.RemoveAll(filepath.Dir(stamped.bin))
	}
	os.Exit(code)
}

// stampedBinary builds cmd/switchboard once, the way build/release.sh does, with a known stamp.
func stampedBinary(t *testing.T) string {
	t.Helper()
	stamped.once.Do(func() { stamped.bin, stamped.err = buildStamped() })
	if stamped.err != nil {
		t.Fatal(stamped.err)
	}
	return stamped.bin
}

func buildStamped() (string, error) {
	dir, err := os.MkdirTemp("", "switchboard-stamped-")
	if err != nil {
		return "", err
	}
	bin := filepath.Join(dir, "switchboard")
	ldflags := fmt.Sprintf("-X %[1]s.version=%[2]s -X %[1]s.commit=%[3]s -X %[1]s.date=%[4]s", stampPkg, stampVersion, stampCommit, stampDate)
	cmd := exec.Command("go", "build", "-trimpath", "-ldflags", ldflags, "-o", bin, "./cmd/switchboard")
	cmd.Dir = harness.Root()
	cmd.Env = append(os.Environ(), "CGO_ENABLED=0")
	if out, err := cmd.CombinedOutput(); err != nil {
		return "", fmt.Errorf("go build: %v\n%s", err, out)
	}
	return bin, nil
}

// TestStampedBinary builds with -ldflags -X and checks every place the stamp shows (`switchboard version`,
// switchboard_build_info in /metrics), then runs the binary as systemd would for a Type=notify unit and
// checks what it tells systemd as it starts, reloads (broken, then fixed) and stops.
func TestStampedBinary(t *testing.T) {
	bin := stampedBinary(t)

	out, err := exec.Command(bin, "version").CombinedOutput()
	if err != nil {
		t.Fatalf("switchboard version: %v\n%s", err, out)
	}
	want := fmt.Sprintf("switchboard %s %s (%s %s/%s, built %s)\n", stampVersion, stampCommit[:12], runtime.Version(), runtime.GOOS, runtime.GOARCH, stampDate)
	if string(out) != want {
		t.Errorf("switchboard version:\n got %q\nwant %q", out, want)
	}

	dir := t.TempDir()
	scripts := filepath.Join(dir, "scripts")
	if err := os.MkdirAll(scripts, 0o755); err != nil {
		t.Fatal(err)
	}
	writeFile(t, filepath.Join(scripts, "ok.lua"), "local answer = 42\n")
	cfg := filepath.Join(dir, "switchboard.yaml")
	writeFile(t, cfg, harness.Complete("socket:\n  listen: 127.0.0.1:0\n", scripts))

	manager := listenNotify(t, filepath.Join(dir, "notify.sock"))
	logs := &harness.Buffer{}
	cmd := exec.Command(bin, "run", "-c", cfg, "--log-format", "json")
	cmd.Dir = dir
	cmd.Env = append(os.Environ(), "NOTIFY_SOCKET="+manager.LocalAddr().String())
	cmd.Stdout, cmd.Stderr = logs, logs
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	exited := make(chan error, 1)
	go func() { exited <- cmd.Wait() }()
	t.Cleanup(func() {
		if cmd.ProcessState == nil {
			_ = cmd.Process.Kill()
			<-exited
		}
	})

	// Started: READY=1 with the generation and every listener.
	msg := nextNotify(t, manager, logs)
	status := expectState(t, msg, "READY=1")
	addrs := regexp.MustCompile(`^serving generation 1; admin (127\.0\.0\.1:\d+), socket (127\.0\.0\.1:\d+)$`).FindStringSubmatch(status)
	if addrs == nil {
		t.Fatalf("READY status %q: want serving generation 1; admin <addr>, socket <addr>", status)
	}
	admin, socket := addrs[1], addrs[2]

	metrics := get(t, "http://"+admin+"/metrics")
	line := fmt.Sprintf(`switchboard_build_info{commit=%q,go=%q,version=%q} 1`, stampCommit, runtime.Version(), stampVersion)
	if !hasLine(metrics, line) {
		t.Errorf("/metrics has no line %s; build_info lines:\n%s", line, grep(metrics, "switchboard_build_info"))
	}

	// A broken script: RELOADING=1, then READY=1 saying the reload failed and generation 1 still serves.
	writeFile(t, filepath.Join(scripts, "broken.lua"), "local = 1\n")
	if err := cmd.Process.Signal(syscall.SIGHUP); err != nil {
		t.Fatal(err)
	}
	expectReloading(t, nextNotify(t, manager, logs))
	status = expectState(t, nextNotify(t, manager, logs), "READY=1")
	if !strings.HasPrefix(status, "reload failed, the previous scripts keep serving: ") || !strings.Contains(status, "broken.lua:1:") ||
		!strings.HasSuffix(status, "; serving generation 1; admin "+admin+", socket "+socket) {
		t.Errorf("READY status after a broken reload: %q", status)
	}

	// Fixed: generation 2.
	if err := os.Remove(filepath.Join(scripts, "broken.lua")); err != nil {
		t.Fatal(err)
	}
	if err := cmd.Process.Signal(syscall.SIGHUP); err != nil {
		t.Fatal(err)
	}
	expectReloading(t, nextNotify(t, manager, logs))
	if status, want := expectState(t, nextNotify(t, manager, logs), "READY=1"), "serving generation 2; admin "+admin+", socket "+socket; status != want {
		t.Errorf("READY status after a good reload: %q, want %q", status, want)
	}

	// Stopping: STOPPING=1 as shutdown begins, then a clean exit.
	if err := cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	if status := expectState(t, nextNotify(t, manager, logs), "STOPPING=1"); status != "shutting down on terminated" {
		t.Errorf("STOPPING status %q, want %q", status, "shutting down on terminated")
	}
	select {
	case err := <-exited:
		if err != nil {
			t.Errorf("exit after SIGTERM: %v; logs:\n%s", err, logs)
		}
	case <-time.After(30 * time.Second):
		t.Fatalf("still running 30 s after SIGTERM; logs:\n%s", logs)
	}
	if strings.Contains(logs.String(), "cannot tell systemd") {
		t.Errorf("a notification failed; logs:\n%s", logs)
	}
}

// TestNotifySocketUnusable: a NOTIFY_SOCKET nobody reads costs a warning, never the service.
func TestNotifySocketUnusable(t *testing.T) {
	bin := stampedBinary(t)
	dir := t.TempDir()
	scripts := filepath.Join(dir, "scripts")
	if err := os.MkdirAll(scripts, 0o755); err != nil {
		t.Fatal(err)
	}
	cfg := filepath.Join(dir, "switchboard.yaml")
	writeFile(t, cfg, harness.Complete("", scripts))
	for _, socket := range []string{filepath.Join(dir, "absent.sock"), "relative.sock"} {
		logs := &harness.Buffer{}
		cmd := exec.Command(bin, "run", "-c", cfg, "--log-format", "json")
		cmd.Env = append(os.Environ(), "NOTIFY_SOCKET="+socket)
		cmd.Stdout, cmd.Stderr = logs, logs
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		logs.WaitFor(t, "cannot tell systemd the service state", 10*time.Second)
		logs.WaitFor(t, "switchboard started", 10*time.Second)
		_ = cmd.Process.Signal(syscall.SIGTERM)
		if err := cmd.Wait(); err != nil {
			t.Errorf("NOTIFY_SOCKET=%s: exit %v; logs:\n%s", socket, err, logs)
		}
		if !strings.Contains(logs.String(), socket) {
			t.Errorf("NOTIFY_SOCKET=%s: the warning does not name the socket; logs:\n%s", socket, logs)
		}
	}
}

func listenNotify(t *testing.T, path string) *net.UnixConn {
	t.Helper()
	c, err := net.ListenUnixgram("unixgram", &net.UnixAddr{Name: path, Net: "unixgram"})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return c
}

// nextNotify returns the next message's assignments, in order.
func nextNotify(t *testing.T, c *net.UnixConn, logs *harness.Buffer) []string {
	t.Helper()
	buf := make([]byte, 4096)
	_ = c.SetReadDeadline(time.Now().Add(20 * time.Second))
	n, err := c.Read(buf)
	if err != nil {
		t.Fatalf("no notification: %v; logs:\n%s", err, logs)
	}
	return strings.Split(string(buf[:n]), "\n")
}

// expectState checks a message is state then STATUS=..., and returns the status.
func expectState(t *testing.T, msg []string, state string) string {
	t.Helper()
	if len(msg) != 2 || msg[0] != state || !strings.HasPrefix(msg[1], "STATUS=") {
		t.Fatalf("notification %q: want %s and STATUS=...", msg, state)
	}
	return strings.TrimPrefix(msg[1], "STATUS=")
}

func expectReloading(t *testing.T, msg []string) {
	t.Helper()
	if len(msg) != 3 || msg[0] != "RELOADING=1" || !regexp.MustCompile(`^MONOTONIC_USEC=[1-9]\d*$`).MatchString(msg[1]) ||
		msg[2] != "STATUS=reloading scripts and configuration" {
		t.Fatalf("notification %q: want RELOADING=1, MONOTONIC_USEC=<µs>, STATUS=reloading scripts and configuration", msg)
	}
}

func get(t *testing.T, url string) string {
	t.Helper()
	c := &http.Client{Timeout: 10 * time.Second}
	resp, err := c.Get(url)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil || resp.StatusCode != http.StatusOK {
		t.Fatalf("GET %s: %d %v\n%s", url, resp.StatusCode, err, body)
	}
	return string(body)
}

func hasLine(text, line string) bool {
	sc := bufio.NewScanner(strings.NewReader(text))
	for sc.Scan() {
		if sc.Text() == line {
			return true
		}
	}
	return false
}

func grep(text, s string) string {
	var out []string
	for _, l := range strings.Split(text, "\n") {
		if strings.Contains(l, s) {
			out = append(out, l)
		}
	}
	return strings.Join(out, "\n")
}

func writeFile(t *testing.T, path, content string) {
	t.Helper()
	if err := os.WriteFile(path, []byte(content), 0o644); err != nil {
		t.Fatal(err)
	}
}
