package relay_test

import (
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/switchboard/switchboard/engine/relay"
	"github.com/switchboard/switchboard/internal/testutil"
)

// centerState finds a center in a status snapshot.
func centerState(t *testing.T, st relay.Status, name string) relay.CenterStatus {
	t.Helper()
	for _, c := range st.Centers {
		if c.Name == name {
			return c
		}
	}
	t.Fatalf("no center %q in %+v", name, st)
	return relay.CenterStatus{}
}

// waitStatus polls the relay's status until ok holds (the clock is the real one).
func waitStatus(t *testing.T, r *relay.Relay, what string, ok func(relay.Status) bool) relay.Status {
	t.Helper()
	var st relay.Status
	if !testutil.Poll(testutil.Wait, func() bool { st = r.Status(time.Now()); return ok(st) }) {
		t.Fatalf("%s: never; last status %+v", what, st)
	}
	return st
}

// A center that stops acknowledging in guaranteed mode is up but stalled once nothing moved for StallAfter
// with entries past its cursor; one that goes away is down with its last error; one that keeps acking is up.
func TestStatusCentersUpDownStalled(t *testing.T) {
	g := start(t, "All;1;O;*;;;*;BREAK;\n", func(c *relay.Config) {
		c.Guaranteed = true
		c.CenterQueue = 4 // the window of unacknowledged messages
	}, "live", "silent", "gone")
	g.centers["silent"].SetSilent(true)
	g.centers["gone"].Close()
	app := dial(t, g, "app1", "")
	const n = 20
	for i := 0; i < n; i++ {
		app.Queue('O', fmt.Sprintf(`T="x"|I="%d"`, i))
	}
	app.Flush()
	for i := 0; i < n; i++ {
		expectStatus(t, app, int64(i+1), 0, "OK")
	}
	if err := g.centers["live"].WaitCount(n, 5*time.Second); err != nil {
		t.Fatal(err)
	}
	st := waitStatus(t, g.r, "gone is down with an error, silent has its window out", func(st relay.Status) bool {
		gone, silent := centerState(t, st, "gone"), centerState(t, st, "silent")
		return gone.State == relay.CenterDown && gone.LastError != "" && silent.Sent == 4
	})
	if !st.Guaranteed || st.JournalBytes <= 0 || st.Rules != 1 || st.Connections != 1 {
		t.Fatalf("relay facts: %+v", st)
	}
	gone := centerState(t, st, "gone")
	if !strings.Contains(gone.LastError, "connection refused") || gone.LastErrorAt.IsZero() || gone.Queued != n {
		t.Fatalf("gone: %+v", gone)
	}
	silent := centerState(t, st, "silent")
	if silent.State != relay.CenterUp || silent.Queued != n || silent.Acked != 0 {
		t.Fatalf("silent, before StallAfter: %+v", silent)
	}
	later := g.r.Status(time.Now().Add(relay.StallAfter + time.Second))
	silent = centerState(t, later, "silent")
	if silent.State != relay.CenterStalled || silent.IdleSeconds < relay.StallAfter.Seconds() {
		t.Fatalf("silent, after StallAfter: %+v", silent)
	}
	live := waitStatus(t, g.r, "live acked everything", func(st relay.Status) bool {
		c := centerState(t, st, "live")
		return c.Acked == n && c.Queued == 0
	})
	if c := centerState(t, live, "live"); c.State != relay.CenterUp || c.Sent != n || c.LastError != "" {
		t.Fatalf("live: %+v", c)
	}
	// After StallAfter with nothing waiting a center is up, not stalled.
	if c := centerState(t, g.r.Status(time.Now().Add(2*relay.StallAfter)), "live"); c.State != relay.CenterUp {
		t.Fatalf("idle live center: %+v", c)
	}
	// The silent center acks again: progress, so up.
	g.centers["silent"].SetSilent(false)
	g.centers["silent"].Drop() // it replays what it did not ack
	waitStatus(t, g.r, "silent caught up", func(st relay.Status) bool {
		c := centerState(t, st, "silent")
		return c.State == relay.CenterUp && c.Queued == 0
	})

	page, total := g.r.AppsPage(0, 10)
	if total != 1 || len(page) != 1 || page[0].Login != "app1" || page[0].Remote == "" {
		t.Fatalf("applications: %d %+v", total, page)
	}
	if page, total := g.r.AppsPage(1, 10); total != 1 || len(page) != 0 {
		t.Fatalf("applications past the end: %d %+v", total, page)
	}
}

// In non-guaranteed mode the queue depth and its bytes are the center's queue.
func TestStatusQueueNotGuaranteed(t *testing.T) {
	g := start(t, "All;1;O;*;;;*;BREAK;\n", nil, "a")
	st := g.r.Status(time.Now())
	a := centerState(t, st, "a")
	if st.Guaranteed || st.JournalBytes != 0 || a.State != relay.CenterUp || a.Queued != 0 || a.Connects != 1 {
		t.Fatalf("status: %+v", st)
	}
}
