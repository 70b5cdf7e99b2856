package relay

import (
	"fmt"
	"math"
	"strings"
	"testing"
)

func TestParseValueForms(t *testing.T) {
	cases := []struct {
		in   string
		want Value
		out  string // strict re-encoding
	}{
		{`123`, Value{Kind: KindInt, I: 123}, `123`},
		{`-234`, Value{Kind: KindInt, I: -234}, `-234`},
		{`234L`, Value{Kind: KindLong, I: 234}, `234L`},
		{`234l`, Value{Kind: KindLong, I: 234}, `234L`},
		{`9999999999`, Value{Kind: KindLong, I: 9999999999}, `9999999999L`},
		{`123.5`, Value{Kind: KindFloat, F: 123.5}, `123.5F`},
		{`123F`, Value{Kind: KindFloat, F: 123}, `123.0F`},
		{`123.123D`, Value{Kind: KindDouble, F: 123.123}, `123.123D`},
		{`45.3d`, Value{Kind: KindDouble, F: 45.3}, `45.3D`},
		{`13D`, Value{Kind: KindDouble, F: 13}, `13.0D`},
		{`1.0E10D`, Value{Kind: KindDouble, F: 1e10}, `10000000000.0D`},
		{`1.5E-7D`, Value{Kind: KindDouble, F: 1.5e-7}, `1.5E-07D`},
		{`"what"`, Value{Kind: KindString, S: "what"}, `"what"`},
		{`'this'`, Value{Kind: KindEnum, S: "this"}, `'this'`},
		{`1422059533454T`, Value{Kind: KindUTC, I: 1422059533454}, `1422059533454T`},
		{`"20140503"T(yyyyMMdd)`, Value{Kind: KindUTC, S: "20140503", Pattern: "yyyyMMdd"}, `"20140503"T(yyyyMMdd)`},
		{`"{\"a\":1}"J`, Value{Kind: KindJSON, S: `{"a":1}`}, `"{\"a\":1}"J`},
		{`"aGVsbG8="U`, Value{Kind: KindBinary, S: "hello"}, `"aGVsbG8="U`},
		{`true`, Value{Kind: KindBool, I: 1}, `true`},
		{`false`, Value{Kind: KindBool}, `false`},
		{`null`, Value{Kind: KindNull}, `null`},
		{`"a\\b\"c\'d\ne\rf\tg\fh\bi\u00e9"`, Value{Kind: KindString, S: "a\\b\"c'd\ne\rf\tg\fh\bi\u00e9"}, `"a\\b\"c'd\ne\rf\tg\fh\bi` + "\u00e9" + `"`},
		{`'it\'s'`, Value{Kind: KindEnum, S: "it's"}, `'it\'s'`},
		{`D` + "QAkh+1RELRg=", Value{Kind: KindDouble, F: math.Pi}, `3.141592653589793D`},
		{`F` + "QEkP2w==", Value{Kind: KindFloat, F: float64(float32(math.Pi))}, `3.1415927F`},
	}
	for _, c := range cases {
		m, err := Parse([]byte("O|v=" + c.in))
		if err != nil {
			t.Errorf("%s: %v", c.in, err)
			continue
		}
		got := m.Params[0].Val
		if got != c.want {
			t.Errorf("%s: got %+v want %+v", c.in, got, c.want)
		}
		if enc := string(AppendValue(nil, got)); enc != c.out {
			t.Errorf("%s: encoded %s want %s", c.in, enc, c.out)
		}
	}
}

func TestParseHeader(t *testing.T) {
	cases := []struct {
		in        string
		typ       byte
		seq, now  int64
		nParams   int
		canonical string
	}{
		{`L#0@1700000000000|I="sor-1"|APP="SOR"|O="UNIX"`, 'L', 0, 1700000000000, 3, `L#0@1700000000000|I="sor-1"|APP="SOR"|O="UNIX"`},
		{`O|I="Order1374"|T="Order"|qty=1223|E=-100000L`, 'O', -1, -1, 4, `O|I="Order1374"|T="Order"|qty=1223|E=-100000L`},
		{"D#4|T=\"Order\"|I=\"o1\"\r", 'D', 4, -1, 2, `D#4|T="Order"|I="o1"`},
		{`X@5#9`, 'X', 9, 5, 0, `X#9@5`},
		{`O|#7|@8|T="x"|`, 'O', 7, 8, 1, `O#7@8|T="x"`},
		{`O||a=1||b=2`, 'O', -1, -1, 2, `O|a=1|b=2`},
		{`M@1700000000000|Q=17|S=0|M="OK"`, 'M', -1, 1700000000000, 3, `M@1700000000000|Q=17|S=0|M="OK"`},
		{`O|44=0.99|55="3forge"`, 'O', -1, -1, 2, `O|44=0.99F|55="3forge"`},
		{`H`, 'H', -1, -1, 0, `H`},
	}
	for _, c := range cases {
		m, err := Parse([]byte(c.in))
		if err != nil {
			t.Errorf("%q: %v", c.in, err)
			continue
		}
		if m.Type != c.typ || m.Seq != c.seq || m.Now != c.now || len(m.Params) != c.nParams {
			t.Errorf("%q: got %c seq=%d now=%d params=%d", c.in, m.Type, m.Seq, m.Now, len(m.Params))
		}
		if s := m.String(); s != c.canonical {
			t.Errorf("%q: canonical %q want %q", c.in, s, c.canonical)
		}
	}
}

