package relaylua

import "testing"

func TestPureExpression(t *testing.T) {
	params := []string{"qty", "px", "venue", "Symbol"}
	for src, want := range map[string]bool{
		`qty * px >= 1000000`:                            true,
		`venue == "LSE" or venue == "XETRA"`:             true,
		`string.sub(Symbol, 1, 1) == "A" and qty > 10`:   true,
		`math.floor(px) > 3 -- math.random in a comment`: true,
		`Symbol:lower() == "aapl"`:                       true,
		`venue == "sb.now()" .. [[ require ]]`:           true,
		`math.random() < 0.5`:                            false,
		`require("switchboard").now() > 0`:               false,
		`limit ~= nil and qty > limit`:                   false,
		`qty > (sb and 1 or 0)`:                          false,
		`os.time() > 0`:                                  false,
		`qty .. venue == "1LSE"`:                         true,
	} {
		if got := pureExpression(src, params); got != want {
			t.Errorf("pureExpression(%q) = %v, want %v", src, got, want)
		}
	}
}

func TestNotBoolean(t *testing.T) {
	params := map[string]string{"qty": "a number", "venue": "a string", "flag": "a boolean"}
	for src, want := range map[string]string{
		`qty - qty`: "a number", `qty`: "a number", `flag`: "", `venue .. qty`: "a string", `not venue`: "",
		`qty > 0 and venue`: "a string", `venue or flag`: "a string", `flag or qty > 1`: "", `x.y`: "",
		`f(qty)`: "", `qty:abs()`: "", `(qty)`: "a number", `((flag))`: "", `qty == nil`: "", `"a" < "b"`: "",
		`-qty ^ 2 > 0`: "", `1e5 + .5`: "a number", `[[long]] .. 'x'`: "a string", `qty -- comment`: "a number",
		`function() end`: "", `...`: "", `nil`: "nil", `{1, 2}`: "a table", `qty ~= 0 and "x" or "y"`: "a string",
	} {
		if got := notBoolean(src, params); got != want {
			t.Errorf("notBoolean(%q) = %q, want %q", src, got, want)
		}
	}
}

// FuzzNotBoolean: the reader of expression sources ends on any input with one of its answers.
func FuzzNotBoolean(f *testing.F) {
	for _, s := range []string{`qty - qty`, `flag and (x or y) ~= nil`, `a[b](c){d}"e":f()`, `((((`, `))`, `--[[ x`,
		`"unterminated`, `[==[ long ]==] .. x`, `not not not`, `1 .. 2`, `a.b.c:d "x"`} {
		f.Add(s)
	}
	known := map[string]bool{"": true, "a number": true, "a string": true, "nil": true, "a table": true}
	f.Fuzz(func(t *testing.T, src string) {
		if got := notBoolean(src, map[string]string{"qty": "a number", "flag": "a boolean"}); !known[got] {
			t.Fatalf("notBoolean(%q) = %q", src, got)
		}
	})
}
