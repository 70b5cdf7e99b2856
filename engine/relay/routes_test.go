package relay

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// goExprs is a Go ExprCompiler for the expressions used in the tests.
func goExprs(params []ParamType, src string) (Predicate, error) {
	idx := func(name string) int {
		for i, p := range params {
			if p.Name == name {
				return i
			}
		}
		return -1
	}
	need := map[string]string{`Symbol < "F"`: "Symbol", `Symbol < "Q"`: "Symbol", `qty * px >= 1000000`: "qty,px",
		`venue == "LSE" or venue == "XETRA"`: "venue", `volume > 1000000`: "volume"}
	for _, n := range strings.Split(need[src], ",") {
		if n != "" && idx(n) < 0 {
			return nil, fmt.Errorf("%s is not declared", n)
		}
	}
	switch src {
	case `Symbol < "F"`, `Symbol < "Q"`:
		i, lim := idx("Symbol"), src[len(src)-2:len(src)-1]
		return PredicateFunc(func(a []Value) (bool, error) { return a[i].S < lim, nil }), nil
	case `qty * px >= 1000000`:
		q, p := idx("qty"), idx("px")
		return PredicateFunc(func(a []Value) (bool, error) { return float64(a[q].I)*a[p].F >= 1e6, nil }), nil
	case `venue == "LSE" or venue == "XETRA"`:
		v := idx("venue")
		return PredicateFunc(func(a []Value) (bool, error) { return a[v].S == "LSE" || a[v].S == "XETRA", nil }), nil
	case `volume > 1000000`:
		v := idx("volume")
		return PredicateFunc(func(a []Value) (bool, error) { return a[v].I > 1000000, nil }), nil
	case `boom`:
		return PredicateFunc(func(a []Value) (bool, error) { return false, errors.New("boom") }), nil
	}
	return nil, fmt.Errorf("cannot compile %q", src)
}

const forgeRoutes = `# 3forge example
RULE0;0;O,D;NewOrder,Cancel;Symbol String nonull;Symbol < "F";Center0;BREAK;
RULE1;1;O,D;NewOrder,Cancel;Symbol String nonull;Symbol < "Q";Center1;BREAK;
RULE2;2;O,D;NewOrder,Cancel;Symbol String nonull;true;Center2,Center3;BREAK;
RULE3;3;*;*;;true;*;BREAK;
`

const workedRoutes = `# RouteName;Priority;MessageTypes;ObjectTypes;ParamTypes;Expression;RouteList;OnTrue;OnFalse
BigOrders;10;O;Order;qty Long nonull,px Double nonull;qty * px >= 1000000;risk;;
EuOrders;20;O,D;Order,Fill;venue String nonull;venue == "LSE" or venue == "XETRA";eu;BREAK;
Cmds;30;C;*;;true;primary;BREAK;
Default;99;*;*;;true;primary,hist;BREAK;
`

func names(t *Table, s CenterSet) string {
	var out []string
	for i, c := range t.Centers() {
		if s.Has(i) {
			out = append(out, c)
		}
	}
	return strings.Join(out, ",")
}

func route(t *testing.T, tab *Table, line string) string {
	t.Helper()
	m, err := Parse([]byte(line))
	if err != nil {
		t.Fatalf("%s: %v", line, err)
	}
	var scratch RouteScratch
	s, err := tab.Route(&m, &scratch)
	if err != nil {
		t.Fatalf("%s: %v", line, err)
	}
	return names(tab, s)
}

func TestRoutesForgeExample(t *testing.T) {
	tab, err := ParseRoutes("relay.routes", []byte(forgeRoutes), []string{"Center0", "Center1", "Center2", "Center3"}, goExprs)
	if err != nil {
		t.Fatal(err)
	}
	for line, want := range map[string]string{
		`O|T="NewOrder"|Symbol="AAPL"`:  "Center0",
		`O|T="NewOrder"|Symbol="IBM"`:   "Center1",
		`O|T="NewOrder"|Symbol="ZVZZT"`: "Center2,Center3",
		`O|T="NewOrder"`:                "Center0,Center1,Center2,Center3",
		`S|x=1`:                         "Center0,Center1,Center2,Center3",
		`R|I="x"|S=0`:                   "",
	} {
		if got := route(t, tab, line); got != want {
			t.Errorf("%s: got %q want %q", line, got, want)
		}
	}
}

