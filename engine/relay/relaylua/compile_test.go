package relaylua

import (
	"errors"
	"math"
	"math/rand"
	"strings"
	"testing"

	"github.com/switchboard/switchboard/engine/relay"
	"github.com/switchboard/switchboard/luabind"
	"github.com/switchboard/switchboard/luabind/luabindtest"
)

// diffGlobals are the globals the differential tests' scripts define (g_nil stays undefined).
const diffGlobals = `g_num = 42.5
g_int = 7
g_str = "LSE"
g_true = true
g_tab = {}
`

// byteSource draws choices from fuzz input; past its end every choice is 0.
type byteSource struct {
	b []byte
	i int
}

func (s *byteSource) pick(n int) int {
	if s.i >= len(s.b) || n <= 1 {
		s.i++
		return 0
	}
	c := int(s.b[s.i])
	s.i++
	return c % n
}

var (
	diffTypes   = []relay.ValueType{relay.TypeString, relay.TypeLong, relay.TypeInt, relay.TypeDouble, relay.TypeBoolean, relay.TypeUTC}
	diffNames   = []string{"a", "b", "qty", "55"}
	diffGlobalN = []string{"g_num", "g_int", "g_str", "g_true", "g_nil"}
	diffConsts  = []string{"0", "1", "500", "7", "2.5", "1e3", "0x10", "1000000.0", "9007199254740993", "0.1", "-0.0",
		`"XXX"`, `"LSE"`, `""`, `"a"`, `"B"`, `"10"`, `'ab'`, `"\65"`, `"é"`, "nil", "true", "false"}
	diffBinary = []string{"==", "~=", "<", "<=", ">", ">=", "and", "or", "+", "-", "*", "/", "%", "^",
		"&&", "||", "!=", ".."}
)

// genParams draws 0-4 declared params.
func genParams(s *byteSource) []relay.ParamType {
	n := s.pick(5)
	ps := make([]relay.ParamType, n)
	for i := range ps {
		ps[i] = relay.ParamType{Name: diffNames[i], Type: diffTypes[s.pick(len(diffTypes))], NonNull: s.pick(3) == 0}
	}
	return ps
}

// genExpr draws an expression over the params and the test's globals, depth at most d.
func genExpr(s *byteSource, ps []relay.ParamType, d int) string {
	if d == 0 || s.pick(4) == 0 {
		switch s.pick(4) {
		case 0, 1:
			if len(ps) > 0 {
				return ParamName(ps[s.pick(len(ps))].Name)
			}
			return diffConsts[s.pick(len(diffConsts))]
		case 2:
			return diffGlobalN[s.pick(len(diffGlobalN))]
		}
		return diffConsts[s.pick(len(diffConsts))]
	}
	switch s.pick(8) {
	case 4, 5:
		// a param against a constant of its kind: the form route files are made of
		if len(ps) > 0 {
			p := ps[s.pick(len(ps))]
			var k []string
			switch p.Type {
			case relay.TypeString:
				k = []string{`"a"`, `"B"`, `"LSE"`, `"XXX"`, `"10"`, `""`, `"ab"`}
			case relay.TypeBoolean:
				k = []string{"true", "false", "nil"}
			default:
				k = []string{"0", "1", "7", "500", "501", "-1", "2.5", "1e6", "9007199254740992", "0/0"}
			}
			rel := []string{"==", "~=", "<", "<=", ">", ">=", "!="}
			return ParamName(p.Name) + " " + rel[s.pick(len(rel))] + " " + k[s.pick(len(k))]
		}
		return genExpr(s, ps, d-1)
	case 0:
		return "not " + genExpr(s, ps, d-1)
	case 1:
		return "-" + genExpr(s, ps, d-1)
	case 2:
		return "(" + genExpr(s, ps, d-1) + ")"
	case 3:
		return "!" + genExpr(s, ps, d-1)
	}
	return genExpr(s, ps, d-1) + " " + diffBinary[s.pick(len(diffBinary))] + " " + genExpr(s, ps, d-1)
}

