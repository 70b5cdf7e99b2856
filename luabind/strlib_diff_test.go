package luabind

import (
	"context"
	"io"
	"math/rand"
	"strings"
	"testing"
	"testing/fstest"
	"time"

	"github.com/sirupsen/logrus"
	lua "github.com/yuin/gopher-lua"
)

// The differential test runs the same calls through a plain gopher-lua state (its own string library) and
// through a handler of the real runtime (the sandbox's), and requires identical results, or an error from
// ours where gopher-lua raises one. Differences are allowed only where gopherDiverges says the pattern uses
// a construct gopher-lua reads differently from Lua 5.1 (tested against Lua 5.1's answers in
// TestPatternLanguageIsLua51), or where ours stops at a documented limit.

// diffDriver runs one library call and serialises what it returned; it is loaded in both states.
const diffDriver = `
local function ser(...)
  local out = { tostring(select("#", ...)) }
  for i = 1, select("#", ...) do
    local v = select(i, ...)
    out[#out + 1] = type(v) .. ":" .. tostring(v)
  end
  return table.concat(out, "|")
end

local function res(ok, ...)
  if not ok then return "ERR:" .. tostring((...)) end
  return ser(...)
end

function run(op, s, p, r, a, b)
  if op == "find" then
    return res(pcall(string.find, s, p, a))
  elseif op == "findplain" then
    return res(pcall(string.find, s, p, a, true))
  elseif op == "match" then
    return res(pcall(string.match, s, p, a))
  elseif op == "method" then
    return res(pcall(function() return s:match(p), s:find(p, a) end))
  elseif op == "gmatch" then
    return res(pcall(function()
      local out = {}
      for x, y, z in string.gmatch(s, p) do
        out[#out + 1] = ser(x, y, z)
        if #out > 200 then break end
      end
      return table.concat(out, ";")
    end))
  elseif op == "gsub" then
    return res(pcall(string.gsub, s, p, r, b))
  elseif op == "gsubt" then
    local t = { [r] = "<" .. r .. ">", a = false, b = 7, [1] = "one", [3] = true }
    return res(pcall(string.gsub, s, p, t, b))
  elseif op == "gsubf" then
    return res(pcall(string.gsub, s, p, function(...)
      local x = ...
      if x == nil then return "<nil>" end
      local n = #tostring(x) % 4
      if n == 0 then return false elseif n == 1 then return nil elseif n == 2 then return "[" .. tostring(x) .. "]" end
      return select("#", ...)
    end, b))
  end
  return "bad op " .. tostring(op)
end
`

var diffOps = []string{"find", "findplain", "match", "method", "gmatch", "gsub", "gsubt", "gsubf"}

type diffHarness struct {
	ref  *lua.LState // gopher-lua with its own libraries
	refF lua.LValue
	g    *Generation
	h    *Handler
}

func newDiffHarness(t testing.TB) *diffHarness {
	ref := lua.NewState()
	t.Cleanup(ref.Close)
	if err := ref.DoString(diffDriver); err != nil {
		t.Fatal(err)
	}
	rt := startRuntime(t, DefaultConfig(), map[string]string{"diff.lua": diffDriver + `
local sb = require "switchboard"
sb.on("run", function(...) return run(...) end)`})
	g := rt.Current()
	h, ok := g.Handler("on", "run")
	if !ok {
		t.Fatal("no handler")
	}
	return &diffHarness{ref: ref, refF: ref.GetGlobal("run"), g: g, h: h}
}

// startRuntime is newRuntime for tests, benchmarks and fuzz targets alike: it loads files (name -> source).
func startRuntime(t testing.TB, cfg Config, files map[string]string) *Runtime {
	t.Helper()
	fsys := fstest.MapFS{}
	for name, src := range files {
		fsys[name] = &fstest.MapFile{Data: []byte(src)}
	}
	l := logrus.New()
	l.SetOutput(io.Discard)
	rt, err := New(Options{Config: cfg, FS: fsys, Display: "scripts", Log: logrus.NewEntry(l)})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(rt.Close)
	if err := rt.Load(); err != nil {
		t.Fatalf("load: %v", err)
	}
	return rt
}

