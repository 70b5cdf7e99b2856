// Package luabindtest helps the tests of the parts' Lua bindings (engine/<part>/<part>lua): a runtime loaded
// from in-memory scripts with the bindings under test, its log in a buffer, and a way to call a handler.
package luabindtest

import (
	"bytes"
	"context"
	"strings"
	"sync"
	"testing"
	"testing/fstest"

	"github.com/sirupsen/logrus"
	lua "github.com/yuin/gopher-lua"

	"github.com/switchboard/switchboard/internal/testutil"
	"github.com/switchboard/switchboard/luabind"
)

// LogBuf is a goroutine-safe log sink.
type LogBuf struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (l *LogBuf) Write(p []byte) (int, error) { l.mu.Lock(); defer l.mu.Unlock(); return l.b.Write(p) }
func (l *LogBuf) String() string              { l.mu.Lock(); defer l.mu.Unlock(); return l.b.String() }

// WaitLog waits until the log has want.
func (l *LogBuf) WaitLog(t testing.TB, want string) {
	t.Helper()
	if !testutil.Poll(testutil.Wait, func() bool { return strings.Contains(l.String(), want) }) {
		t.Fatalf("log lacks %q:\n%s", want, l.String())
	}
}

// WaitLogCount waits until the log has want n times.
func (l *LogBuf) WaitLogCount(t testing.TB, want string, n int) {
	t.Helper()
	if !testutil.Poll(testutil.Wait, func() bool { return strings.Count(l.String(), want) >= n }) {
		t.Fatalf("log has %q %d times, want %d:\n%s", want, strings.Count(l.String(), want), n, l.String())
	}
}

// Options are what New builds a runtime with besides its configuration and scripts.
type Options struct {
	Bindings []luabind.Binding
	Topics   luabind.Topics
	// NoLoad leaves the runtime unloaded (the test binds more, or expects the load to fail).
	NoLoad bool
}

// New starts a runtime whose scripts directory holds files (name -> source), displayed as "scripts", and
// loads it (a failed load fails the test). It is closed when the test ends.
func New(t testing.TB, cfg luabind.Config, files map[string]string, opts Options) (*luabind.Runtime, fstest.MapFS, *LogBuf) {
	t.Helper()
	fsys := fstest.MapFS{}
	for name, src := range files {
		fsys[name] = &fstest.MapFile{Data: []byte(src)}
	}
	buf := &LogBuf{}
	l := logrus.New()
	l.SetOutput(buf)
	rt, err := luabind.New(luabind.Options{Config: cfg, FS: fsys, Display: "scripts", Log: logrus.NewEntry(l),
		Topics: opts.Topics, Bindings: opts.Bindings})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(rt.Close)
	if !opts.NoLoad {
		if err := rt.Load(); err != nil {
			t.Fatalf("load: %v", err)
		}
	}
	return rt, fsys, buf
}

// Check loads files into a runtime with the bindings and returns the load's script errors (none: nil).
func Check(t testing.TB, cfg luabind.Config, files map[string]string, bindings ...luabind.Binding) []*luabind.ScriptError {
	t.Helper()
	rt, _, _ := New(t, cfg, files, Options{Bindings: bindings, NoLoad: true})
	err := rt.Load()
	if err == nil {
		return nil
	}
	le, ok := err.(*luabind.LoadError)
	if !ok {
		t.Fatalf("load: %v", err)
	}
	return le.Errors
}

// CallString runs handler kind/name with a string argument and returns its first result as a string.
func CallString(t testing.TB, g *luabind.Generation, kind, name, arg string) (string, error) {
	t.Helper()
	h, ok := g.Handler(kind, name)
	if !ok {
		t.Fatalf("no %s %q", kind, name)
	}
	var out string
	err := g.Call(context.Background(), h, "test "+name, 0, func(L *lua.LState, r []lua.LValue) error {
		if len(r) > 0 {
			out = r[0].String()
		}
		return nil
	}, lua.LString(arg))
	return out, err
}
