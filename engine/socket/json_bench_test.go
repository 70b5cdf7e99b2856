package socket

import (
	"fmt"
	"strings"
	"testing"
)

// manyKeysLine is a JSON request whose params object has n distinct keys (about 18 bytes each).
func manyKeysLine(n int) string {
	var b strings.Builder
	b.WriteString(`{"action":"echo","params":{`)
	for i := 0; i < n; i++ {
		if i > 0 {
			b.WriteByte(',')
		}
		fmt.Fprintf(&b, `"key%07d":"v%d"`, i, i)
	}
	b.WriteString(`}}`)
	return b.String()
}

// BenchmarkJSONParams parses a JSON request line with n params and applies it to the sticky params, as a
// connection does. Linear work shows as a flat ns per byte (MB/s) from 1k to 40k keys.
func BenchmarkJSONParams(b *testing.B) {
	for _, n := range []int{1000, 4000, 10000, 40000} {
		line := manyKeysLine(n)
		b.Run(fmt.Sprintf("keys=%d", n), func(b *testing.B) {
			b.SetBytes(int64(len(line)))
			b.ReportAllocs()
			for i := 0; i < b.N; i++ {
				l := ParseLine(line)
				if l.Kind != LineJSON {
					b.Fatal("not JSON")
				}
				var p Params
				applyJSONLine(&p, l.JSON)
				if p.Len() != n+1 {
					b.Fatalf("%d params, want %d", p.Len(), n+1)
				}
			}
		})
	}
}

// BenchmarkJSONManyObjects decodes an array of objects just big enough to be indexed (the case where the
// index's size guess is wrong for every object): still flat per byte.
func BenchmarkJSONManyObjects(b *testing.B) {
	for _, n := range []int{100, 1000, 4000} {
		var sb strings.Builder
		sb.WriteByte('[')
		for i := 0; i < n; i++ {
			if i > 0 {
				sb.WriteByte(',')
			}
			sb.WriteByte('{')
			for k := 0; k < indexFrom; k++ {
				if k > 0 {
					sb.WriteByte(',')
				}
				fmt.Fprintf(&sb, `"k%d":%d`, k, i)
			}
			sb.WriteByte('}')
		}
		sb.WriteByte(']')
		data := []byte(sb.String())
		b.Run(fmt.Sprintf("objects=%d", n), func(b *testing.B) {
			b.SetBytes(int64(len(data)))
			b.ReportAllocs()
			for i := 0; i < b.N; i++ {
				if _, err := decodeJSON(data); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}
