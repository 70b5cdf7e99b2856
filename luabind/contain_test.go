package luabind

import (
	"context"
	"errors"
	"fmt"
	"runtime"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	lua "github.com/yuin/gopher-lua"

	"github.com/switchboard/switchboard/internal/testutil"
)

// Containment (issue 10): each test is a script run through the real runtime, as users write them.

const readOnlyScript = `
local sb = require "switchboard"
-- The issue's top level: with ("").__index the shared string table, every new VM wrote to the one table
-- all VMs read (fatal concurrent map write under load).
local s = ("").__index
if type(s) == "table" then s.trim = function(x) return x end end
-- Extending a library at the top level is the common idiom and stays allowed (in this VM's own proxy).
function string.shout(x) return x:upper() .. "!" end

local function try(f)
  local ok, err = pcall(f)
  if ok then return "written" end
  return tostring(err)
end
sb.on("attack", function()
  return table.concat({
    try(function() local s = ("").__index; s.trim = function() end end),
    try(function() getmetatable("").__index.upper = nil end),
    try(function() string.upper = nil end),
    try(function() string.trim = function() end end),
    try(function() string.shout = nil end),
    try(function() rawset(string, "upper", nil) end),
    try(function() table.insert(string, 1) end),
    try(function() table.remove(math) end),
    try(function() table.sort(table) end),
    try(function() table.insert = nil end),
    try(function() math.floor = nil end),
    try(function() sb.cache = nil end),
    try(function() sb.cache.save = nil end),
    try(function() rawset(sb.cache, "save", nil) end),
    try(function() sb.json.encode = nil end),
    try(function() sb.log.info = nil end),
    try(function() sb.newthing = 1 end),
    try(function() setmetatable(string, {}) end),
    try(function() setmetatable(_G, {}) end),
  }, "\n")
end)
sb.on("use", function(x)
  return ("ab"):upper() .. string.upper(x) .. x:shout() .. tostring(math.floor(2.5)) .. sb.json.encode({ 1 }) ..
    tostring(type(sb.cache.save)) .. tostring(("").__index)
end)
`

// Item 1: no table a script can reach is shared writable state. 48 concurrent clients try every write path
// (under -race: the old shared string table failed with a data race or a fatal concurrent map write).
func TestSharedTablesAreReadOnly(t *testing.T) {
	cfg := DefaultConfig()
	cfg.HandlerTimeout = time.Minute // 48 clients on a loaded machine under -race: the test is not about time
	rt, _, _ := newRuntime(t, cfg, map[string]string{"a.lua": readOnlyScript}, nil)
	g := rt.Current()
	want := []string{
		"attempt to index a non-table object(nil) with key 'trim'",
		"attempt to index a non-table object(boolean) with key '__index'",
		"string is read-only inside handlers (it is shared by every request this VM serves): set upper at the top level of a script",
		"string is read-only inside handlers",
		"string is read-only inside handlers",
		"rawset: string is read-only",
		"table.insert: string is read-only",
		"table.remove: math is read-only",
		"table.sort: table is read-only",
		"table is read-only inside handlers",
		"math is read-only inside handlers",
		"the switchboard module is read-only inside handlers",
		"sb.cache is read-only inside handlers",
		"rawset: sb.cache is read-only",
		"sb.json is read-only inside handlers",
		"sb.log is read-only inside handlers",
		"the switchboard module is read-only inside handlers",
		"cannot change a protected metatable",
		"cannot change a protected metatable",
	}
	var wg sync.WaitGroup
	errs := make(chan error, 48)
	for c := 0; c < 48; c++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := 0; i < 10; i++ {
				got, err := callString(t, g, "on", "attack", "")
				if err != nil {
					errs <- err
					return
				}
				lines := strings.Split(got, "\n")
				if len(lines) != len(want) {
					errs <- fmt.Errorf("attack: %d results:\n%s", len(lines), got)
					return
				}
				for j, w := range want {
					if !strings.Contains(lines[j], w) {
						errs <- fmt.Errorf("write %d: got %q, want %q", j+1, lines[j], w)
						return
					}
				}
				if got, err := callString(t, g, "on", "use", "cd"); err != nil || got != "ABCDCD!2[1]functionnil" {
					errs <- fmt.Errorf("use: %q %v", got, err)
					return
				}
			}
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Fatal(err)
	}
}

