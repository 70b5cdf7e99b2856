package cluster

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"math"
	"reflect"
	"strings"
	"testing"
)

func TestCodecRoundTrip(t *testing.T) {
	for _, v := range []any{nil, true, false, int64(0), int64(-1), int64(math.MaxInt64), int64(math.MinInt64), 1.5, math.Inf(-1),
		"", "plain", "\xff\xfe not utf-8", []byte{0, 1, 2}, []any{}, []any{int64(1), "two", nil, []any{false}},
		map[string]any{}, map[string]any{"a": map[string]any{"b": []any{2.25}}, "": "empty key"}} {
		b, err := EncodeValue(nil, v)
		if err != nil {
			t.Fatalf("encode %#v: %v", v, err)
		}
		got, err := DecodeValue(b)
		if err != nil {
			t.Fatalf("decode %#v: %v", v, err)
		}
		if !reflect.DeepEqual(got, v) {
			t.Fatalf("round trip: %#v became %#v", v, got)
		}
	}
	// Other Go shapes come back as the plain ones.
	b, _ := EncodeValue(nil, map[string]string{"k": "v"})
	if got, _ := DecodeValue(b); !reflect.DeepEqual(got, map[string]any{"k": "v"}) {
		t.Fatalf("map[string]string: %#v", got)
	}
	b, _ = EncodeValue(nil, []string{"a"})
	if got, _ := DecodeValue(b); !reflect.DeepEqual(got, []any{"a"}) {
		t.Fatalf("[]string: %#v", got)
	}
	if _, err := EncodeValue(nil, struct{}{}); !errors.Is(err, ErrNotEncodable) {
		t.Fatalf("struct: %v", err)
	}
	deep := any("leaf")
	for range maxCodecDepth + 2 {
		deep = []any{deep}
	}
	if _, err := EncodeValue(nil, deep); !errors.Is(err, ErrNotEncodable) {
		t.Fatalf("too deep: %v", err)
	}
}

func TestCodecRejects(t *testing.T) {
	for name, in := range map[string][]byte{
		"empty": {}, "version": {9, 0}, "trailing": {1, 0, 0}, "tag": {1, 99}, "string past end": {1, 5, 10, 'a'},
		"array past end": {1, 7, 200, 1}, "huge array": {1, 7, 0xff, 0xff, 0xff, 0xff, 0x0f}, "float": {1, 4, 1, 2},
		"map key": {1, 8, 1, 9, 'a'}, "int": {1, 3},
	} {
		if _, err := DecodeValue(in); !errors.Is(err, ErrBadEncoding) {
			t.Errorf("%s: %v", name, err)
		}
	}
	deep := bytes.Repeat([]byte{tagArray, 1}, maxCodecDepth+2)
	if _, err := DecodeValue(append(append([]byte{codecVersion}, deep...), tagNil)); !errors.Is(err, ErrBadEncoding) {
		t.Fatalf("too deep: %v", err)
	}
}

// FuzzDecodeValue: any bytes decode or fail cleanly, and what decodes encodes back to a value that
// decodes the same.
func FuzzDecodeValue(f *testing.F) {
	for _, v := range []any{nil, int64(-7), 2.5, "s", []byte("b"), []any{"x", map[string]any{"k": true}}} {
		b, _ := EncodeValue(nil, v)
		f.Add(b)
	}
	f.Add([]byte{1, 7, 0xff, 0xff, 0xff, 0xff, 0x0f})
	f.Add([]byte{1, 8, 1, 1, 'k', 5, 0})
	f.Fuzz(func(t *testing.T, data []byte) {
		v, err := DecodeValue(data)
		if err != nil {
			if !errors.Is(err, ErrBadEncoding) {
				t.Fatalf("unexpected error kind: %v", err)
			}
			return
		}
		b, err := EncodeValue(nil, v)
		if err != nil {
			t.Fatalf("re-encode %#v: %v", v, err)
		}
		v2, err := DecodeValue(b)
		// %#v prints maps sorted and NaN as NaN (which DeepEqual never finds equal to itself)
		if err != nil || fmt.Sprintf("%#v", v) != fmt.Sprintf("%#v", v2) {
			t.Fatalf("second round: %#v vs %#v (%v)", v, v2, err)
		}
	})
}

