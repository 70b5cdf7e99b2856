// Package operations drives the built switchboard binary the way an operator meets it: a port already
// taken, a Kubernetes environment, configuration files in other folders, usage errors.
package operations

import (
	"bytes"
	"encoding/json"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/switchboard/switchboard/internal/testutil"
	"github.com/switchboard/switchboard/tests/harness"
)

// bin is the switchboard binary, built once by TestMain into a temporary directory removed at the end.
var bin string

func TestMain(m *testing.M) {
	dir, err := os.MkdirTemp("", "switchboard-operations-")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	bin = filepath.Join(dir, "switchboard")
	build := exec.Command("go", "build", "-o", bin, "./cmd/switchboard")
	build.Dir = harness.Root()
	if out, err := build.CombinedOutput(); err != nil {
		fmt.Fprintf(os.Stderr, "go build: %v\n%s", err, out)
		os.RemoveAll(dir)
		os.Exit(1)
	}
	code := m.Run()
	os.RemoveAll(dir)
	os.Exit(code)
}

// deadline bounds every wait for the process: generous, since it only catches a hang.
const deadline = 20 * time.Second

// proc is one run of the binary with its output captured.
type proc struct {
	cmd            *exec.Cmd
	stdout, stderr *buffer
	done           chan struct{}
}

type buffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (b *buffer) Write(p []byte) (int, error) { b.mu.Lock(); defer b.mu.Unlock(); return b.b.Write(p) }
func (b *buffer) String() string              { b.mu.Lock(); defer b.mu.Unlock(); return b.b.String() }

// cleanEnv is the test's environment without SWITCHBOARD_* variables, plus extra.
func cleanEnv(extra ...string) []string {
	var env []string
	for _, kv := range os.Environ() {
		if !strings.HasPrefix(kv, "SWITCHBOARD_") {
			env = append(env, kv)
		}
	}
	return append(env, extra...)
}

func start(t *testing.T, dir string, env []string, args ...string) *proc {
	t.Helper()
	p := &proc{cmd: exec.Command(bin, args...), stdout: &buffer{}, stderr: &buffer{}, done: make(chan struct{})}
	p.cmd.Dir = dir
	p.cmd.Env = env
	if p.cmd.Env == nil {
		p.cmd.Env = cleanEnv()
	}
	p.cmd.Stdout, p.cmd.Stderr = p.stdout, p.stderr
	if err := p.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	go func() { _ = p.cmd.Wait(); close(p.done) }()
	t.Cleanup(func() {
		select {
		case <-p.done:
		default:
			_ = p.cmd.Process.Kill()
			<-p.done
		}
	})
	return p
}

// wait returns the exit code, failing the test if the process is still running after the deadline.
func (p *proc) wait(t *testing.T) int {
	t.Helper()
	select {
	case <-p.done:
		return p.cmd.ProcessState.ExitCode()
	case <-time.After(deadline):
		t.Fatalf("%v still running after %v\nstdout:\n%s\nstderr:\n%s", p.cmd.Args, deadline, p.stdout, p.stderr)
		return -1
	}
}

// waitLog polls stderr until it contains s.
func (p *proc) waitLog(t *testing.T, s string) {
	t.Helper()
	exited := false
	if !testutil.Poll(deadline, func() bool {
		select {
		case <-p.done:
			exited = true
			return true
		default:
		}
		return strings.Contains(p.stderr.String(), s)
	}) {
		t.Fatalf("never logged %q:\n%s", s, p.stderr)
	}
	if exited && !strings.Contains(p.stderr.String(), s) {
		t.Fatalf("exited (%v) before logging %q:\n%s", p.cmd.ProcessState, s, p.stderr)
	}
}

// stop sends SIGTERM and expects a clean exit.
func (p *proc) stop(t *testing.T) {
	t.Helper()
	if err := p.cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	if code := p.wait(t); code != 0 {
		t.Fatalf("exit %d after SIGTERM:\n%s", code, p.stderr)
	}
}

func run(t *testing.T, dir string, env []string, args ...string) (int, string, string) {
	t.Helper()
	p := start(t, dir, env, args...)
	code := p.wait(t)
	return code, p.stdout.String(), p.stderr.String()
}

func write(t *testing.T, path, data string) {
	t.Helper()
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(path, []byte(data), 0o644); err != nil {
		t.Fatal(err)
	}
}

