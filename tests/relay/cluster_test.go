package relay_test

import (
	"context"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/switchboard/switchboard/engine/relay/relaytest"
	"github.com/switchboard/switchboard/internal/natstest"
	"github.com/switchboard/switchboard/tests/harness"
)

// dialActive logs in to addr, trying again while the node refuses (a standby node answers S=1 until it
// takes over), for up to timeout.
func dialActive(t *testing.T, addr string, timeout time.Duration) *relaytest.Client {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for {
		c, err := relaytest.Dial(addr, "feed-1", "")
		if err == nil {
			return c
		}
		if time.Now().After(deadline) {
			t.Fatalf("no login on %s within %v: %v", addr, timeout, err)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// streamFrom sends O messages id from..n-1 on c (batches of 100), reading statuses as they come, and
// returns the highest id acknowledged; it stops when everything is acknowledged or the connection breaks.
// pace, when set, is called before each batch.
func streamFrom(t *testing.T, c *relaytest.Client, from, n int, pace func(i int)) int {
	t.Helper()
	acked := from - 1
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		base := int64(1) // the login was Q=0
		for acked < n-1 {
			st, err := c.ReadStatus(20 * time.Second)
			if err != nil {
				return
			}
			if st.Code != 0 {
				t.Errorf("status %q", st.Line)
				return
			}
			acked = from + int(st.Seq-base)
		}
	}()
	for i := from; i < n; i++ {
		if i%100 == 0 && pace != nil {
			pace(i)
		}
		if _, err := c.Queue('O', fmt.Sprintf(`T="Order"|I="o%d"|id=%d`, i, i)); err != nil {
			break
		}
		if i%100 == 99 {
			if err := c.Flush(); err != nil {
				break
			}
			time.Sleep(200 * time.Microsecond)
		}
	}
	c.Flush()
	wg.Wait()
	return acked
}

// TestJetStreamKill9Takeover is issue 17's relay acceptance with the built binary: a 3-server NATS
// cluster (embedded in this test), guaranteed mode on an R3 JetStream stream, two relay nodes with the
// same relay.id. The active node is killed with kill -9 mid-stream; the second takes over, and the
// application, sending again from its last acknowledged message, loses nothing: every acknowledged
// message reaches center a, and center b (down until the end) gets everything, at least once and in
// order. Then the server leading the stream is stopped mid-stream: nothing is lost either.
func TestJetStreamKill9Takeover(t *testing.T) {
	if testing.Short() {
		t.Skip("builds and runs the binary")
	}
	cl, err := natstest.StartCluster("e2e", 3, t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	defer cl.Shutdown()
	a, err := relaytest.NewCenter("127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer a.Close()
	bAddr := freeAddr(t) // center b is down until the end
	yaml := func(node, listen string) string {
		return fmt.Sprintf(`relay:
  id: feedrelay
  listen: %s
  routes_file: relay.routes
  guaranteed: true
  journal: jetstream
  jetstream:
    replicas: 3
    lease_ttl: 4s
  centers:
    a: %s
    b: %s
cluster:
  nats_url: %s
  name: e2e
  node_id: %s
`, listen, a.Addr(), bAddr, cl.AllURLs(), node)
	}
	routes := map[string]string{"relay.routes": "All;1;O,D;*;id Int nonull;id >= 0;*;BREAK;\n"}
	addr1, addr2 := freeAddr(t), freeAddr(t)
	p1 := harness.StartBinary(t, yaml("n1", addr1), harness.Options{Scripts: scripts, Files: routes}, "relay")
	p1.Logs.WaitFor(t, "this node is now the active relay node", 30*time.Second)
	p2 := harness.StartBinary(t, yaml("n2", addr2), harness.Options{Scripts: scripts, Files: routes}, "relay")
	p2.Logs.WaitFor(t, "another node is active", 30*time.Second)

	const n = 20000
	killed := make(chan struct{})
	deadline := time.Now().Add(2 * time.Minute) // the waits give up then; the assertions say what is missing
	go func() {
		defer close(killed)
		for a.Count() < 3000 && time.Now().Before(deadline) { // kill -9 mid-stream, once a good part went through
			time.Sleep(time.Millisecond)
		}
		_ = p1.Cmd.Process.Kill()
	}()
	// the stream stays at most 2,000 messages ahead of center a: acks come when the stream has a record,
	// deliveries after, so unpaced the whole stream could be acked before a has 3,000 and the kill lands late
	paced := func(i int) {
		for i-a.Count() > 2000 && time.Now().Before(deadline) {
			select {
			case <-killed: // the node is gone: the writes fail from here on
				return
			case <-time.After(time.Millisecond):
			}
		}
	}
	app := dialActive(t, addr1, 10*time.Second)
	acked := streamFrom(t, app, 0, n, paced)
	app.Close()
	<-killed
	p1.Wait(t, 10*time.Second)
	if acked < 0 || acked >= n-1 {
		t.Fatalf("the kill did not land mid-stream (acked %d)", acked)
	}
	killedAt := time.Now()
	t.Logf("n1 killed after %d acknowledged", acked+1)

	// the application goes to n2, which refuses logins until it holds the lease
	app = dialActive(t, addr2, 30*time.Second)
	defer app.Close()
	t.Logf("n2 took the application %v after the kill", time.Since(killedAt).Round(time.Millisecond))
	// the node logs that it is active before it takes a login; the log reaches this test through a pipe
	p2.Logs.WaitFor(t, "this node is now the active relay node", 5*time.Second)

	// phase 2: the server leading the stream stops mid-stream
	nc, err := nats.Connect(cl.URL())
	if err != nil {
		t.Fatal(err)
	}
	defer nc.Close()
	js, err := jetstream.New(nc)
	if err != nil {
		t.Fatal(err)
	}
	stopAt := acked + 1 + (n-acked-1)/3
	stopped := false
	pace := func(i int) {
		if stopped || i < stopAt {
			return
		}
		stopped = true
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		st, err := js.Stream(ctx, "e2e_relay_feedrelay")
		if err != nil {
			t.Errorf("stream: %v", err)
			return
		}
		info, err := st.Info(ctx)
		if err != nil || info.Cluster == nil {
			t.Errorf("stream info: %v", err)
			return
		}
		t.Logf("stopping NATS server %s, the stream's leader, at message %d", info.Cluster.Leader, i)
		nc.Close() // the test's own connection may be to that server
		cl.Stop(cl.Index(info.Cluster.Leader))
	}
	acked = streamFrom(t, app, acked+1, n, pace)
	if acked != n-1 || !stopped {
		t.Fatalf("on n2 only %d acknowledged (server stopped: %v)", acked+1, stopped)
	}
	waitDistinct(t, "a", a, n, 30*time.Second)
	b, err := relaytest.NewCenter(bAddr)
	if err != nil {
		t.Fatal(err)
	}
	defer b.Close()
	waitDistinct(t, "b", b, n, 60*time.Second)
	time.Sleep(100 * time.Millisecond)
	checkCenter(t, "a", a, n)
	checkCenter(t, "b", b, n)
	for _, r := range append(a.Received()[:1], b.Received()[:1]...) {
		if r.Relay != "feedrelay" {
			t.Fatalf("a center saw the relay log in as %q", r.Relay)
		}
	}
	p2.Signal(t, 15) // SIGTERM: a clean stop gives the lease up
	if code := p2.Wait(t, 20*time.Second); code != 0 {
		t.Fatalf("n2 exited %d; logs:\n%s", code, p2.Logs.String())
	}
}
