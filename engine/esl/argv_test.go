package esl

import (
	"reflect"
	"strings"
	"testing"
)

func TestSplitArgs(t *testing.T) {
	for in, want := range map[string][]string{
		"voicemail check default 1000": {"voicemail", "check", "default", "1000"},
		"  a   b  ":                    {"a", "b"},
		"x 'two words' y":              {"x", "two words", "y"},
		`x a\ b 'it\'s'`:               {"x", "a b", "it's"},
		"":                             nil,
		"''":                           {""},
	} {
		if got := SplitArgs(in); !reflect.DeepEqual(got, want) {
			t.Errorf("SplitArgs(%q) = %q, want %q", in, got, want)
		}
	}
	if n := len(SplitArgs(strings.Repeat("a ", 500))); n != 128 {
		t.Errorf("%d words, want the cap of 128", n)
	}
}

func FuzzSplitArgs(f *testing.F) {
	for _, s := range []string{"voicemail 1000", "x 'a b' c", `a\ b`, "'unterminated", `\`, strings.Repeat("a ", 200)} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		args := SplitArgs(s)
		if len(args) > 128 {
			t.Fatalf("%d words", len(args))
		}
		total := 0
		for _, a := range args {
			total += len(a)
		}
		if total > len(s) {
			t.Fatalf("words hold %d bytes from %d", total, len(s))
		}
	})
}

func FuzzCompilePattern(f *testing.F) {
	for _, s := range []string{"", `\d+`, "/^[1-3]$/i", "/x/", "/", "[", "(?i)abc"} {
		f.Add(s, "123")
	}
	f.Fuzz(func(t *testing.T, p, digits string) {
		re, err := CompilePattern(p)
		if err != nil {
			return
		}
		if re == nil && p != "" {
			t.Fatalf("pattern %q compiled to nothing", p)
		}
		if re != nil {
			re.MatchString(digits)
		}
	})
}