func TestRoutesWorkedExample(t *testing.T) {
	tab, err := ParseRoutes("relay.routes", []byte(workedRoutes), []string{"primary", "risk", "hist", "eu"}, goExprs)
	if err != nil {
		t.Fatal(err)
	}
	rows := []struct{ line, want string }{
		{`O|T="Order"|I="o1"|qty=5000L|px=250.0D|venue="NYSE"`, "primary,risk,hist"},
		{`O|T="Order"|I="o2"|qty=10|px=3.5|venue="LSE"`, "eu"},
		{`O|T="Order"|I="o3"|qty=2000000L|px=1.0D|venue="XETRA"`, "risk,eu"},
		{`O|T="Order"|I="o4"|px=10.0D|venue="NYSE"`, "primary,hist"},
		{`D|T="Order"|I="o2"|venue="LSE"`, "eu"},
		{`D|T="Order"|I="o1"`, "primary,hist"},
		{`C|I="bust"|N="order.bust"`, "primary"},
		{`O|T="Heartbeat"|I="h"|qty=1`, "primary,hist"},
	}
	for i, r := range rows {
		if got := route(t, tab, r.line); got != r.want {
			t.Errorf("row %d %s: got %q want %q", i+1, r.line, got, r.want)
		}
	}
}

func TestRoutesSemantics(t *testing.T) {
	centers := []string{"a", "b", "c"}
	// no rules: every center
	tab, err := ParseRoutes("r", []byte("# nothing\n\n"), centers, goExprs)
	if err != nil {
		t.Fatal(err)
	}
	if got := route(t, tab, `O|T="x"`); got != "a,b,c" {
		t.Fatalf("no rules: %q", got)
	}
	src := `
Zed;5;O;*;;;c;;
Alpha;5;O;*;;;a;;
Skipped;1;O;;;;b;;
Fail;2;O;*;;boom;b;;
Wide;3;O;*;n Int;;b;BREAK;
`
	tab, err = ParseRoutes("r", []byte(src), centers, goExprs)
	if err != nil {
		t.Fatal(err)
	}
	var order []string
	for _, r := range tab.Rules() {
		order = append(order, r.Name)
	}
	if strings.Join(order, ",") != "Skipped,Fail,Wide,Alpha,Zed" {
		t.Fatalf("order %v", order)
	}
	// Wide applies (n absent is null, not nonull) and breaks
	m0, _ := Parse([]byte(`O|T="x"`))
	var sc0 RouteScratch
	if set, _ := tab.Route(&m0, &sc0); names(tab, set) != "b" {
		t.Fatalf("got %q", names(tab, set))
	}
	// n of the wrong type: Wide does not apply; Alpha and Zed route; the expression error is reported
	m, _ := Parse([]byte(`O|T="x"|n="str"`))
	var sc RouteScratch
	set, err := tab.Route(&m, &sc)
	if names(tab, set) != "a,c" || err == nil || !strings.Contains(err.Error(), "route Fail (line 5): boom") {
		t.Fatalf("got %q %v", names(tab, set), err)
	}
	// n out of Int range: not applicable
	m2, _ := Parse([]byte(`O|T="x"|n=9999999999L`))
	if set, _ := tab.Route(&m2, &sc); names(tab, set) != "a,c" {
		t.Fatalf("got %q", names(tab, set))
	}
}

