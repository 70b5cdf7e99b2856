package socket

import (
	"encoding/json"
	"strings"
	"testing"
	"unicode/utf8"
)

func TestParseLine(t *testing.T) {
	tests := []struct {
		in   string
		kind LineKind
		verb string
		args []string
	}{
		{"", LineEmpty, "", nil},
		{"randomNumber", LinePlain, "randomNumber", nil},
		{"randomNumber extra words here", LinePlain, "randomNumber", []string{"extra", "words", "here"}},
		{" randomNumber", LinePlain, "", []string{"randomNumber"}},
		{"paramAdd\tkey=tab", LinePlain, "paramAdd\tkey=tab", nil},
		{"paramAdd key=myKey", LineVerb, "paramAdd", []string{"key=myKey"}},
		{"paramAdd  x=1", LineVerb, "paramAdd", []string{"", "x=1"}},
		{"paramAdd ", LineVerb, "paramAdd", []string{""}},
		{"quit", LineVerb, "quit", nil},
		{`{"action":"randomNumber"}`, LineJSON, `{"action":"randomNumber"}`, nil},
		{`123`, LineJSON, "123", nil},
		{`"x"`, LineJSON, `"x"`, nil},
		{`{"action":`, LinePlain, `{"action":`, nil},
		{`nullAction`, LinePlain, "nullAction", nil},
		{`newOrder`, LinePlain, "newOrder", nil},
		{`findUser id=1`, LinePlain, "findUser", []string{"id=1"}},
		{`null`, LineJSON, "null", nil},
		{"true \t", LineJSON, "true", nil},
		{`false`, LineJSON, "false", nil},
		{`null x`, LinePlain, "null", []string{"x"}},
		{`trueish`, LinePlain, "trueish", nil},
		{"\xff\xfe", LinePlain, "\ufffd\ufffd", nil},
	}
	for _, tt := range tests {
		l := ParseLine(tt.in)
		if l.Kind != tt.kind || l.Verb != tt.verb {
			t.Errorf("ParseLine(%q) = kind %d verb %q, want kind %d verb %q", tt.in, l.Kind, l.Verb, tt.kind, tt.verb)
		}
		if l.Kind != LineJSON {
			if got := l.Args(); strings.Join(got, "|") != strings.Join(tt.args, "|") || len(got) != len(tt.args) {
				t.Errorf("ParseLine(%q).Args() = %q, want %q", tt.in, got, tt.args)
			}
		}
	}
}

func TestJSONKeepsOrderAndEncodesLikeNode(t *testing.T) {
	v, err := decodeJSON([]byte(`{"b":1,"a":{"z":[1,2.50,"x"],"y":null},"b":3}`))
	if err != nil {
		t.Fatal(err)
	}
	out, err := appendJSON(nil, v, 0)
	if err != nil {
		t.Fatal(err)
	}
	if got, want := string(out), `{"b":3,"a":{"z":[1,2.50,"x"],"y":null}}`; got != want {
		t.Fatalf("round trip = %s, want %s", got, want)
	}
	cases := map[string]any{
		`"a\"b\\c\n\u0001<>&"`: "a\"b\\c\n\x01<>&",
		"\"\ufffd\"":           "\xff",
		`0.7199071384693998`:   0.7199071384693998,
		`1e+21`:                1e21,
		`1e-7`:                 1e-7,
		`null`:                 nil,
		`42`:                   int64(42),
	}
	for want, in := range cases {
		got, _ := appendJSON(nil, in, 0)
		if string(got) != want {
			t.Errorf("appendJSON(%#v) = %s, want %s", in, got, want)
		}
	}
}

func FuzzParseLine(f *testing.F) {
	for _, s := range []string{
		"randomNumber", "paramAdd key=myKey", "say defaultRoom hooray!", `{"action":"cacheTest","params":{"key":"k"}}`,
		`[1,{"a":[]}]`, "\xff\xfe", "  ", `{"a":`, "file ../../etc/passwd", `"\ud800"`, "-", "tru",
	} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		l := ParseLine(s)
		if s == "" {
			if l.Kind != LineEmpty {
				t.Fatalf("empty line kind %d", l.Kind)
			}
			return
		}
		if !utf8.ValidString(l.Verb) || !utf8.ValidString(l.Rest) {
			t.Fatalf("invalid UTF-8 escaped the parser: %q", s)
		}
		if strings.Contains(l.Verb, " ") {
			t.Fatalf("verb %q contains a space", l.Verb)
		}
		if l.Kind == LineJSON {
			out, err := appendJSON(nil, l.JSON, 0)
			if err != nil {
				t.Fatalf("re-encode %q: %v", s, err)
			}
			if !json.Valid(out) {
				t.Fatalf("re-encoded %q is not JSON: %s", s, out)
			}
		}
		// Every reply built from parsed input must be valid JSON.
		if !json.Valid([]byte(strings.TrimSuffix(string(errorReply(l.Verb, msgID{s: l.Rest}, 1)), crlf))) {
			t.Fatalf("error reply for %q is not JSON", s)
		}
	})
}

// BenchmarkParseLine is the cost of classifying a request line: plain action names (one starting with a
// letter a JSON literal can start with, too), a verb, a JSON request.
func BenchmarkParseLine(b *testing.B) {
	for _, line := range []string{"randomNumber", "newOrder", "paramView key", `{"action":"randomNumber","key":"v"}`} {
		b.Run(line, func(b *testing.B) {
			b.ReportAllocs()
			for b.Loop() {
				ParseLine(line)
			}
		})
	}
}