func (d *diffHarness) args(op, s, p, r string, a, b lua.LValue) []lua.LValue {
	return []lua.LValue{lua.LString(op), lua.LString(s), lua.LString(p), lua.LString(r), a, b}
}

// reference runs the call in plain gopher-lua.
func (d *diffHarness) reference(t testing.TB, args []lua.LValue) string {
	if err := d.ref.CallByParam(lua.P{Fn: d.refF, NRet: 1, Protect: true}, args...); err != nil {
		return "ERR:" + err.Error() // a Go panic inside gopher-lua's library
	}
	out := d.ref.Get(-1).String()
	d.ref.Pop(1)
	return out
}

// sandbox runs the call in a handler of the runtime.
func (d *diffHarness) sandbox(t testing.TB, args []lua.LValue) string {
	var out string
	err := d.g.Call(context.Background(), d.h, "diff", 10*time.Second, func(L *lua.LState, r []lua.LValue) error {
		if len(r) > 0 {
			out = r[0].String()
		}
		return nil
	}, args...)
	if err != nil {
		t.Fatalf("the driver itself failed: %v", err)
	}
	return out
}

// outcome is how one differential call ended.
type outcome int

const (
	same      outcome = iota // identical results
	bothError                // both raised
	excused                  // a documented difference
	differ                   // reported
)

// check compares one call and reports a difference that is not allowed.
func (d *diffHarness) check(t testing.TB, op, s, p, r string, a, b lua.LValue) outcome {
	args := d.args(op, s, p, r, a, b)
	want := d.reference(t, args)
	got := d.sandbox(t, args)
	switch {
	case got == want && strings.HasPrefix(want, "ERR:"):
		return bothError
	case got == want:
		return same
	case strings.HasPrefix(want, "ERR:") && strings.HasPrefix(got, "ERR:"):
		return bothError
	case strings.HasPrefix(want, "ERR:") && gopherBroke(want):
		return excused
	case !strings.HasPrefix(want, "ERR:") && (gopherDiverges(p) || strings.HasPrefix(got, "ERR:") && ourLimit(got)):
		return excused
	}
	t.Errorf("%s(%q, %q, repl %q, %v, %v):\n  gopher-lua: %s\n  sandbox:    %s", op, s, p, r, a, b, want, got)
	return differ
}

// gopherBroke reports a gopher-lua error that is its own defect, not Lua's answer: a Go panic in its
// library (string.find plain with init past the end) or its matcher's recursion limit.
func gopherBroke(msg string) bool {
	return strings.Contains(msg, "runtime error") || strings.Contains(msg, "too complex")
}

// ourLimit reports an error of ours that is a documented limit.
func ourLimit(msg string) bool {
	for _, s := range []string{"lua.max_string_bytes", "lua.max_results", "pattern too complex", "too many captures"} {
		if strings.Contains(msg, s) {
			return true
		}
	}
	return false
}

// gopherDiverges reports whether pat uses a construct where gopher-lua's matcher departs from Lua 5.1 (the
// sandbox follows Lua 5.1; TestPatternLanguageIsLua51 checks those cases against Lua 5.1's answers):
// %f frontiers, a trailing '%', %b without its two bytes, more than 32 captures, a back-reference with
// position captures around, and sets whose '-' is not a plain range "x-y" of two ordinary bytes.
func gopherDiverges(pat string) bool {
	if strings.Count(pat, "(") > 32 {
		return true
	}
	hasPos := strings.Contains(pat, "()")
	for i := 0; i < len(pat); i++ {
		switch pat[i] {
		case '%':
			if i+1 == len(pat) {
				return true
			}
			switch c := pat[i+1]; {
			case c == 'f':
				return true
			case c == 'b' && i+3 >= len(pat):
				return true
			case c >= '1' && c <= '9' && hasPos:
				return true
			case c == 'b':
				i += 2
			}
			i++
		case '[':
			end, odd := setEnd(pat, i)
			if odd {
				return true
			}
			i = end
		}
	}
	return false
}

