package luapattern

import (
	"bufio"
	"errors"
	"fmt"
	"os"
	"strconv"
	"strings"
	"testing"
	"time"
)

// find runs a pattern the way string.find reports it: "nil", "ERR message" or "start,end[,captures]"
// with 1-based positions, string captures quoted.
func find(pat, subj string, init int) string {
	p, err := Compile(pat)
	if err != nil {
		return "ERR " + err.Error()
	}
	var m Matcher
	ok, err := m.Find(p, subj, init-1)
	if err != nil {
		return "ERR " + err.Error()
	}
	if !ok {
		return "nil"
	}
	out := []string{strconv.Itoa(m.Start() + 1), strconv.Itoa(m.End())}
	for i := 0; i < p.Captures(); i++ {
		s, e, pos := m.Capture(i)
		if pos {
			out = append(out, strconv.Itoa(s+1))
		} else {
			out = append(out, `"`+subj[s:e]+`"`)
		}
	}
	return strings.Join(out, ",")
}

// unesc decodes the \ddd escapes of testdata/lua51.txt.
func unesc(t *testing.T, s string) string {
	var b strings.Builder
	for i := 0; i < len(s); i++ {
		if s[i] == '\\' && i+3 < len(s)+0 && i+4 <= len(s) {
			n, err := strconv.Atoi(s[i+1 : i+4])
			if err != nil {
				t.Fatalf("bad escape in %q", s)
			}
			b.WriteByte(byte(n))
			i += 3
			continue
		}
		b.WriteByte(s[i])
	}
	return b.String()
}

// TestLua51Reference checks 5000 random well-formed patterns against the answers of Lua 5.1 itself
// (testdata/lua51gen.lua says how the file was made).
func TestLua51Reference(t *testing.T) {
	f, err := os.Open("testdata/lua51.txt")
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	n, matched := 0, 0
	for sc.Scan() {
		fields := strings.Split(sc.Text(), "\t")
		if len(fields) != 4 {
			t.Fatalf("line %d: %d fields", n+1, len(fields))
		}
		pat, subj, want := unesc(t, fields[0]), unesc(t, fields[1]), unesc(t, fields[3])
		init, _ := strconv.Atoi(fields[2])
		got := find(pat, subj, init)
		if strings.HasPrefix(want, "ERR ") {
			if !strings.HasPrefix(got, "ERR ") {
				t.Errorf("find(%q, %q, %d) = %s, Lua 5.1 says %s", subj, pat, init, got, want)
			}
		} else if got != want {
			t.Errorf("find(%q, %q, %d) = %s, Lua 5.1 says %s", subj, pat, init, got, want)
		}
		if want != "nil" {
			matched++
		}
		n++
	}
	if n != 5000 || matched < 1500 {
		t.Fatalf("read %d cases, %d matching: the reference file is not the one generated", n, matched)
	}
}

// The cases below are Lua 5.1's answers too (checked with lua5.1), picked for the corners: sets whose
// '-' is not a range, frontiers, balances, back-references, anchors, quantifier characters that are
// literals.
func TestLua51Corners(t *testing.T) {
	cases := []struct {
		subj, pat string
		init      int
		want      string
	}{
		{"foo-bar_baz", "[%w-_]+", 1, "1,11"},
		{"a-z", "[%a-z]+", 1, "1,3"},
		{"b-", "[a--]+", 1, "nil"},
		{"abc-", "[a-b-c]+", 1, "1,4"},
		{"a%]", "[a-%%]]+", 1, "nil"},
		{"]]", "[a-%%]]+", 1, "1,2"},
		{"]", "[]]", 1, "1,1"},
		{"^", "[^^]", 1, "nil"},
		{"x^", "[^^]+", 1, "1,1"},
		{"-", "[a-]", 1, "1,1"},
		{"-", "[-a]", 1, "1,1"},
		{"z", "[z-a]", 1, "nil"},
		{"THE (quick) fox", "%f[%a]%a+", 1, "1,3"},
		{"THE (quick) fox", "%f[%A]", 1, "4,3"},
		{"hello", "%f[%z]", 1, "6,5"},
		{"hello", "%f[%l]", 1, "1,0"},
		{"x()", "()%1", 1, "nil"},
		{"aa", "(a)%1", 1, `1,2,"a"`},
		{"(a(b)c)", "%b()", 1, "1,7"},
		{"aXbXc", "%bXX", 1, "2,4"},
		{"a.b", "%.", 1, "2,2"},
		{"a", "%g", 1, "nil"},
		{"\x00", "%z", 1, "1,1"},
		{"aaa", "a-", 1, "1,0"},
		{"aaa", "a-$", 1, "1,3"},
		{"aaab", "a*?", 1, "nil"},
		{"*", "^*", 1, "1,1"},
		{"a**", "a**", 1, "1,2"},
		{"$a", "$a", 1, "1,2"},
		{"a$", "a$$", 1, "1,2"},
		{"ab", "(a)(b)()", 1, `1,2,"a","b",3`},
		{"hello", "()ll()", 1, "3,4,3,5"},
		{"  x  ", "^%s*(.-)%s*$", 1, `1,5,"x"`},
		{"abc", "", 2, "2,1"},
		{"abc", "()", 4, "4,3,4"},
		{"key = value", "(%w+)%s*=%s*(%w+)", 1, `1,11,"key","value"`},
		{"\xff\x80", "%a", 1, "nil"},
		{"\xff", "[\x80-\xff]", 1, "1,1"},
		{"a\x00b", "a%zb", 1, "1,3"},
	}
	for _, c := range cases {
		if got := find(c.pat, c.subj, c.init); got != c.want {
			t.Errorf("find(%q, %q, %d) = %s, want %s", c.subj, c.pat, c.init, got, c.want)
		}
	}
}

