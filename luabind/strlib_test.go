package luabind

import (
	"context"
	"errors"
	"runtime"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	lua "github.com/yuin/gopher-lua"
)

// callOn runs handler "on"/name with string arguments and returns its results joined by ",".
func callOn(t testing.TB, g *Generation, name string, timeout time.Duration, args ...string) (string, error) {
	t.Helper()
	h, ok := g.Handler("on", name)
	if !ok {
		t.Fatalf("no handler %q", name)
	}
	lv := make([]lua.LValue, len(args))
	for i, a := range args {
		lv[i] = lua.LString(a)
	}
	var out []string
	err := g.Call(context.Background(), h, "test "+name, timeout, func(L *lua.LState, r []lua.LValue) error {
		for _, v := range r {
			out = append(out, v.String())
		}
		return nil
	}, lv...)
	return strings.Join(out, ","), err
}

// The textbook trim on a parameter with 40,000 inner spaces backtracks quadratically (minutes of CPU in
// gopher-lua's matcher, which cannot be interrupted). Ours stops at the handler's deadline with the usual
// error, and another handler is served meanwhile.
func TestTrimPatternStopsAtDeadline(t *testing.T) {
	cfg := DefaultConfig()
	cfg.HandlerTimeout = 500 * time.Millisecond
	rt := startRuntime(t, cfg, map[string]string{"a.lua": `local sb = require "switchboard"
sb.on("trim", function(s)
  return s:match("^%s*(.-)%s*$")
end)
sb.on("echo", function(s) return s end)`})
	g := rt.Current()

	// Only spaces: the same pattern answers at once.
	if got, err := callOn(t, g, "trim", 0, strings.Repeat(" ", 40000)); err != nil || got != "" {
		t.Fatalf("spaces only: %q, %v", got, err)
	}

	stop := make(chan struct{})
	var served atomic.Int64
	var bystander sync.WaitGroup
	bystander.Add(1)
	go func() {
		defer bystander.Done()
		for {
			select {
			case <-stop:
				return
			default:
			}
			if got, err := callOn(t, g, "echo", 0, "ping"); err != nil || got != "ping" {
				t.Errorf("bystander: %q, %v", got, err)
				return
			}
			served.Add(1)
		}
	}()
	start := time.Now()
	_, err := callOn(t, g, "trim", 0, "x"+strings.Repeat(" ", 40000)+"y")
	took := time.Since(start)
	close(stop)
	bystander.Wait()

	var se *ScriptError
	if !errors.As(err, &se) || !errors.Is(err, ErrTimeout) {
		t.Fatalf("want a timed-out ScriptError, got %T %v", err, err)
	}
	if want := "scripts/a.lua:3: handler cancelled: exceeded its time limit of 500ms (event test trim)"; err.Error() != want {
		t.Fatalf("got %q\nwant %q", err, want)
	}
	if took > 5*time.Second { // the watchdog ticks every 5 ms and the matcher looks every few µs
		t.Fatalf("the match ran %v past a 500 ms limit", took)
	}
	if served.Load() == 0 {
		t.Fatal("no other handler was served while the pattern ran")
	}
	if got, err := callOn(t, g, "echo", 0, "after"); err != nil || got != "after" {
		t.Fatalf("after: %q, %v", got, err)
	}
}

// The other pattern functions stop too: gsub's replacement loop, gmatch's iterations and find.
func TestPatternFunctionsStopAtDeadline(t *testing.T) {
	cfg := DefaultConfig()
	rt := startRuntime(t, cfg, map[string]string{"a.lua": `local sb = require "switchboard"
local s = "x" .. (" "):rep(30000) .. "y"
sb.on("find", function() return s:find("%s*(.-)%s*$") end)
sb.on("gsub", function() return (s:gsub("%s*(.-)%s*$", "%1")) end)
sb.on("gmatch", function() for w in s:gmatch("(.-)%s*$") do end end)
sb.on("gsubmany", function() local n = 0 for i = 1, 1e9 do n = n + select(2, ("ab"):rep(1000):gsub("a", "%0")) end end)`})
	g := rt.Current()
	for _, name := range []string{"find", "gsub", "gmatch", "gsubmany"} {
		start := time.Now()
		_, err := callOn(t, g, name, 200*time.Millisecond)
		if !errors.Is(err, ErrTimeout) || !strings.Contains(err.Error(), "exceeded its time limit of 200ms") {
			t.Errorf("%s: got %v", name, err)
		}
		if took := time.Since(start); took > 5*time.Second {
			t.Errorf("%s: ran %v past a 200 ms limit", name, took)
		}
	}
}

