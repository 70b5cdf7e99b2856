package relay

import (
	"strconv"
	"strings"
	"testing"
)

type impurePredicate struct{ evals *int }

func (p impurePredicate) Eval([]Value) (bool, error) { *p.evals++; return true, nil }
func (p impurePredicate) Pure() bool                 { return false }

// An expression that is not a pure function of its params (it reads the clock, the cache, math.random) is
// evaluated for every message even with relay.expression_cache on.
func TestRouteMemoSkipsImpurePredicates(t *testing.T) {
	evals := 0
	compile := func([]ParamType, string) (Predicate, error) { return impurePredicate{&evals}, nil }
	tab, err := ParseRoutes("r", []byte("R;1;O;*;Symbol String nonull;math.random() < 0.5;a;BREAK;\n"), []string{"a"}, compile)
	if err != nil {
		t.Fatal(err)
	}
	tab.SetMemo(4096, 256<<10)
	var st RouteScratch
	m, _ := Parse([]byte(`O|T="x"|Symbol="AAPL"`))
	for i := 0; i < 5; i++ {
		tab.Route(&m, &st)
	}
	if evals != 5 {
		t.Fatalf("impure predicate evaluated %d times for 5 messages", evals)
	}
}

// The memo of one connection holds at most relay.expression_cache_bytes, whatever the params hold: results
// of long params are not remembered at all, and many distinct short ones make it start over.
func TestRouteMemoBoundedInBytes(t *testing.T) {
	evals := 0
	compile := func(params []ParamType, src string) (Predicate, error) {
		return PredicateFunc(func(a []Value) (bool, error) { evals++; return a[0].S < "F", nil }), nil
	}
	src := "R1;1;O;*;Symbol String nonull;x;a;;\nR2;2;O;*;Symbol String nonull;y;a;BREAK;\n"
	tab, err := ParseRoutes("r", []byte(src), []string{"a"}, compile)
	if err != nil {
		t.Fatal(err)
	}
	const budget = 64 << 10
	tab.SetMemo(4096, budget)
	var st RouteScratch
	route := func(sym string) {
		t.Helper()
		m, err := Parse([]byte(`O|T="x"|Symbol="` + sym + `"`))
		if err != nil {
			t.Fatal(err)
		}
		set, _ := tab.Route(&m, &st)
		if set.Has(0) != (sym < "F") {
			t.Fatalf("%.10s... routed wrong", sym)
		}
		if st.MemoBytes() > budget {
			t.Fatalf("memo holds %d bytes, bound %d", st.MemoBytes(), budget)
		}
	}
	// 60 KB params (the attack of issue 10): never remembered, evaluated every time
	big := strings.Repeat("Z", 60<<10)
	for i := 0; i < 20; i++ {
		route(big + strconv.Itoa(i))
		route(big + strconv.Itoa(i))
	}
	if evals != 80 || st.MemoBytes() != 0 {
		t.Fatalf("long params: %d evaluations for 40 messages x 2 rules, memo %d bytes", evals, st.MemoBytes())
	}
	// many distinct params just under the key cap: bounded, and still correct
	for i := 0; i < 2000; i++ {
		route(strings.Repeat("A", maxMemoKey-16) + strconv.Itoa(i))
	}
	if st.MemoBytes() == 0 {
		t.Fatal("short params were not remembered")
	}
	// a repeated symbol is answered from the memo
	evals = 0
	for i := 0; i < 10; i++ {
		route("AAPL")
	}
	if evals != 2 {
		t.Fatalf("AAPL evaluated %d times in 10 messages on 2 rules", evals)
	}
}
