package luapattern

import (
	"strings"
	"testing"

	"github.com/yuin/gopher-lua/pm"
)

// benchCases are ordinary patterns on ordinary subjects: what scripts do with request parameters.
var benchCases = []struct {
	name, pat, subj string
	all             bool // every match, as gsub and gmatch do
}{
	{"kv", "(%w+)=(%w+)", "user=alice; role=admin; ttl=300", false},
	{"trim", "^%s*(.-)%s*$", "   hello, world   ", false},
	{"digits", "%d+", strings.Repeat("price is ", 20) + "1234", false},
	{"literal", "needle", strings.Repeat("hay ", 256) + "needle", false},
	{"email", "[%w_%.]+@[%w_]+%.%a+", "contact: some.one@example.com now", false},
	{"words_all", "%a+", "the quick brown fox jumps over the lazy dog", true},
	{"spaces_all", "%s+", strings.Repeat("a b  c   ", 30), true},
}

func BenchmarkMatcher(b *testing.B) {
	for _, c := range benchCases {
		b.Run(c.name, func(b *testing.B) {
			b.ReportAllocs()
			var m Matcher
			for i := 0; i < b.N; i++ {
				p, err := Compile(c.pat)
				if err != nil {
					b.Fatal(err)
				}
				for pos := 0; pos <= len(c.subj); {
					ok, err := m.Find(p, c.subj, pos)
					if err != nil {
						b.Fatal(err)
					}
					if !ok || !c.all {
						break
					}
					pos = max(m.Start()+1, m.End())
				}
			}
		})
	}
}

// BenchmarkGopherLuaPM is the same work done by gopher-lua's own matcher, for comparison.
func BenchmarkGopherLuaPM(b *testing.B) {
	for _, c := range benchCases {
		b.Run(c.name, func(b *testing.B) {
			b.ReportAllocs()
			limit := 1
			if c.all {
				limit = -1
			}
			subj := []byte(c.subj)
			for i := 0; i < b.N; i++ {
				if _, err := pm.Find(c.pat, subj, 0, limit); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}