func TestRoutesErrors(t *testing.T) {
	centers := []string{"a"}
	cases := []struct{ src, want string }{
		{"R;1;O;*;;;a;", "relay.routes:1: expected 9 ';'-separated fields"},
		{"\nR;x;O;*;;;a;;", "relay.routes:2: route R: PRIORITY: expected an integer"},
		{"R;1;Q;*;;;a;;", "relay.routes:1: route R: MESSAGE_TYPES"},
		{"R;1;O;*;x Foo;;a;;", `relay.routes:1: route R: PARAM_TYPES: unknown type "Foo"`},
		{"R;1;O;*;x;;a;;", `relay.routes:1: route R: PARAM_TYPES: expected "Name Type [nonull]"`},
		{"R;1;O;*;;;zz;;", `relay.routes:1: route R: ROUTE_LIST: unknown center "zz"`},
		{"R;1;O;*;;;a;STOP;", `relay.routes:1: route R: ON_TRUE: expected BREAK`},
		{"R;1;O;*;;nope;a;;", `relay.routes:1: route R: EXPRESSION: cannot compile "nope"`},
		{"R;1;O;*;;;a;;\nR;2;O;*;;;a;;", `relay.routes:2: duplicate route name "R" (first on line 1)`},
		{";1;O;*;;;a;;", `relay.routes:1: ROUTE_NAME is empty`},
	}
	for _, c := range cases {
		_, err := ParseRoutes("relay.routes", []byte(c.src), centers, goExprs)
		if err == nil || !strings.HasPrefix(err.Error(), c.want) {
			t.Errorf("%q: got %v want %q", c.src, err, c.want)
		}
	}
	// tolerated: trailing ';', blank 10th field, CRLF, comments
	if _, err := ParseRoutes("r", []byte("# c\r\nR;1;O;*;;;a;;;\r\n"), centers, goExprs); err != nil {
		t.Fatal(err)
	}
}

func TestObjectIndexDeletesFollowInserts(t *testing.T) {
	tab, err := ParseRoutes("relay.routes", []byte(workedRoutes), []string{"primary", "risk", "hist", "eu"}, goExprs)
	if err != nil {
		t.Fatal(err)
	}
	x := NewObjectIndex(2)
	app := x.Owner("app")
	send := func(line string) string {
		m, _ := Parse([]byte(line))
		var sc RouteScratch
		s, _ := tab.Route(&m, &sc)
		return names(tab, x.Follow(app, &m, s, FollowUpdates))
	}
	if got := send(`O|T="Order"|I="o1"|qty=5000L|px=250.0D|venue="NYSE"`); got != "primary,risk,hist" {
		t.Fatal(got)
	}
	// update without the routing fields still reaches risk
	if got := send(`O|T="Order"|I="o1"|status="filled"`); got != "primary,risk,hist" {
		t.Fatal(got)
	}
	if got := send(`D|T="Order"|I="o1"`); got != "primary,risk,hist" {
		t.Fatalf("row 6 with the index: %q", got)
	}
	if x.Len() != 0 {
		t.Fatalf("deleted object still indexed: %d", x.Len())
	}
	// bounded: the oldest is forgotten
	send(`O|T="Order"|I="a"|qty=5000L|px=250.0D|venue="NYSE"`)
	send(`O|T="Order"|I="b"|qty=5000L|px=250.0D|venue="NYSE"`)
	send(`O|T="Order"|I="c"|qty=5000L|px=250.0D|venue="NYSE"`)
	if x.Len() != 2 {
		t.Fatalf("len %d", x.Len())
	}
	if got := send(`D|T="Order"|I="a"`); got != "primary,hist" {
		t.Fatalf("evicted object: %q", got)
	}
	if got := send(`D|T="Order"|I="c"`); got != "primary,risk,hist" {
		t.Fatalf("kept object: %q", got)
	}
}

