package luabind

import (
	"context"
	"errors"
	"fmt"
	"io"
	"strings"
	"testing"
	"testing/fstest"
	"time"

	"github.com/sirupsen/logrus"
	lua "github.com/yuin/gopher-lua"
)

// FuzzSandbox builds short Lua programs from a grammar of library calls with adversarial arguments (huge,
// negative, NaN and infinite numbers, long strings, nested and self-referencing tables, metatables that
// recurse or misbehave, patterns that backtrack, formats that inflate), runs each in a handler of the real
// runtime with a 100 ms limit and small size caps, and requires that nothing reaches Go: no panic (a Go
// panic turned into a Lua error by gopher-lua counts), no fatal error, an answer within the limit plus
// 2 s, and a runtime that goes on serving.
//
// The fuzzer's bytes are the program's choices: every byte picks the next production, so mutations explore
// programs. testdata/fuzz/FuzzSandbox holds the seed corpus.
func FuzzSandbox(f *testing.F) {
	for _, seed := range [][]byte{
		{},
		[]byte("\x00\x01\x02\x03\x04\x05\x06\x07\x08\x09\x0a\x0b\x0c\x0d\x0e\x0f"),
		[]byte("string.gsub pattern trim backtracking \xff\xfe\xfd"),
		[]byte("\x10\x20\x30\x40\x50\x60\x70\x80\x90\xa0\xb0\xc0\xd0\xe0\xf0"),
	} {
		f.Add(seed)
	}
	fz := newSandboxFuzzer(f)
	f.Fuzz(func(t *testing.T, choices []byte) {
		fz.run(t, generateProgram(choices))
	})
}

// TestSandboxPrograms runs the programs of a few fixed choice streams, so the plain test run covers the
// fuzz target's machinery too.
func TestSandboxPrograms(t *testing.T) {
	fz := newSandboxFuzzer(t)
	for i := 0; i < 40; i++ {
		choices := make([]byte, 64)
		for k := range choices {
			choices[k] = byte(i*131 + k*i*7 + k)
		}
		fz.run(t, generateProgram(choices))
	}
}

const sandboxLimit = 100 * time.Millisecond

type sandboxFuzzer struct {
	rt   *Runtime
	fsys fstest.MapFS
}

func newSandboxFuzzer(t testing.TB) *sandboxFuzzer {
	cfg := DefaultConfig()
	cfg.HandlerTimeout = sandboxLimit
	cfg.MaxStringBytes = 64 << 10
	cfg.MaxResults = 1000
	cfg.MemoryLimitMB = 1024
	cfg.CacheMaxEntries = 1000
	fsys := fstest.MapFS{"fuzz.lua": {Data: []byte(`local sb = require "switchboard"
sb.on("run", function() return {} end)
sb.on("ping", function() return "pong" end)`)}}
	l := logrus.New()
	l.SetOutput(io.Discard)
	rt, err := New(Options{Config: cfg, FS: fsys, Display: "scripts", Log: logrus.NewEntry(l)})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(rt.Close)
	if err := rt.Load(); err != nil {
		t.Fatal(err)
	}
	return &sandboxFuzzer{rt: rt, fsys: fsys}
}

// goPanicSigns are what a Go panic looks like once gopher-lua's pcall has turned it into a Lua error (the
// script sees the panic's text alone): the runtime's errors, the standard library's panics reachable from
// gopher-lua's libraries (math/rand, strings, reflect) and gopher-lua's own; "internal error" is the
// runtime's report of a panic that escaped gopher-lua.
var goPanicSigns = []string{"runtime error", "interface conversion", "internal error", "nil pointer",
	"invalid argument to", "strings: ", "reflect", "should not reach", "goroutine "}