// Item 5: globals set by one invocation are not seen by the next; top-level globals are read by all and
// changed by none; module-level upvalues are per VM.
func TestGlobalsArePerInvocation(t *testing.T) {
	cfg := DefaultConfig()
	cfg.PoolSize = 1 // every call below runs on the same VM while it lives
	rt, _, _ := newRuntime(t, cfg, map[string]string{"a.lua": `
local sb = require "switchboard"
greeting = "hello"   -- a top-level global: every handler reads it
local hits = 0       -- a module-level upvalue: one per VM, kept between invocations
sb.on("set", function(v)
  hits = hits + 1
  secret = v           -- a missing "local": lives until this invocation ends
  greeting = "changed"
  _G.viaG = v
  return table.concat({ tostring(secret), greeting, tostring(viaG), tostring(rawget(_G, "secret")) }, ",")
end)
sb.on("get", function()
  hits = hits + 1
  return table.concat({ tostring(secret), greeting, tostring(viaG), tostring(hits) }, ",")
end)
sb.on("raw", function(v) rawset(_G, "raw", v) return tostring(raw) end)
sb.on("getraw", function() return tostring(raw) end)
sb.on("count", function() local n = 0 for _ in pairs(_G) do n = n + 1 end return tostring(n) end)
`}, nil)
	g := rt.Current()
	for _, c := range []struct{ name, arg, want string }{
		{"set", "A", "A,changed,A,nil"},
		{"get", "", "nil,hello,nil,2"},
		{"set", "B", "B,changed,B,nil"},
		{"get", "", "nil,hello,nil,4"},
		{"count", "", "0"},
		// rawset on _G cannot be undone cheaply: the VM is discarded after the invocation.
		{"raw", "R", "R"},
		{"getraw", "", "nil"},
		{"get", "", "nil,hello,nil,1"},
	} {
		if got, err := callString(t, g, "on", c.name, c.arg); err != nil || got != c.want {
			t.Fatalf("%s(%q): got %q %v, want %q", c.name, c.arg, got, err, c.want)
		}
	}
}

// Item 4: Runtime.Close ends every running handler at once, whatever its time limit, and refuses new ones.
func TestCloseCancelsRunningHandlers(t *testing.T) {
	cfg := DefaultConfig()
	cfg.HandlerTimeout = time.Hour
	rt, _, _ := newRuntime(t, cfg, map[string]string{"a.lua": `
local sb = require "switchboard"
sb.on("spin", function() while true do end end)
sb.on("sleep", function() sb.sleep(3600000) end)
sb.every(1, function() while true do end end)
`}, nil)
	g := rt.Current()
	errs := make(chan error, 2)
	for _, name := range []string{"spin", "sleep"} {
		go func() { _, err := callString(t, g, "on", name, ""); errs <- err }()
	}
	testutil.WaitFor(t, "handlers running", func() bool { return busyVMs(rt) >= 3 })
	start := time.Now()
	rt.Close()
	for i := 0; i < 2; i++ {
		err := <-errs
		if !errors.Is(err, ErrShutdown) || !strings.Contains(err.Error(), "the engine is shutting down") {
			t.Errorf("handler: %v", err)
		}
	}
	if took := time.Since(start); took > 5*time.Second {
		t.Fatalf("close took %v", took)
	}
	if _, err := callString(t, g, "on", "spin", ""); !errors.Is(err, errClosed) {
		t.Fatalf("after close: %v", err)
	}
	testutil.WaitFor(t, "VMs closed", func() bool { return rt.LiveVMs() == 0 })
}

func busyVMs(rt *Runtime) int {
	rt.vmMu.Lock()
	defer rt.vmMu.Unlock()
	n := 0
	for vm := range rt.vms {
		if _, ok := vm.busy(); ok {
			n++
		}
	}
	return n
}