// limitScript exercises every library function whose result size an argument chooses.
const limitScript = `local sb = require "switchboard"
local function count(...) return select("#", ...) end
local big = ("y"):rep(16777216)
sb.on("concat_j", function() return table.concat({}, "", 1, 2e10) end)
sb.on("concat_size", function() local t = {} for i = 1, 20 do t[i] = ("c"):rep(1e6) end return table.concat(t, ",") end)
sb.on("gsub", function() return string.gsub(("x"):rep(512), ".", big) end)
sb.on("gsub_expand", function() return (("a"):rep(1e6):gsub(".+", ("%0"):rep(100))) end)
sb.on("gsub_ok", function() return #(("ab"):rep(1000):gsub("a", ("z"):rep(100))) end)
sb.on("format", function() return string.format(("%s"):rep(8), big, big, big, big, big, big, big, big) end)
sb.on("format_q", function() return string.format("%q", ("\1"):rep(5e6)) end)
sb.on("format_ok", function() return #string.format("%s=%d %5.2f", ("k"):rep(1e6), 42, 3.14159) end)
sb.on("format_table", function() return string.format("%d", {}) end)
sb.on("unpack", function() return count(unpack({}, 1, 1e6)) end)
sb.on("unpack_wrap", function() return count(unpack({}, -2^62, 2^62)) end)
sb.on("unpack_ok", function() local t = {} for i = 1, 8000 do t[i] = i end return count(unpack(t)) end)
sb.on("byte", function() return count(("b"):rep(1e6):byte(1, -1)) end)
sb.on("byte_ok", function() return count(("b"):rep(8000):byte(1, -1)) end)
sb.on("byte_first", function() return ("ABC"):rep(1e6):byte() end)
sb.on("rep", function() return ("r"):rep(2^40) end)
sb.on("print", function() local t = {} for i = 1, 8000 do t[i] = big end print(unpack(t)) end)
`

var limitCases = []struct{ name, want string }{
	{"concat_j", "scripts/a.lua:4: invalid value (at index 1) in table for 'concat'"},
	{"concat_size", "scripts/a.lua:5: table.concat: result exceeds lua.max_string_bytes (16777216)"},
	{"gsub", "scripts/a.lua:6: string.gsub: result would exceed lua.max_string_bytes (16777216)"},
	{"gsub_expand", "scripts/a.lua:7: string.gsub: result would exceed lua.max_string_bytes (16777216)"},
	{"format", "scripts/a.lua:9: string.format: result would exceed lua.max_string_bytes (16777216)"},
	{"format_q", "scripts/a.lua:10: string.format: result would exceed lua.max_string_bytes (16777216)"},
	{"format_table", "scripts/a.lua:12: bad argument #2 to format (number expected, got table)"},
	{"unpack", "scripts/a.lua:13: unpack: result would exceed lua.max_results (8000 values)"},
	{"unpack_wrap", "scripts/a.lua:14: unpack: result would exceed lua.max_results (8000 values)"},
	{"byte", "scripts/a.lua:16: string.byte: result would exceed lua.max_results (8000 values)"},
	{"rep", "scripts/a.lua:19: string.rep: result of 1099511627776 bytes exceeds lua.max_string_bytes (16777216)"},
	{"print", "scripts/a.lua:20: print: line would exceed lua.max_string_bytes (16777216)"},
}

// TestLibrarySizeLimits: each call that would build a result past lua.max_string_bytes or return more than
// lua.max_results values fails with an error naming the function and the limit, having allocated a small
// part of what it was asked for (before, table.concat({}, "", 1, 2e10) and print(unpack(t)) of 8000 big
// strings were fatal out-of-memory errors, the gsub built 8 GiB and unpack({}, 1, 1e6) ran for seconds).
func TestLibrarySizeLimits(t *testing.T) {
	cfg := DefaultConfig()
	cfg.HandlerTimeout = 10 * time.Second
	rt := startRuntime(t, cfg, map[string]string{"a.lua": limitScript})
	g := rt.Current()
	var ms runtime.MemStats
	for _, c := range limitCases {
		runtime.ReadMemStats(&ms)
		before := ms.TotalAlloc
		_, err := callOn(t, g, c.name, 0)
		runtime.ReadMemStats(&ms)
		if err == nil || err.Error() != c.want+" (event test "+c.name+")" {
			t.Errorf("%s: got %v\nwant %s", c.name, err, c.want)
		}
		// The inputs cost up to 21 MB (20 strings of 1 MB); the refused results would have cost 40 MB to 8 GB.
		if grew := ms.TotalAlloc - before; grew > 100<<20 {
			t.Errorf("%s: allocated %d MB before refusing", c.name, grew>>20)
		}
	}
	for name, want := range map[string]string{
		"gsub_ok":    "101000",
		"format_ok":  "1000009",
		"unpack_ok":  "8000",
		"byte_ok":    "8000",
		"byte_first": "65", // s:byte() is the first byte, as in Lua
	} {
		if got, err := callOn(t, g, name, 0); err != nil || got != want {
			t.Errorf("%s: got %q, %v; want %q", name, got, err, want)
		}
	}
}

