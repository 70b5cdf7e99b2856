// Package foundation tests the engine as operators meet it: the built binary's commands and signals, the
// admin listener, hot reload and a clean shutdown.
package foundation

import (
	"context"
	"encoding/json"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"go.uber.org/goleak"

	"github.com/switchboard/switchboard/internal/testutil"
	"github.com/switchboard/switchboard/tests/harness"
)

func runCheck(t *testing.T, dir string, args ...string) (int, string) {
	t.Helper()
	cmd := exec.Command(harness.Binary(t), append([]string{"check"}, args...)...)
	cmd.Dir = dir
	out, _ := cmd.CombinedOutput()
	return cmd.ProcessState.ExitCode(), string(out)
}

func TestCheckShippedFiles(t *testing.T) {
	code, out := runCheck(t, harness.Root())
	if code != 0 || !strings.Contains(out, "ok:") {
		t.Fatalf("check on the shipped config and scripts: exit %d\n%s", code, out)
	}
}

func TestCheckReportsScriptErrors(t *testing.T) {
	cases := map[string]struct{ src, want string }{
		"syntax":   {"local sb = require 'switchboard'\n\nsb.on('x', function()\n  return 1 +\nend)\n", "scripts/broken.lua:5:"},
		"toplevel": {"local sb = require 'switchboard'\nlocal t = nil\nprint(t.field)\n", "scripts/broken.lua:3: attempt to index"},
	}
	for name, c := range cases {
		t.Run(name, func(t *testing.T) {
			dir := t.TempDir()
			os.MkdirAll(filepath.Join(dir, "scripts"), 0o755)
			os.WriteFile(filepath.Join(dir, "scripts", "ok.lua"), []byte("local sb = require 'switchboard'\n"), 0o644)
			os.WriteFile(filepath.Join(dir, "scripts", "broken.lua"), []byte(c.src), 0o644)
			os.WriteFile(filepath.Join(dir, "switchboard.yaml"), []byte("lua:\n  scripts_dir: scripts\n"), 0o644)
			code, out := runCheck(t, dir, "-c", "switchboard.yaml")
			if code != 1 || !strings.HasPrefix(strings.TrimSpace(out), c.want) {
				t.Fatalf("exit %d, output:\n%s\nwant prefix %q", code, out, c.want)
			}
		})
	}
}

func TestCheckReportsRoutesErrors(t *testing.T) {
	dir := t.TempDir()
	os.MkdirAll(filepath.Join(dir, "scripts"), 0o755)
	os.WriteFile(filepath.Join(dir, "relay.routes"), []byte("# name;priority;types;objects;params;expr;route;ontrue;onfalse\n"+
		"ok;1;O;Order;qty Int;qty > 1;*;BREAK;CONTINUE\n"+
		"bad;2;O;Order;qty Int;qty >;*;BREAK;CONTINUE\n"), 0o644)
	os.WriteFile(filepath.Join(dir, "c.yaml"), []byte("lua:\n  scripts_dir: scripts\nrelay:\n  routes_file: relay.routes\n  centers: {primary: 127.0.0.1:1}\n"), 0o644)
	code, out := runCheck(t, dir, "-c", "c.yaml")
	if code != 1 || !strings.HasPrefix(strings.TrimSpace(out), "relay.routes:3:") {
		t.Fatalf("exit %d:\n%s", code, out)
	}
}

func TestCheckReportsConfigErrors(t *testing.T) {
	dir := t.TempDir()
	os.WriteFile(filepath.Join(dir, "c.yaml"), []byte("socket:\n  listn: 1\nlua:\n  handler_timeout: 5\n"), 0o644)
	code, out := runCheck(t, dir, "-c", "c.yaml")
	if code != 1 || !strings.Contains(out, "c.yaml: socket.listn: unknown key") || !strings.Contains(out, "c.yaml: lua.handler_timeout: expected a duration") {
		t.Fatalf("exit %d:\n%s", code, out)
	}
}

const tickV1 = `local sb = require "switchboard"
sb.every(20, function() sb.log.info("tick", { version = "v1" }) end)
`

