package relaylua

import (
	"errors"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/switchboard/switchboard/engine/relay"
	"github.com/switchboard/switchboard/luabind"
	"github.com/switchboard/switchboard/luabind/luabindtest"
)

const relayWorkedRoutes = `# RouteName;Priority;MessageTypes;ObjectTypes;ParamTypes;Expression;RouteList;OnTrue;OnFalse
BigOrders;10;O;Order;qty Long nonull,px Double nonull;qty * px >= 1000000;risk;;
EuOrders;20;O,D;Order,Fill;venue String nonull;venue == "LSE" || venue == "XETRA";eu;BREAK;
Cmds;30;C;*;;true;primary;BREAK;
Default;99;*;*;;true;primary,hist;BREAK;
`

func relayRoute(t *testing.T, tab *relay.Table, line string) (string, error) {
	t.Helper()
	m, err := relay.Parse([]byte(line))
	if err != nil {
		t.Fatal(err)
	}
	var sc relay.RouteScratch
	set, err := tab.Route(&m, &sc)
	var out []string
	for i, c := range tab.Centers() {
		if set.Has(i) {
			out = append(out, c)
		}
	}
	return strings.Join(out, ","), err
}

func TestRelayLuaExpressionsWorkedExample(t *testing.T) {
	rt, _, _ := luabindtest.New(t, luabind.DefaultConfig(), map[string]string{"a.lua": "local sb = require 'switchboard'"}, luabindtest.Options{})
	tab, err := relay.ParseRoutes("relay.routes", []byte(relayWorkedRoutes), []string{"primary", "risk", "hist", "eu"}, Compiler(rt))
	if err != nil {
		t.Fatal(err)
	}
	for i, r := range []struct{ line, want string }{
		{`O|T="Order"|I="o1"|qty=5000L|px=250.0D|venue="NYSE"`, "primary,risk,hist"},
		{`O|T="Order"|I="o2"|qty=10|px=3.5|venue="LSE"`, "eu"},
		{`O|T="Order"|I="o3"|qty=2000000L|px=1.0D|venue="XETRA"`, "risk,eu"},
		{`O|T="Order"|I="o4"|px=10.0D|venue="NYSE"`, "primary,hist"},
		{`D|T="Order"|I="o2"|venue="LSE"`, "eu"},
		{`D|T="Order"|I="o1"`, "primary,hist"},
		{`C|I="bust"|N="order.bust"`, "primary"},
		{`O|T="Heartbeat"|I="h"|qty=1`, "primary,hist"},
	} {
		got, err := relayRoute(t, tab, r.line)
		if err != nil || got != r.want {
			t.Errorf("row %d: got %q %v want %q", i+1, got, err, r.want)
		}
	}
}

func TestRelayLuaExpressionForms(t *testing.T) {
	cfg := luabind.DefaultConfig()
	cfg.HandlerTimeout = 100 * time.Millisecond
	rt, _, _ := luabindtest.New(t, cfg, map[string]string{"a.lua": "local sb = require 'switchboard'"}, luabindtest.Options{})
	src := `Fix;1;O;*;55 String nonull,44 Double;_55:upper() == "IBM" && _44 != nil && !(_44 > 100);a;BREAK;
Nil;2;O;*;x Int;x and x > 0;b;BREAK;
Spin;3;O;Spin;;(function() while true do end end)();c;BREAK;
Err;4;O;*;;nosuch.field;c;BREAK;
Zero;5;O;*;z Int nonull;math.abs(z);c;BREAK;
`
	tab, err := relay.ParseRoutes("relay.routes", []byte(src), []string{"a", "b", "c"}, Compiler(rt))
	if err != nil {
		t.Fatal(err)
	}
	check := func(line, want, wantErr string) {
		t.Helper()
		got, err := relayRoute(t, tab, line)
		if got != want || (wantErr == "") != (err == nil) || (err != nil && !strings.Contains(err.Error(), wantErr)) {
			t.Errorf("%s: got %q %v want %q %q", line, got, err, want, wantErr)
		}
	}
	check(`O|T="x"|55="ibm"|44=99.5`, "a", "")
	check(`O|T="x"|55="ibm"|44=150.5`, "", "nosuch") // Fix false; Nil: x nil -> false; Err errors -> false; Zero n/a
	check(`O|T="x"|x=5`, "b", "")
	check(`O|T="x"|z=0`, "", "nosuch")           // math.abs(0) is 0, not a boolean: false (not true, as Lua would have it)
	check(`O|T="Spin"`, "", "while true do end") // over the handler time limit: false, with the error
}