// string.char builds one byte per argument: with a small lua.max_string_bytes, a call with more arguments
// than that fails.
func TestStringCharLimit(t *testing.T) {
	cfg := DefaultConfig()
	cfg.MaxStringBytes = 1024
	rt := startRuntime(t, cfg, map[string]string{"a.lua": `local sb = require "switchboard"
local t = {} for i = 1, 2000 do t[i] = 65 end
sb.on("big", function() return string.char(unpack(t)) end)
sb.on("ok", function() return string.char(unpack(t, 1, 1024)) end)`})
	g := rt.Current()
	if _, err := callOn(t, g, "big", 0); err == nil || !strings.Contains(err.Error(), "scripts/a.lua:3: string.char: result would exceed lua.max_string_bytes (1024)") {
		t.Errorf("big: %v", err)
	}
	if got, err := callOn(t, g, "ok", 0); err != nil || got != strings.Repeat("A", 1024) {
		t.Errorf("ok: %d bytes, %v", len(got), err)
	}
}

// TestPatternLanguageIsLua51 covers where the sandbox's patterns follow Lua 5.1 and gopher-lua's do not
// (the answers are Lua 5.1's, checked with lua5.1); docs/lua-api.md lists them.
func TestPatternLanguageIsLua51(t *testing.T) {
	rt := startRuntime(t, DefaultConfig(), map[string]string{"a.lua": `local sb = require "switchboard"
sb.on("find", function(s, p) return string.find(s, p) end)
sb.on("match", function(s, p) return string.match(s, p) end)`})
	g := rt.Current()
	for _, c := range []struct{ fn, s, p, want string }{
		{"find", "THE (quick) fox", "%f[%a]%a+", "1,3"}, // gopher-lua: %f is the letter f
		{"find", "THE (quick) fox", "%f[%A]", "4,3"},
		{"match", "foo-bar_baz!", "[%w-_]+", "foo-bar_baz"}, // gopher-lua: no match (a range from %w)
		{"match", "a-z", "[%a-z]+", "a-z"},
		{"match", "abc-", "[a-b-c]+", "abc-"},
		{"find", "x()", "()%1", "nil"}, // a position is never equal to text
		{"find", "a", "a%", "ERR malformed pattern (ends with '%')"},
		{"find", "a", "%b(", "ERR malformed pattern (missing arguments to '%b')"},
		{"find", "a", "%fa", "ERR missing '[' after '%f' in pattern"},
		{"find", "a", strings.Repeat("()", 33), "ERR too many captures"},
		{"find", "a", "a)", "ERR invalid pattern capture"},
	} {
		got, err := callOn(t, g, c.fn, 0, c.s, c.p)
		if err != nil {
			got = "ERR " + err.(*ScriptError).Message
		}
		if got != c.want {
			t.Errorf("%s(%q, %q) = %q, want %q", c.fn, c.s, c.p, got, c.want)
		}
	}
}

// Nested patterns stop at the depth bound with Lua's error, never with a Go stack overflow.
func TestPatternTooComplex(t *testing.T) {
	rt := startRuntime(t, DefaultConfig(), map[string]string{"a.lua": `local sb = require "switchboard"
sb.on("deep", function() return (("a"):rep(5000)):find(("a?"):rep(5000) .. "b") end)`})
	_, err := callOn(t, rt.Current(), "deep", 0)
	if err == nil || err.Error() != "scripts/a.lua:2: pattern too complex (event test deep)" {
		t.Fatalf("got %v", err)
	}
}

// FuzzFormatBound: the size string.format checks before formatting is never less than what gopher-lua's
// string.format (Go's fmt) then writes, whatever the format and the arguments.
func FuzzFormatBound(f *testing.F) {
	for _, s := range []string{"%s", "%d", "%5.2f", "%q", "%x", "% x", "%#v", "%+q", "%-10s|%10s", "%.3s",
		"%g %e %o %b %c %U", "%%%d", "%", "%[2]d %[1]s", "%*d", "%v%v%v", "%#x", "%08.3f", "%T", "%p"} {
		f.Add(s, "héllo\x00\xff\"\\", 1e300, true)
	}
	ref := lua.NewState()
	f.Cleanup(ref.Close)
	format := ref.GetField(ref.GetGlobal("string"), "format")
	f.Fuzz(func(t *testing.T, fs, s string, n float64, third bool) {
		args := []lua.LValue{lua.LString(s), lua.LNumber(n)}
		if third {
			args = append(args, lua.LString(s+s))
		}
		npat := strings.Count(fs, "%") - strings.Count(fs, "%%")
		if npat < len(args) {
			args = args[:max(npat, 0)]
		}
		bound, bad := formatBound(fs, args)
		if bad > 0 {
			t.Fatalf("%q: strings and numbers refused", fs)
		}
		if err := ref.CallByParam(lua.P{Fn: format, NRet: 1, Protect: true}, append([]lua.LValue{lua.LString(fs)}, args...)...); err != nil {
			return
		}
		out := ref.Get(-1).String()
		ref.Pop(1)
		if len(out) > bound {
			t.Fatalf("format(%q, %q, %v): %d bytes, bound %d", fs, s, n, len(out), bound)
		}
	})
}