// genValue draws the value a param of type t holds after the relay converted it (or null).
func genValue(s *byteSource, p relay.ParamType) relay.Value {
	if !p.NonNull && s.pick(4) == 0 {
		return relay.Value{}
	}
	longs := []int64{0, 1, -1, 7, 10, 500, 501, 1 << 53, 1<<53 + 1, math.MaxInt64, math.MinInt64, -501}
	switch p.Type {
	case relay.TypeString:
		strs := []string{"", "a", "B", "LSE", "XXX", "10", "ab", "é", "a\x00", "0x10", " 7 "}
		return relay.Value{Kind: relay.KindString, S: strs[s.pick(len(strs))]}
	case relay.TypeLong:
		return relay.Value{Kind: relay.KindLong, I: longs[s.pick(len(longs))]}
	case relay.TypeInt:
		return relay.Value{Kind: relay.KindInt, I: int64(int32(longs[s.pick(len(longs))]))}
	case relay.TypeUTC:
		if s.pick(5) == 0 { // a UTC value with a pattern is a string in Lua
			return relay.Value{Kind: relay.KindUTC, I: 1, S: "2026-01-02", Pattern: "yyyy-MM-dd"}
		}
		return relay.Value{Kind: relay.KindUTC, I: longs[s.pick(len(longs))]}
	case relay.TypeDouble:
		fs := []float64{0, math.Copysign(0, -1), 0.5, 2.5, 7, 500, 500.5, 1e6, 0.1, math.NaN(), math.Inf(1), math.Inf(-1), 1e-300, -3}
		return relay.Value{Kind: relay.KindDouble, F: fs[s.pick(len(fs))]}
	case relay.TypeBoolean:
		return relay.Value{Kind: relay.KindBool, I: int64(s.pick(2))}
	}
	return relay.Value{}
}

// diffRuntime is a Lua runtime whose scripts define diffGlobals.
func diffRuntime(tb testing.TB) *luabind.Runtime {
	rt, _, _ := luabindtest.New(tb, luabind.DefaultConfig(), map[string]string{"a.lua": diffGlobals}, luabindtest.Options{})
	return rt
}

// sameOutcome compares the compiled form's answer with Lua's: the same boolean, and the same error class
// (none, the same *relay.NotBooleanError, or a Lua error).
func sameOutcome(gotOK bool, gotErr error, wantOK bool, wantErr error) bool {
	if gotOK != wantOK || (gotErr == nil) != (wantErr == nil) {
		return false
	}
	var g, w *relay.NotBooleanError
	if errors.As(gotErr, &g) != errors.As(wantErr, &w) {
		return false
	}
	return g == nil || *g == *w
}

// diffOne checks one expression on count messages drawn from s; it returns how many the compiled form
// handled itself (the rest went to Lua).
func diffOne(t *testing.T, rt *luabind.Runtime, s *byteSource, count int) (compiled, handled int) {
	t.Helper()
	ps := genParams(s)
	expr := genExpr(s, ps, 4)
	lp, names, src, err := luaPredicate(rt, ps, expr)
	if err != nil {
		return 0, 0 // not valid Lua (e.g. `not not` is fine, `a .. ` is not generated): nothing to compare
	}
	p, ok := compileRoute(lp, names, src).(*compiledPredicate)
	if !ok {
		return 0, 0
	}
	args := make([]relay.Value, len(ps))
	for n := 0; n < count; n++ {
		for i := range ps {
			args[i] = genValue(s, ps[i])
		}
		gotOK, done, gotErr := p.evalGo(args)
		if !done {
			continue
		}
		handled++
		wantOK, wantErr := lp.Eval(args)
		if !sameOutcome(gotOK, gotErr, wantOK, wantErr) {
			t.Fatalf("%s with %v (params %v):\ncompiled: %v %v\nLua:      %v %v", expr, args, ps, gotOK, gotErr, wantOK, wantErr)
		}
	}
	return 1, handled
}

// TestCompiledMatchesLua evaluates thousands of random expressions both ways.
func TestCompiledMatchesLua(t *testing.T) {
	rt := diffRuntime(t)
	rng := rand.New(rand.NewSource(18))
	var exprs, compiled, handled int
	for i := 0; i < 3000; i++ {
		b := make([]byte, 64)
		rng.Read(b)
		c, h := diffOne(t, rt, &byteSource{b: b}, 8)
		exprs++
		compiled += c
		handled += h
	}
	t.Logf("%d expressions, %d compiled, %d messages handled by the compiled form", exprs, compiled, handled)
	if compiled < exprs/3 || handled < exprs {
		t.Fatalf("too little compiled to prove anything: %d of %d expressions, %d messages", compiled, exprs, handled)
	}
}

