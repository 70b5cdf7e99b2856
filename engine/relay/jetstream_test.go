package relay_test

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/sirupsen/logrus"

	"github.com/switchboard/switchboard/engine/relay"
	"github.com/switchboard/switchboard/engine/relay/relaytest"
	"github.com/switchboard/switchboard/internal/natstest"
)

// natsCluster starts a cluster of n embedded NATS servers for the test.
func natsCluster(t *testing.T, n int) *natstest.Cluster {
	t.Helper()
	c, err := natstest.StartCluster("t", n, t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(c.Shutdown)
	return c
}

// natsConn connects to every server of the cluster (a client fails over when its server goes).
func natsConn(t *testing.T, c *natstest.Cluster) *nats.Conn {
	t.Helper()
	nc, err := nats.Connect(c.AllURLs(), nats.MaxReconnects(-1), nats.ReconnectWait(100*time.Millisecond))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(nc.Close)
	return nc
}

// jsNode is one relay node of a JetStream journal.
type jsNode struct {
	r    *relay.Relay
	nc   *nats.Conn
	addr string
	reg  *prometheus.Registry
	once sync.Once
}

func (n *jsNode) shutdown(t *testing.T) {
	n.once.Do(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		start := time.Now()
		if err := n.r.Shutdown(ctx); err != nil {
			t.Errorf("shutdown: %v", err)
		}
		if d := time.Since(start); d > time.Second {
			t.Errorf("shutdown took %v", d)
		}
	})
}

// startJSNode starts a relay node (relay id "r1") journaling to the cluster, with the given centers.
func startJSNode(t *testing.T, cl *natstest.Cluster, node, routes string, centers map[string]string, edit func(*relay.Config)) *jsNode {
	t.Helper()
	dir := t.TempDir()
	cfg := relay.DefaultConfig()
	cfg.ID = "r1"
	cfg.Listen = "127.0.0.1:0"
	cfg.RoutesFile = filepath.Join(dir, "relay.routes")
	if err := os.WriteFile(cfg.RoutesFile, []byte(routes), 0o644); err != nil {
		t.Fatal(err)
	}
	cfg.Guaranteed = true
	cfg.Journal = relay.JournalJetStream
	cfg.JetStream.Replicas = min(3, cl.Size())
	cfg.JetStream.LeaseTTL = 4 * time.Second
	cfg.JetStream.AckTimeout = 2 * time.Second
	cfg.Centers = centers
	if edit != nil {
		edit(&cfg)
	}
	n := &jsNode{nc: natsConn(t, cl), reg: prometheus.NewRegistry()}
	lg := logrus.New()
	lg.SetOutput(testLog{t})
	lg.SetLevel(logrus.DebugLevel)
	r, err := relay.New(cfg, relay.Options{Compile: exprs, Metrics: n.reg, Log: lg.WithField("node", node),
		Cluster: relay.ClusterOptions{Conn: n.nc, Name: "t", NodeID: node}})
	if err != nil {
		t.Fatal(err)
	}
	if err := r.Start(context.Background()); err != nil {
		t.Fatal(err)
	}
	n.r, n.addr = r, r.Addrs()["relay"].String()
	t.Cleanup(func() { n.shutdown(t) })
	return n
}

type testLog struct{ t *testing.T }

func (w testLog) Write(p []byte) (int, error) {
	if testing.Verbose() {
		w.t.Log(strings.TrimRight(string(p), "\n"))
	}
	return len(p), nil
}

func waitActive(t *testing.T, n *jsNode, timeout time.Duration) time.Duration {
	t.Helper()
	start := time.Now()
	for !n.r.Active() {
		if time.Since(start) > timeout {
			t.Fatalf("node never became active in %v", timeout)
		}
		time.Sleep(10 * time.Millisecond)
	}
	return time.Since(start)
}

