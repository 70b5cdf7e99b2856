package luabind

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