// FuzzDecodeMessage: a topic message from NATS (one value, or a batch of length-prefixed values) decodes
// into values or fails with ErrBadEncoding, never panics, and a batch made of values gives them back.
func FuzzDecodeMessage(f *testing.F) {
	one, _ := EncodeValue(nil, "one")
	two, _ := EncodeValue(nil, map[string]any{"k": int64(2)})
	batch := []byte{codecBatch}
	for _, v := range [][]byte{one, two} {
		batch = append(append(batch, byte(len(v))), v...)
	}
	f.Add(one)
	f.Add(batch)
	f.Add([]byte{codecBatch, 200, 1})
	f.Add([]byte{codecBatch})
	// Strings around the arena's bounds (arenaMaxString, windows of arenaBytes), nested and as map keys,
	// and a broken item between good ones.
	long := []byte{codecBatch}
	for i, v := range []any{strings.Repeat("a", 40), strings.Repeat("b", arenaMaxString), strings.Repeat("c", arenaMaxString+1),
		[]any{"x", strings.Repeat("d", 300), map[string]any{strings.Repeat("k", 200): "v"}}, "", []byte("raw"),
		strings.Repeat("e", arenaBytes-5), "tail"} {
		b, _ := EncodeValue(nil, v)
		if i == 5 {
			long = append(long, 2, codecVersion, 99) // an item that does not decode
		}
		long = append(binary.AppendUvarint(long, uint64(len(b))), b...)
	}
	f.Add(long)
	f.Fuzz(func(t *testing.T, data []byte) {
		var got []any
		err := DecodeMessage(data, func(v any) { got = append(got, v) })
		if err != nil && !errors.Is(err, ErrBadEncoding) {
			t.Fatalf("unexpected error kind: %v", err)
		}
		if len(got) > len(data) {
			t.Fatalf("%d values from %d bytes", len(got), len(data))
		}
		// The batch decoder (strings cut from shared windows) gives what decoding each item alone gives.
		want, wantErr := decodeEachAlone(data)
		if fmt.Sprintf("%#v", got) != fmt.Sprintf("%#v", want) || (err == nil) != (wantErr == nil) {
			t.Fatalf("batch decode %#v (%v), item by item %#v (%v)", got, err, want, wantErr)
		}
	})
}

// decodeEachAlone decodes a topic message as DecodeMessage does, each item with DecodeValue (no arena).
func decodeEachAlone(data []byte) ([]any, error) {
	if len(data) == 0 || data[0] != codecBatch {
		v, err := DecodeValue(data)
		if err != nil {
			return nil, err
		}
		return []any{v}, nil
	}
	var out []any
	var first error
	rest := data[1:]
	for len(rest) > 0 {
		n, w := binary.Uvarint(rest)
		if w <= 0 || n > uint64(len(rest)-w) {
			return out, ErrBadEncoding
		}
		v, err := DecodeValue(rest[w : w+int(n)])
		rest = rest[w+int(n):]
		if err != nil {
			if first == nil {
				first = err
			}
			continue
		}
		out = append(out, v)
	}
	return out, first
}

func TestDecodeMessageBatch(t *testing.T) {
	batch := []byte{codecBatch}
	want := []any{"a", int64(7), nil}
	for _, v := range want {
		b, _ := EncodeValue(nil, v)
		batch = append(append(batch, byte(len(b))), b...)
	}
	var got []any
	if err := DecodeMessage(batch, func(v any) { got = append(got, v) }); err != nil || !reflect.DeepEqual(got, want) {
		t.Fatalf("batch: %#v, %v", got, err)
	}
}

// TestDecodeMessageSharesShortStrings: a batch of short strings decodes with one allocation per value (its
// interface box) plus one per window of arenaBytes, not two per value; the strings are right.
func TestDecodeMessageSharesShortStrings(t *testing.T) {
	batch := []byte{codecBatch}
	const n = 200
	for i := range n {
		b, _ := EncodeValue(nil, fmt.Sprintf("%040d", i))
		batch = append(binary.AppendUvarint(batch, uint64(len(b))), b...)
	}
	i := 0
	if err := DecodeMessage(batch, func(v any) {
		if v != fmt.Sprintf("%040d", i) {
			t.Fatalf("value %d: %q", i, v)
		}
		i++
	}); err != nil || i != n {
		t.Fatalf("%d values, %v", i, err)
	}
	allocs := testing.AllocsPerRun(20, func() { _ = DecodeMessage(batch, func(any) {}) })
	windows := float64(len(batch)/arenaBytes + 1)
	if allocs > n+windows+1 {
		t.Fatalf("%.0f allocations for %d short strings, want at most %.0f", allocs, n, n+windows+1)
	}
}

// BenchmarkDecodeMessage: a 64 KiB batch of 64-byte strings (what a streaming publisher sends), per value.
func BenchmarkDecodeMessage(b *testing.B) {
	batch := []byte{codecBatch}
	v, _ := EncodeValue(nil, strings.Repeat("x", 64))
	for len(batch)+len(v)+1 <= 64<<10 {
		batch = append(binary.AppendUvarint(batch, uint64(len(v))), v...)
	}
	n := 0
	_ = DecodeMessage(batch, func(any) { n++ })
	b.ReportAllocs()
	b.ResetTimer()
	for range b.N / n {
		_ = DecodeMessage(batch, func(any) {})
	}
}