func (fz *sandboxFuzzer) run(t *testing.T, src string) {
	fz.fsys["fuzz.lua"] = &fstest.MapFile{Data: []byte(src)}
	if err := fz.rt.Load(); err != nil {
		t.Fatalf("the generated program does not load: %v\n%s", err, src)
	}
	g := fz.rt.Current()
	h, _ := g.Handler("on", "run")
	var caught []string
	var panicked error
	start := time.Now()
	err := g.Run(context.Background(), h, "fuzz", sandboxLimit, func(L *lua.LState, fn *lua.LFunction) error {
		L.Push(fn)
		err := L.PCall(0, 1, nil)
		var ae *lua.ApiError
		if errors.As(err, &ae) && ae.Type == lua.ApiErrorPanic {
			panicked = err
		}
		if err == nil {
			if log, ok := L.Get(-1).(*lua.LTable); ok {
				log.ForEach(func(_, v lua.LValue) { caught = append(caught, v.String()) })
			}
		}
		return err
	})
	took := time.Since(start)
	if panicked != nil {
		t.Fatalf("a Go panic reached the script: %v\n%s", panicked, src)
	}
	if err != nil && hasAny(err.Error(), goPanicSigns) {
		t.Fatalf("handler error: %v\n%s", err, src)
	}
	if took > sandboxLimit+2*time.Second {
		t.Fatalf("the handler ran %v past its %v limit\n%s", took, sandboxLimit, src)
	}
	for _, msg := range caught {
		if hasAny(msg, goPanicSigns) {
			t.Fatalf("a caught error looks like a Go panic: %q\n%s", msg, src)
		}
	}
	if got, err := callOn(t, g, "ping", time.Second); err != nil || got != "pong" {
		t.Fatalf("the runtime stopped serving: %q %v\n%s", got, err, src)
	}
}

func hasAny(s string, subs []string) bool {
	for _, sub := range subs {
		if strings.Contains(s, sub) {
			return true
		}
	}
	return false
}

// progGen turns choice bytes into a program. When the bytes run out every choice is 0, so any input makes a
// finite program.
type progGen struct {
	in    []byte
	b     strings.Builder
	depth int
}

func (p *progGen) choose(n int) int {
	if len(p.in) == 0 {
		return 0
	}
	c := int(p.in[0]) % n
	p.in = p.in[1:]
	return c
}

func (p *progGen) pick(options ...string) string { return options[p.choose(len(options))] }

const progVars = 6

var (
	fuzzNumbers = []string{"0", "1", "-1", "2", "3", "7", "255", "256", "1000", "1001", "8000", "65536", "2^31",
		"2^53", "-2^63", "2^63", "1e308", "-1e308", "1/0", "-1/0", "0/0", "0.5", "-0.5", "2e10", "1e6", "-2^31"}
	fuzzStrings = []string{`""`, `"a"`, `"abc"`, `" x "`, `"%"`, `"%%"`, `"\0"`, `"\255\254"`, `"10"`, `"0x10"`,
		`"1e5"`, `" 5 "`, `'{"a":[1,2,{"b":null}],"c":"\\u00e9"}'`, `"[[[[[[["`, `"k=v; a=b"`, `"(a(b)c)"`,
		`("x"):rep(1000)`, `(" "):rep(3000) .. "y"`, `("ab"):rep(500)`, `("\0"):rep(100)`, `("%s"):rep(20)`}
	fuzzPatterns = []string{`"%s*(.-)%s*$"`, `"^%s*(.-)%s*$"`, `"(.-)(.-)(.-)(.-)x"`, `"%b()"`, `"[%a-z]+"`,
		`"%f[%w]%w+"`, `"(((((((((("`, `"%1"`, `"a%"`, `"[^]"`, `"(a*)*b"`, `"()"`, `"(%w+)=(%w+)"`, `".-"`,
		`"[%w_]+"`, `"%d+%.?%d*"`, `"^(.-)%1$"`, `("a?"):rep(40) .. ("a"):rep(40)`, `("()"):rep(40)`, `"$"`, `"^"`}
	fuzzFormats = []string{`"%s"`, `"%d"`, `"%5.2f"`, `"%q"`, `"%x"`, `"%999s"`, `("%s"):rep(10)`, `"%[1]d"`,
		`"%*d"`, `"%c%c%c"`, `"%-10s|"`, `"%.3s"`, `"%g %e %o"`, `"%%"`, `"%"`, `"%10.4q"`}
	fuzzRepls = []string{`"%0"`, `"%1"`, `"%2"`, `"<%1>"`, `"%%"`, `"%"`, `("%0"):rep(50)`, `{}`,
		`{a = "A", b = false, [1] = {}}`, `function(...) return ... end`, `function(s) return s .. s end`,
		`function() error("repl") end`, `function() return {} end`, `string.upper`}
)

