package relay_test

import (
	"fmt"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/switchboard/switchboard/engine/relay"
	"github.com/switchboard/switchboard/engine/relay/relaytest"
	"github.com/switchboard/switchboard/internal/testutil"
)

// pump sends big O messages (QUIET) until stop is closed, counting them in sent.
func pump(app *relaytest.Client, pad string, sent *atomic.Int64, stop <-chan struct{}) <-chan struct{} {
	done := make(chan struct{})
	go func() {
		defer close(done)
		for i := 0; ; i++ {
			select {
			case <-stop:
				app.Flush()
				return
			default:
			}
			app.Queue('O', fmt.Sprintf(`T="x"|id=%d|pad="%s"`, i, pad))
			sent.Add(1)
			if i%8 == 7 {
				if app.Flush() != nil {
					return
				}
				time.Sleep(time.Millisecond)
			}
		}
	}()
	return done
}

func waitState(t *testing.T, c *relay.Center, want string, timeout time.Duration) {
	t.Helper()
	if !testutil.Poll(timeout, func() bool { return c.State() == want }) {
		t.Fatalf("center %s is %s, never %s", c.Name, c.State(), want)
	}
}

// TestStalledCenterIsShownAndCut (issue 15 item 9): a center that logs in and then stops reading shows as
// stalled (State, switchboard_relay_center_stalled 1, center_up 0, logged) while the other center is
// served; after relay.write_timeout its link is cut and redialed, and it is up again once it reads.
func TestStalledCenterIsShownAndCut(t *testing.T) {
	var logs syncBuffer
	reg := prometheus.NewRegistry()
	g := startWith(t, "", func(c *relay.Config) { c.WriteTimeout = 2 * time.Second }, relay.Options{Log: logTo(&logs), Metrics: reg}, "a", "b")
	a, b := g.centers["a"], g.centers["b"]
	ca := g.r.Centers()[0]
	if ca.Name != "a" {
		t.Fatalf("center 0 is %s", ca.Name)
	}
	a.StopReading(true)
	app := dial(t, g, "app", `O="QUIET"`)
	var sent atomic.Int64
	stop := make(chan struct{})
	done := pump(app, strings.Repeat("p", 16<<10), &sent, stop)
	defer func() {
		close(stop)
		<-done
	}()
	waitState(t, ca, "stalled", 20*time.Second)
	logs.waitFor(t, "center stalled: it does not read")
	var m map[string]float64
	if !testutil.Poll(testutil.Wait, func() bool {
		m = gather(t, reg)
		return m[`switchboard_relay_center_stalled{center="a"}`] == 1 && m[`switchboard_relay_center_up{center="a"}`] == 0 &&
			m[`switchboard_relay_center_up{center="b"}`] == 1
	}) {
		t.Fatalf("gauges: %v", m)
	}
	nb := b.Count()
	if err := b.WaitCount(nb+50, 5*time.Second); err != nil {
		t.Fatalf("b not served while a is stalled: %v", err)
	}
	// relay.write_timeout: the link is cut and redialed
	logs.waitFor(t, "no progress for relay.write_timeout (2s): the center does not read")
	a.StopReading(false)
	if err := a.WaitLogin(2, 15*time.Second); err != nil {
		t.Fatal(err)
	}
	waitState(t, ca, "up", 5*time.Second)
	logs.waitFor(t, "center no longer stalled")
}

// TestEveryUndeliveredMessageIsCounted (issue 15 item 11): non-guaranteed mode, a center that goes away for
// a second under traffic (after hanging a moment) and comes back: every message it did not receive is counted in
// switchboard_relay_center_dropped_total (those in the socket when the link broke too, not only those
// refused by a full queue).
func TestEveryUndeliveredMessageIsCounted(t *testing.T) {
	reg := prometheus.NewRegistry()
	g := startWith(t, "", func(c *relay.Config) { c.CenterQueue = 2000 }, relay.Options{Metrics: reg}, "a")
	first := g.centers["a"]
	addr := first.Addr()
	app := dial(t, g, "app", `O="QUIET"`)
	var sent atomic.Int64
	stop := make(chan struct{})
	done := pump(app, strings.Repeat("p", 200), &sent, stop)
	if err := first.WaitCount(5000, 10*time.Second); err != nil {
		t.Fatal(err)
	}
	// it hangs for a moment (the socket buffers fill), then goes away with whatever was in flight
	first.StopReading(true)
	for at := sent.Load(); sent.Load() < at+3000; {
		time.Sleep(10 * time.Millisecond)
	}
	first.Close()
	time.Sleep(time.Second)
	second, err := relaytest.NewCenter(addr)
	if err != nil {
		t.Fatal(err)
	}
	defer second.Close()
	if err := second.WaitCount(5000, 10*time.Second); err != nil {
		t.Fatal(err)
	}
	close(stop)
	<-done
	n := sent.Load()
	var dropped float64
	var got int64
	if !testutil.Poll(testutil.Wait, func() bool {
		dropped = gather(t, reg)[`switchboard_relay_center_dropped_total{center="a"}`]
		got = int64(first.Count() + second.Count())
		return got+int64(dropped) >= n && g.r.Centers()[0].QueueLen() == 0
	}) {
		t.Fatalf("sent %d, received %d, dropped %v: %d messages neither delivered nor counted", n, got, dropped, n-got-int64(dropped))
	}
	received := int64(first.Count() + second.Count())
	acked := int64(first.Acked() + second.Acked())
	if dropped == 0 || int64(dropped) > n-acked {
		t.Fatalf("sent %d, received %d (acked %d), dropped %v", n, received, acked, dropped)
	}
	t.Logf("sent %d, received %d (acked %d), counted dropped %v (received but counted, their ack lost with the link: %d)",
		n, received, acked, dropped, int64(dropped)-(n-received))
}