// setEnd returns the index of the ']' closing the set at pat[i], and whether a '-' in it is anything but
// a range of two ordinary bytes, first or last.
func setEnd(pat string, i int) (int, bool) {
	j := i + 1
	if j < len(pat) && pat[j] == '^' {
		j++
	}
	end := j
	for {
		if end >= len(pat) {
			return len(pat), false // unterminated: both raise an error
		}
		c := pat[end]
		end++
		if c == '%' && end < len(pat) {
			end++
		}
		if end < len(pat) && pat[end] == ']' {
			break
		}
	}
	body := pat[j:end]
	for k := 0; k < len(body); k++ {
		if body[k] == '%' {
			k++
			continue
		}
		if body[k] != '-' || k == 0 || k == len(body)-1 {
			continue
		}
		ordinary := func(c byte) bool { return c != '%' && c != '-' }
		if !ordinary(body[k-1]) || !ordinary(body[k+1]) || k >= 2 && (body[k-2] == '-' || body[k-2] == '%') ||
			k+2 < len(body) && body[k+2] == '-' {
			return end, true
		}
	}
	return end, false
}

// patternGen builds random patterns from the grammar of Lua patterns, biased to ones that match.
type patternGen struct{ r *rand.Rand }

func (g patternGen) pick(s ...string) string { return s[g.r.Intn(len(s))] }

func (g patternGen) subject() string {
	var b strings.Builder
	n := g.r.Intn(16)
	for i := 0; i < n; i++ {
		if g.r.Intn(3) == 0 {
			b.WriteString(g.pick("a", "b", "c", "x", " ", "-", "(", ")", "]", "[", "%", "^", "$", ".", "1", "\n", "\t", "\x00", "\xc8", "=", ","))
		} else {
			b.WriteString(g.pick("a", "a", "b", "b", "c", " ", " ", "x", "1", "(", ")"))
		}
	}
	return b.String()
}

func (g patternGen) set() string {
	s := "["
	if g.r.Intn(4) == 0 {
		s += "^"
	}
	for n := 1 + g.r.Intn(3); n > 0; n-- {
		switch g.r.Intn(6) {
		case 0, 1:
			s += g.pick("a", "b", "x", " ", "1", "(", ")", ".", "%]", "%%", "%-")
		case 2, 3:
			s += g.pick("a", "b", "0", " ") + "-" + g.pick("c", "z", "9", "x")
		default:
			s += g.pick("%a", "%d", "%s", "%w", "%l", "%u", "%p", "%x", "%c", "%z", "%S", "%A")
		}
	}
	if g.r.Intn(8) == 0 {
		s += "-"
	}
	return s + "]"
}

func (g patternGen) single() string {
	switch g.r.Intn(10) {
	case 0, 1, 2, 3:
		return g.pick("a", "b", "c", "x", " ", "1", "%(", "%)", "%.", "%%", "%[", "%]", "-", "=", ",")
	case 4:
		return "."
	case 5, 6:
		return g.pick("%a", "%d", "%s", "%w", "%l", "%u", "%p", "%x", "%c", "%z", "%S", "%W", "%D", "%A", "%g")
	default:
		return g.set()
	}
}