func TestMalformedPatterns(t *testing.T) {
	cases := map[string]error{
		"a%":                      ErrEndsWithPercent,
		"[a":                      ErrMissingBracket,
		"[":                       ErrMissingBracket,
		"[]":                      ErrMissingBracket,
		"[^]":                     ErrMissingBracket,
		"[%]":                     ErrMissingBracket,
		"[a%":                     ErrMissingBracket,
		"%b":                      ErrBalanceArgs,
		"%ba":                     ErrBalanceArgs,
		"%f":                      ErrFrontierBracket,
		"%fa":                     ErrFrontierBracket,
		"%f[a":                    ErrMissingBracket,
		"(a":                      ErrUnfinishedCapture,
		"((a)":                    ErrUnfinishedCapture,
		"(a$":                     ErrUnfinishedCapture,
		"a)":                      ErrInvalidPatternCapt,
		"(a))":                    ErrInvalidPatternCapt,
		"%0":                      ErrInvalidCaptureIndex,
		strings.Repeat("()", 33):  ErrTooManyCaptures,
		strings.Repeat("(a)", 33): ErrTooManyCaptures,
	}
	for pat, want := range cases {
		if _, err := Compile(pat); err != want {
			t.Errorf("Compile(%q) = %v, want %v", pat, err, want)
		}
	}
	if _, err := Compile(strings.Repeat("()", 32)); err != nil {
		t.Errorf("32 captures: %v", err)
	}
}

// A back-reference to a capture that is not closed where it stands fails when it is reached, as in Lua;
// a match that fails before reaching it is simply no match.
func TestBackrefCheckedWhenReached(t *testing.T) {
	for _, c := range []struct{ subj, pat, want string }{
		{"a", "%1", "ERR invalid capture index"},
		{"ab", "(a)(b)%3", "ERR invalid capture index"},
		{"aa", "(a%1)", "ERR invalid capture index"},
		{"b", "a%1", "nil"},
		{"b", "a(a%1)", "nil"},
	} {
		if got := find(c.pat, c.subj, 1); got != c.want {
			t.Errorf("find(%q, %q) = %s, want %s", c.subj, c.pat, got, c.want)
		}
	}
}

func TestDepthIsBounded(t *testing.T) {
	subj := strings.Repeat("a", MaxDepth+10)
	pat := strings.Repeat("a?", MaxDepth+5) + "b"
	p, err := Compile(pat)
	if err != nil {
		t.Fatal(err)
	}
	var m Matcher
	if _, err := m.Find(p, subj, 0); !errors.Is(err, ErrTooComplex) {
		t.Fatalf("got %v, want %v", err, ErrTooComplex)
	}
	// Within the bound the same shape works.
	pat = strings.Repeat("a?", MaxDepth-5) + "$"
	if got := find(pat, strings.Repeat("a", MaxDepth-5), 1); got != fmt.Sprintf("1,%d", MaxDepth-5) {
		t.Fatalf("got %s", got)
	}
}

// A pattern that backtracks exponentially stops soon after Done is closed, whatever it is doing.
func TestCancelStopsMatch(t *testing.T) {
	for _, c := range []struct{ pat, subj string }{
		{"^%s*(.-)%s*$", "a" + strings.Repeat(" ", 200000) + "b"},
		{"(.-)(.-)(.-)(.-)(.-)(.-)(.-)(.-)x", strings.Repeat("a", 5000)},
		{"(.*)%1%1%1y", strings.Repeat("ab", 20000)},
		{"%b()%b()%b()z", strings.Repeat("(", 100000) + ")"},
	} {
		p, err := Compile(c.pat)
		if err != nil {
			t.Fatal(err)
		}
		// Done closes after 100 looks at it: the match was well under way and still running.
		done := make(chan struct{})
		checks := 0
		m := Matcher{Done: done, onCheck: func() {
			if checks++; checks == 100 {
				close(done)
			}
		}}
		res := make(chan error, 1)
		go func() { _, err := m.Find(p, c.subj, 0); res <- err }()
		select {
		case err := <-res:
			if !errors.Is(err, ErrCancelled) || checks != 100 {
				t.Errorf("%q: got %v after %d checks, want %v after 100", c.pat, err, checks, ErrCancelled)
			}
		case <-time.After(10 * time.Second):
			t.Fatalf("%q: still running 10 s after cancellation", c.pat)
		}
	}
}

// The step counter carries over successive calls on one Matcher, so many cheap matches (a gsub over a
// long subject) are cancelled too.
func TestCancelCarriesOverCalls(t *testing.T) {
	p, _ := Compile("a")
	done := make(chan struct{})
	close(done)
	m := Matcher{Done: done}
	s := strings.Repeat("a", 3*CheckEvery)
	var err error
	for pos := 0; pos < len(s) && err == nil; pos++ {
		_, err = m.Find(p, s, pos)
	}
	if !errors.Is(err, ErrCancelled) {
		t.Fatalf("got %v", err)
	}
}