// loopback moves every listener to a free loopback port.
var loopback = []string{"--set", "socket.listen=127.0.0.1:0", "--set", "relay.listen=127.0.0.1:0",
	"--set", "esl.listen=127.0.0.1:0", "--set", "admin.listen=127.0.0.1:0"}

const okScript = "local sb = require 'switchboard'\nsb.action{ name = 'ping', run = function() return { pong = true } end }\n"

// TestPortTaken: with the socket, relay, ESL or admin port already in use the process says which part,
// which address and why, and exits 1 on its own, having stopped what it had started.
func TestPortTaken(t *testing.T) {
	dir := t.TempDir()
	write(t, filepath.Join(dir, "scripts", "ping.lua"), okScript)
	write(t, filepath.Join(dir, "switchboard.yaml"), "lua:\n  scripts_dir: scripts\n")
	for _, part := range []string{"socket", "relay", "esl", "admin"} {
		t.Run(part, func(t *testing.T) {
			taken, err := net.Listen("tcp", "127.0.0.1:0")
			if err != nil {
				t.Fatal(err)
			}
			defer taken.Close()
			addr := taken.Addr().String()
			args := append([]string{"run", "-c", filepath.Join(dir, "switchboard.yaml")}, loopback...)
			args = append(args, "--set", part+".listen="+addr)
			p := start(t, dir, nil, args...)
			if code := p.wait(t); code != 1 {
				t.Fatalf("exit %d, want 1:\n%s", code, p.stderr)
			}
			lines := strings.Split(strings.TrimSpace(p.stderr.String()), "\n")
			if want := fmt.Sprintf("switchboard: %s: listen %s: address already in use", part, addr); lines[len(lines)-1] != want {
				t.Fatalf("last line %q, want %q; stderr:\n%s", lines[len(lines)-1], want, p.stderr)
			}
			if !strings.Contains(p.stderr.String(), `msg="start failed: stopping what started" addr="`+addr+`" error="address already in use" part=`+part) {
				t.Fatalf("no start failed log line:\n%s", p.stderr)
			}
		})
	}
}

// TestKubernetesServiceEnvironment: a Service named switchboard injects SWITCHBOARD_PORT=tcp://... and
// SWITCHBOARD_SERVICE_HOST; the engine starts anyway with one warning naming them, and variables that name
// a key still apply.
func TestKubernetesServiceEnvironment(t *testing.T) {
	dir := t.TempDir()
	write(t, filepath.Join(dir, "scripts", "ping.lua"), okScript)
	write(t, filepath.Join(dir, "switchboard.yaml"), "lua:\n  scripts_dir: scripts\n")
	env := cleanEnv("SWITCHBOARD_PORT=tcp://10.96.0.12:5000", "SWITCHBOARD_SERVICE_HOST=10.96.0.12",
		"SWITCHBOARD_RELAY_ENABLED=false", "SWITCHBOARD_ESL_ENABLED=false")
	args := append([]string{"-c", "switchboard.yaml", "--log-format", "json"}, loopback...)
	p := start(t, dir, env, args...)
	p.waitLog(t, `"msg":"switchboard started"`)
	var warnings, listening []map[string]any
	var took any
	for _, line := range strings.Split(strings.TrimSpace(p.stderr.String()), "\n") {
		var rec map[string]any
		if err := json.Unmarshal([]byte(line), &rec); err != nil {
			t.Fatalf("not a JSON log line: %q", line)
		}
		switch {
		case rec["level"] == "warning":
			warnings = append(warnings, rec)
		case rec["msg"] == "listening":
			listening = append(listening, rec)
		case rec["msg"] == "scripts loaded":
			took = rec["took"]
		}
	}
	if len(warnings) != 1 || warnings[0]["variables"] != "SWITCHBOARD_PORT,SWITCHBOARD_SERVICE_HOST" ||
		warnings[0]["msg"] != "environment variables that name no configuration key are ignored" {
		t.Fatalf("warnings %v; logs:\n%s", warnings, p.stderr)
	}
	parts := map[any]bool{}
	for _, l := range listening {
		parts[l["part"]] = true
	}
	if len(parts) != 2 || !parts["socket"] || !parts["admin"] {
		t.Fatalf("listening %v: SWITCHBOARD_RELAY_ENABLED / SWITCHBOARD_ESL_ENABLED were not applied", listening)
	}
	// JSON durations are seconds (a number), not nanoseconds.
	if s, ok := took.(float64); !ok || s <= 0 || s > 60 {
		t.Fatalf(`"took" of "scripts loaded" is %#v, want seconds`, took)
	}
	p.stop(t)

	code, out, errOut := run(t, dir, env, "check", "-c", "switchboard.yaml")
	if code != 0 || errOut != "switchboard: warning: environment variables that name no configuration key are ignored: SWITCHBOARD_PORT, SWITCHBOARD_SERVICE_HOST\n" ||
		!strings.HasPrefix(out, "ok: ") {
		t.Fatalf("check: exit %d\nstdout: %s\nstderr: %s", code, out, errOut)
	}
}

