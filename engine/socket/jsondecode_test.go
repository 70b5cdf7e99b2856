package socket

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"reflect"
	"strings"
	"testing"
)

// plain turns decoded data into what encoding/json produces with UseNumber (objects as maps).
func plain(v any) any {
	switch x := v.(type) {
	case Object:
		m := make(map[string]any, len(x))
		for _, f := range x {
			m[f.Key] = plain(f.Value)
		}
		return m
	case []any:
		out := make([]any, len(x))
		for i, e := range x {
			out[i] = plain(e)
		}
		return out
	}
	return v
}

func stdDecode(data []byte) (any, error) {
	dec := json.NewDecoder(bytes.NewReader(data))
	dec.UseNumber()
	var v any
	if err := dec.Decode(&v); err != nil {
		return nil, err
	}
	return v, nil
}

func TestDecodeJSONDuplicatesKeepFirstPositionLastValue(t *testing.T) {
	for _, n := range []int{3, indexFrom - 1, indexFrom, indexFrom + 1, 5000} {
		// keys k0..k(n-1), then every key again with a new value, then k0 a third time
		var b strings.Builder
		b.WriteString("{")
		for i := 0; i < n; i++ {
			fmt.Fprintf(&b, `"k%d":"first",`, i)
		}
		for i := n - 1; i >= 0; i-- {
			fmt.Fprintf(&b, `"k%d":%d,`, i, i)
		}
		b.WriteString(`"k0":"last"}`)
		v, err := decodeJSON([]byte(b.String()))
		if err != nil {
			t.Fatalf("n=%d: %v", n, err)
		}
		obj := v.(Object)
		if len(obj) != n {
			t.Fatalf("n=%d: %d fields", n, len(obj))
		}
		for i, f := range obj {
			want := any(json.Number(fmt.Sprint(i)))
			if i == 0 {
				want = "last"
			}
			if f.Key != fmt.Sprintf("k%d", i) || f.Value != want {
				t.Fatalf("n=%d: field %d = %q:%v, want k%d:%v", n, i, f.Key, f.Value, i, want)
			}
		}
	}
}

func TestDecodeJSONStrings(t *testing.T) {
	for in, want := range map[string]string{
		`"plain"`:                "plain",
		`"a\"b\\c\/d\b\f\n\r\t"`: "a\"b\\c/d\b\f\n\r\t",
		`"\u00e9\u20AC"`:         "é€",
		`"\ud83d\ude00"`:         "😀",
		`"\ud83d"`:               "\ufffd",
		`"\ud83dx"`:              "\ufffdx",
		`"\ude00\ud83d\ude00"`:   "\ufffd😀",
		`"\ud83d\u0041"`:         "\ufffdA",
		"\"\xff\"":               "\ufffd",
		"\"a\xffb\\n\xfe\"":      "a\ufffdb\n\ufffd",
	} {
		v, err := decodeJSON([]byte(in))
		if err != nil || v != want {
			t.Errorf("decodeJSON(%s) = %q, %v; want %q", in, v, err, want)
		}
	}
	for _, in := range []string{`"a`, `"\x"`, `"\u12"`, `"\u12g4"`, "\"a\nb\"", `"\`, `01`, `1.`, `1e`, `-`, `+1`,
		`.5`, `{"a" 1}`, `{"a":1,}`, `[1,]`, `[1 2]`, `{1:2}`, `tru`, `nul`, `[`, `{"a":1} x`, ``, ` `} {
		if v, err := decodeJSON([]byte(in)); err == nil {
			t.Errorf("decodeJSON(%q) = %v, want an error", in, v)
		}
	}
	deep := strings.Repeat("[", maxJSONDepth+2) + strings.Repeat("]", maxJSONDepth+2)
	if _, err := decodeJSON([]byte(deep)); !errors.Is(err, errJSONDepth) {
		t.Errorf("depth %d: %v, want errJSONDepth", maxJSONDepth+2, err)
	}
}

// FuzzDecodeJSON checks the decoder against encoding/json: the same texts are valid, and they decode to
// the same values (duplicate keys: the last value).
func FuzzDecodeJSON(f *testing.F) {
	for _, s := range []string{
		`{"action":"cacheTest","params":{"key":"k","value":"v"}}`, `[1,-0.5e+3,true,false,null,"x"]`,
		`{"a":1,"a":2}`, `"\ud83d\ude00\ud83d"`, "\"\xff\"", ` { } `, `[[],{}]`, `1e400`, `-0`, `"\u0000"`,
		manyKeysLine(40),
	} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		got, err := decodeJSON(data)
		if errors.Is(err, errJSONDepth) {
			return
		}
		if (err == nil) != json.Valid(data) {
			t.Fatalf("decodeJSON(%q) error %v, but json.Valid says %v", data, err, json.Valid(data))
		}
		if err != nil {
			return
		}
		want, err := stdDecode(data)
		if err != nil {
			t.Fatalf("encoding/json refused %q: %v", data, err)
		}
		if !reflect.DeepEqual(plain(got), want) {
			t.Fatalf("decodeJSON(%q) = %#v, encoding/json %#v", data, plain(got), want)
		}
		if _, err := appendJSON(nil, got, 0); err != nil {
			t.Fatalf("re-encode %q: %v", data, err)
		}
	})
}