// TestFollowModes is the worked example of relay.follow_objects (docs/configuration.md): o1 is first a big
// NYSE order (risk, primary, hist), then updated to a small LSE one (the rules: eu), then deleted (the rules:
// primary, hist). Off routes by the rules alone; deletes sends the delete everywhere o1 went; updates and
// deletes also sends the update there.
func TestFollowModes(t *testing.T) {
	tab, err := ParseRoutes("relay.routes", []byte(workedRoutes), []string{"primary", "risk", "hist", "eu"}, goExprs)
	if err != nil {
		t.Fatal(err)
	}
	rows := []string{`O|T="Order"|I="o1"|qty=5000L|px=250.0D|venue="NYSE"`, `O|T="Order"|I="o1"|qty=1L|px=250.0D|venue="LSE"`,
		`D|T="Order"|I="o1"`}
	for mode, want := range map[FollowMode][]string{
		FollowOff:     {"primary,risk,hist", "eu", "primary,hist"},
		FollowDeletes: {"primary,risk,hist", "eu", "primary,risk,hist,eu"},
		FollowUpdates: {"primary,risk,hist", "primary,risk,hist,eu", "primary,risk,hist,eu"},
	} {
		x := NewObjectIndex(100)
		app := x.Owner("app")
		for i, row := range rows {
			m, _ := Parse([]byte(row))
			var sc RouteScratch
			s, _ := tab.Route(&m, &sc)
			if got := names(tab, x.Follow(app, &m, s, mode)); got != want[i] {
				t.Errorf("mode %d row %d: %q, want %q", mode, i+1, got, want[i])
			}
		}
		if x.Len() != 0 {
			t.Errorf("mode %d: the deleted object is still remembered", mode)
		}
	}
}

func FuzzParseRoutes(f *testing.F) {
	f.Add([]byte(forgeRoutes))
	f.Add([]byte(workedRoutes))
	f.Add([]byte("FanOut;10;O,D;*;;;a,b;;\nHighVolume;10;O;Trades;volume Long nonull;volume > 1000000;a;;BREAK\n"))
	f.Fuzz(func(t *testing.T, src []byte) {
		tab, err := ParseRoutes("relay.routes", src, []string{"a", "b", "Center0", "Center1", "Center2", "Center3", "risk", "eu", "primary", "hist"}, goExprs)
		if err != nil {
			if !strings.HasPrefix(err.Error(), "relay.routes:") {
				t.Fatalf("error without position: %v", err)
			}
			return
		}
		m, _ := Parse([]byte(`O|T="Order"|I="o1"|qty=5000L|px=250.0D|venue="NYSE"|Symbol="IBM"`))
		var sc RouteScratch
		tab.Route(&m, &sc)
	})
}

func BenchmarkRouteWorked(b *testing.B) {
	tab, err := ParseRoutes("relay.routes", []byte(workedRoutes), []string{"primary", "risk", "hist", "eu"}, goExprs)
	if err != nil {
		b.Fatal(err)
	}
	m, _ := Parse([]byte(`O|T="Order"|I="o1"|qty=5000L|px=250.0D|venue="NYSE"`))
	var sc RouteScratch
	b.ReportAllocs()
	for b.Loop() {
		tab.Route(&m, &sc)
	}
}

func TestRouteMemo(t *testing.T) {
	evals := 0
	compile := func(params []ParamType, src string) (Predicate, error) {
		return PredicateFunc(func(a []Value) (bool, error) { evals++; return a[0].S < "F", nil }), nil
	}
	tab, err := ParseRoutes("r", []byte("R;1;O;*;Symbol String nonull;Symbol < \"F\";a;BREAK;\n"), []string{"a"}, compile)
	if err != nil {
		t.Fatal(err)
	}
	tab.SetMemo(2, 1<<20)
	var st RouteScratch
	for _, sym := range []string{"AAPL", "AAPL", "IBM", "AAPL", "ZZ", "ZZ"} {
		m, _ := Parse([]byte(`O|T="x"|Symbol="` + sym + `"`))
		set, _ := tab.Route(&m, &st)
		if set.Has(0) != (sym < "F") {
			t.Fatalf("%s routed wrong", sym)
		}
	}
	// AAPL, IBM evaluated; AAPL cached twice; ZZ fills past the bound (map reset) and is then cached
	if evals != 3 {
		t.Fatalf("%d evaluations", evals)
	}
	tab2, _ := ParseRoutes("r", []byte("R;1;O;*;Symbol String nonull;Symbol < \"F\";a;BREAK;\n"), []string{"a"}, compile)
	m, _ := Parse([]byte(`O|T="x"|Symbol="ZZ"`))
	tab2.Route(&m, &st) // a new table starts with an empty memo (and tab2 has none)
	tab2.Route(&m, &st)
	if evals != 5 {
		t.Fatalf("%d evaluations after swap", evals)
	}
}