// FuzzCompiledMatchesLua is the differential fuzz test: random expressions over random typed params
// (nil and nonull, integers and floats, strings in and out of order, the test's globals), evaluated by the
// compiled form and by Lua; every message the compiled form answers must get Lua's answer.
func FuzzCompiledMatchesLua(f *testing.F) {
	for _, seed := range [][]byte{
		{},
		{2, 0, 1, 1, 0, 3, 1, 0, 5, 0, 6, 0, 0, 1, 0, 2},
		[]byte("qty > 500 and px < 1000000.0"),
		{4, 1, 0, 3, 2, 4, 1, 5, 0, 9, 9, 9, 3, 3, 3, 0, 7, 1, 2, 200, 100, 50, 25},
		{1, 0, 1, 5, 5, 5, 5, 5, 8, 8, 8, 8, 1, 1, 0, 0},
		{3, 3, 1, 3, 2, 2, 0, 1, 3, 12, 12, 12, 4, 4, 16, 16, 2, 2, 250, 251, 252},
		{1, 0, 2, 4, 0, 0, 0, 12, 0, 0, 1, 0, 0},
	} {
		f.Add(seed)
	}
	rt := diffRuntime(f)
	f.Fuzz(func(t *testing.T, b []byte) {
		diffOne(t, rt, &byteSource{b: b}, 16)
	})
}

// TestCompiledForms checks which forms compile, and the rule on the values around its bounds.
func TestCompiledForms(t *testing.T) {
	rt := diffRuntime(t)
	params := []relay.ParamType{{Name: "qty", Type: relay.TypeLong, NonNull: true}, {Name: "px", Type: relay.TypeDouble}, {Name: "venue", Type: relay.TypeString}}
	for expr, want := range map[string]bool{
		`qty > 500 and px < 1000000.0 and venue ~= "XXX"`: true,
		`qty > 500 && px < 1000000.0 && venue != "XXX"`:   true,
		`(qty + 1) * 2 >= px or not (venue == nil)`:       true,
		`qty % 3 == 1 and -px < 0 and g_str == venue`:     true,
		`venue < "M" and qty / 0 > 1 and qty ^ 2 > 0`:     true,
		`string.upper(venue) == "LSE"`:                    false,
		`venue .. "x" == "LSEx"`:                          false,
		`#venue > 2`:                                      false,
		`math.huge > qty`:                                 false,
		`(function() return true end)()`:                  false,
	} {
		lp, names, src, err := luaPredicate(rt, params, expr)
		if err != nil {
			t.Fatalf("%s: %v", expr, err)
		}
		_, got := compileRoute(lp, names, src).(*compiledPredicate)
		if got != want {
			t.Errorf("%s: compiled %v, want %v", expr, got, want)
		}
	}

	pred, err := Compiler(rt)(params[:2], `qty > 500 and px < 1000000.0 and venue ~= "XXX"`)
	if err != nil {
		t.Fatal(err)
	}
	p := pred.(*compiledPredicate)
	for _, c := range []struct {
		qty     int64
		px      relay.Value
		want    bool
		handled bool
	}{
		{501, relay.Value{Kind: relay.KindDouble, F: 999999.99}, true, true},
		{500, relay.Value{Kind: relay.KindDouble, F: 1}, false, true},
		{501, relay.Value{Kind: relay.KindDouble, F: 1e6}, false, true},
		{501, relay.Value{Kind: relay.KindDouble, F: math.NaN()}, false, true},
		{501, relay.Value{}, false, false}, // nil < 1000000.0 raises in Lua: Lua evaluates it
	} {
		args := []relay.Value{{Kind: relay.KindLong, I: c.qty}, c.px}
		got, handled, err := p.evalGo(args)
		if handled != c.handled || (handled && (got != c.want || err != nil)) {
			t.Errorf("qty %d px %v: got %v handled %v %v, want %v handled %v", c.qty, c.px, got, handled, err, c.want, c.handled)
		}
		got, err = p.Eval(args)
		if c.handled && (got != c.want || err != nil) {
			t.Errorf("qty %d px %v: Eval %v %v", c.qty, c.px, got, err)
		}
		if !c.handled && (got || err == nil || !strings.Contains(err.Error(), "attempt to compare")) {
			t.Errorf("qty %d px %v: Eval %v %v, want Lua's compare error", c.qty, c.px, got, err)
		}
	}
}