// libCalls are library functions with the kind of their first argument.
var libCalls = []struct{ fn, first string }{
	{"string.byte", "s"}, {"string.char", "n"}, {"string.find", "s"}, {"string.format", "f"}, {"string.gsub", "s"},
	{"string.len", "s"}, {"string.lower", "s"}, {"string.match", "s"}, {"string.rep", "s"}, {"string.reverse", "s"},
	{"string.sub", "s"}, {"string.upper", "s"}, {"table.concat", "t"}, {"table.insert", "t"}, {"table.remove", "t"},
	{"table.sort", "t"}, {"table.getn", "t"}, {"table.maxn", "t"}, {"math.abs", "n"}, {"math.ceil", "n"},
	{"math.floor", "n"}, {"math.fmod", "n"}, {"math.max", "n"}, {"math.min", "n"}, {"math.modf", "n"},
	{"math.pow", "n"}, {"math.sqrt", "n"}, {"math.random", "n"}, {"math.log", "n"}, {"math.exp", "n"},
	{"math.ldexp", "n"}, {"math.frexp", "n"}, {"select", "n"}, {"unpack", "t"}, {"tostring", "a"},
	{"tonumber", "a"}, {"type", "a"}, {"rawget", "t"}, {"rawset", "t"}, {"rawequal", "a"}, {"setmetatable", "t"},
	{"getmetatable", "a"}, {"next", "t"}, {"assert", "a"}, {"error", "a"}, {"pcall", "a"}, {"xpcall", "a"},
	{"sb.json.encode", "a"}, {"sb.json.decode", "s"}, {"sb.cache.save", "s"}, {"sb.cache.load", "s"},
	{"sb.cache.destroy", "s"}, {"sb.cache.size", "a"}, {"sb.now", "a"}, {"sb.uuid", "a"},
}

func (p *progGen) v() string { return fmt.Sprintf("v%d", 1+p.choose(progVars)) }

func (p *progGen) number() string { return p.pick(fuzzNumbers...) }

func (p *progGen) str() string {
	switch p.choose(4) {
	case 0:
		return p.v()
	case 1:
		return p.pick(fuzzPatterns...)
	default:
		return p.pick(fuzzStrings...)
	}
}

func (p *progGen) table() string {
	switch p.choose(9) {
	case 0:
		return "{}"
	case 1:
		return "{1, 2, 3, 'x', 'y'}"
	case 2:
		return "{{{{{}}}}}"
	case 3:
		return "setmetatable({}, {__index = function(t, k) return t[k] end})"
	case 4:
		return "setmetatable({}, {__tostring = function() return {} end, __len = function() return 2^40 end})"
	case 5:
		return "setmetatable({1, 2}, {__eq = function() error('eq') end, __lt = function() return true end, __concat = function(a, b) return a end})"
	case 6:
		return "{" + p.expr() + ", " + p.expr() + ", k = " + p.expr() + "}"
	case 7:
		return "(function() local t = {} t[1] = t t.t = t t[2] = {t, t} return t end)()"
	default:
		return p.v()
	}
}

func (p *progGen) arg(kind string) string {
	switch kind {
	case "s":
		return p.str()
	case "n":
		return p.number()
	case "t":
		return p.table()
	case "f":
		return p.pick(fuzzFormats...)
	}
	return p.expr()
}

