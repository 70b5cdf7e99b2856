package labels

import (
	"strings"
	"testing"
	"unicode/utf8"
)

func TestValue(t *testing.T) {
	for _, tc := range []struct{ in, want string }{
		{"sor-1", "sor-1"},
		{"", ""},
		{"\xff\xfe", "\uFFFD"},
		{"a\xffb", "a\uFFFDb"},
		{strings.Repeat("x", 60000), strings.Repeat("x", MaxValueBytes)},
		// a 3-byte rune straddling the cut is dropped whole
		{strings.Repeat("x", MaxValueBytes-1) + "€", strings.Repeat("x", MaxValueBytes-1)},
	} {
		got := Value(tc.in)
		if got != tc.want {
			t.Errorf("Value(%.20q...) = %q, want %q", tc.in, got, tc.want)
		}
		if !utf8.ValidString(got) || len(got) > MaxValueBytes {
			t.Errorf("Value(%.20q...) = %q: not a valid label value", tc.in, got)
		}
	}
}

func TestOneOf(t *testing.T) {
	known := map[string]bool{"NORMAL_CLEARING": true}
	if got := OneOf("NORMAL_CLEARING", known); got != "NORMAL_CLEARING" {
		t.Fatal(got)
	}
	if got := OneOf("made-up", known); got != Other {
		t.Fatal(got)
	}
}

func TestSetCapsAndDeletes(t *testing.T) {
	var deleted []string
	s := NewSet(2, func(v string) { deleted = append(deleted, v) })
	a1 := s.Acquire("a")
	a2 := s.Acquire("a") // a second session of the same login
	b := s.Acquire("b")
	c := s.Acquire("c") // over the cap
	if a1 != "a" || a2 != "a" || b != "b" || c != Other {
		t.Fatalf("acquired %q %q %q %q", a1, a2, b, c)
	}
	s.Release(c)
	s.Release(a1)
	if len(deleted) != 0 {
		t.Fatalf("deleted %v while still in use", deleted)
	}
	s.Release(a2)
	if len(deleted) != 1 || deleted[0] != "a" || s.Len() != 1 {
		t.Fatalf("deleted %v, %d in use", deleted, s.Len())
	}
	// the freed place goes to the next new value
	if d := s.Acquire("d"); d != "d" {
		t.Fatalf("after a release: %q", d)
	}
	// a value named like the overflow shares it and is never deleted
	if o := s.Acquire(Other); o != Other {
		t.Fatal(o)
	}
	s.Release(Other)
	for _, v := range deleted {
		if v == Other {
			t.Fatal("Other deleted")
		}
	}
	if z := NewSet(0, nil).Acquire("x"); z != Other {
		t.Fatalf("cap 0: %q", z)
	}
}