// TestCompiledGlobalsPerGeneration: a global the expression reads is the value the serving generation's
// scripts gave it, read again after a reload; a global holding a table sends the messages to Lua.
func TestCompiledGlobalsPerGeneration(t *testing.T) {
	rt, fsys, _ := luabindtest.New(t, luabind.DefaultConfig(), map[string]string{"a.lua": `blocked = "XXX"`}, luabindtest.Options{})
	params := []relay.ParamType{{Name: "venue", Type: relay.TypeString, NonNull: true}}
	pred, err := Compiler(rt)(params, `venue ~= blocked`)
	if err != nil {
		t.Fatal(err)
	}
	p, ok := pred.(*compiledPredicate)
	if !ok {
		t.Fatalf("not compiled: %T", pred)
	}
	eval := func(venue string) bool {
		t.Helper()
		got, handled, err := p.evalGo([]relay.Value{{Kind: relay.KindString, S: venue}})
		if !handled || err != nil {
			t.Fatalf("venue %q: handled %v %v", venue, handled, err)
		}
		return got
	}
	if eval("XXX") || !eval("LSE") {
		t.Fatal("blocked = XXX: wrong results")
	}
	fsys["a.lua"].Data = []byte(`blocked = "LSE"`)
	if err := rt.Load(); err != nil {
		t.Fatal(err)
	}
	if !eval("XXX") || eval("LSE") {
		t.Fatal("after the reload (blocked = LSE): wrong results")
	}
	fsys["a.lua"].Data = []byte(`blocked = {}`)
	if err := rt.Load(); err != nil {
		t.Fatal(err)
	}
	if _, handled, _ := p.evalGo([]relay.Value{{Kind: relay.KindString, S: "LSE"}}); handled {
		t.Fatal("a table global: the compiled form answered; Lua must")
	}
	if got, err := p.Eval([]relay.Value{{Kind: relay.KindString, S: "LSE"}}); !got || err != nil {
		t.Fatalf("a table global, through Lua: %v %v (a string is never equal to a table)", got, err)
	}
}

// luaOnly is Compiler without the compiled form: every expression runs as Lua (as before issue 18).
func luaOnly(rt *luabind.Runtime) relay.ExprCompiler {
	return func(params []relay.ParamType, source string) (relay.Predicate, error) {
		lp, _, _, err := luaPredicate(rt, params, source)
		return lp, err
	}
}

// BenchmarkRelayRouteBig routes issue 18's message through its rule, the expression compiled to Go and
// in Lua; qty changes from one message to the next, as in sbbench relay --routes big.
func BenchmarkRelayRouteBig(b *testing.B) {
	const routes = `Big;0;O;Order;qty Long nonull,px Double;qty > 500 and px < 1000000.0 and venue ~= "XXX";c1;BREAK;` + "\n"
	rt, _, _ := luabindtest.New(b, luabind.DefaultConfig(), map[string]string{"a.lua": "local sb = require 'switchboard'"}, luabindtest.Options{})
	msgs := make([]relay.Message, 64)
	for i := range msgs {
		var err error
		msgs[i], err = relay.Parse([]byte(`O|T="Order"|I="o1"|qty=` + strings.Repeat("9", 1+i%5) + `L|px=12.25D`))
		if err != nil {
			b.Fatal(err)
		}
	}
	for _, c := range []struct {
		name    string
		compile relay.ExprCompiler
	}{{"compiled", Compiler(rt)}, {"lua", luaOnly(rt)}} {
		b.Run(c.name, func(b *testing.B) {
			tab, err := relay.ParseRoutes("relay.routes", []byte(routes), []string{"c1"}, c.compile)
			if err != nil {
				b.Fatal(err)
			}
			tab.SetMemo(1024, 1<<20)
			var sc relay.RouteScratch
			b.ReportAllocs()
			i := 0
			for b.Loop() {
				if _, err := tab.Route(&msgs[i%len(msgs)], &sc); err != nil {
					b.Fatal(err)
				}
				i++
			}
		})
	}
}