func TestCheckConfig(t *testing.T) {
	dir := t.TempDir()
	cfg := DefaultConfig()
	cfg.Centers = map[string]string{"Center0": "127.0.0.1:1", "Center1": "127.0.0.1:2", "Center2": "127.0.0.1:3", "Center3": "127.0.0.1:4"}
	cfg.RoutesFile = filepath.Join(dir, "relay.routes")

	// no file: the relay runs with every message to every center, not an error
	if errs := CheckConfig(cfg, goExprs); len(errs) != 0 {
		t.Fatalf("missing file: %v", errs)
	}
	if err := os.WriteFile(cfg.RoutesFile, []byte(forgeRoutes), 0o644); err != nil {
		t.Fatal(err)
	}
	if errs := CheckConfig(cfg, goExprs); len(errs) != 0 {
		t.Fatalf("good file: %v", errs)
	}
	bad := "# header\n" +
		"A;1;O;*;;;Center0;;\n" +
		"B;x;O;*;;;Center0;;\n" + // line 3: priority
		"C;1;O;*;;no such expression;Center0;;\n" + // line 4: expression does not compile
		"D;1;O;*;;;Nowhere;;\n" + // line 5: unknown center
		"A;2;O;*;;;Center1;;\n" // line 6: duplicate
	if err := os.WriteFile(cfg.RoutesFile, []byte(bad), 0o644); err != nil {
		t.Fatal(err)
	}
	errs := CheckConfig(cfg, goExprs)
	want := []string{
		`relay.routes:3: route B: PRIORITY: expected an integer, got "x"`,
		`relay.routes:4: route C: EXPRESSION: cannot compile "no such expression"`,
		`relay.routes:5: route D: ROUTE_LIST: unknown center "Nowhere"`,
		`relay.routes:6: duplicate route name "A" (first on line 2)`,
	}
	if len(errs) != len(want) {
		t.Fatalf("got %d errors, want %d: %v", len(errs), len(want), errs)
	}
	for i, w := range want {
		if errs[i].Error() != w {
			t.Errorf("error %d: got %q, want %q", i, errs[i], w)
		}
	}
	// a routes file that cannot be read is one problem naming the key
	cfg.RoutesFile = dir
	if errs := CheckConfig(cfg, goExprs); len(errs) != 1 || !strings.HasPrefix(errs[0].Error(), "relay.routes_file: ") {
		t.Fatalf("unreadable file: %v", errs)
	}
	cfg.Enabled = false
	if errs := CheckConfig(cfg, goExprs); errs != nil {
		t.Fatalf("disabled relay: %v", errs)
	}
}

// BenchmarkRouteForgeMemo routes the sbbench mix (3forge's example rules,
// symbols AAPL, IBM, ZVZZT in turn) with the per-connection memo on.
func BenchmarkRouteForgeMemo(b *testing.B) {
	tab, err := ParseRoutes("relay.routes", []byte(forgeRoutes), []string{"Center0", "Center1", "Center2", "Center3"}, goExprs)
	if err != nil {
		b.Fatal(err)
	}
	tab.SetMemo(4096, 1<<20)
	var msgs [3]Message
	for i, sym := range []string{"AAPL", "IBM", "ZVZZT"} {
		msgs[i], _ = Parse([]byte(`O|T="NewOrder"|I="o1"|Symbol="` + sym + `"|qty=100|px=12.5D`))
	}
	var sc RouteScratch
	b.ReportAllocs()
	i := 0
	for b.Loop() {
		tab.Route(&msgs[i%3], &sc)
		i++
	}
}