func newCenters(t *testing.T, names ...string) (map[string]*relaytest.Center, map[string]string) {
	t.Helper()
	cs, addrs := map[string]*relaytest.Center{}, map[string]string{}
	for _, n := range names {
		c, err := relaytest.NewCenter("127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(c.Close)
		cs[n], addrs[n] = c, c.Addr()
	}
	return cs, addrs
}

// sendOrders sends O messages id from..n-1 on c and waits for every status; it returns the highest id
// acknowledged with S=0 (-1 for none) and stops at the first error or status other than OK.
func sendOrders(t *testing.T, c *relaytest.Client, from, n int) int {
	t.Helper()
	for i := from; i < n; i++ {
		if _, err := c.Queue('O', fmt.Sprintf(`T="Order"|I="o%d"|id=%d`, i, i)); err != nil {
			return from - 1
		}
	}
	if err := c.Flush(); err != nil {
		return from - 1
	}
	acked := from - 1
	for i := from; i < n; i++ {
		st, err := c.ReadStatus(20 * time.Second)
		if err != nil || st.Code != 0 {
			t.Logf("after %d acknowledged: %q %v", acked+1, st.Line, err)
			return acked
		}
		acked++
	}
	return acked
}

// checkOrder asserts that c got every id in [0, n) at least once, first deliveries in order.
func checkOrder(t *testing.T, name string, c *relaytest.Center, n int) {
	t.Helper()
	seen := make([]bool, n)
	next, dups := 0, 0
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
		t.Fatalf("%s: %d distinct of %d", name, next, n)
	}
	t.Logf("%s: %d messages, %d delivered again", name, n, dups)
}