func (g patternGen) seq(depth int, caps *int, closed *[]int, n int) string {
	var b strings.Builder
	for ; n > 0; n-- {
		switch r := g.r.Intn(20); {
		case r < 11:
			b.WriteString(g.single())
			if q := g.r.Intn(8); q < 4 {
				b.WriteString([]string{"*", "+", "-", "?"}[q])
			}
		case r < 13 && depth < 3 && *caps < 30:
			*caps++
			me := *caps
			inner := g.seq(depth+1, caps, closed, g.r.Intn(4))
			*closed = append(*closed, me)
			b.WriteString("(" + inner + ")")
		case r == 13 && *caps < 30:
			*caps++
			b.WriteString("()")
		case r == 14:
			b.WriteString("%b" + g.pick("()", "[]", "ab", "xx"))
		case r == 15 && len(*closed) > 0:
			if c := (*closed)[g.r.Intn(len(*closed))]; c <= 9 {
				b.WriteString("%" + string(rune('0'+c)))
			}
		default:
			b.WriteString(g.pick(".-", ".*", "%s*", "%w+", "a-", "x?", "^", "$"))
		}
	}
	return b.String()
}

func (g patternGen) pattern() string {
	caps := 0
	var closed []int
	p := g.seq(0, &caps, &closed, 1+g.r.Intn(4))
	if g.r.Intn(5) == 0 {
		p = "^" + p
	}
	if g.r.Intn(5) == 0 {
		p += "$"
	}
	return p
}

func (g patternGen) replacement() string {
	return g.pick("", "x", "%0", "%1", "<%1>", "%2", "%%", "%", "a%", "%x", "[%0%0]", "%9", "%1%2%3", "\xc8%\xc8")
}

func (g patternGen) number() lua.LValue {
	switch g.r.Intn(8) {
	case 0:
		return lua.LNil
	case 1:
		return lua.LNumber(0)
	case 2:
		return lua.LNumber(-g.r.Intn(20))
	default:
		return lua.LNumber(g.r.Intn(20))
	}
}

// TestStringLibMatchesGopherLua runs 20,000 random calls of find, match, gmatch and gsub (string, table and
// function replacements, limits, init positions) through both libraries.
func TestStringLibMatchesGopherLua(t *testing.T) {
	d := newDiffHarness(t)
	g := patternGen{rand.New(rand.NewSource(1))}
	n := 20000
	if testing.Short() {
		n = 2000
	}
	var count [4]int
	for i := 0; i < n && !t.Failed(); i++ {
		op := diffOps[g.r.Intn(len(diffOps))]
		count[d.check(t, op, g.subject(), g.pattern(), g.replacement(), g.number(), g.number())]++
	}
	t.Logf("%d identical, %d errors in both, %d documented differences", count[same], count[bothError], count[excused])
	// The generator is meant to exercise matching, not error paths.
	if count[same] < n*8/10 {
		t.Fatalf("only %d of %d calls compared results", count[same], n)
	}
}