// Item 6: fired timers free everything, and at most lua.max_timers live at once.
func TestTimersFreeAndCap(t *testing.T) {
	cfg := DefaultConfig()
	cfg.MaxTimers = 1000
	cfg.HandlerTimeout = time.Minute // a loaded machine under -race: this part is not about time
	rt, _, _ := newRuntime(t, cfg, map[string]string{"a.lua": `
local sb = require "switchboard"
local big = string.rep("x", 4096)
sb.on("arm", function(n)
  for i = 1, tonumber(n) do
    local payload = big .. i -- each closure holds its own 4 KB upvalue
    sb.after(1, function() local _ = #payload end)
  end
  return "armed"
end)
sb.on("overarm", function()
  local ok, err = pcall(function() for i = 1, 2000 do sb.after(60000, function() end) end end)
  return tostring(err)
end)
`}, nil)
	g := rt.Current()
	before := heapNow()
	for i := 0; i < 50; i++ {
		if got, err := callString(t, g, "on", "arm", "900"); err != nil || got != "armed" {
			t.Fatalf("arm: %q %v", got, err)
		}
		testutil.WaitFor(t, "timers fired", func() bool { return livePinned(g) == 0 })
	}
	// 45,000 fired timers with 4 KB each would hold 180 MB if any part of them stayed.
	if grew := int64(heapNow()) - int64(before); grew > 20<<20 {
		t.Fatalf("heap grew %d bytes after 45,000 fired timers", grew)
	}
	got, err := callString(t, g, "on", "overarm", "")
	if err != nil || !strings.Contains(got, "sb.after: 1000 timers are live, the limit (lua.max_timers)") {
		t.Fatalf("overarm: %q %v", got, err)
	}
}

// Item 6: a timer pinned to a VM that overruns its limit kills that VM; requests racing with it never get a
// closed VM from the pool (they used to get "internal error: ... nil pointer dereference").
func TestTimerOverrunLeavesPoolSound(t *testing.T) {
	cfg := DefaultConfig()
	cfg.HandlerTimeout = time.Second
	rt, _, logs := newRuntime(t, cfg, map[string]string{"a.lua": `
local sb = require "switchboard"
sb.on("spinlater", function() sb.after(1, function() while true do end end) return "ok" end)
sb.on("echo", function(s) return "echo:" .. s end)
`}, nil)
	g := rt.Current()
	var wg sync.WaitGroup
	var failed atomic.Int64
	stop := make(chan struct{})
	for c := 0; c < 8; c++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				select {
				case <-stop:
					return
				default:
				}
				if got, err := callString(t, g, "on", "echo", "x"); err != nil || got != "echo:x" {
					t.Errorf("echo: %q %v", got, err)
					failed.Add(1)
					return
				}
			}
		}()
	}
	for i := 0; i < 20; i++ {
		if _, err := callString(t, g, "on", "spinlater", ""); err != nil {
			t.Error(err)
		}
	}
	// Each timer either overruns (and its VM is closed) or finds its VM already closed by an earlier one
	// and is dropped with a warning.
	counts := func() (int, int) {
		return strings.Count(logs.String(), "handler cancelled: exceeded its time limit of 1s"),
			strings.Count(logs.String(), "timer dropped: the VM it was created in was discarded")
	}
	testutil.Poll(60*time.Second, func() bool { c, d := counts(); return c+d >= 20 })
	close(stop)
	wg.Wait()
	cancelled, dropped := counts()
	if livePinned(g) > 0 || cancelled < 1 || cancelled+dropped != 20 {
		t.Fatalf("%d timers live, %d cancelled, %d dropped", livePinned(g), cancelled, dropped)
	}
	if failed.Load() > 0 || strings.Contains(logs.String(), "internal error") {
		t.Fatalf("a request failed while timers died:\n%s", logs.String())
	}
}

func livePinned(g *Generation) int {
	g.bgMu.Lock()
	defer g.bgMu.Unlock()
	return len(g.pinned)
}