// TestConfigElsewhere: `switchboard check -c /etc/.../switchboard.yaml` run from another directory reads
// the scripts and routes beside that file (here a broken script and a broken route prove it), says which
// it used, and a scripts_dir that is missing is an error rather than the built-in demo scripts.
func TestConfigElsewhere(t *testing.T) {
	etc := filepath.Join(t.TempDir(), "etc", "switchboard")
	conf := filepath.Join(etc, "switchboard.yaml")
	write(t, conf, "lua:\n  scripts_dir: scripts\nrelay:\n  routes_file: relay.routes\n  centers: {primary: 127.0.0.1:1}\n")
	elsewhere := t.TempDir()
	// A scripts/ in the working directory must not be picked up.
	write(t, filepath.Join(elsewhere, "scripts", "here.lua"), "error('the working directory was read')\n")

	for _, cmd := range [][]string{{"check", "-c", conf}, {"run", "-c", conf}} {
		code, _, errOut := run(t, elsewhere, nil, append(cmd, loopback...)...)
		want := "switchboard: lua.scripts_dir: " + filepath.Join(etc, "scripts") + ": no such file or directory (a relative scripts_dir is resolved from the folder of " + conf + ")\n"
		if code != 1 || !strings.HasSuffix(errOut, want) {
			t.Fatalf("%v with scripts missing: exit %d\n%s\nwant suffix %q", cmd, code, errOut, want)
		}
	}

	write(t, filepath.Join(etc, "scripts", "ping.lua"), okScript)
	code, out, errOut := run(t, elsewhere, nil, "check", "-c", conf)
	want := fmt.Sprintf("ok: configuration and scripts are valid (configuration: %s; scripts: %s)\n", conf, filepath.Join(etc, "scripts"))
	if code != 0 || out != want {
		t.Fatalf("check: exit %d\nstdout %q\nwant   %q\nstderr: %s", code, out, want, errOut)
	}

	write(t, filepath.Join(etc, "scripts", "broken.lua"), "local sb = require 'switchboard'\nlocal t = nil\nprint(t.field)\n")
	write(t, filepath.Join(etc, "relay.routes"), "# name;priority;types;objects;params;expr;route;ontrue;onfalse\nbad;2;O;Order;qty Int;qty >;*;BREAK;CONTINUE\n")
	code, _, errOut = run(t, elsewhere, nil, "check", "-c", conf)
	if code != 1 || !strings.HasPrefix(errOut, filepath.Join(etc, "scripts", "broken.lua")+":3: attempt to index") {
		t.Fatalf("broken script: exit %d\n%s", code, errOut)
	}
	os.Remove(filepath.Join(etc, "scripts", "broken.lua"))
	code, _, errOut = run(t, elsewhere, nil, "check", "-c", conf)
	if code != 1 || !strings.HasPrefix(errOut, "relay.routes:2:") {
		t.Fatalf("broken routes: exit %d\n%s", code, errOut)
	}
	os.Remove(filepath.Join(etc, "relay.routes"))

	// The same file named relatively, from its parent: the same paths.
	code, out, errOut = run(t, filepath.Dir(etc), nil, "check", "-c", "switchboard/switchboard.yaml")
	if code != 0 || out != want {
		t.Fatalf("relative -c: exit %d\nstdout %q\nwant   %q\nstderr: %s", code, out, want, errOut)
	}

	// run says which configuration and scripts it uses.
	p := start(t, elsewhere, nil, append([]string{"-c", conf}, loopback...)...)
	p.waitLog(t, "switchboard started")
	if !strings.Contains(p.stderr.String(), fmt.Sprintf(`msg="configuration loaded" config=%s scripts=%s`, conf, filepath.Join(etc, "scripts"))) {
		t.Fatalf("run did not log its configuration and scripts:\n%s", p.stderr)
	}
	p.stop(t)
}