// Corners of the library functions' argument handling, where gopher-lua's answers are its own.
func TestStringLibCornersMatchGopherLua(t *testing.T) {
	d := newDiffHarness(t)
	n := func(v float64) lua.LValue { return lua.LNumber(v) }
	for _, c := range []struct {
		op, s, p, r string
		a, b        lua.LValue
	}{
		{"find", "abc", "", "", n(2), lua.LNil},       // gopher-lua: 1, 0 whatever init says
		{"find", "abc", "b", "", n(-10), lua.LNil},    // negative init before the start
		{"find", "abc", "c", "", n(-1), lua.LNil},     // from the end
		{"find", "abc", "b", "", n(10), lua.LNil},     // past the end
		{"findplain", "a.c", ".", "", n(1), lua.LNil}, // plain
		{"findplain", "abc", "c", "", n(3), lua.LNil},
		{"findplain", "abc", "c", "", n(4), lua.LNil},
		{"match", "abc", "x", "", lua.LNil, lua.LNil}, // no match: no values at all
		{"match", "abc", "()", "", n(10), lua.LNil},
		{"match", "abc", "(b)(c)", "", n(-2), lua.LNil},
		{"gsub", "aaa", "a", "b", lua.LNil, n(0)}, // a limit of 0 after a first attempt that matched
		{"gsub", "baa", "a", "b", lua.LNil, n(0)}, // ... and after one that did not
		{"gsub", "aaa", "a", "b", lua.LNil, n(-1)},
		{"gsub", "aaa", "a", "b", lua.LNil, n(2)},
		{"gsub", "abc", "%w*", "-", lua.LNil, lua.LNil},
		{"gsub", "abc", "", "-", lua.LNil, lua.LNil},
		{"gsub", "hello world", "(o)", "%2", lua.LNil, lua.LNil},
		{"gsub", "hello world", "o", "%1", lua.LNil, lua.LNil},
		{"gsub", "hello", "l", "%", lua.LNil, lua.LNil},
		{"gsub", "hello", "l", "%x%%", lua.LNil, lua.LNil},
		{"gsub", "abc", "()", "%1", lua.LNil, lua.LNil},
		{"gsub", "abc", "^a", "X", lua.LNil, lua.LNil},
		{"gsub", "abc", "^x", "X", lua.LNil, lua.LNil},
		{"gsubt", "abc", ".", "c", lua.LNil, lua.LNil},
		{"gsubt", "abc", "()", "c", lua.LNil, lua.LNil},
		{"gsubf", "abc def", "%w+", "", lua.LNil, lua.LNil},
		{"gsubf", "abc def", "(%w)(%w)()", "", lua.LNil, n(1)},
		{"gmatch", "abc", "^.", "", lua.LNil, lua.LNil},
		{"gmatch", "a,b,,c", "([^,]*)", "", lua.LNil, lua.LNil},
		{"gmatch", "k=v, a=b", "(%w+)=(%w+)", "", lua.LNil, lua.LNil},
	} {
		d.check(t, c.op, c.s, c.p, c.r, c.a, c.b)
	}
	// A number subject with no match comes back as the number.
	if got, want := d.sandbox(t, d.args("gsub", "", "", "", lua.LNil, lua.LNil)), d.reference(t, d.args("gsub", "", "", "", lua.LNil, lua.LNil)); got != want {
		t.Errorf("empty gsub: %s vs %s", got, want)
	}
}

// FuzzStringLibDifferential lets the fuzzer choose subjects, patterns and replacements. Inputs are kept
// short: gopher-lua's own matcher cannot be interrupted, and a pattern with many quantifiers on a long
// subject would stall the reference side for minutes.
func FuzzStringLibDifferential(f *testing.F) {
	for _, c := range []struct {
		op      uint8
		s, p, r string
		a, b    int8
	}{
		{0, "hello world", "(o)(r?)", "%1", 1, -1},
		{1, "a.b.c", ".", "", 2, 0},
		{2, "  trim me  ", "^%s*(.-)%s*$", "", 1, 0},
		{3, "k=v", "(%w+)=(%w*)", "", 1, 0},
		{4, "one two three", "%a+", "", 0, 0},
		{5, "abc", "%w", "<%0>", 0, 2},
		{6, "abc", "()(.)", "b", 0, -1},
		{7, "abc def", "(%w+)", "", 0, 1},
		{5, "f(a(b)c)d", "%b()", "%%", 0, -1},
		{0, "THE (quick) fox", "[%a-]+", "", 3, 0},
		{5, "x = 1, y = 2", "(%w+)%s*=%s*(%w+)", "%2=%1", 0, 0},
	} {
		f.Add(c.op, c.s, c.p, c.r, c.a, c.b)
	}
	d := newDiffHarness(f)
	f.Fuzz(func(t *testing.T, op uint8, s, p, r string, a, b int8) {
		if len(s) > 24 || len(p) > 16 || len(r) > 16 || quantifiers(p) > 4 {
			return
		}
		num := func(v int8) lua.LValue {
			if v == -128 {
				return lua.LNil
			}
			return lua.LNumber(v)
		}
		d.check(t, diffOps[int(op)%len(diffOps)], s, p, r, num(a), num(b))
	})
}

func quantifiers(p string) int {
	n := 0
	for i := 0; i < len(p); i++ {
		if strings.IndexByte("*+-?", p[i]) >= 0 {
			n++
		}
	}
	return n
}