// Item 7: sb.cache counts bytes; a save past lua.cache_max_bytes fails with a clear error, and freeing
// (destroy, overwrite) makes room again.
func TestCacheByteLimit(t *testing.T) {
	cfg := DefaultConfig()
	cfg.CacheMaxBytes = 40 << 20
	cfg.HandlerTimeout = time.Minute // a loaded machine under -race: this test is not about time
	rt, _, _ := newRuntime(t, cfg, map[string]string{"a.lua": `
local sb = require "switchboard"
local big = string.rep("v", 10 * 1024 * 1024)
local function save(key, v)
  local ok, err = sb.cache.save(key, v)
  return tostring(ok) .. ":" .. tostring(err)
end
sb.on("fill", function()
  return table.concat({ save("big1", big), save("big2", big), save("big3", big), save("big4", big) }, "\n")
end)
sb.on("free", function()
  sb.cache.destroy("big1")
  local a = save("big4", big)
  local b = save("big2", "small") -- overwriting frees the old value's bytes
  return table.concat({ a, b, save("big5", big), save("big6", big) }, "\n")
end)
sb.on("huge", function() return save("huge", { big, big }) end)
`}, nil)
	g := rt.Current()
	entry := len("big1") + 10<<20 + 2 // the key, and the string's encoded size
	full := func(stored int) string {
		room := cfg.CacheMaxBytes - stored
		return fmt.Sprintf("nil:cache is full: %d bytes are stored and the value takes %d, %d more than lua.cache_max_bytes (%d) allows",
			stored, entry, entry-room, cfg.CacheMaxBytes)
	}
	got, err := callString(t, g, "on", "fill", "")
	if want := "true:nil\ntrue:nil\ntrue:nil\n" + full(3*entry); err != nil || got != want {
		t.Fatalf("fill:\n%s\n%v\nwant:\n%s", got, err, want)
	}
	got, err = callString(t, g, "on", "free", "")
	small := len("big2") + len("small") + 2
	if want := "true:nil\ntrue:nil\ntrue:nil\n" + full(3*entry+small); err != nil || got != want {
		t.Fatalf("free:\n%s\n%v\nwant:\n%s", got, err, want)
	}
	if b := rt.Cache().Bytes(); b != 3*entry+small {
		t.Fatalf("cache holds %d bytes, want %d", b, 3*entry+small)
	}
	// One value is also bounded by lua.max_string_bytes, as any value handed to Go.
	if _, err := callString(t, g, "on", "huge", ""); err == nil || !strings.Contains(err.Error(), "sb.cache.save: value is larger than lua.max_string_bytes (16777216 bytes)") {
		t.Fatalf("huge: %v", err)
	}
}

// Item 8: arrays past 65,535 elements keep working up to MaxArrayLen; past it, table.insert and every
// conversion say so instead of losing elements.
func TestLargeArrays(t *testing.T) {
	cfg := DefaultConfig()
	cfg.HandlerTimeout = time.Minute // a million elements under -race on a shared machine
	rt, _, _ := newRuntime(t, cfg, map[string]string{"a.lua": fmt.Sprintf(`
local sb = require "switchboard"
sb.on("append", function(n)
  local t = {}
  for i = 1, tonumber(n) do t[#t + 1] = i end
  local s = sb.json.encode(t)
  return #t .. ":" .. #s .. ":" .. s:sub(1, 1) .. ":" .. t[#t]
end)
sb.on("insert", function(n)
  local t = {}
  for i = 1, tonumber(n) do table.insert(t, i) end
  return tostring(#t)
end)
sb.on("pastlimit", function()
  local t = {}
  for i = 1, %d do t[i] = 1 end
  t[#t + 1] = 2 -- lands past the array part
  local s, err = sb.json.encode(t)
  local ok, cerr = pcall(sb.cache.save, "arr", t)
  local iok, ierr = pcall(table.insert, t, 3)
  return tostring(s) .. "|" .. tostring(err) .. "|" .. tostring(cerr) .. "|" .. tostring(ierr)
end)
sb.on("sparse", function() local t = {} t[2^40] = 1 t[%d] = 1 return "ok" end)
`, MaxArrayLen, MaxArrayLen+5)}, nil)
	g := rt.Current()
	if got, err := callString(t, g, "on", "append", "100000"); err != nil || got != "100000:588896:[:100000" {
		t.Fatalf("append: %q %v", got, err)
	}
	if got, err := callString(t, g, "on", "insert", "70000"); err != nil || got != "70000" {
		t.Fatalf("insert: %q %v", got, err)
	}
	got, err := callString(t, g, "on", "pastlimit", "")
	want := "nil|sb.json.encode: array longer than 1048575 elements (the Lua array limit)|" +
		"sb.cache.save: array longer than 1048575 elements (the Lua array limit)|table.insert: array longer than 1048575 elements (the Lua array limit)"
	if err != nil || !strings.HasSuffix(got, "table.insert: array longer than 1048575 elements (the Lua array limit)") ||
		!strings.Contains(got, "nil|sb.json.encode: array longer than 1048575 elements") || !strings.Contains(got, "sb.cache.save: array longer") {
		t.Fatalf("pastlimit:\n got %q %v\nwant %q", got, err, want)
	}
	if got, err := callString(t, g, "on", "sparse", ""); err != nil || got != "ok" {
		t.Fatalf("sparse: %q %v", got, err)
	}
}

