// Package harness starts Switchboard for end-to-end tests: in-process (fast, for most tests) or as the built
// binary (for signals, exit codes and crash recovery). Both take a YAML configuration; listeners should use
// 127.0.0.1:0 so tests run in parallel, and the bound addresses are returned by name.
package harness

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/sirupsen/logrus"

	"github.com/switchboard/switchboard/engine"
)

// Root is the repository root (where go.mod is).
func Root() string {
	_, file, _, _ := runtime.Caller(0)
	return filepath.Clean(filepath.Join(filepath.Dir(file), "..", ".."))
}

// Complete fills in what a test's YAML leaves out so tests never touch the default ports: every part whose
// section is absent is disabled, the admin listener (if absent) binds 127.0.0.1:0, and lua.scripts_dir (if
// the lua section is absent) points at scriptsDir. A test enables a part by writing its section, e.g.
// "socket:\n  listen: 127.0.0.1:0\n".
func Complete(yaml, scriptsDir string) string {
	has := map[string]bool{}
	for _, line := range strings.Split(yaml, "\n") {
		if k, _, ok := strings.Cut(line, ":"); ok && k != "" && !strings.HasPrefix(k, " ") && !strings.HasPrefix(k, "#") {
			has[k] = true
		}
	}
	var b strings.Builder
	b.WriteString(yaml)
	b.WriteString("\n")
	for _, part := range []string{"socket", "relay", "esl"} {
		if !has[part] {
			fmt.Fprintf(&b, "%s:\n  enabled: false\n", part)
		}
	}
	if !has["admin"] {
		b.WriteString("admin:\n  listen: 127.0.0.1:0\n")
	}
	if !has["lua"] {
		fmt.Fprintf(&b, "lua:\n  scripts_dir: %s\n", scriptsDir)
	}
	return b.String()
}

// Options tune Start.
type Options struct {
	// Scripts, when set, replaces the scripts directory: file name -> source. Nil uses the repository's scripts/.
	Scripts map[string]string
	// Files maps paths relative to the engine's directory to contents written there before start.
	Files map[string]string
}

// Engine is an in-process engine with its logs captured.
type Engine struct {
	*engine.Engine
	Dir  string
	Logs *Buffer
}

// Start builds and starts an engine from yaml (completed by Complete), stopping it when the test ends. The config's relative paths
// are resolved against the engine's directory (e.Dir), which holds the scripts.
func Start(t testing.TB, yaml string, opts Options) *Engine {
	t.Helper()
	dir := prepareDir(t, opts)
	cfgFile := filepath.Join(dir, "switchboard.yaml")
	yaml = Complete(yaml, filepath.Join(dir, "scripts"))
	if err := os.WriteFile(cfgFile, []byte(yaml), 0o644); err != nil {
		t.Fatal(err)
	}
	cfg, err := engine.LoadConfig(engine.ConfigSource{File: cfgFile})
	if err != nil {
		t.Fatalf("config: %v", err)
	}
	logs := &Buffer{}
	logger := engine.NewLogger(cfg.Log, io.MultiWriter(logs, testWriter{t}))
	logger.SetLevel(logrus.DebugLevel)
	e, err := engine.New(engine.Options{Config: cfg, Logger: logger})
	if err != nil {
		t.Fatalf("engine: %v", err)
	}
	if err := e.Start(context.Background()); err != nil {
		t.Fatalf("start: %v", err)
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		if err := e.Shutdown(ctx); err != nil {
			t.Errorf("shutdown: %v", err)
		}
	})
	return &Engine{Engine: e, Dir: dir, Logs: logs}
}

// Addr returns the address a part bound, by name ("socket", "relay", "esl", "admin", ...).
func (e *Engine) Addr(t testing.TB, name string) string {
	t.Helper()
	a, ok := e.Addrs()[name]
	if !ok {
		t.Fatalf("engine has no address %q (has %v)", name, e.Addrs())
	}
	return a.String()
}

// WriteScript replaces one script in the engine's scripts directory (call Reload after).
func (e *Engine) WriteScript(t testing.TB, name, src string) {
	t.Helper()
	p := filepath.Join(e.Dir, "scripts", name)
	_ = os.MkdirAll(filepath.Dir(p), 0o755)
	if err := os.WriteFile(p, []byte(src), 0o644); err != nil {
		t.Fatal(err)
	}
}

