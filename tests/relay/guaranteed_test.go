package relay_test

import (
	"fmt"
	"net"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"github.com/switchboard/switchboard/engine/relay/relaytest"
	"github.com/switchboard/switchboard/internal/testutil"
	"github.com/switchboard/switchboard/tests/harness"
)

// freeAddr returns a loopback address nobody listens on (for a center that starts late).
func freeAddr(t *testing.T) string {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := l.Addr().String()
	l.Close()
	return addr
}

// streamUntilKilled sends O messages with seq ids from `from` to n-1 and records the highest id acked; it
// returns when everything is acked or the connection breaks.
func streamUntilKilled(t *testing.T, addr string, from, n int, acked *int) {
	t.Helper()
	streamPaced(t, addr, from, n, acked, nil)
}

// streamPaced is streamUntilKilled calling pace(i) before each batch of 100 (nil: no pacing).
func streamPaced(t *testing.T, addr string, from, n int, acked *int, pace func(i int)) {
	t.Helper()
	c, err := relaytest.Dial(addr, "feed-1", "")
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	base := int64(1) // seq of the first O on this connection
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		for {
			st, err := c.ReadStatus(10 * time.Second)
			if err != nil {
				return
			}
			if st.Code != 0 {
				t.Errorf("status %q", st.Line)
				return
			}
			*acked = from + int(st.Seq-base)
			if *acked == n-1 {
				return
			}
		}
	}()
	for i := from; i < n; i++ {
		if _, err := c.Queue('O', fmt.Sprintf(`T="Order"|I="o%d"|id=%d`, i, i)); err != nil {
			break
		}
		if i%100 == 99 {
			if err := c.Flush(); err != nil {
				break
			}
			time.Sleep(200 * time.Microsecond)
			if pace != nil {
				pace(i)
			}
		}
	}
	c.Flush()
	wg.Wait()
}

// waitDistinct waits until c got every id in [0, n) (a count alone also counts ids sent again after a crash).
func waitDistinct(t *testing.T, name string, c *relaytest.Center, n int, timeout time.Duration) {
	t.Helper()
	var seen map[int64]bool
	if !testutil.Poll(timeout, func() bool {
		seen = make(map[int64]bool, n)
		for _, r := range c.Received() {
			v, _ := r.Msg.Get("id")
			seen[v.I] = true
		}
		return len(seen) >= n
	}) {
		t.Fatalf("%s: %d distinct ids of %d", name, len(seen), n)
	}
}

// checkCenter asserts that c got every id in [0, n) at least once and in order (a replayed id only ever
// repeats one already seen).
func checkCenter(t *testing.T, name string, c *relaytest.Center, n int) {
	t.Helper()
	seen := make([]bool, n)
	next := 0
	dups := 0
	for _, r := range c.Received() {
		v, _ := r.Msg.Get("id")
		id := int(v.I)
		if id < 0 || id >= n {
			t.Fatalf("%s: id %d out of range", name, id)
		}
		if seen[id] {
			dups++
			continue
		}
		if id != next {
			t.Fatalf("%s: first delivery of id %d while expecting %d (order broken or message lost)", name, id, next)
		}
		seen[id] = true
		next++
	}
	if next != n {
		t.Fatalf("%s: got %d distinct of %d", name, next, n)
	}
	t.Logf("%s: %d messages, %d redelivered after the crash", name, n, dups)
}

func TestGuaranteedKill9AndRestart(t *testing.T) {
	if testing.Short() {
		t.Skip("builds and runs the binary")
	}
	a, err := relaytest.NewCenter("127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer a.Close()
	bAddr := freeAddr(t) // center b is down for the whole first run
	relayAddr := freeAddr(t)
	yaml := fmt.Sprintf(`relay:
  listen: %s
  routes_file: relay.routes
  guaranteed: true
  persist_dir: persist
  segment_bytes: 65536
  centers:
    a: %s
    b: %s
`, relayAddr, a.Addr(), bAddr)
	p := harness.StartBinary(t, yaml, harness.Options{Scripts: scripts,
		Files: map[string]string{"relay.routes": "All;1;O,D;*;id Int nonull;id >= 0;*;BREAK;\n"}}, "relay")
	const n = 20000
	acked := -1
	killed := make(chan struct{})
	go func() {
		defer close(killed)
		// kill -9 mid-stream, once a good part is acked
		for a.Count() < 3000 {
			time.Sleep(time.Millisecond)
		}
		_ = p.Cmd.Process.Kill()
	}()
	streamUntilKilled(t, relayAddr, 0, n, &acked)
	<-killed
	p.Wait(t, 10*time.Second)
	if acked < 0 || acked >= n-1 {
		t.Fatalf("kill did not land mid-stream (acked %d)", acked)
	}
	t.Logf("killed after %d acked", acked+1)

	// restart on the same directory; the client resends what was not acked (at-least-once from its side)
	p2 := harness.RunBinary(t, p.Dir, "relay")
	_ = p2
	streamUntilKilled(t, relayAddr, acked+1, n, &acked)
	if acked != n-1 {
		t.Fatalf("after restart only %d acked", acked+1)
	}
	waitDistinct(t, "a", a, n, 20*time.Second)
	// b comes up late and gets everything, in order
	b, err := relaytest.NewCenter(bAddr)
	if err != nil {
		t.Fatal(err)
	}
	defer b.Close()
	waitDistinct(t, "b", b, n, 30*time.Second)
	time.Sleep(100 * time.Millisecond)
	checkCenter(t, "a", a, n)
	checkCenter(t, "b", b, n)
	segs, _ := filepath.Glob(filepath.Join(p.Dir, "persist", "*.seg"))
	t.Logf("%d journal segments left", len(segs))
}
