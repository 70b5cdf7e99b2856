package engine

import (
	"net/http/httptest"
	"strings"
	"testing"
	"unicode/utf8"
)

func TestClip(t *testing.T) {
	for _, c := range []struct {
		in   string
		n    int
		want string
	}{
		{"short", 10, "short"},
		{"exactly10!", 10, "exactly10!"},
		{"longer than ten", 10, "longer …"},
		{"ééééé", 8, "éé…"}, // never cuts a rune in half
		{"bad\xffbyte", 64, "bad\uFFFDbyte"},
		{"", 5, ""},
	} {
		if got := clip(c.in, c.n); got != c.want {
			t.Errorf("clip(%q, %d) = %q, want %q", c.in, c.n, got, c.want)
		}
	}
}

func FuzzClip(f *testing.F) {
	for _, s := range []string{"", "abc", "ééééé", "bad\xffbyte", strings.Repeat("x", 300), "日本語のテキスト", "\xf0\x9f\x98"} {
		f.Add(s, 8)
		f.Add(s, 256)
	}
	f.Fuzz(func(t *testing.T, s string, n int) {
		if n < 4 || n > 1<<16 {
			t.Skip()
		}
		got := clip(s, n)
		if !utf8.ValidString(got) {
			t.Fatalf("clip(%q, %d) = %q: not UTF-8", s, n, got)
		}
		if len(got) > n && len(got) > len(s) {
			t.Fatalf("clip(%q, %d) = %q: %d bytes", s, n, got, len(got))
		}
		if len(got) > n+len("\uFFFD")*len(s) {
			t.Fatalf("clip(%q, %d) = %q: %d bytes", s, n, got, len(got))
		}
		if utf8.ValidString(s) && len(s) <= n && got != s {
			t.Fatalf("clip(%q, %d) = %q: a short valid string must stay as it is", s, n, got)
		}
		if utf8.ValidString(s) && len(got) > n {
			t.Fatalf("clip(%q, %d) = %q: over the bound", s, n, got)
		}
	})
}

// pageArgs either refuses a query with a reason or returns an offset from 0 and a limit from 1 to 1000.
func FuzzPageArgs(f *testing.F) {
	for _, q := range []string{"", "offset=0&limit=100", "limit=1000", "limit=1001", "offset=-1", "limit=ten", "offset=99999999999999999999",
		"limit=1e3", "limit=%00", "offset=1&offset=2", "limit= 5"} {
		f.Add(q)
	}
	f.Fuzz(func(t *testing.T, q string) {
		r := httptest.NewRequest("GET", "/api/calls", nil)
		r.URL.RawQuery = q
		off, lim, err := pageArgs(r)
		if err != nil {
			if !strings.HasPrefix(err.Error(), "offset: ") && !strings.HasPrefix(err.Error(), "limit: ") || len(err.Error()) > 200 {
				t.Fatalf("%q: error %q", q, err)
			}
			return
		}
		if off < 0 || lim < 1 || lim > maxListLimit {
			t.Fatalf("%q: offset %d limit %d", q, off, lim)
		}
	})
}

func TestStatusPaths(t *testing.T) {
	for path, want := range map[string]bool{
		"/": true, "/ui/app.js": true, "/api/status": true, "/api": true, "/debug/pprof/": true, "/debug/pprof/heap": true,
		"/healthz": false, "/metrics": false, "/reload": false, "/apix": false, "/uix": false,
	} {
		if got := statusPath(path); got != want {
			t.Errorf("statusPath(%q) = %v, want %v", path, got, want)
		}
	}
}

// addItems stops before the budget and marks the list truncated; an item that fits is never cut.
func TestAddItemsBudget(t *testing.T) {
	items := make([]string, 50)
	for i := range items {
		items[i] = strings.Repeat("x", 98) // 100 bytes as JSON, plus a comma
	}
	var l list
	b := &budget{left: 1000}
	addItems(&l, b, items)
	if len(l.Items) != 9 || !l.Truncated || b.left != 1000-9*101 {
		t.Fatalf("%d items, truncated %v, %d left", len(l.Items), l.Truncated, b.left)
	}
	var small list
	addItems(&small, &budget{left: 1000}, items[:3])
	if len(small.Items) != 3 || small.Truncated {
		t.Fatalf("%d items, truncated %v", len(small.Items), small.Truncated)
	}
}