func prepareDir(t testing.TB, opts Options) string {
	t.Helper()
	dir := t.TempDir()
	scripts := filepath.Join(dir, "scripts")
	if err := os.MkdirAll(scripts, 0o755); err != nil {
		t.Fatal(err)
	}
	if opts.Scripts == nil {
		src := filepath.Join(Root(), "scripts")
		_ = filepath.Walk(src, func(p string, info os.FileInfo, err error) error {
			if err != nil || info.IsDir() {
				return err
			}
			rel, _ := filepath.Rel(src, p)
			data, err := os.ReadFile(p)
			if err != nil {
				return err
			}
			_ = os.MkdirAll(filepath.Join(scripts, filepath.Dir(rel)), 0o755)
			return os.WriteFile(filepath.Join(scripts, rel), data, 0o644)
		})
	}
	for name, src := range opts.Scripts {
		p := filepath.Join(scripts, name)
		_ = os.MkdirAll(filepath.Dir(p), 0o755)
		if err := os.WriteFile(p, []byte(src), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	for name, data := range opts.Files {
		p := filepath.Join(dir, name)
		_ = os.MkdirAll(filepath.Dir(p), 0o755)
		if err := os.WriteFile(p, []byte(data), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	return dir
}

// Buffer is a goroutine-safe log sink.
type Buffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (b *Buffer) Write(p []byte) (int, error) { b.mu.Lock(); defer b.mu.Unlock(); return b.b.Write(p) }

// String is everything written so far.
func (b *Buffer) String() string { b.mu.Lock(); defer b.mu.Unlock(); return b.b.String() }

// WaitFor polls until the logs contain s.
func (b *Buffer) WaitFor(t testing.TB, s string, timeout time.Duration) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for !strings.Contains(b.String(), s) {
		if time.Now().After(deadline) {
			t.Fatalf("logs never contained %q; logs:\n%s", s, b.String())
		}
		time.Sleep(10 * time.Millisecond)
	}
}

type testWriter struct{ t testing.TB }

func (w testWriter) Write(p []byte) (int, error) {
	if testing.Verbose() {
		w.t.Log(strings.TrimRight(string(p), "\n"))
	}
	return len(p), nil
}

var (
	buildOnce sync.Once
	buildPath string
	buildErr  error
)

// Binary builds cmd/switchboard once per test process and returns its path.
func Binary(t testing.TB) string {
	t.Helper()
	buildOnce.Do(func() {
		dir, err := os.MkdirTemp("", "switchboard-bin-")
		if err != nil {
			buildErr = err
			return
		}
		buildPath = filepath.Join(dir, "switchboard")
		cmd := exec.Command("go", "build", "-o", buildPath, "./cmd/switchboard")
		cmd.Dir = Root()
		out, err := cmd.CombinedOutput()
		if err != nil {
			buildErr = fmt.Errorf("go build: %v\n%s", err, out)
		}
	})
	if buildErr != nil {
		t.Fatal(buildErr)
	}
	return buildPath
}

// Process is the built binary running with JSON logs on stderr.
type Process struct {
	Cmd  *exec.Cmd
	Dir  string
	Logs *Buffer
	done chan struct{}
	err  error

	mu    sync.Mutex
	addrs map[string]string
}

// StartBinary runs `switchboard run -c <dir>/switchboard.yaml --log-format json` in a prepared directory and
// waits until every name in wait has logged "listening". It is killed when the test ends if still running.
func StartBinary(t testing.TB, yaml string, opts Options, wait ...string) *Process {
	t.Helper()
	dir := prepareDir(t, opts)
	yaml = Complete(yaml, filepath.Join(dir, "scripts"))
	if err := os.WriteFile(filepath.Join(dir, "switchboard.yaml"), []byte(yaml), 0o644); err != nil {
		t.Fatal(err)
	}
	return RunBinary(t, dir, wait...)
}

// RunBinary starts the binary in dir, an existing directory holding switchboard.yaml (to restart after a kill).
func RunBinary(t testing.TB, dir string, wait ...string) *Process {
	t.Helper()
	bin := Binary(t)
	p := &Process{Dir: dir, Logs: &Buffer{}, done: make(chan struct{}), addrs: map[string]string{}}
	p.Cmd = exec.Command(bin, "run", "-c", filepath.Join(dir, "switchboard.yaml"), "--log-format", "json")
	p.Cmd.Dir = dir
	stderr, err := p.Cmd.StderrPipe()
	if err != nil {
		t.Fatal(err)
	}
	p.Cmd.Stdout = p.Logs
	if err := p.Cmd.Start(); err != nil {
		t.Fatal(err)
	}
	go func() {
		sc := bufio.NewScanner(stderr)
		sc.Buffer(make([]byte, 64<<10), 1<<20)
		for sc.Scan() {
			line := sc.Bytes()
			p.Logs.Write(append(append([]byte{}, line...), '\n'))
			var rec map[string]any
			if json.Unmarshal(line, &rec) == nil && rec["msg"] == "listening" {
				part, _ := rec["part"].(string)
				if name, ok := rec["name"].(string); ok && name != "" {
					part = name
				}
				addr, _ := rec["addr"].(string)
				p.mu.Lock()
				p.addrs[part] = addr
				p.mu.Unlock()
			}
		}
		p.err = p.Cmd.Wait()
		close(p.done)
	}()
	t.Cleanup(func() {
		select {
		case <-p.done:
		default:
			_ = p.Cmd.Process.Kill()
			<-p.done
		}
	})
	for _, name := range wait {
		p.Addr(t, name)
	}
	return p
}

// Addr waits up to 10 s for the part to log that it listens and returns its address.
func (p *Process) Addr(t testing.TB, name string) string {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for {
		p.mu.Lock()
		a, ok := p.addrs[name]
		p.mu.Unlock()
		if ok {
			return a
		}
		select {
		case <-p.done:
			t.Fatalf("switchboard exited (%v) before %s listened; logs:\n%s", p.err, name, p.Logs.String())
		default:
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s never listened; logs:\n%s", name, p.Logs.String())
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// Signal sends sig to the process.
func (p *Process) Signal(t testing.TB, sig syscall.Signal) {
	t.Helper()
	if err := p.Cmd.Process.Signal(sig); err != nil {
		t.Fatal(err)
	}
}

// Wait waits for the process to exit and returns its exit code.
func (p *Process) Wait(t testing.TB, timeout time.Duration) int {
	t.Helper()
	select {
	case <-p.done:
	case <-time.After(timeout):
		t.Fatalf("switchboard still running after %v; logs:\n%s", timeout, p.Logs.String())
	}
	if p.Cmd.ProcessState == nil {
		return -1
	}
	return p.Cmd.ProcessState.ExitCode()
}

// Dial connects to addr over TCP with a test deadline.
func Dial(t testing.TB, addr string) net.Conn {
	t.Helper()
	c, err := net.DialTimeout("tcp", addr, 5*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	_ = c.SetDeadline(time.Now().Add(30 * time.Second))
	t.Cleanup(func() { c.Close() })
	return c
}