// TestConfigSearch: without -c, ./configs/switchboard.yaml is used when present (its paths from its own
// folder); with no file anywhere the built-in defaults and scripts are, and the log says so.
func TestConfigSearch(t *testing.T) {
	if _, err := os.Stat("/etc/switchboard/switchboard.yaml"); err == nil {
		t.Skip("/etc/switchboard/switchboard.yaml exists on this machine: it would be found")
	}
	dir := t.TempDir()
	code, out, errOut := run(t, dir, nil, "check")
	if code != 0 || out != "ok: configuration and scripts are valid (configuration: built-in defaults; scripts: built-in scripts)\n" {
		t.Fatalf("no config: exit %d\nstdout %q\nstderr %s", code, out, errOut)
	}
	p := start(t, dir, nil, loopback...)
	p.waitLog(t, "switchboard started")
	if !strings.Contains(p.stderr.String(), `msg="configuration loaded" config="built-in defaults" scripts="built-in scripts"`) {
		t.Fatalf("no config: logs:\n%s", p.stderr)
	}
	p.stop(t)

	write(t, filepath.Join(dir, "configs", "switchboard.yaml"), "lua:\n  scripts_dir: ../my-scripts\n")
	write(t, filepath.Join(dir, "my-scripts", "ping.lua"), okScript)
	code, out, errOut = run(t, dir, nil, "check")
	want := fmt.Sprintf("ok: configuration and scripts are valid (configuration: %s; scripts: %s)\n",
		filepath.Join(dir, "configs", "switchboard.yaml"), filepath.Join(dir, "my-scripts"))
	if code != 0 || out != want {
		t.Fatalf("./configs: exit %d\nstdout %q\nwant   %q\nstderr %s", code, out, want, errOut)
	}
}

// TestRepositoryRoot: the README's `go run ./cmd/switchboard` (and `switchboard check`) from the repository
// root use configs/switchboard.yaml and the repository's scripts/.
func TestRepositoryRoot(t *testing.T) {
	root := harness.Root()
	conf, scripts := filepath.Join(root, "configs", "switchboard.yaml"), filepath.Join(root, "scripts")
	code, out, errOut := run(t, root, nil, "check")
	if want := fmt.Sprintf("ok: configuration and scripts are valid (configuration: %s; scripts: %s)\n", conf, scripts); code != 0 || out != want {
		t.Fatalf("check: exit %d\nstdout %q\nwant   %q\nstderr %s", code, out, want, errOut)
	}
	p := start(t, root, nil, loopback...)
	p.waitLog(t, "switchboard started")
	if !strings.Contains(p.stderr.String(), fmt.Sprintf(`msg="configuration loaded" config=%s scripts=%s`, conf, scripts)) {
		t.Fatalf("logs:\n%s", p.stderr)
	}
	p.stop(t)
}

// TestUsageAndVersion: usage errors exit 2; --version and version print the version.
func TestUsageAndVersion(t *testing.T) {
	dir := t.TempDir()
	for _, args := range [][]string{{"bogus"}, {"--bogus"}, {"check", "extra"}, {"run", "--set", "novalue"}, {"flow", "test"}} {
		code, out, errOut := run(t, dir, nil, args...)
		if code != 2 || out != "" || !strings.HasPrefix(errOut, "switchboard: ") || !strings.HasSuffix(errOut, "Run 'switchboard --help' for usage.\n") {
			t.Errorf("%v: exit %d\nstdout %q\nstderr %q", args, code, out, errOut)
		}
	}
	_, v1, _ := run(t, dir, nil, "version")
	code, v2, errOut := run(t, dir, nil, "--version")
	if code != 0 || errOut != "" || v1 != v2 || !strings.HasPrefix(v2, "switchboard ") {
		t.Fatalf("--version: exit %d %q %q (version: %q)", code, v2, errOut, v1)
	}
}