func TestParseErrors(t *testing.T) {
	cases := []struct{ in, want string }{
		{``, "column 1: empty instruction"},
		{`Z|a=1`, `column 1: unknown instruction type 'Z'`},
		{`o|a=1`, `column 1: instruction type 'o' must be upper case`},
		{`OI="x"`, `column 2: unexpected 'I' after instruction type`},
		{`O#|a=1`, `column 2: expected digits after '#'`},
		{`O@x`, `column 2: expected digits after '@'`},
		{`O#1#2`, `column 4: duplicate sequence number`},
		{`O|a`, `column 4: missing '=' after key "a"`},
		{`O|a-b=1`, `column 4: unexpected '-' in key "a"`},
		{`O|=1`, `column 3: expected a key`},
		{`O|a=`, `column 5: missing value`},
		{`O|a=1|a=2`, `column 7: duplicate key "a"`},
		{`O|a="abc`, `column 5: unterminated string`},
		{`O|a='abc`, `column 5: unterminated enum`},
		{`O|a="x\q"`, `column 7: unknown escape \q`},
		{`O|a="\u12"`, `column 6: \u needs 4 hex digits`},
		{`O|a=hello`, `column 5: bare word "hello": text values must be quoted`},
		{`O|a=True`, `column 5: bare word "True"`},
		{`O|a=12X`, `column 7: unknown number suffix 'X'`},
		{`O|a=1.5L`, `column 8: suffix 'L' needs an integer`},
		{`O|a=1.`, `column 7: expected digits after decimal point`},
		{`O|a=1e`, `column 7: expected digits in exponent`},
		{`O|a=-`, `column 5: expected digits in number`},
		{`O|a="x"y`, `column 8: unexpected 'y' after value of "a"`},
		{`O|a="!!"U`, `column 5: binary value is not valid base64`},
		{`O|a="d"T`, `column 9: expected '(' and a date pattern after T`},
		{`O|a="d"T(yy`, `column 9: unterminated date pattern`},
		{`O|a=Dxx`, `column 5: encoded double must be base64 of 8 bytes`},
		{`O|a=99999999999999999999L`, `column 5: integer "99999999999999999999" out of range`},
		{`O|a=12LL`, `column 7: bad number`},
		{`O|a="\ud83d"`, `column 6: lone high surrogate \ud83d: expected a low surrogate escape`},
		{`O|a="\ud83dx"`, `column 6: lone high surrogate \ud83d: expected a low surrogate escape`},
		{`O|a="\ud83d\u0041"`, `column 6: lone high surrogate \ud83d: \u0041 after it is not a low surrogate`},
		{`O|a="\ude00\ud83d"`, `column 6: lone low surrogate \ude00`},
		{`O|a="\ud83d\ude0"`, `column 12: \u needs 4 hex digits, got "de0\""`},
		{`O|a="\ud83d\uzz00"`, `column 12: \u needs 4 hex digits, got "zz00"`},
	}
	for _, c := range cases {
		_, err := Parse([]byte(c.in))
		if err == nil {
			t.Errorf("%q: no error, want %q", c.in, c.want)
			continue
		}
		if !strings.HasPrefix(err.Error(), c.want) {
			t.Errorf("%q: error %q, want prefix %q", c.in, err, c.want)
		}
	}
}

func TestAppendStatus(t *testing.T) {
	got := string(AppendStatus(nil, 1700000000003, 0, 1, `Missing required Fields: I "x"`))
	want := `M@1700000000003|Q=0|S=1|M="Missing required Fields: I \"x\""`
	if got != want {
		t.Fatalf("got %s want %s", got, want)
	}
}

func TestStrictEncodingEscapesControls(t *testing.T) {
	v := Value{Kind: KindString, S: "a\x01b|c"}
	got := string(AppendValue(nil, v))
	if got != `"a\u0001b|c"` {
		t.Fatalf("got %s", got)
	}
	m, err := Parse([]byte("O|k=" + got))
	if err != nil || m.Params[0].Val.S != v.S {
		t.Fatalf("round trip: %v %+v", err, m)
	}
}