// The memory guard (issue 10) protects the innocent: an abuser growing the heap is cancelled while a
// bystander's requests, running all along, keep succeeding.
func TestMemoryGuardSparesBystanders(t *testing.T) {
	cfg := DefaultConfig()
	cfg.HandlerTimeout = time.Minute
	cfg.MemoryLimitMB = 300
	rt, _, logs := newRuntime(t, cfg, map[string]string{"a.lua": `
local sb = require "switchboard"
sb.on("grow", function()
  local t, i = {}, 0
  while true do i = i + 1 t[i] = string.rep("g", 1000000) .. i end
end)
sb.on("concat", function()
  local s = "x"
  for i = 1, 40 do s = s .. s .. i if #s > 64 * 1024 * 1024 then s = s:sub(1, 1024) end end
  local t = {}
  while true do t[#t + 1] = string.rep("c", 4000000) end
end)
sb.on("work", function(n)
  local x = 0
  for i = 1, 20000 do x = x + i % 7 end
  return "ok" .. n
end)
`}, nil)
	g := rt.Current()
	runtime.GC()
	var stop atomic.Bool
	var served, failed atomic.Int64
	var wg sync.WaitGroup
	for c := 0; c < 3; c++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for !stop.Load() {
				got, err := callString(t, g, "on", "work", "1")
				if err != nil || got != "ok1" {
					failed.Add(1)
					t.Errorf("bystander: %q %v", got, err)
					continue
				}
				served.Add(1)
			}
		}()
	}
	for _, abuser := range []string{"grow", "concat"} {
		_, err := callString(t, g, "on", abuser, "")
		if !errors.Is(err, ErrMemory) || !strings.Contains(err.Error(), "process heap passed lua.memory_limit_mb (300 MiB)") {
			t.Errorf("%s: %v", abuser, err)
		}
		runtime.GC()
	}
	stop.Store(true)
	wg.Wait()
	if failed.Load() > 0 || served.Load() < 10 {
		t.Fatalf("bystander: %d served, %d failed\n%s", served.Load(), failed.Load(), logs.String())
	}
	if n := rt.MemoryCancellations(); n < 2 {
		t.Fatalf("memory cancellations %d", n)
	}
}

// Issue 11 item 6: with no handler running, the watchdog does not wake up.
func TestIdleWatchdogSleeps(t *testing.T) {
	rt, _, _ := newRuntime(t, DefaultConfig(), map[string]string{"a.lua": echoScript}, nil)
	testutil.WaitFor(t, "watchdog asleep", func() bool { return rt.sleeping.Load() })
	before := rt.WatchdogTicks()
	time.Sleep(200 * time.Millisecond) // forty ticks of the old 5 ms watchdog
	if n := rt.WatchdogTicks() - before; n != 0 {
		t.Fatalf("idle watchdog ticked %d times", n)
	}
	// A handler wakes it: a spinning one is still cancelled at its limit.
	cfg := DefaultConfig()
	cfg.HandlerTimeout = 50 * time.Millisecond
	rt2, _, _ := newRuntime(t, cfg, map[string]string{"a.lua": echoScript + `
sb.on("spin", function() while true do end end)`}, nil)
	testutil.WaitFor(t, "watchdog asleep", func() bool { return rt2.sleeping.Load() })
	for i := 0; i < 3; i++ {
		if _, err := callString(t, rt2.Current(), "on", "spin", ""); !errors.Is(err, ErrTimeout) {
			t.Fatalf("spin %d: %v", i, err)
		}
		testutil.WaitFor(t, "watchdog asleep again", func() bool { return rt2.sleeping.Load() })
	}
}

