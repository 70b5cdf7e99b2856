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

// TestJetStreamConfig: relay.journal and relay.jetstream.* are checked with the key named, and check
// warns about a journal that survives no server's loss.
func TestJetStreamConfig(t *testing.T) {
	base := DefaultConfig()
	base.Guaranteed, base.Journal = true, JournalJetStream
	if err := base.Validate(); err != nil {
		t.Fatal(err)
	}
	for want, edit := range map[string]func(*Config){
		"relay.journal: expected local or jetstream":            func(c *Config) { c.Journal = "raft" },
		"relay.journal: jetstream journals guaranteed mode":     func(c *Config) { c.Guaranteed = false },
		"relay.jetstream.replicas: expected 1 to 5":             func(c *Config) { c.JetStream.Replicas = 7 },
		"relay.jetstream.lease_ttl: expected at least 1s":       func(c *Config) { c.JetStream.LeaseTTL = 500 * 1e6 },
		"relay.jetstream.ack_timeout: expected a positive":      func(c *Config) { c.JetStream.AckTimeout = 0 },
		"relay.jetstream.max_inflight_bytes: expected at least": func(c *Config) { c.JetStream.MaxInflightBytes = 100 },
	} {
		c := base
		edit(&c)
		if err := c.Validate(); err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("%s: got %v", want, err)
		}
	}
	c := base
	c.PersistDir = "" // not used by the JetStream journal
	if err := c.Validate(); err != nil {
		t.Fatal(err)
	}
	c.JetStream.Replicas = 1
	if w := c.Warnings(); len(w) == 0 || !strings.Contains(w[0], "relay.jetstream.replicas is 1") {
		t.Fatalf("%v", w)
	}
}
