package jsonjs

import (
	"math"
	"testing"
)

// The forms JSON.stringify gives (node -e 'console.log(JSON.stringify(x))').
func TestAsJavaScriptWritesThem(t *testing.T) {
	strs := map[string]string{
		"plain":             `"plain"`,
		"<a href='x'>&</a>": `"<a href='x'>&</a>"`, // no HTML escaping
		"q\"b\\\n\r\t\b\f":  `"q\"b\\\n\r\t\b\f"`,
		"\x00\x1f":          `"\u0000\u001f"`,
		"bad\xffutf8":       "\"bad\ufffdutf8\"",
		"é✓":                `"é✓"`,
	}
	for in, want := range strs {
		if got := string(AppendString(nil, in)); got != want {
			t.Errorf("AppendString(%q) = %s, want %s", in, got, want)
		}
	}
	nums := map[float64]string{
		0: "0", 1: "1", -2.5: "-2.5", 0.25: "0.25", 1e20: "100000000000000000000", 1e21: "1e+21",
		1e-6: "0.000001", 1e-7: "1e-7", 123456789.125: "123456789.125",
		math.NaN(): "null", math.Inf(1): "null", math.Inf(-1): "null",
	}
	for in, want := range nums {
		if got := string(AppendNumber(nil, in)); got != want {
			t.Errorf("AppendNumber(%v) = %s, want %s", in, got, want)
		}
	}
}