// TestRelayLuaExpressionsMustBeBoolean: an expression whose source shows it is not a boolean is refused
// when the routes load; one that turns out not to be when it runs counts as false, with a
// *relay.NotBooleanError (issue 15 item 4).
func TestRelayLuaExpressionsMustBeBoolean(t *testing.T) {
	rt, _, _ := luabindtest.New(t, luabind.DefaultConfig(), map[string]string{"a.lua": "local sb = require 'switchboard'"}, luabindtest.Options{})
	comp := Compiler(rt)
	params := "qty Long nonull,px Double,venue String,flag Boolean,sym Char"
	for expr, yields := range map[string]string{
		`qty - qty`:                    "a number",
		`qty`:                          "a number",
		`venue`:                        "a string",
		`sym`:                          "a string",
		`0`:                            "a number",
		`""`:                           "a string",
		`nil`:                          "nil",
		`venue .. "x"`:                 "a string",
		`-px`:                          "a number",
		`#venue`:                       "a number",
		`qty > 0 and qty`:              "a number",
		`qty or false`:                 "a number",
		`flag or venue`:                "a string",
		`(qty * px)`:                   "a number",
		`{}`:                           "a table",
		`qty > 1 and "big" or "small"`: "a string",
	} {
		src := "R;1;O;*;" + params + ";" + expr + ";a;;\n"
		_, err := relay.ParseRoutes("relay.routes", []byte(src), []string{"a"}, comp)
		want := fmt.Sprintf("relay.routes:1: route R: EXPRESSION: %q yields %s, not a boolean", expr, yields)
		if err == nil || !strings.HasPrefix(err.Error(), want) {
			t.Errorf("%s: got %v, want %q", expr, err, want)
		}
	}
	for _, expr := range []string{`flag`, `not qty`, `qty > 0`, `qty ~= 0 and px ~= nil`, `flag and qty > 1 or false`,
		`venue == "LSE" || venue == "XETRA"`, `!(qty > 5)`, `math.abs(qty) > 0`, `venue:lower() == "lse"`,
		`tonumber(venue)`, `qty > 1 and flag`, `undeclared`, `(qty > 0)`, `px and px > 1.5`, `qty == -1 or qty >= 2^10`} {
		src := "R;1;O;*;" + params + ";" + expr + ";a;;\n"
		if _, err := relay.ParseRoutes("relay.routes", []byte(src), []string{"a"}, comp); err != nil {
			t.Errorf("%s: refused: %v", expr, err)
		}
	}
	// at run time
	tab, err := relay.ParseRoutes("relay.routes", []byte(`Num;1;O;*;qty Long nonull;math.abs(qty);a;;
Str;2;O;*;venue String nonull;venue:lower();b;;
Null;3;O;*;venue String;undeclared_global;c;;
`), []string{"a", "b", "c"}, comp)
	if err != nil {
		t.Fatal(err)
	}
	var failures []string
	tab.OnEvalError(func(r *relay.Rule, err error) {
		var nb *relay.NotBooleanError
		if !errors.As(err, &nb) {
			t.Errorf("%s: %v is not a NotBooleanError", r.Name, err)
		}
		failures = append(failures, r.Name+": "+err.Error())
	})
	got, err := relayRoute(t, tab, `O|T="x"|qty=0L|venue="LSE"`)
	if got != "" || err == nil {
		t.Fatalf("routed to %q (%v); every rule should count as false", got, err)
	}
	want := []string{`Num: the expression yielded a number (0), not a boolean: counted as false`,
		`Str: the expression yielded a string ("lse"), not a boolean: counted as false`}
	if strings.Join(failures, "\n") != strings.Join(want, "\n") {
		t.Fatalf("failures:\n%s\nwant\n%s", strings.Join(failures, "\n"), strings.Join(want, "\n"))
	}
}

func TestRelayLuaCompileErrors(t *testing.T) {
	rt, _, _ := luabindtest.New(t, luabind.DefaultConfig(), map[string]string{"a.lua": "local sb = require 'switchboard'"}, luabindtest.Options{})
	_, err := relay.ParseRoutes("relay.routes", []byte("\nBad;1;O;*;qty Int;qty >>> 2;a;;\n"), []string{"a"}, Compiler(rt))
	if err == nil || !strings.HasPrefix(err.Error(), "relay.routes:2: route Bad: EXPRESSION:") {
		t.Fatalf("got %v", err)
	}
	_, err = relay.ParseRoutes("relay.routes", []byte("Kw;1;O;*;end Int;true;a;;\n"), []string{"a"}, Compiler(rt))
	if err != nil {
		t.Fatalf("a blank/true expression is not compiled: %v", err)
	}
	_, err = relay.ParseRoutes("relay.routes", []byte("Kw;1;O;*;end Int;end > 1;a;;\n"), []string{"a"}, Compiler(rt))
	if err == nil || !strings.Contains(err.Error(), "Lua keyword") {
		t.Fatalf("got %v", err)
	}
}

func TestTranslateAMIScript(t *testing.T) {
	for in, want := range map[string]string{
		`a && b || !c`:        `a  and  b  or   not c`,
		`a != "x && y"`:       `a ~= "x && y"`,
		`s == 'it\'s || not'`: `s == 'it\'s || not'`,
		`venue == "LSE" or x`: `venue == "LSE" or x`,
	} {
		if got := translateAMIScript(in); got != want {
			t.Errorf("%q -> %q want %q", in, got, want)
		}
	}
}

func BenchmarkRelayLuaRoute(b *testing.B) {
	rt, _, _ := luabindtest.New(b, luabind.DefaultConfig(), map[string]string{"a.lua": "local sb = require 'switchboard'"}, luabindtest.Options{})
	tab, err := relay.ParseRoutes("relay.routes", []byte(relayWorkedRoutes), []string{"primary", "risk", "hist", "eu"}, Compiler(rt))
	if err != nil {
		b.Fatal(err)
	}
	m, _ := relay.Parse([]byte(`O|T="Order"|I="o1"|qty=5000L|px=250.0D|venue="NYSE"`))
	var sc relay.RouteScratch
	b.ReportAllocs()
	for b.Loop() {
		tab.Route(&m, &sc)
	}
}
