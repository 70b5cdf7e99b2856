package relay

import "testing"

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
	tab.SetMemo(4096)
	var st RouteScratch
	m, _ := Parse([]byte(`O|T="x"|Symbol="AAPL"`))
	for i := 0; i < 5; i++ {
		tab.Route(&m, &st)
	}
	if evals != 5 {
		t.Fatalf("impure predicate evaluated %d times for 5 messages", evals)
	}
}