// TestBinaryReloadAndShutdown: SIGHUP swaps a changed script in the running process (its timers stop), a
// broken edit leaves the old generation serving with the error logged, SIGTERM exits 0.
func TestBinaryReloadAndShutdown(t *testing.T) {
	p := harness.StartBinary(t, "", harness.Options{Scripts: map[string]string{"tick.lua": tickV1}}, "admin")
	p.Logs.WaitFor(t, `"version":"v1"`, 10*time.Second)
	pid := p.Cmd.Process.Pid

	script := filepath.Join(p.Dir, "scripts", "tick.lua")
	os.WriteFile(script, []byte(strings.Replace(tickV1, "v1", "v2", 1)), 0o644)
	p.Signal(t, syscall.SIGHUP)
	p.Logs.WaitFor(t, `"version":"v2"`, 10*time.Second)
	time.Sleep(100 * time.Millisecond)
	after := p.Logs.String()[strings.Index(p.Logs.String(), `"version":"v2"`):]
	if strings.Contains(after, `"version":"v1"`) {
		t.Fatalf("v1 timer still ticking after reload:\n%s", after)
	}

	os.WriteFile(script, []byte("local sb = require 'switchboard'\nsb.every(20, function()\n"), 0o644)
	p.Signal(t, syscall.SIGHUP)
	p.Logs.WaitFor(t, "reload failed", 10*time.Second)
	if !strings.Contains(p.Logs.String(), "scripts/tick.lua:2:") {
		t.Fatalf("broken script's location not logged:\n%s", p.Logs.String())
	}
	mark := len(p.Logs.String())
	if !testutil.Poll(testutil.Wait, func() bool { return strings.Contains(p.Logs.String()[mark:], `"version":"v2"`) }) {
		t.Fatal("old generation stopped serving after a broken reload")
	}
	if p.Cmd.Process.Pid != pid {
		t.Fatal("process restarted")
	}

	resp, err := http.Get("http://" + p.Addr(t, "admin") + "/healthz")
	if err != nil {
		t.Fatal(err)
	}
	var health map[string]any
	json.NewDecoder(resp.Body).Decode(&health)
	resp.Body.Close()
	if health["status"] != "ok" || health["generation"] != float64(2) {
		t.Fatalf("healthz: %v", health)
	}

	p.Signal(t, syscall.SIGTERM)
	if code := p.Wait(t, 15*time.Second); code != 0 {
		t.Fatalf("exit code %d after SIGTERM; logs:\n%s", code, p.Logs.String())
	}
}

// TestDefaultsRunFromAnywhere: with no config file and no scripts directory the binary runs on its built-in
// defaults (here with every part's port moved to 0 so the test cannot collide).
func TestDefaultsRunFromAnywhere(t *testing.T) {
	dir := t.TempDir()
	cmd := exec.Command(harness.Binary(t), "--set", "admin.listen=127.0.0.1:0", "--set", "socket.listen=127.0.0.1:0",
		"--set", "relay.listen=127.0.0.1:0", "--set", "esl.listen=127.0.0.1:0", "--set", "relay.routes_file=none.routes",
		"--set", "relay.persist_dir="+filepath.Join(dir, "persist"))
	cmd.Dir = dir
	logs := &harness.Buffer{}
	cmd.Stderr = logs
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	defer cmd.Process.Kill()
	logs.WaitFor(t, "switchboard started", 15*time.Second)
	cmd.Process.Signal(syscall.SIGTERM)
	done := make(chan error, 1)
	go func() { done <- cmd.Wait() }()
	select {
	case err := <-done:
		if err != nil {
			t.Fatalf("exit: %v\n%s", err, logs.String())
		}
	case <-time.After(15 * time.Second):
		t.Fatalf("no exit after SIGTERM:\n%s", logs.String())
	}
	if !strings.Contains(logs.String(), "built-in scripts") {
		t.Fatalf("did not use the built-in scripts:\n%s", logs.String())
	}
}

// TestAdminEndpoints and TestNoGoroutinesAfterShutdown run in-process.
func TestAdminEndpoints(t *testing.T) {
	e := harness.Start(t, "", harness.Options{Scripts: map[string]string{"a.lua": "local sb = require 'switchboard'\n"}})
	base := "http://" + e.Addr(t, "admin")
	resp, err := http.Get(base + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if !strings.Contains(string(body), "switchboard_lua_generation 1") || !strings.Contains(string(body), "go_goroutines") {
		t.Fatalf("metrics:\n%s", body)
	}
	if resp, _ := http.Get(base + "/reload"); resp.StatusCode != http.StatusMethodNotAllowed {
		t.Fatalf("GET /reload: %d", resp.StatusCode)
	}
	resp, err = http.Post(base+"/reload", "", nil)
	if err != nil {
		t.Fatal(err)
	}
	body, _ = io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != 200 || !strings.Contains(string(body), `"generation":2`) {
		t.Fatalf("POST /reload: %d %s", resp.StatusCode, body)
	}
	e.WriteScript(t, "a.lua", "error('broken on purpose')\n")
	resp, _ = http.Post(base+"/reload", "", nil)
	body, _ = io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != http.StatusUnprocessableEntity || !strings.Contains(string(body), "a.lua:1: broken on purpose") {
		t.Fatalf("POST /reload broken: %d %s", resp.StatusCode, body)
	}
}

func TestNoGoroutinesAfterShutdown(t *testing.T) {
	defer goleak.VerifyNone(t, goleak.IgnoreCurrent())
	e := harness.Start(t, "", harness.Options{Scripts: map[string]string{"a.lua": `local sb = require "switchboard"
sb.every(5, function() sb.publish("t", 1) end)
sb.subscribe("t", function(v) sb.cache.save("seen", v) end)
sb.on("x", function() sb.after(10000, function() end) end)`}})
	g := e.Runtime().Current()
	h, _ := g.Handler("on", "x")
	if err := g.Call(context.Background(), h, "test", 0, nil); err != nil {
		t.Fatal(err)
	}
	// The timer, the subscription and the pinned timer all run before the shutdown.
	testutil.WaitFor(t, "the subscriber to see a published value", func() bool {
		_, err := e.Runtime().Cache().Load("seen")
		return err == nil
	})
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if err := e.Shutdown(ctx); err != nil {
		t.Fatal(err)
	}
}