func (p *progGen) call() string {
	c := libCalls[p.choose(len(libCalls))]
	args := []string{p.arg(c.first)}
	for n := p.choose(4); n > 0; n-- {
		switch {
		case c.fn == "string.gsub" && len(args) == 2:
			args = append(args, p.pick(fuzzRepls...))
		case (c.fn == "string.find" || c.fn == "string.match" || c.fn == "string.gsub") && len(args) == 1:
			args = append(args, p.pick(fuzzPatterns...))
		case c.fn == "pcall" || c.fn == "xpcall":
			args = append(args, p.pick("error", "string.rep", "unpack", "function() return "+p.expr()+" end"))
		default:
			args = append(args, p.expr())
		}
	}
	return c.fn + "(" + strings.Join(args, ", ") + ")"
}

func (p *progGen) expr() string {
	if p.depth > 3 {
		return p.pick(p.number(), p.pick(fuzzStrings...), p.v())
	}
	p.depth++
	defer func() { p.depth-- }()
	switch p.choose(12) {
	case 0:
		return p.number()
	case 1:
		return p.str()
	case 2:
		return p.table()
	case 3, 4, 5, 6:
		return p.call()
	case 7:
		return "(" + p.expr() + " .. " + p.expr() + ")"
	case 8:
		return "#" + p.v()
	case 9:
		return "select(" + p.pick("'#'", "1", "-1", "2^31", "-2^31") + ", " + p.call() + ")"
	case 10:
		return "(" + p.str() + "):" + p.pick("rep", "sub", "byte", "find", "match", "gsub", "format", "upper") +
			"(" + p.expr() + ", " + p.expr() + ")"
	}
	return p.v()
}

func (p *progGen) statement() string {
	v := p.v()
	switch p.choose(12) {
	case 0:
		return fmt.Sprintf("for i = 1, %d do %s = %s end", 1+p.choose(8), v, p.expr())
	case 1:
		return fmt.Sprintf("for a, b in string.gmatch(%s, %s) do %s = a end", p.str(), p.pick(fuzzPatterns...), v)
	case 2:
		return fmt.Sprintf("for k, x in %s(%s) do %s = x end", p.pick("pairs", "ipairs"), p.table(), v)
	case 3:
		return fmt.Sprintf("%s = %s for i = 1, %d do %s = %s .. %s end", v, p.str(), 1+p.choose(6), v, v, v)
	case 4:
		return fmt.Sprintf("%s = {} %s[1] = %s %s.self = %s %s = sb.json.encode(%s)", v, v, v, v, v, v, v)
	case 5:
		return p.pick("while true do end", "local function f(n) return f(n + 1) + 1 end f(1)",
			"local function f() return pcall(f) end f()", "local t = {} for i = 1, 1e9 do t[#t + 1] = i end")
	case 6:
		return fmt.Sprintf("%s = {%s}", v, p.call())
	}
	return fmt.Sprintf("%s = %s", v, p.expr())
}

// generateProgram writes a script whose "run" handler runs 1 to 12 statements (as many as the choices last), each in its own pcall, and
// returns the errors they raised.
func generateProgram(choices []byte) string {
	p := &progGen{in: choices}
	p.b.WriteString(`local sb = require "switchboard"
sb.on("ping", function() return "pong" end)
sb.on("run", function()
  local log = {}
  local function rec(ok, e)
    if not ok then log[#log + 1] = type(e) == "string" and e or "<" .. type(e) .. ">" end
  end
  local v1, v2, v3, v4, v5, v6 = "a", 1, {}, "%s", 0/0, ("z"):rep(100)
`)
	for n := 0; n < 12 && (n == 0 || len(p.in) > 0); n++ {
		fmt.Fprintf(&p.b, "  rec(pcall(function() %s end))\n", p.statement())
	}
	p.b.WriteString("  return log\nend)\n")
	return p.b.String()
}
