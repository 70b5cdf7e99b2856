package uuid

import (
	"regexp"
	"testing"
)

var v4 = regexp.MustCompile(`^[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$`)

func TestNewIsARandomVersion4UUID(t *testing.T) {
	seen := map[string]bool{}
	for i := 0; i < 1000; i++ {
		id := New()
		if !v4.MatchString(id) {
			t.Fatalf("New() = %q, not a version 4 UUID", id)
		}
		if seen[id] {
			t.Fatalf("New() repeated %q", id)
		}
		seen[id] = true
	}
}

func TestAppend(t *testing.T) {
	got := string(Append([]byte("id="), 0x0123456789abcdef, 0xfedcba9876543210))
	if want := "id=01234567-89ab-4def-bedc-ba9876543210"; got != want {
		t.Fatalf("Append = %q, want %q", got, want)
	}
	if n := testing.AllocsPerRun(100, func() { var b [36]byte; _ = Append(b[:0], 1, 2) }); n != 0 {
		t.Fatalf("Append allocates %v times", n)
	}
}
