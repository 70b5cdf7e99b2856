package luabind

import (
	"testing"

	lua "github.com/yuin/gopher-lua"
)

// strlibBench are ordinary uses of the pattern functions, as Lua code calls them.
var strlibBench = []struct{ name, setup, body string }{
	{"match_kv", `local s = "user=alice; role=admin; ttl=300"`, `local k, v = s:match("(%w+)=(%w+)")`},
	{"match_trim", `local s = "   hello, world   "`, `local t = s:match("^%s*(.-)%s*$")`},
	{"find_digits", `local s = ("price is "):rep(20) .. "1234"`, `local a, b = s:find("%d+")`},
	{"find_plain", `local s = ("hay "):rep(256) .. "needle"`, `local a, b = s:find("needle", 1, true)`},
	{"match_email", `local s = "contact: some.one@example.com now"`, `local e = s:match("[%w_%.]+@[%w_]+%.%a+")`},
	{"gmatch_words", `local s = "the quick brown fox jumps over the lazy dog"`, `for w in s:gmatch("%a+") do end`},
	{"gsub_spaces", `local s = ("a b  c   "):rep(30)`, `local r = s:gsub("%s+", " ")`},
	{"gsub_func", `local s = "x=1, y=2, z=3"`, `local r = s:gsub("(%w+)=(%w+)", function(k, v) return v .. "=" .. k end)`},
}

// BenchmarkStringLib runs each case with gopher-lua's own library (gopher) and with the sandbox's (sandbox)
// in the same kind of state, so the two numbers compare the libraries alone.
func BenchmarkStringLib(b *testing.B) {
	for _, c := range strlibBench {
		for _, lib := range []string{"gopher", "sandbox"} {
			b.Run(c.name+"/"+lib, func(b *testing.B) {
				L := lua.NewState()
				defer L.Close()
				if lib == "sandbox" {
					openStrlib(L, DefaultConfig().MaxStringBytes)
				}
				if err := L.DoString(c.setup + "\nfunction bench(n) for i = 1, n do " + c.body + " end end"); err != nil {
					b.Fatal(err)
				}
				fn := L.GetGlobal("bench")
				b.ReportAllocs()
				b.ResetTimer()
				if err := L.CallByParam(lua.P{Fn: fn, Protect: true}, lua.LNumber(b.N)); err != nil {
					b.Fatal(err)
				}
			})
		}
	}
}
