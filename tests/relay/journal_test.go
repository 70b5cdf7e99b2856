package relay_test

import (
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/switchboard/switchboard/engine/relay/relaytest"
	"github.com/switchboard/switchboard/internal/testutil"
	"github.com/switchboard/switchboard/tests/harness"
)

// TestJournalCentersByNameKill9 (issue 15 item 1) with the built binary: centers {a, c}, every message to c,
// c down; 50 messages acknowledged, then kill -9. Restarted with {a, b, c}: c receives the 50, b nothing.
func TestJournalCentersByNameKill9(t *testing.T) {
	if testing.Short() {
		t.Skip("builds and runs the binary")
	}
	a, err := relaytest.NewCenter("127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer a.Close()
	bAddr, cAddr, relayAddr := freeAddr(t), freeAddr(t), freeAddr(t)
	yaml := func(centers string) string {
		return fmt.Sprintf("relay:\n  listen: %s\n  routes_file: relay.routes\n  guaranteed: true\n  persist_dir: persist\n  centers:\n%s",
			relayAddr, centers)
	}
	p := harness.StartBinary(t, yaml(fmt.Sprintf("    a: %s\n    c: %s\n", a.Addr(), cAddr)), harness.Options{Scripts: scripts,
		Files: map[string]string{"relay.routes": "OnlyC;1;O;*;;true;c;BREAK;\n"}}, "relay")
	app := login(t, relayAddr, "app", "")
	var rows []string
	for i := 1; i <= 50; i++ {
		rows = append(rows, fmt.Sprintf(`O|T="x"|I="m%d"`, i))
	}
	sendAll(t, app, 1, rows...)
	if err := p.Cmd.Process.Kill(); err != nil {
		t.Fatal(err)
	}
	p.Wait(t, 10*time.Second)

	cfg := harness.Complete(yaml(fmt.Sprintf("    a: %s\n    b: %s\n    c: %s\n", a.Addr(), bAddr, cAddr)), filepath.Join(p.Dir, "scripts"))
	if err := os.WriteFile(filepath.Join(p.Dir, "switchboard.yaml"), []byte(cfg), 0o644); err != nil {
		t.Fatal(err)
	}
	b, err := relaytest.NewCenter(bAddr)
	if err != nil {
		t.Fatal(err)
	}
	defer b.Close()
	c, err := relaytest.NewCenter(cAddr)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	harness.RunBinary(t, p.Dir, "relay")
	if err := c.WaitCount(50, 20*time.Second); err != nil {
		t.Fatal(err)
	}
	if err := b.WaitLogin(1, 10*time.Second); err != nil {
		t.Fatal(err)
	}
	time.Sleep(300 * time.Millisecond)
	if a.Count() != 0 || b.Count() != 0 {
		t.Fatalf("a got %d, b got %d; every message was for c", a.Count(), b.Count())
	}
	checkCenterIDs(t, "c", c, 50)
	if got, _ := os.ReadFile(filepath.Join(p.Dir, "persist", "centers")); string(got) != "0 a\n1 c\n2 b\n" {
		t.Fatalf("persist/centers: %q", got)
	}
}

// checkCenterIDs asserts that c got m1..mn in order (a replay repeats only ids already seen).
func checkCenterIDs(t *testing.T, name string, c *relaytest.Center, n int) {
	t.Helper()
	next := 1
	for _, r := range c.Received() {
		id, _ := r.Msg.Text("I")
		var k int
		fmt.Sscanf(id, "m%d", &k)
		if k == next {
			next++
		} else if k > next {
			t.Fatalf("%s: %s before m%d", name, id, next)
		}
	}
	if next != n+1 {
		t.Fatalf("%s: got m1..m%d of %d", name, next-1, n)
	}
}

var droppedRE = regexp.MustCompile(`(?m)^switchboard_relay_journal_dropped_total\{center="gone",reason="bytes"\} (\d+)`)

// TestJournalRetentionKill9 (issue 15 item 7) with the built binary: a center that never comes back, a
// stream to both centers, kill -9 in the middle, restart, the rest of the stream. The journal on disk stays
// within relay.journal_retention_bytes plus a few segments throughout (the one being written, the next, and
// a group commit can take a segment past segment_bytes; retention runs when a segment starts), the center that is up gets everything,
// and what the other one lost is counted and logged.
func TestJournalRetentionKill9(t *testing.T) {
	if testing.Short() {
		t.Skip("builds and runs the binary")
	}
	a, err := relaytest.NewCenter("127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer a.Close()
	a.Store = true
	relayAddr := freeAddr(t)
	// retention well above how far the center that is up falls behind, so only the center that never comes
	// back loses anything
	const segment, retention = 256 << 10, 4 << 20
	yaml := fmt.Sprintf(`relay:
  listen: %s
  routes_file: relay.routes
  guaranteed: true
  persist_dir: persist
  segment_bytes: %d
  journal_retention_bytes: %d
  centers:
    a: %s
    gone: %s
`, relayAddr, segment, retention, a.Addr(), freeAddr(t))
	p := harness.StartBinary(t, yaml, harness.Options{Scripts: scripts,
		Files: map[string]string{"relay.routes": "All;1;O,D;*;id Int nonull;id >= 0;*;BREAK;\n"}}, "relay")
	persist := filepath.Join(p.Dir, "persist")
	maxSize := int64(0)
	watch := func() {
		if n := dirSize(persist); n > maxSize {
			maxSize = n
		}
	}
	const n = 120000
	acked := -1
	killed := make(chan struct{})
	// every wait below gives up at this deadline (the assertions then say what is missing) rather than spin
	// until the package's timeout when the relay stops delivering
	deadline := time.Now().Add(3 * time.Minute)
	go func() {
		defer close(killed)
		for a.Count() < 20000 && time.Now().Before(deadline) {
			time.Sleep(time.Millisecond)
		}
		_ = p.Cmd.Process.Kill()
	}()
	stopWatch := make(chan struct{})
	watched := make(chan struct{})
	go func() {
		defer close(watched)
		for {
			select {
			case <-stopWatch:
				return
			case <-time.After(20 * time.Millisecond):
				watch()
			}
		}
	}()
	// the stream waits for a (never more than 5,000 messages, ~450 KB, ahead of it), whatever the machine's
	// speed: a is a center that keeps up, and only gone, which never reads, falls past retention
	paced := func(i int) {
		for i-a.Count() > 5000 && time.Now().Before(deadline) {
			time.Sleep(time.Millisecond)
		}
	}
	streamPaced(t, relayAddr, 0, n, &acked, paced)
	<-killed
	p.Wait(t, 10*time.Second)
	if acked < 0 || acked >= n-1 {
		t.Fatalf("kill did not land mid-stream (acked %d)", acked)
	}
	p2 := harness.RunBinary(t, p.Dir, "relay", "admin")
	streamPaced(t, relayAddr, acked+1, n, &acked, paced)
	if acked != n-1 {
		t.Fatalf("after restart only %d acked", acked+1)
	}
	waitDistinct(t, "a", a, n, 30*time.Second)
	checkCenter(t, "a", a, n)
	var dropped int
	if !testutil.Poll(testutil.Wait, func() bool {
		resp := fetchURL(t, "http://"+p2.Addr(t, "admin")+"/metrics")
		if m := droppedRE.FindStringSubmatch(resp); m != nil {
			fmt.Sscan(m[1], &dropped)
		}
		return dropped > 0 && dirSize(persist) <= retention+4*segment
	}) {
		t.Fatalf("dropped %d, journal %d bytes", dropped, dirSize(persist))
	}
	close(stopWatch)
	<-watched
	if maxSize > retention+4*segment {
		t.Fatalf("journal reached %d bytes; retention %d + segments", maxSize, retention)
	}
	// counted, then logged; the log reaches this test through a pipe
	p2.Logs.WaitFor(t, "journal retention: records the center had not acknowledged are dropped for it", 5*time.Second)
	t.Logf("largest journal seen %d bytes; %d records dropped for gone", maxSize, dropped)
}

func dirSize(dir string) int64 {
	var n int64
	ents, _ := os.ReadDir(dir)
	for _, e := range ents {
		if fi, err := e.Info(); err == nil && strings.HasSuffix(e.Name(), ".seg") {
			n += fi.Size()
		}
	}
	return n
}

func fetchURL(t *testing.T, url string) string {
	t.Helper()
	resp, err := http.Get(url)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return string(b)
}