// FuzzParse checks that Parse never panics and that the strict encoding of
// anything it accepts parses back to the same message.
// TestParseSurrogatePairs: Java writes a code point above U+FFFF as a UTF-16 pair of \u escapes; it is one
// character (issue 15 item 5), and the strict form carries it as UTF-8.
func TestParseSurrogatePairs(t *testing.T) {
	for in, want := range map[string]string{
		`O|s7="\ud83d\ude00"`:         "\U0001F600",
		`O|s7="a\uD83D\uDE00b\u00e9"`: "a\U0001F600b\u00e9",
		`O|s7='\udbff\udfff'`:         "\U0010FFFF",
		`O|s7="\ud800\udc00"`:         "\U00010000",
	} {
		m, err := Parse([]byte(in))
		if err != nil {
			t.Fatalf("%s: %v", in, err)
		}
		v := m.Params[0].Val
		if v.S != want {
			t.Errorf("%s: %+q, want %+q", in, v.S, want)
		}
		m2, err := Parse([]byte(m.String()))
		if err != nil || m2.Params[0].Val.S != want {
			t.Errorf("%s: strict form %q reads back as %+q, %v", in, m.String(), m2.Params[0].Val.S, err)
		}
	}
}

func FuzzParse(f *testing.F) {
	for _, s := range []string{
		`L#0@1700000000000|I="sor-1"|APP="SOR"|O="UNIX"`,
		`O#1@1700000000010|T="Order"|I="o1"|qty=5000L|px=250.0D|venue='NYSE'`,
		`C#2|I="bust"|N="order.bust"|W='T=="Order"'|M="1-"`,
		`R#13@1374353639915|M="Order missing: OR-11323"|I="ad5462sf55"|S=2`,
		`O|a=1.0E10D|b="20140503"T(yyyyMMdd)|c="{\"a\":1}"J|d="aGVsbG8="U|e=DQAkh+1RELRg=|f=null|g=true`,
		`O|s="\u00e9\n\t\\"|x=-1.5e-3F|t=1422059533454T`,
		`M|Q=0|S=1|M="Missing required Fields: I"`,
		`O|#7|@8|T="x"|`,
		`O#3|T="Order"|I="o3"|qty=100|px=12.5D|f=1.5F|n=-7|z=0|big=12345678901L|u=1422059533454T|e='NYSE'|ok=false`,
		`O|n=007|m=-0|x=1.50D|y=1e5D|w=2147483648|v=5l|s="a\u0001b"`,
		`O|s7="\ud83d\ude00"|e='\uD83D\uDE00x'|lone="\ud800"|lo="\udc00"`,
	} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, line []byte) {
		m, err := Parse(line)
		if err != nil {
			if _, ok := err.(*SyntaxError); !ok {
				t.Fatalf("error of type %T", err)
			}
			return
		}
		if m.strictOK {
			if enc := string(AppendParams(nil, m.Params)); m.strict != enc {
				t.Fatalf("kept params %q of %q, but their strict form is %q", m.strict, line, enc)
			}
		}
		enc := m.String()
		m2, err := Parse([]byte(enc))
		if err != nil {
			t.Fatalf("strict form %q of %q does not parse: %v", enc, line, err)
		}
		if enc2 := m2.String(); enc2 != enc {
			t.Fatalf("not stable: %q -> %q", enc, enc2)
		}
	})
}

var benchLine = []byte(`O#1@1700000000010|T="Order"|I="o1"|qty=5000L|px=250.0D|venue='NYSE'|Symbol="AAPL"|note="x \"y\""`)

func BenchmarkParse(b *testing.B) {
	var m Message
	b.SetBytes(int64(len(benchLine)))
	b.ReportAllocs()
	for b.Loop() {
		if err := ParseInto(&m, benchLine); err != nil {
			b.Fatal(err)
		}
	}
}

func BenchmarkEncode(b *testing.B) {
	m, err := Parse(benchLine)
	if err != nil {
		b.Fatal(err)
	}
	buf := make([]byte, 0, 256)
	b.ReportAllocs()
	for b.Loop() {
		buf = m.Append(buf[:0])
	}
	b.SetBytes(int64(len(buf)))
}

