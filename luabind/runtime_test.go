package luabind

import (
	"bytes"
	"context"
	"errors"
	"io"
	"runtime"
	"strings"
	"sync"
	"testing"
	"testing/fstest"
	"time"

	"github.com/sirupsen/logrus"
	lua "github.com/yuin/gopher-lua"
	"go.uber.org/goleak"

	"github.com/switchboard/switchboard/internal/testutil"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

type logBuf struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (l *logBuf) Write(p []byte) (int, error) { l.mu.Lock(); defer l.mu.Unlock(); return l.b.Write(p) }
func (l *logBuf) String() string              { l.mu.Lock(); defer l.mu.Unlock(); return l.b.String() }

// newRuntime loads files (name -> source) as the scripts directory.
func newRuntime(t *testing.T, cfg Config, files map[string]string, topics Topics) (*Runtime, fstest.MapFS, *logBuf) {
	t.Helper()
	fsys := fstest.MapFS{}
	for name, src := range files {
		fsys[name] = &fstest.MapFile{Data: []byte(src)}
	}
	buf := &logBuf{}
	l := logrus.New()
	l.SetOutput(buf)
	rt, err := New(Options{Config: cfg, FS: fsys, Display: "scripts", Log: logrus.NewEntry(l), Topics: topics})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(rt.Close)
	if err := rt.Load(); err != nil {
		t.Fatalf("load: %v", err)
	}
	return rt, fsys, buf
}

// checkScripts loads files and returns the load's script errors (nil when it succeeded).
func checkScripts(t *testing.T, files map[string]string) []*ScriptError {
	t.Helper()
	fsys := fstest.MapFS{}
	for name, src := range files {
		fsys[name] = &fstest.MapFile{Data: []byte(src)}
	}
	l := logrus.New()
	l.SetOutput(io.Discard)
	rt, err := New(Options{Config: DefaultConfig(), FS: fsys, Display: "scripts", Log: logrus.NewEntry(l)})
	if err != nil {
		t.Fatal(err)
	}
	defer rt.Close()
	var le *LoadError
	if err := rt.Load(); errors.As(err, &le) {
		return le.Errors
	} else if err != nil {
		t.Fatal(err)
	}
	return nil
}

// callString runs handler kind/name with a string argument and returns its first result as a string.
func callString(t *testing.T, g *Generation, kind, name, arg string) (string, error) {
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

const echoScript = `
local sb = require "switchboard"
sb.on("echo", function(s) return "v1:" .. s end)
`

func TestHandlerRunsAndReturns(t *testing.T) {
	rt, _, _ := newRuntime(t, DefaultConfig(), map[string]string{"a.lua": echoScript}, nil)
	got, err := callString(t, rt.Current(), "on", "echo", "hi")
	if err != nil || got != "v1:hi" {
		t.Fatalf("got %q, %v", got, err)
	}
}

func TestScriptErrorNamesFileLineAndEvent(t *testing.T) {
	rt, _, _ := newRuntime(t, DefaultConfig(), map[string]string{"a.lua": `
local sb = require "switchboard"
sb.on("boom", function(s)
  local t = nil
  return t.x
end)`}, nil)
	_, err := callString(t, rt.Current(), "on", "boom", "")
	var se *ScriptError
	if !errors.As(err, &se) {
		t.Fatalf("want ScriptError, got %T %v", err, err)
	}
	if se.File != "scripts/a.lua" || se.Line != 5 || !strings.Contains(err.Error(), "(event test boom)") {
		t.Fatalf("got %q (file %q line %d)", err, se.File, se.Line)
	}
}

func TestLoadErrorsSyntaxAndTopLevel(t *testing.T) {
	cases := map[string]struct{ src, want string }{
		"syntax":   {"local x = = 1\n", "scripts/bad.lua:1: near '='"},
		"toplevel": {"\n\nerror('nope')\n", "scripts/bad.lua:3: nope"},
		"dup":      {"local sb = require 'switchboard'\nsb.on('x', function() end)\nsb.subscribe('t', function() end)\nsb.subscribe('t', function() end)\n", ""},
	}
	for name, c := range cases {
		t.Run(name, func(t *testing.T) {
			errs := checkScripts(t, map[string]string{"bad.lua": c.src})
			if c.want == "" {
				if len(errs) != 0 {
					t.Fatalf("unexpected errors %v", errs)
				}
				return
			}
			if len(errs) != 1 || !strings.HasPrefix(errs[0].Error(), c.want) {
				t.Fatalf("got %v, want prefix %q", errs, c.want)
			}
		})
	}
}

func TestReloadSwapsAndBrokenReloadKeepsOld(t *testing.T) {
	rt, fsys, logs := newRuntime(t, DefaultConfig(), map[string]string{"a.lua": echoScript}, nil)
	fsys["a.lua"] = &fstest.MapFile{Data: []byte(strings.Replace(echoScript, "v1:", "v2:", 1))}
	if err := rt.Load(); err != nil {
		t.Fatal(err)
	}
	if got, _ := callString(t, rt.Current(), "on", "echo", "x"); got != "v2:x" {
		t.Fatalf("after reload got %q", got)
	}
	fsys["a.lua"] = &fstest.MapFile{Data: []byte("sb.on(")}
	err := rt.Load()
	var le *LoadError
	if !errors.As(err, &le) || !strings.Contains(err.Error(), "scripts/a.lua:1") {
		t.Fatalf("broken reload: %v", err)
	}
	if got, _ := callString(t, rt.Current(), "on", "echo", "y"); got != "v2:y" {
		t.Fatalf("old generation should serve, got %q", got)
	}
	if !strings.Contains(logs.String(), "scripts/a.lua:1") {
		t.Fatalf("error not logged: %s", logs.String())
	}
}

func TestInFlightHandlerFinishesOnItsGeneration(t *testing.T) {
	rt, fsys, _ := newRuntime(t, DefaultConfig(), map[string]string{"a.lua": `
local sb = require "switchboard"
sb.on("slow", function(s) sb.sleep(100) return "old:" .. s end)`}, nil)
	g := rt.Current()
	done := make(chan string)
	go func() {
		got, err := callString(t, g, "on", "slow", "a")
		if err != nil {
			got = err.Error()
		}
		done <- got
	}()
	testutil.WaitFor(t, "the slow handler to start", func() bool { return busyVMs(rt) > 0 })
	fsys["a.lua"] = &fstest.MapFile{Data: []byte(`local sb = require "switchboard"
sb.on("slow", function(s) return "new:" .. s end)`)}
	if err := rt.Load(); err != nil {
		t.Fatal(err)
	}
	if got := <-done; got != "old:a" {
		t.Fatalf("in-flight got %q", got)
	}
	if got, _ := callString(t, rt.Current(), "on", "slow", "b"); got != "new:b" {
		t.Fatalf("new got %q", got)
	}
}

func TestInfiniteLoopCancelledWhileOthersRun(t *testing.T) {
	cfg := DefaultConfig()
	cfg.HandlerTimeout = 100 * time.Millisecond
	rt, _, _ := newRuntime(t, cfg, map[string]string{"a.lua": echoScript + `
sb.on("spin", function() while true do end end)`}, nil)
	g := rt.Current()
	errc := make(chan error)
	go func() { _, err := callString(t, g, "on", "spin", ""); errc <- err }()
	// Other handlers keep being served while the loop spins.
	for i := 0; i < 50; i++ {
		if got, err := callString(t, g, "on", "echo", "z"); err != nil || got != "v1:z" {
			t.Fatalf("echo during spin: %q %v", got, err)
		}
	}
	err := <-errc
	if !errors.Is(err, ErrTimeout) || !strings.Contains(err.Error(), "scripts/a.lua:") || !strings.Contains(err.Error(), "time limit of 100ms") {
		t.Fatalf("spin: %v", err)
	}
}

func TestCallerCancellationStopsHandler(t *testing.T) {
	rt, _, _ := newRuntime(t, DefaultConfig(), map[string]string{"a.lua": `
local sb = require "switchboard"
sb.on("wait", function() sb.sleep(60000) end)`}, nil)
	g := rt.Current()
	h, _ := g.Handler("on", "wait")
	ctx, cancel := context.WithTimeout(context.Background(), 50*time.Millisecond)
	defer cancel()
	start := time.Now()
	err := g.Call(ctx, h, "wait", time.Minute, nil)
	if err == nil || time.Since(start) > 5*time.Second {
		t.Fatalf("err %v after %v", err, time.Since(start))
	}
}

func TestMemoryCaps(t *testing.T) {
	cfg := DefaultConfig()
	cfg.HandlerTimeout = time.Minute // the memory guard, not the time limit, must stop "grow"
	cfg.MemoryLimitMB = 300
	rt, _, _ := newRuntime(t, cfg, map[string]string{"a.lua": `
local sb = require "switchboard"
sb.on("rep", function() return string.rep('x', 2^40) end)
sb.on("concat", function() local t = {} for i = 1, 100 do t[i] = string.rep('y', 200000) end return table.concat(t) end)
sb.on("format", function() return string.format("%999999999d", 1) end)
sb.on("sparse", function() local t = {} t[2^30] = 1 return "ok" end)
sb.on("grow", function() local t = {} local i = 0 while true do i = i + 1 t[i] = string.rep("x", 1000000) .. i end end)`}, nil)
	g := rt.Current()
	// In order: "grow" fills the heap, so it runs last.
	for _, c := range []struct{ name, want string }{
		{"rep", "string.rep: result of 1099511627776 bytes exceeds lua.max_string_bytes"},
		{"concat", "table.concat: result exceeds lua.max_string_bytes"},
		{"format", "string.format: width or precision"},
		{"grow", "process heap passed lua.memory_limit_mb"},
	} {
		runtime.GC()
		_, err := callString(t, g, "on", c.name, "")
		if err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("%s: got %v, want %q", c.name, err, c.want)
		}
	}
	runtime.GC()
	if got, err := callString(t, g, "on", "sparse", ""); err != nil || got != "ok" {
		t.Errorf("sparse: %q %v", got, err)
	}
}

func TestSandboxHasNoEscapes(t *testing.T) {
	rt, _, _ := newRuntime(t, DefaultConfig(), map[string]string{"a.lua": `
local sb = require "switchboard"
sb.on("probe", function(name)
  local v = _G[name]
  if name == "string.dump" then v = string.dump end
  if name == "math.randomseed" then v = math.randomseed end
  return type(v)
end)
sb.on("require", function(name) local ok, err = pcall(require, name) return tostring(err) end)`, "lib/util.lua": `return { twice = function(x) return 2 * x end }`}, nil)
	g := rt.Current()
	for _, name := range []string{"os", "io", "load", "loadstring", "dofile", "loadfile", "getfenv", "setfenv",
		"collectgarbage", "module", "package", "debug", "string.dump", "math.randomseed", "newproxy"} {
		if got, err := callString(t, g, "on", "probe", name); err != nil || got != "nil" {
			t.Errorf("%s: %q %v", name, got, err)
		}
	}
	for _, mod := range []string{"os", "io", "../etc/passwd", "a"} {
		got, _ := callString(t, g, "on", "require", mod)
		if !strings.Contains(got, "module") {
			t.Errorf("require %q: %q", mod, got)
		}
	}
	if got, _ := callString(t, g, "on", "require", "lib.util"); !strings.HasPrefix(got, "table") {
		t.Errorf("require lib.util: %q", got)
	}
}

func TestTimersRunAndStopOnReload(t *testing.T) {
	cfg := DefaultConfig()
	cfg.PoolSize = 1
	rt, fsys, _ := newRuntime(t, cfg, map[string]string{"a.lua": `
local sb = require "switchboard"
sb.every(5, function() sb.cache.save("ticks", (sb.cache.load("ticks") or 0) + 1) end)
sb.on("later", function() sb.after(5, function() sb.cache.save("after", "fired") end) end)`}, nil)
	cache := rt.Cache()
	if _, err := callString(t, rt.Current(), "on", "later", ""); err != nil {
		t.Fatal(err)
	}
	testutil.WaitFor(t, "the timers to fire", func() bool {
		e, err := cache.Load("ticks")
		a, aerr := cache.Load("after")
		return err == nil && e.Value.(int64) >= 3 && aerr == nil && a.Value == "fired"
	})
	fsys["a.lua"] = &fstest.MapFile{Data: []byte("-- no timers\n")}
	if err := rt.Load(); err != nil {
		t.Fatal(err)
	}
	time.Sleep(20 * time.Millisecond)
	e1, _ := cache.Load("ticks")
	time.Sleep(50 * time.Millisecond)
	e2, _ := cache.Load("ticks")
	if e1.Value != e2.Value {
		t.Fatalf("timer still running after reload: %v -> %v", e1.Value, e2.Value)
	}
}

type fakeTopics struct {
	mu   sync.Mutex
	subs map[string][]func(any)
}

func (f *fakeTopics) Publish(topic string, payload any) int {
	f.mu.Lock()
	subs := f.subs[topic]
	f.mu.Unlock()
	for _, s := range subs {
		s(payload)
	}
	return len(subs)
}

func (f *fakeTopics) Subscribe(topic string, deliver func(any)) (func(), error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.subs == nil {
		f.subs = map[string][]func(any){}
	}
	f.subs[topic] = append(f.subs[topic], deliver)
	n := len(f.subs[topic]) - 1
	return func() { f.mu.Lock(); f.subs[topic][n] = func(any) {}; f.mu.Unlock() }, nil
}

func TestPublishSubscribeCacheJSON(t *testing.T) {
	topics := &fakeTopics{}
	rt, _, _ := newRuntime(t, DefaultConfig(), map[string]string{"a.lua": `
local sb = require "switchboard"
sb.subscribe("in", function(msg, topic)
  sb.publish("out", { topic = topic, n = msg.n * 2, list = { 1, 2, 3 } })
end)
sb.on("json", function(s)
  local v = sb.json.decode(s)
  v.added = true
  return sb.json.encode(v)
end)
sb.on("cache", function()
  assert(sb.cache.save("k", { a = 1 }, 60000) == true)
  local v, info = sb.cache.load("k")
  local missing, err = sb.cache.load("nope")
  return sb.json.encode({ a = v.a, key = info.key, size = sb.cache.size(), err = err, destroyed = sb.cache.destroy("k") })
end)`}, topics)
	got := make(chan any, 1)
	topics.Subscribe("out", func(p any) { got <- p })
	topics.Publish("in", map[string]any{"n": int64(21)})
	select {
	case p := <-got:
		m := p.(map[string]any)
		if m["n"] != int64(42) || m["topic"] != "in" || len(m["list"].([]any)) != 3 {
			t.Fatalf("published %#v", m)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("nothing published")
	}
	if s, err := callString(t, rt.Current(), "on", "json", `{"b":[1,"x"]}`); err != nil || s != `{"added":true,"b":[1,"x"]}` {
		t.Fatalf("json: %s %v", s, err)
	}
	if s, err := callString(t, rt.Current(), "on", "cache", ""); err != nil || s != `{"a":1,"destroyed":true,"err":"Object not found","key":"k","size":1}` {
		t.Fatalf("cache: %s %v", s, err)
	}
}

func TestLongHandlerBoundToContext(t *testing.T) {
	rt, _, _ := newRuntime(t, DefaultConfig(), map[string]string{"a.lua": `
local sb = require "switchboard"
sb.on("flow", function() sb.sleep(60000) end)`}, nil)
	g := rt.Current()
	h, _ := g.Handler("on", "flow")
	ctx, cancel := context.WithCancel(context.Background())
	vm, err := g.Acquire(ctx)
	if err != nil {
		t.Fatal(err)
	}
	go func() { time.Sleep(30 * time.Millisecond); cancel() }()
	vm.L.Push(vm.Func(h))
	err = vm.LongError(vm.L.PCall(0, 0, nil), "flow test")
	vm.Release()
	if err == nil || !strings.Contains(err.Error(), "interrupted") {
		t.Fatalf("long handler: %v", err)
	}
}

// A call flow (long handler) is outside the deadline walk but not outside the memory guard.
func TestMemoryGuardReachesLongHandlers(t *testing.T) {
	cfg := DefaultConfig()
	cfg.MemoryLimitMB = 300
	rt, _, _ := newRuntime(t, cfg, map[string]string{"a.lua": `
local sb = require "switchboard"
sb.on("grow", function() local t = {} local i = 0 while true do i = i + 1 t[i] = string.rep("z", 1000000) .. i end end)`}, nil)
	g := rt.Current()
	h, _ := g.Handler("on", "grow")
	runtime.GC()
	vm, err := g.Acquire(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	vm.L.Push(vm.Func(h))
	err = vm.LongError(vm.L.PCall(0, 0, nil), "flow grow")
	vm.Release()
	runtime.GC()
	if err == nil || !errors.Is(err, ErrMemory) || !strings.Contains(err.Error(), "lua.memory_limit_mb") {
		t.Fatalf("long handler: %v", err)
	}
	if n := rt.MemoryCancellations(); n < 1 {
		t.Fatalf("memory cancellations counted %d", n)
	}
}

// sb.cache refuses a new key past lua.cache_max_entries (existing keys can still be overwritten), and frees
// room when keys expire.
func TestCacheFull(t *testing.T) {
	cfg := DefaultConfig()
	cfg.CacheMaxEntries = 2
	rt, _, _ := newRuntime(t, cfg, map[string]string{"a.lua": `
local sb = require "switchboard"
sb.on("fill", function()
  local out = {}
  out[1] = tostring(sb.cache.save("a", 1))
  out[2] = tostring(sb.cache.save("b", 2, 20))
  local ok, err = sb.cache.save("c", 3)
  out[3] = tostring(ok) .. ":" .. tostring(err)
  out[4] = tostring(sb.cache.save("a", 10))
  sb.sleep(40)
  out[5] = tostring(sb.cache.save("c", 3))
  return table.concat(out, ",")
end)`}, nil)
	got, err := callString(t, rt.Current(), "on", "fill", "")
	if err != nil || got != "true,true,nil:cache is full,true,true" {
		t.Fatalf("got %q, %v", got, err)
	}
}

// Runaway recursion ends in a Lua error, not a crash, and the VM pool keeps serving.
func TestRunawayRecursion(t *testing.T) {
	rt, _, _ := newRuntime(t, DefaultConfig(), map[string]string{"a.lua": `
local sb = require "switchboard"
local function down(n) return 1 + down(n + 1) end
local function wide(...) return wide(1, 2, 3, 4, 5, 6, 7, 8, ...) end
sb.on("down", function() return down(1) end)
sb.on("wide", function() return wide() end)
sb.on("echo", function(s) return "ok:" .. s end)`}, nil)
	g := rt.Current()
	for _, name := range []string{"down", "wide"} {
		_, err := callString(t, g, "on", name, "")
		if err == nil || !strings.Contains(err.Error(), "scripts/a.lua") {
			t.Errorf("%s: want a located Lua error, got %v", name, err)
		}
	}
	if got, err := callString(t, g, "on", "echo", "x"); err != nil || got != "ok:x" {
		t.Fatalf("after recursion: %q %v", got, err)
	}
}

// A VM's value stack starts at 128 slots (newState) and grows when a handler needs more: wide calls, deep
// recursion and unpack of thousands of values work, on the first invocation of a VM and on the next one,
// which finds the grown stack.
func TestValueStackGrows(t *testing.T) {
	cfg := DefaultConfig()
	cfg.PoolSize = 1 // both rounds below run on the same VM
	rt, _, _ := newRuntime(t, cfg, map[string]string{"a.lua": `
local sb = require "switchboard"
local function sum(n, a, b, c, d, e, f) if n == 0 then return 0 end return n + sum(n - 1, a, b, c, d, e, f) end
local function count(...) return select("#", ...) end
sb.on("grow", function(s)
  local t = {}
  for i = 1, 3000 do t[i] = i end
  local many = count(unpack(t))
  local deep = sum(150, 1, 2, 3, 4, 5, 6)
  return s .. ":" .. many .. "," .. deep .. "," .. table.concat(t, ",", 2998)
end)`}, nil)
	g := rt.Current()
	for _, round := range []string{"first", "second"} {
		if got, err := callString(t, g, "on", "grow", round); err != nil || got != round+":3000,11325,2998,2999,3000" {
			t.Fatalf("%s: %q %v", round, got, err)
		}
	}
}

// sb.json.null stands for JSON null where a Lua nil would drop the key or end the array; Go receives nil.
func TestJSONNull(t *testing.T) {
	rt, _, _ := newRuntime(t, DefaultConfig(), map[string]string{"a.lua": `
local sb = require "switchboard"
sb.on("null", function()
  local null = sb.json.null
  local enc = sb.json.encode({ a = null, list = { 1, null, 3 } })
  local ok = sb.cache.save("n", { v = null })
  local _, info = sb.cache.load("n")
  local pcallOk = pcall(setmetatable, null, {})
  return table.concat({ enc, tostring(null), tostring(null == sb.json.null), type(null),
    tostring(info.value.v), tostring(pcallOk), tostring(getmetatable(null)) }, "|")
end)`}, nil)
	got, err := callString(t, rt.Current(), "on", "null", "")
	if err != nil || got != `{"a":null,"list":[1,null,3]}|null|true|userdata|nil|false|false` {
		t.Fatalf("got %q, %v", got, err)
	}
}

// sb.json.array marks a table as a JSON array, so an empty one encodes as [] (actionhero's `problems: []`);
// every array the engine hands to Lua (decoded, loaded from the cache, received on a topic) keeps the mark,
// and the mark survives a round trip through each.
func TestJSONArrays(t *testing.T) {
	topics := &fakeTopics{}
	rt, _, _ := newRuntime(t, DefaultConfig(), map[string]string{"a.lua": `
local sb = require "switchboard"
sb.subscribe("arrays.in", function(msg)
  sb.publish("arrays.out", sb.json.encode(msg))
end)
sb.on("arrays", function()
  local out = {}
  local function add(s) out[#out + 1] = s end
  add(sb.json.encode({ problems = sb.json.array{}, empty = {} }))        -- the mark, and a plain table
  add(sb.json.encode(sb.json.array()))                                   -- a new empty array
  local marked = sb.json.array({ "a", "b" })
  marked[2] = nil
  add(sb.json.encode(marked))                                            -- still an array after removals
  add(sb.json.encode(sb.json.decode('{"a":[],"b":{},"c":[[],[1,null,3]]}')))
  local holes = sb.json.array()
  holes[3] = "x"
  add(sb.json.encode(holes))                                             -- a hole is null
  sb.cache.save("arr", { list = sb.json.array{} })
  local v = sb.cache.load("arr")
  add(sb.json.encode(v))
  add(tostring(sb.json.isarray(v.list)) .. "," .. tostring(sb.json.isarray({})))
  add(tostring(getmetatable(v.list)))                                    -- the shared mark is out of reach
  add(tostring(pcall(setmetatable, v.list, {})))
  local bad = sb.json.array()
  bad.name = "x"
  local s, err = sb.json.encode(bad)
  add(tostring(s) .. ":" .. err)
  add(select(2, pcall(sb.json.array, setmetatable({}, {}))))
  add(select(2, pcall(sb.json.array, 7)))
  return table.concat(out, "|")
end)`}, topics)
	got, err := callString(t, rt.Current(), "on", "arrays", "")
	want := strings.Join([]string{
		`{"empty":{},"problems":[]}`,
		`[]`,
		`["a"]`,
		`{"a":[],"b":{},"c":[[],[1,null,3]]}`,
		`[null,null,"x"]`,
		`{"list":[]}`,
		`true,false`,
		`false`,
		`false`,
		`nil:sb.json.encode: a JSON array (sb.json.array) has the key "name", which is not an index from 1 to 1048575`,
		`scripts/a.lua:28: sb.json.array: the table has a metatable of its own`,
		`scripts/a.lua:29: sb.json.array: expected a table or nothing, got number`,
	}, "|")
	if err != nil || got != want {
		t.Fatalf("got\n%s\nwant\n%s\n(%v)", strings.ReplaceAll(got, "|", "\n"), strings.ReplaceAll(want, "|", "\n"), err)
	}
	out := make(chan any, 1)
	topics.Subscribe("arrays.out", func(p any) { out <- p })
	topics.Publish("arrays.in", map[string]any{"empty": []any{}, "obj": map[string]any{}})
	select {
	case p := <-out:
		if p != `{"empty":[],"obj":{}}` {
			t.Fatalf("a topic message's empty array came back as %v", p)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("nothing published")
	}
}