// BenchmarkRelayRouteForge routes 3forge's example (sbbench relay's default routes: Symbol AAPL, IBM and
// ZVZZT in turn) with the memo on: compiled expressions (evaluated every time) against Lua ones (whose
// results the memo remembers after the first three messages).
func BenchmarkRelayRouteForge(b *testing.B) {
	const routes = `RULE0;0;O,D;NewOrder,Cancel;Symbol String nonull;Symbol < "F";c0;BREAK;
RULE1;1;O,D;NewOrder,Cancel;Symbol String nonull;Symbol < "Q";c1;BREAK;
RULE2;2;O,D;NewOrder,Cancel;Symbol String nonull;true;c0,c1;BREAK;
RULE3;3;*;*;;true;*;BREAK;
`
	rt, _, _ := luabindtest.New(b, luabind.DefaultConfig(), map[string]string{"a.lua": "local sb = require 'switchboard'"}, luabindtest.Options{})
	var msgs []relay.Message
	for _, sym := range []string{"AAPL", "IBM", "ZVZZT"} {
		m, err := relay.Parse([]byte(`O|T="NewOrder"|I="o1"|Symbol="` + sym + `"|qty=100|px=12.5D`))
		if err != nil {
			b.Fatal(err)
		}
		msgs = append(msgs, m)
	}
	for _, c := range []struct {
		name    string
		compile relay.ExprCompiler
	}{{"compiled", Compiler(rt)}, {"lua+memo", luaOnly(rt)}} {
		b.Run(c.name, func(b *testing.B) {
			tab, err := relay.ParseRoutes("relay.routes", []byte(routes), []string{"c0", "c1"}, c.compile)
			if err != nil {
				b.Fatal(err)
			}
			tab.SetMemo(4096, 262144)
			var sc relay.RouteScratch
			b.ReportAllocs()
			i := 0
			for b.Loop() {
				if _, err := tab.Route(&msgs[i%len(msgs)], &sc); err != nil {
					b.Fatal(err)
				}
				i++
			}
		})
	}
}

// TestSignedZeroAsLua: gopher-lua stores an arithmetic result through its small-integer cache, which turns
// -0 into +0 (1/(-1 % -1) is +Inf), while unary minus keeps -0 (1/(-a) with a = 0 is -Inf), and a Double
// param of -0 reaches the expression as -0. The compiled form must agree with each (the fuzzer found the
// first).
func TestSignedZeroAsLua(t *testing.T) {
	rt := diffRuntime(t)
	ps := []relay.ParamType{{Name: diffNames[0], Type: relay.TypeLong, NonNull: true}, {Name: diffNames[1], Type: relay.TypeDouble, NonNull: true}}
	a, d := diffNames[0], diffNames[1]
	exprs := []string{
		"1/(" + a + " % " + a + ") > 0", "(" + a + " % " + a + ") ^ " + a + " > 0", "1/(-" + a + ") > 0",
		"1/(" + a + " * -1) > 0", "1/(" + a + " - " + a + ") > 0", "1/" + d + " > 0", "1/(" + d + " * 1) > 0",
		"1/(-" + d + ") > 0", "1/(" + d + " + 0) > 0",
	}
	values := []relay.Value{{Kind: relay.KindLong, I: -1}, {Kind: relay.KindLong, I: 0}, {Kind: relay.KindLong, I: 1}}
	doubles := []relay.Value{{Kind: relay.KindDouble, F: math.Copysign(0, -1)}, {Kind: relay.KindDouble, F: 0}}
	for _, expr := range exprs {
		lp, names, src, err := luaPredicate(rt, ps, expr)
		if err != nil {
			t.Fatalf("%s: %v", expr, err)
		}
		p, ok := compileRoute(lp, names, src).(*compiledPredicate)
		if !ok {
			t.Fatalf("%s: not compiled", expr)
		}
		for _, v := range values {
			for _, dv := range doubles {
				args := []relay.Value{v, dv}
				gotOK, done, gotErr := p.evalGo(args)
				if !done {
					t.Fatalf("%s with %v: the compiled form passed it to Lua", expr, args)
				}
				wantOK, wantErr := lp.Eval(args)
				if !sameOutcome(gotOK, gotErr, wantOK, wantErr) {
					t.Errorf("%s with %v:\ncompiled: %v %v\nLua:      %v %v", expr, args, gotOK, gotErr, wantOK, wantErr)
				}
			}
		}
	}
}
