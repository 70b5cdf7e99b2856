package luapattern

import (
	"errors"
	"strings"
	"testing"
)

var knownErrors = []error{ErrEndsWithPercent, ErrMissingBracket, ErrBalanceArgs, ErrFrontierBracket,
	ErrUnfinishedCapture, ErrInvalidPatternCapt, ErrTooManyCaptures, ErrInvalidCaptureIndex, ErrTooComplex,
	ErrCancelled}

func known(err error) bool {
	for _, k := range knownErrors {
		if err == k {
			return true
		}
	}
	return false
}

// FuzzFind: any pattern on any subject compiles or fails with one of Lua's errors, and a match is a match:
// within the subject, at or after init (at init when anchored), with captures inside it, found again when
// the search starts where it began, and the same on a second run.
func FuzzFind(f *testing.F) {
	for _, s := range []struct {
		pat, subj string
		init      int
	}{
		{"^%s*(.-)%s*$", "  hello  ", 0},
		{"(%w+)=(%w+)", "a=b, c=d", 2},
		{"%f[%a]%a+", "THE (quick) fox", 0},
		{"%b()", "f(a(b)c)", 0},
		{"(a)%1()", "xaab", 0},
		{"[%w-_]+$", "foo-bar_baz", 3},
		{"[^%]a-]*", "]]-a", 0},
		{"a%", "a", 0},
		{"(()", "", 0},
		{"x*y+z-w?", "xxyyw", 0},
		{"$^", "$^", 0},
		{"%z+", "a\x00\x00b", 0},
	} {
		f.Add(s.pat, s.subj, s.init)
	}
	f.Fuzz(func(t *testing.T, pat, subj string, init int) {
		p, err := Compile(pat)
		if err != nil {
			if !known(err) {
				t.Fatalf("Compile(%q): unknown error %v", pat, err)
			}
			return
		}
		if len(subj) > 256 || len(pat) > 64 {
			return // longer inputs add repetition, not cases, and make the fuzzer's minimisation crawl
		}
		if init < 0 || init > len(subj)+1 {
			init = 0
		}
		// A pattern may backtrack exponentially; the fuzzer stops it after about 100,000 steps (counted, not
		// timed: slow inputs would make the fuzzer's minimisation crawl).
		done := make(chan struct{})
		checks := 0
		budget := func() {
			if checks++; checks == 32 {
				close(done)
			}
		}
		m := Matcher{Done: done, onCheck: budget}
		ok, err := m.Find(p, subj, init)
		if err != nil {
			if err != ErrTooComplex && err != ErrInvalidCaptureIndex && err != ErrCancelled {
				t.Fatalf("Find(%q, %q): %v", pat, subj, err)
			}
			return
		}
		if !ok {
			return
		}
		start, end := m.Start(), m.End()
		if start < init || end < start || end > len(subj) || p.Anchored() && start != init {
			t.Fatalf("Find(%q, %q, %d) = [%d, %d)", pat, subj, init, start, end)
		}
		caps := make([][3]int, p.Captures())
		for i := range caps {
			s, e, pos := m.Capture(i)
			if s < start || e > end || e < s || pos && s != e {
				t.Fatalf("Find(%q, %q): capture %d = [%d, %d) outside [%d, %d)", pat, subj, i, s, e, start, end)
			}
			caps[i] = [3]int{s, e, map[bool]int{false: 0, true: 1}[pos]}
		}
		again := Matcher{Done: done, onCheck: budget}
		ok2, err2 := again.Find(p, subj, start)
		if errors.Is(err2, ErrCancelled) {
			return
		}
		if !ok2 || err2 != nil || again.Start() != start || again.End() != end {
			t.Fatalf("Find(%q, %q) from %d: [%d, %d), again from %d: %v %v [%d, %d)", pat, subj, init, start, end,
				start, ok2, err2, again.Start(), again.End())
		}
		for i := range caps {
			s, e, _ := again.Capture(i)
			if s != caps[i][0] || e != caps[i][1] {
				t.Fatalf("Find(%q, %q): capture %d differs on the second run", pat, subj, i)
			}
		}
	})
}

// FuzzCompile: a pattern is accepted or refused the same way whatever follows it in the subject; compiling
// never panics and the errors are Lua's.
func FuzzCompile(f *testing.F) {
	for _, p := range []string{"", "^", "$", "%", "[", "[]", "[^]]", "%b", "%f[", "((((", "))", "%0", "%9",
		strings.Repeat("()", 33), "[%a-z]", "[a-%%]]"} {
		f.Add(p)
	}
	f.Fuzz(func(t *testing.T, pat string) {
		p, err := Compile(pat)
		if err != nil && !known(err) {
			t.Fatalf("Compile(%q): %v", pat, err)
		}
		if err == nil && (p.Captures() > MaxCaptures || p.Captures() < 0) {
			t.Fatalf("Compile(%q): %d captures", pat, p.Captures())
		}
	})
}
