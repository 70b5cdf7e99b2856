package relay

import (
	"reflect"
	"sort"
	"strings"
	"testing"
)

func TestCentersText(t *testing.T) {
	for in, want := range map[string]Centers{
		"primary=127.0.0.1:3270,127.0.0.1:3271": {"primary": "127.0.0.1:3270", "127.0.0.1:3271": "127.0.0.1:3271"},
		" a = tls://h:1 , tls://h:2 ,":          {"a": "tls://h:1", "h:2": "tls://h:2"},
		"[::1]:3270":                            {"[::1]:3270": "[::1]:3270"},
		"":                                      {},
	} {
		var c Centers
		if err := c.UnmarshalText([]byte(in)); err != nil || !reflect.DeepEqual(c, want) {
			t.Errorf("%q: %v %v, want %v", in, c, err, want)
		}
	}
	var c Centers
	if err := c.UnmarshalText([]byte("a=h:1,a=h:2")); err == nil || err.Error() != `center "a" given twice` {
		t.Errorf("duplicate: %v", err)
	}
}

// FuzzCentersText: 3forge's ami.centers text reads into names and addresses that read back the same when
// written as name=address pairs.
func FuzzCentersText(f *testing.F) {
	for _, s := range []string{"primary=127.0.0.1:3270,127.0.0.1:3271", "a=tls://h:1", ",,", "=", "a=b=c", "tls://x:1", " x "} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, in string) {
		var c Centers
		if err := c.UnmarshalText([]byte(in)); err != nil {
			return
		}
		names := make([]string, 0, len(c))
		for n := range c {
			names = append(names, n)
		}
		sort.Strings(names)
		var parts []string
		for _, n := range names {
			if n == "" || c[n] == "" || strings.ContainsAny(n+c[n], "=,") || strings.TrimSpace(n) != n {
				return // not writable as name=address (Validate refuses empty names and addresses)
			}
			parts = append(parts, n+"="+c[n])
		}
		var back Centers
		if err := back.UnmarshalText([]byte(strings.Join(parts, ","))); err != nil || !reflect.DeepEqual(back, c) {
			t.Fatalf("%q -> %v -> %v (%v)", in, c, back, err)
		}
	})
}