func TestStrictParamsKept(t *testing.T) {
	for _, c := range []struct {
		line string
		kept bool
	}{
		{`O#1@2|T="Order"|I="o1"|qty=100|px=12.5D|venue='NYSE'`, true},
		{`O|T="x"|a=-5|b=0|c=12345678901L|d=1422059533454T|e=true|f=null|g=1.0D|h=0.25F|j="{}"J|k="2014"T(yyyy)`, true},
		{`X`, true},
		{`O|T="x"|`, false},          // trailing '|'
		{`O||T="x"`, false},          // empty field
		{`O|T="x"||a=1`, false},      // empty field
		{`O|a=007`, false},           // leading zeros
		{`O|a=-0`, false},            // minus zero
		{`O|a=5l`, false},            // lower-case suffix
		{`O|a=2147483648`, false},    // int too big: a long
		{`O|a=1.50D`, false},         // not the shortest form
		{`O|a=1.5`, false},           // float without F
		{`O|a=1E5D`, false},          // exponent
		{`O|a="x\"y"`, false},        // escapes are re-encoded
		{"O|a=\"x\ty\"", false},      // raw control character
		{`O|a="aGVsbG8="U`, false},   // base64 is re-encoded
		{`O|a=DQAkh+1RELRg=`, false}, // encoded double
	} {
		m, err := Parse([]byte(c.line))
		if err != nil {
			t.Fatalf("%s: %v", c.line, err)
		}
		if m.strictOK != c.kept {
			t.Errorf("%s: kept %v, want %v", c.line, m.strictOK, c.kept)
		}
		if got, want := string(m.AppendParamsTo(nil)), string(AppendParams(nil, m.Params)); got != want {
			t.Errorf("%s: AppendParamsTo %q, AppendParams %q", c.line, got, want)
		}
	}
	m, _ := Parse([]byte(`O|T="x"|a=1`))
	m.Set("a", Value{Kind: KindInt, I: 2})
	if got := string(m.AppendParamsTo(nil)); got != `|T="x"|a=2` {
		t.Fatalf("after Set: %q", got)
	}
}

// benchOrder is the line sbbench relay sends.
var benchOrder = []byte(`O#12345|T="NewOrder"|I="o12345"|Symbol="AAPL"|qty=100|px=12.5D`)

func BenchmarkParseOrder(b *testing.B) {
	var m Message
	b.SetBytes(int64(len(benchOrder)))
	b.ReportAllocs()
	for b.Loop() {
		if err := ParseInto(&m, benchOrder); err != nil {
			b.Fatal(err)
		}
	}
}

func BenchmarkParseOrderArena(b *testing.B) {
	var m Message
	var a lineArena
	b.SetBytes(int64(len(benchOrder)))
	b.ReportAllocs()
	for b.Loop() {
		if err := parseInto(&m, benchOrder, &a); err != nil {
			b.Fatal(err)
		}
	}
}

// TestLineArenaKeepsStrings: strings of earlier lines survive later lines
// parsed into the same arena and buffer.
func TestLineArenaKeepsStrings(t *testing.T) {
	var m Message
	var a lineArena
	buf := make([]byte, 0, 64)
	var kept []string
	for i := 0; i < 2000; i++ {
		buf = append(buf[:0], fmt.Sprintf(`O|T="t%d"|I="id-%d"`, i, i)...)
		if err := parseInto(&m, buf, &a); err != nil {
			t.Fatal(err)
		}
		id, _ := m.Text("I")
		kept = append(kept, id)
		for j := range buf {
			buf[j] = 'x' // the reader reuses its buffer
		}
	}
	for i, s := range kept {
		if s != fmt.Sprintf("id-%d", i) {
			t.Fatalf("string %d is now %q", i, s)
		}
	}
}

// FuzzSalvageSeq: the sequence number read from the header of an instruction that is not parsed is the one
// Parse reads when the rest of the line is fine (what the application expects in Q).
func FuzzSalvageSeq(f *testing.F) {
	for _, s := range []string{`O#41|T="Long"|v="x"`, `O|#7|@8|T="x"`, `O@1700000000000#12|a=1`, `L#0|I="a"`,
		`O|T="x"`, `O#|a=1`, `X#1234567890123456789`, `X#99999999999999999999`, `O@5|a=1`} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, line []byte) {
		got := salvageSeq(line)
		m, err := Parse(line)
		if err != nil || len(line) > 0 && line[len(line)-1] == '\r' {
			return
		}
		if want := m.Seq; got != want {
			t.Fatalf("salvageSeq(%q) = %d, Parse reads Seq %d", line, got, m.Seq)
		}
	})
}

func TestSalvageSeq(t *testing.T) {
	for in, want := range map[string]int64{`O#41|T="Long"|v="` + strings.Repeat("x", 50): 41, `O|#7|@8|T="x"`: 7,
		`O@1700000000000#12|a=1`: 12, `O|T="x"|#5`: -1, `O#|a=1`: -1, `O`: -1, `O@|#3`: -1} {
		if got := salvageSeq([]byte(in)); got != want {
			t.Errorf("salvageSeq(%q) = %d, want %d", in, got, want)
		}
	}
}