func waitDistinctIDs(t *testing.T, name string, c *relaytest.Center, n int, timeout time.Duration) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for {
		seen := map[int64]bool{}
		for _, r := range c.Received() {
			v, _ := r.Msg.Get("id")
			seen[v.I] = true
		}
		if len(seen) >= n {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s: %d distinct ids of %d", name, len(seen), n)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

const allOrders = "All;1;O,D;*;;true;*;BREAK;\n"

// TestJetStreamJournalRoundTrip: guaranteed mode on an R3 stream acknowledges every message and delivers
// it, in order, to every center; a center that comes late gets everything from its cursor.
func TestJetStreamJournalRoundTrip(t *testing.T) {
	cl := natsCluster(t, 3)
	cs, addrs := newCenters(t, "a")
	bAddr := freeAddr(t)
	addrs["b"] = bAddr
	n1 := startJSNode(t, cl, "n1", allOrders, addrs, nil)
	waitActive(t, n1, 20*time.Second)
	app, err := relaytest.Dial(n1.addr, "feed", "")
	if err != nil {
		t.Fatal(err)
	}
	defer app.Close()
	const n = 3000
	if got := sendOrders(t, app, 0, n); got != n-1 {
		t.Fatalf("acked up to %d of %d", got, n-1)
	}
	waitDistinctIDs(t, "a", cs["a"], n, 20*time.Second)
	checkOrder(t, "a", cs["a"], n)
	b, err := relaytest.NewCenter(bAddr)
	if err != nil {
		t.Fatal(err)
	}
	defer b.Close()
	waitDistinctIDs(t, "b", b, n, 20*time.Second)
	checkOrder(t, "b", b, n)
	st := n1.r.Status(time.Now())
	if !st.Guaranteed {
		t.Fatalf("status %+v", st)
	}
}

// TestJetStreamStandbyRefusesAndTakesOver: a second node with the same relay.id is standby (logins are
// refused with the active node's name); when the active node shuts down it gives the lease up and the
// standby takes over at once, replaying to the centers what they did not acknowledge.
func TestJetStreamStandbyRefusesAndTakesOver(t *testing.T) {
	cl := natsCluster(t, 3)
	cs, addrs := newCenters(t, "a")
	n1 := startJSNode(t, cl, "n1", allOrders, addrs, nil)
	waitActive(t, n1, 20*time.Second)
	n2 := startJSNode(t, cl, "n2", allOrders, addrs, nil)
	time.Sleep(500 * time.Millisecond) // n2 looked at the lease at least once
	if n2.r.Active() {
		t.Fatal("two active nodes")
	}
	c2, err := relaytest.DialRaw(n2.addr)
	if err != nil {
		t.Fatal(err)
	}
	c2.Send('L', `I="feed"`)
	st, err := c2.ReadStatus(5 * time.Second)
	if err != nil || st.Code != 1 || !strings.Contains(st.Line, "relay node n2 is standby: relay node n1 is active") {
		t.Fatalf("standby login: %+v %v", st, err)
	}
	c2.Close()

	app, err := relaytest.Dial(n1.addr, "feed", "")
	if err != nil {
		t.Fatal(err)
	}
	const n = 2000
	cs["a"].SetSilent(true) // a takes everything and acknowledges nothing: n2 must send it all again
	defer cs["a"].SetSilent(false)
	if got := sendOrders(t, app, 0, n); got != n-1 {
		t.Fatalf("acked up to %d", got)
	}
	app.Close()
	waitDistinctIDs(t, "a", cs["a"], n, 20*time.Second)
	// a goes away having acknowledged nothing, and comes back (the same address) once n1 is gone
	aAddr := cs["a"].Addr()
	cs["a"].Close()
	start := time.Now()
	n1.shutdown(t)
	took := waitActive(t, n2, 30*time.Second)
	t.Logf("n2 active %v after n1 shut down", took)
	a, err := relaytest.NewCenter(aAddr)
	if err != nil {
		t.Fatal(err)
	}
	defer a.Close()
	cs["a"] = a
	// n2 replays everything a did not acknowledge
	waitDistinctIDs(t, "a", a, n, 20*time.Second)
	t.Logf("replayed %v after n1 shut down", time.Since(start))
	checkOrder(t, "a", a, n)
	// and takes new applications
	app2, err := relaytest.Dial(n2.addr, "feed", "")
	if err != nil {
		t.Fatal(err)
	}
	defer app2.Close()
	if got := sendOrders(t, app2, n, n+100); got != n+99 {
		t.Fatalf("acked up to %d on n2", got)
	}
	waitDistinctIDs(t, "a", cs["a"], n+100, 20*time.Second)
	checkOrder(t, "a", cs["a"], n+100)
}

// TestJetStreamServerLossLosesNothing: the server that leads the journal stream is stopped mid-stream
// (publishes in flight go unanswered, the stream elects a new leader); every message acknowledged
// reaches the center, in order, and the application keeps being served.
func TestJetStreamServerLossLosesNothing(t *testing.T) {
	cl := natsCluster(t, 3)
	cs, addrs := newCenters(t, "a")
	// No takeover here: the default lease (10 s), so that a machine loaded by -race and other builds does not
	// make the node step down before the server is lost (a 4 s lease did, once, in CI).
	n1 := startJSNode(t, cl, "n1", allOrders, addrs, func(c *relay.Config) { c.JetStream.LeaseTTL = 10 * time.Second })
	waitActive(t, n1, 20*time.Second)
	app, err := relaytest.Dial(n1.addr, "feed", "")
	if err != nil {
		t.Fatal(err)
	}
	defer app.Close()
	js, err := jetstream.New(n1.nc)
	if err != nil {
		t.Fatal(err)
	}
	const n = 6000
	acked := -1
	var sendErr error
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		for from := 0; from < n; from += 250 {
			bs := time.Now()
			got := sendOrders(t, app, from, from+250)
			if d := time.Since(bs); d > 500*time.Millisecond {
				t.Logf("messages %d-%d acknowledged in %v", from, from+249, d)
			}
			acked = got
			if got != from+249 {
				sendErr = fmt.Errorf("acked up to %d of %d", got, from+249)
				return
			}
		}
	}()
	for cs["a"].Count() < 1500 {
		time.Sleep(time.Millisecond)
	}
	st, err := js.Stream(context.Background(), "t_relay_r1")
	if err != nil {
		t.Fatal(err)
	}
	info, err := st.Info(context.Background())
	if err != nil || info.Cluster == nil {
		t.Fatalf("stream info %v", err)
	}
	leader := cl.Index(info.Cluster.Leader)
	t.Logf("stopping %s, the stream's leader, after %d messages", info.Cluster.Leader, cs["a"].Count())
	cl.Stop(leader)
	wg.Wait()
	if sendErr != nil {
		t.Fatal(sendErr)
	}
	waitDistinctIDs(t, "a", cs["a"], acked+1, 30*time.Second)
	checkOrder(t, "a", cs["a"], acked+1)
	mfs, err := n1.reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, mf := range mfs {
		if mf.GetName() == "switchboard_relay_journal_resent_total" {
			t.Logf("records sent again: %v", mf.GetMetric()[0].GetCounter().GetValue())
		}
	}
}

// TestJetStreamLeaseLossHandsOver: the active node loses NATS (its connection closes): it stops being
// active within lease_ttl*3/4 (applications disconnected, center links stopped), the standby takes over,
// and the application, sending again what was not acknowledged, loses nothing.
func TestJetStreamLeaseLossHandsOver(t *testing.T) {
	cl := natsCluster(t, 3)
	cs, addrs := newCenters(t, "a")
	n1 := startJSNode(t, cl, "n1", allOrders, addrs, nil)
	waitActive(t, n1, 20*time.Second)
	n2 := startJSNode(t, cl, "n2", allOrders, addrs, nil)
	app, err := relaytest.Dial(n1.addr, "feed", "")
	if err != nil {
		t.Fatal(err)
	}
	const n = 3000
	if got := sendOrders(t, app, 0, 1000); got != 999 {
		t.Fatalf("acked up to %d", got)
	}
	start := time.Now()
	relay.CutNATS(n1.r)
	// n1 demotes itself: its application is cut off
	if _, err := app.ReadLine(10 * time.Second); err == nil {
		for {
			if _, err := app.ReadLine(10 * time.Second); err != nil {
				break
			}
		}
	}
	t.Logf("n1 cut its application %v after losing NATS", time.Since(start))
	if n1.r.Active() {
		t.Fatal("n1 still active")
	}
	took := waitActive(t, n2, 30*time.Second)
	t.Logf("n2 active %v after n1 lost NATS", time.Since(start))
	_ = took
	app2, err := relaytest.Dial(n2.addr, "feed", "")
	if err != nil {
		t.Fatal(err)
	}
	defer app2.Close()
	if got := sendOrders(t, app2, 1000, n); got != n-1 {
		t.Fatalf("acked up to %d on n2", got)
	}
	waitDistinctIDs(t, "a", cs["a"], n, 20*time.Second)
	checkOrder(t, "a", cs["a"], n)
}

// TestJetStreamObjectIndexSurvivesTakeover: with follow_objects = deletes, a D sent to the node that took
// over goes where its O went through the node before, and a center's E naming the object reaches the
// application that sent it (the object index is kept in a KV bucket).
func TestJetStreamObjectIndexSurvivesTakeover(t *testing.T) {
	cl := natsCluster(t, 3)
	cs, addrs := newCenters(t, "a", "b")
	routes := "Orders;1;O;Order;;true;a;BREAK;\nRest;2;*;*;;true;b;BREAK;\n"
	edit := func(c *relay.Config) { c.FollowObjects = "deletes" }
	n1 := startJSNode(t, cl, "n1", routes, addrs, edit)
	waitActive(t, n1, 20*time.Second)
	n2 := startJSNode(t, cl, "n2", routes, addrs, edit)
	app, err := relaytest.Dial(n1.addr, "algo", "")
	if err != nil {
		t.Fatal(err)
	}
	for i := 0; i < 50; i++ {
		app.Queue('O', fmt.Sprintf(`T="Order"|I="o%d"|id=%d`, i, i))
	}
	app.Flush()
	for i := 0; i < 50; i++ {
		if st, err := app.ReadStatus(10 * time.Second); err != nil || st.Code != 0 {
			t.Fatalf("status %+v %v", st, err)
		}
	}
	app.Close()
	if err := cs["a"].WaitCount(50, 10*time.Second); err != nil {
		t.Fatal(err)
	}
	n1.shutdown(t)
	waitActive(t, n2, 30*time.Second)
	app2, err := relaytest.Dial(n2.addr, "algo", "")
	if err != nil {
		t.Fatal(err)
	}
	defer app2.Close()
	app2.Send('D', `T="Order"|I="o7"`)
	if st, err := app2.ReadStatus(10 * time.Second); err != nil || st.Code != 0 {
		t.Fatalf("status %+v %v", st, err)
	}
	deadline := time.Now().Add(10 * time.Second)
	for {
		var got bool
		for _, body := range cs["a"].Bodies() {
			if strings.HasPrefix(body, "D|") && strings.Contains(body, `I="o7"`) {
				got = true
			}
		}
		if got {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("the D of o7 did not follow its O to a: %v", cs["a"].Bodies())
		}
		time.Sleep(20 * time.Millisecond)
	}
	// a center's E about o8 goes to the application that sent o8, though it registered no command
	if err := cs["a"].SendE(`I="req1"|C="cancel"|O="o8"|T="Order"`); err != nil {
		t.Fatal(err)
	}
	line, err := app2.ReadLine(10 * time.Second)
	if err != nil || !strings.HasPrefix(line, "E") || !strings.Contains(line, `O="o8"`) {
		t.Fatalf("E: %q %v", line, err)
	}
}