// A cancellation meant for one invocation never lands on the next one on the same VM.
func TestCancelTargetsOneInvocation(t *testing.T) {
	rt, _, _ := newRuntime(t, DefaultConfig(), map[string]string{"a.lua": echoScript}, nil)
	g := rt.Current()
	vm, err := g.get()
	if err != nil {
		t.Fatal(err)
	}
	var st uint64
	_ = vm.runShort(context.Background(), "first", 0, func(L *lua.LState) error {
		st, _ = vm.busy()
		return nil
	})
	if vm.cancel(st, ErrTimeout) {
		t.Fatal("cancelled a finished invocation")
	}
	err = vm.runShort(context.Background(), "second", 0, func(L *lua.LState) error { return L.DoString("return 1") })
	g.put(vm)
	if err != nil {
		t.Fatalf("second invocation: %v", err)
	}
}

// A VM makes its per-invocation globals table on the invocation's first global write (setGlobal) and drops
// it when the invocation ends. Two call flows hold two VMs at once: what one writes is not visible to the
// other, even while the writer's invocation (and so its scratch table) lives; a VM that wrote nothing holds
// no scratch table; the next invocation on the writer's VM starts without one.
func TestLazyGlobalsStayInTheirVM(t *testing.T) {
	rt, _, _ := newRuntime(t, DefaultConfig(), map[string]string{"a.lua": `
local sb = require "switchboard"
greeting = "hello"
sb.on("write", function(v) leak = v; greeting = v; return tostring(leak) .. "," .. greeting end)
sb.on("read", function() return tostring(leak) .. "," .. greeting end)
sb.on("env", function() return _G end)
`}, nil)
	g := rt.Current()
	run := func(vm *VM, name, arg string) lua.LValue {
		t.Helper()
		h, ok := g.Handler("on", name)
		if !ok {
			t.Fatalf("no handler %q", name)
		}
		L := vm.L
		L.Push(vm.Func(h))
		L.Push(lua.LString(arg))
		if err := L.PCall(1, 1, nil); err != nil {
			t.Fatalf("%s: %v", name, err)
		}
		v := L.Get(-1)
		L.Pop(1)
		return v
	}
	noScratch := func(vm *VM, when string) {
		t.Helper()
		if vm.scratch != nil || vm.gmeta.RawGetString("__index") != vm.top {
			t.Fatalf("%s: the VM holds a scratch table (%v) or _G does not read the top-level globals", when, vm.scratch)
		}
	}
	ctx := context.Background()
	a, err := g.Acquire(ctx)
	if err != nil {
		t.Fatal(err)
	}
	b, err := g.Acquire(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if a == b {
		t.Fatal("Acquire gave the same VM twice")
	}
	noScratch(a, "before any write")
	if got := run(a, "read", "").String(); got != "nil,hello" {
		t.Fatalf("a read before writing: %q", got)
	}
	noScratch(a, "after a read")
	if got := run(a, "write", "A").String(); got != "A,A" {
		t.Fatalf("a write: %q", got)
	}
	if a.scratch == nil || a.scratch.RawGetString("leak") != lua.LString("A") {
		t.Fatal("a's write did not go to its scratch table")
	}
	if got := run(b, "read", "").String(); got != "nil,hello" {
		t.Fatalf("b sees a's globals while a's invocation lives: %q", got)
	}
	noScratch(b, "b after reading")
	if got := run(a, "read", "").String(); got != "A,A" {
		t.Fatalf("a lost its own globals within its invocation: %q", got)
	}
	// _G is the state's globals table and every function's environment: the small table newState put in
	// place of gopher-lua's, empty, its raw writes still caught at the end of the invocation.
	if env := run(b, "env", ""); env != b.L.G.Global || b.L.Env != b.L.G.Global || env == a.L.G.Global {
		t.Fatal("_G is not this VM's own globals table")
	}
	if k, _ := a.L.G.Global.Next(lua.LNil); k != lua.LNil {
		t.Fatalf("_G holds %v raw", k)
	}
	if VMOf(a.L) != a || VMOf(b.L) != b {
		t.Fatal("the registry does not lead to the VM")
	}
	a.Release()
	noScratch(a, "after the invocation ended")
	b.Release()
	for i := 0; i < 2; i++ { // both VMs are in the pool now; either serves
		if got, err := callString(t, g, "on", "read", ""); err != nil || got != "nil,hello" {
			t.Fatalf("read after the flows ended: %q %v", got, err)
		}
	}
}
