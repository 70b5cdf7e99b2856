package cluster_test

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/switchboard/switchboard/engine/bus"
	"github.com/switchboard/switchboard/engine/cluster"
	"github.com/switchboard/switchboard/engine/cluster/clustertest"
)

func newNode(t *testing.T, url, id string, reg prometheus.Registerer) *cluster.Node {
	t.Helper()
	cfg := cluster.DefaultConfig()
	cfg.NATSURL = url
	cfg.NodeID = id
	cfg.ReconnectWait = 50 * time.Millisecond
	n, err := cluster.New(cfg, cluster.Options{Metrics: reg})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		_ = n.Shutdown(ctx)
	})
	return n
}

func newBus(t *testing.T, n *cluster.Node, reg prometheus.Registerer) *bus.Bus {
	b := bus.New(bus.Options{Backplane: n.Backplane(reg), Metrics: reg})
	t.Cleanup(b.Close)
	return b
}

// waitFor polls cond until it holds or 10 s pass.
func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

type recorder struct {
	mu   sync.Mutex
	msgs []bus.Message
}

func (r *recorder) add(m bus.Message) { r.mu.Lock(); r.msgs = append(r.msgs, m); r.mu.Unlock() }
func (r *recorder) len() int          { r.mu.Lock(); defer r.mu.Unlock(); return len(r.msgs) }
func (r *recorder) get() []bus.Message {
	r.mu.Lock()
	defer r.mu.Unlock()
	return append([]bus.Message(nil), r.msgs...)
}

// subscribed waits until a message published on b1 reaches rec (NATS subscriptions are asynchronous).
func subscribed(t *testing.T, b1 *bus.Bus, topic string, rec *recorder) {
	t.Helper()
	waitFor(t, "the subscription on "+topic, func() bool {
		b1.Publish(topic, "probe")
		time.Sleep(20 * time.Millisecond)
		return rec.len() > 0
	})
	time.Sleep(50 * time.Millisecond)
	rec.mu.Lock()
	rec.msgs = nil
	rec.mu.Unlock()
}

func TestBackplaneTopicsAcrossNodes(t *testing.T) {
	srv := clustertest.Start(t)
	r1, r2 := prometheus.NewRegistry(), prometheus.NewRegistry()
	n1, n2 := newNode(t, srv.URL(), "n1", r1), newNode(t, srv.URL(), "n2", r2)
	b1, b2 := newBus(t, n1, r1), newBus(t, n2, r2)

	var local, exact, pattern, odd recorder
	if _, err := b1.Subscribe("prices.eu", local.add); err != nil {
		t.Fatal(err)
	}
	if _, err := b2.Subscribe("prices.eu", exact.add); err != nil {
		t.Fatal(err)
	}
	if _, err := b2.Subscribe("prices.*", pattern.add); err != nil {
		t.Fatal(err)
	}
	if _, err := b2.Subscribe("odd topic/é", odd.add); err != nil {
		t.Fatal(err)
	}
	subscribed(t, b1, "prices.eu", &exact)
	// The pattern's subscription may reach the server after the exact one's first probe: probe again.
	waitFor(t, "pattern probe", func() bool {
		if pattern.len() > 0 {
			return true
		}
		b1.Publish("prices.eu", "probe")
		time.Sleep(20 * time.Millisecond)
		return pattern.len() > 0
	})
	time.Sleep(50 * time.Millisecond)
	for _, r := range []*recorder{&pattern, &local, &exact} {
		r.mu.Lock()
		r.msgs = nil
		r.mu.Unlock()
	}
	subscribed(t, b1, "odd topic/é", &odd)

	payload := map[string]any{"px": 101.5, "qty": int64(3), "raw": "\xff\x00bytes", "legs": []any{"a", true, nil}}
	if n := b1.Publish("prices.eu", payload); n != 1 {
		t.Fatalf("local subscribers reached: %d, want 1", n)
	}
	b1.Publish("prices.us", "us")
	b1.Publish("odd topic/é", "odd")
	waitFor(t, "remote delivery", func() bool { return exact.len() == 1 && pattern.len() == 2 && odd.len() == 1 })
	time.Sleep(100 * time.Millisecond) // nothing more arrives (no echo, no double delivery)
	if local.len() != 1 || exact.len() != 1 || pattern.len() != 2 || odd.len() != 1 {
		t.Fatalf("deliveries: local %d exact %d pattern %d odd %d; want 1 1 2 1", local.len(), exact.len(), pattern.len(), odd.len())
	}
	got := exact.get()[0]
	if got.Topic != "prices.eu" || fmt.Sprint(got.Payload) != fmt.Sprint(payload) {
		t.Fatalf("remote message: %#v", got)
	}
	topics := map[string]bool{}
	for _, m := range pattern.get() {
		topics[m.Topic] = true
	}
	if !topics["prices.eu"] || !topics["prices.us"] {
		t.Fatalf("pattern got topics %v", topics)
	}
	if m := odd.get()[0]; m.Topic != "odd topic/é" || m.Payload != "odd" {
		t.Fatalf("odd topic message: %#v", m)
	}
	// A pattern subscriber on the publishing node gets local messages from the local bus.
	var localPattern recorder
	if _, err := b1.Subscribe("prices.>", localPattern.add); err != nil {
		t.Fatal(err)
	}
	b1.Publish("prices.eu.close", 1)
	waitFor(t, "local pattern", func() bool { return localPattern.len() == 1 })
}

func TestBackplaneSurvivesNATSRestart(t *testing.T) {
	srv := clustertest.Start(t)
	r1, r2 := prometheus.NewRegistry(), prometheus.NewRegistry()
	n1, n2 := newNode(t, srv.URL(), "n1", r1), newNode(t, srv.URL(), "n2", r2)
	b1, b2 := newBus(t, n1, r1), newBus(t, n2, r2)
	var local, remote recorder
	_, _ = b1.Subscribe("calls", local.add)
	_, _ = b2.Subscribe("calls", remote.add)
	subscribed(t, b1, "calls", &remote)
	local.mu.Lock()
	local.msgs = nil
	local.mu.Unlock()

	srv.Stop()
	// Messages published before the client notices the loss are written to a dead socket (NATS cannot tell);
	// from the notice on, each is refused and counted.
	waitFor(t, "the topics connection to notice", func() bool { return gathered(t, r1, "switchboard_cluster_disconnects_total", "topics") >= 1 })
	for i := 0; i < 10; i++ {
		if b1.Publish("calls", i) != 1 {
			t.Fatal("local delivery failed while NATS is down")
		}
	}
	waitFor(t, "local deliveries", func() bool { return local.len() == 10 })
	unsent := testutil.ToFloat64(n1.Backplane(r1).UnsentCounter("disconnected"))
	if unsent != 10 {
		t.Fatalf("unsent while disconnected = %v, want 10", unsent)
	}
	if remote.len() != 0 {
		t.Fatalf("remote got %d messages while NATS was down", remote.len())
	}
	srv.Restart()
	waitFor(t, "reconnect", func() bool { return n1.Connected() && n2.Connected() })
	subscribed(t, b1, "calls", &remote)
	b1.Publish("calls", "after")
	waitFor(t, "delivery after restart", func() bool { return remote.len() == 1 })
}

func TestCacheLockOneWinnerAcrossNodes(t *testing.T) {
	srv := clustertest.Start(t)
	var caches []*cluster.Cache
	for i := range 3 {
		caches = append(caches, newNode(t, srv.URL(), fmt.Sprintf("n%d", i), nil).Cache(1<<20))
	}
	ctx := context.Background()
	for round := range 200 {
		key := fmt.Sprintf("job:%d", round)
		var wins atomic.Int32
		var wg sync.WaitGroup
		for _, c := range caches {
			for range 2 { // two handlers per node
				wg.Add(1)
				go func(c *cluster.Cache) {
					defer wg.Done()
					ok, err := c.Lock(ctx, key, 30*time.Second)
					if err != nil {
						t.Error(err)
					}
					if ok {
						wins.Add(1)
					}
				}(c)
			}
		}
		wg.Wait()
		if w := wins.Load(); w != 1 {
			t.Fatalf("round %d: %d winners, want exactly 1", round, w)
		}
	}
}

func TestCacheSemantics(t *testing.T) {
	srv := clustertest.Start(t)
	a := newNode(t, srv.URL(), "a", nil).Cache(4096)
	b := newNode(t, srv.URL(), "b", nil).Cache(4096)
	ctx := context.Background()

	if err := a.Save(ctx, "greeting", map[string]any{"text": "hi", "n": int64(2)}, 20, 0); err != nil {
		t.Fatal(err)
	}
	e, err := b.Load(ctx, "greeting")
	if err != nil || fmt.Sprint(e.Value) != "map[n:2 text:hi]" || e.CreatedAt.IsZero() || !e.ExpiresAt.IsZero() {
		t.Fatalf("load on the other node: %#v, %v", e, err)
	}
	if _, err := b.Load(ctx, "nothing"); !errors.Is(err, cluster.ErrNotFound) {
		t.Fatalf("missing key: %v", err)
	}
	if err := a.Save(ctx, "short", "x", 6, 150*time.Millisecond); err != nil {
		t.Fatal(err)
	}
	if _, err := b.Load(ctx, "short"); err != nil {
		t.Fatalf("before expiry: %v", err)
	}
	time.Sleep(200 * time.Millisecond)
	if _, err := b.Load(ctx, "short"); !errors.Is(err, cluster.ErrExpired) && !errors.Is(err, cluster.ErrNotFound) {
		t.Fatalf("after expiry: %v", err)
	}
	if err := a.Save(ctx, "big", string(make([]byte, 5000)), 5003, 0); !errors.Is(err, cluster.ErrFull) {
		t.Fatalf("over the byte bound: %v", err)
	}
	long := string(make([]byte, 300)) + "long key"
	if err := a.Save(ctx, long, "v", 310, 0); err != nil {
		t.Fatal(err)
	}
	if e, err := b.Load(ctx, long); err != nil || e.Value != "v" {
		t.Fatalf("long key: %v %v", e.Value, err)
	}

	// Locks: a holds "greeting" → b can neither take it nor use the key; a can.
	if ok, err := a.Lock(ctx, "greeting", 10*time.Second); !ok || err != nil {
		t.Fatalf("lock: %v %v", ok, err)
	}
	if ok, _ := a.Lock(ctx, "greeting", 10*time.Second); ok {
		t.Fatal("a second lock by the holder succeeded (actionhero: false)")
	}
	if ok, _ := b.Lock(ctx, "greeting", 10*time.Second); ok {
		t.Fatal("b took a's lock")
	}
	if ok, _ := b.CheckLock(ctx, "greeting"); ok {
		t.Fatal("checkLock on b: true")
	}
	if ok, _ := a.CheckLock(ctx, "greeting"); !ok {
		t.Fatal("checkLock on the holder: false")
	}
	if _, err := b.Load(ctx, "greeting"); !errors.Is(err, cluster.ErrLocked) {
		t.Fatalf("load of a key locked by another node: %v", err)
	}
	if err := b.Save(ctx, "greeting", 1, 9, 0); !errors.Is(err, cluster.ErrLocked) {
		t.Fatalf("save of a key locked by another node: %v", err)
	}
	if _, err := b.Destroy(ctx, "greeting"); !errors.Is(err, cluster.ErrLocked) {
		t.Fatalf("destroy of a key locked by another node: %v", err)
	}
	if _, err := a.Load(ctx, "greeting"); err != nil {
		t.Fatalf("load by the holder: %v", err)
	}
	if ok, _ := b.Unlock(ctx, "greeting"); ok {
		t.Fatal("b unlocked a's lock")
	}
	if ok, _ := a.Unlock(ctx, "greeting"); !ok {
		t.Fatal("the holder could not unlock")
	}
	if ok, _ := b.Lock(ctx, "greeting", 100*time.Millisecond); !ok {
		t.Fatal("b could not lock after unlock")
	}
	time.Sleep(150 * time.Millisecond)
	if ok, _ := a.Lock(ctx, "greeting", time.Second); !ok {
		t.Fatal("an expired lock could not be taken")
	}
	if ok, err := b.Destroy(ctx, "greeting"); ok || !errors.Is(err, cluster.ErrLocked) {
		t.Fatalf("destroy by b under a's lock: %v %v", ok, err)
	}
	_, _ = a.Unlock(ctx, "greeting")
	if ok, err := b.Destroy(ctx, "greeting"); !ok || err != nil {
		t.Fatalf("destroy: %v %v", ok, err)
	}
	if ok, _ := b.Destroy(ctx, "greeting"); ok {
		t.Fatal("destroy of a missing key: true")
	}
	if n, err := a.Size(ctx); err != nil || n != 1 { // long key ("short" expired and was removed on read)
		t.Fatalf("size: %d %v", n, err)
	}
}

func TestNodesAnswerStatus(t *testing.T) {
	srv := clustertest.Start(t)
	var nodes []*cluster.Node
	for i := range 3 {
		n := newNode(t, srv.URL(), fmt.Sprintf("node-%d", i), nil)
		i := i
		n.SetStatus(func() any { return map[string]int{"index": i} })
		nodes = append(nodes, n)
	}
	waitFor(t, "three reports", func() bool {
		reps, missing, err := nodes[0].Nodes(context.Background())
		return err == nil && len(reps) == 3 && len(missing) == 0
	})
	reps, _, _ := nodes[1].Nodes(context.Background())
	for i, r := range reps {
		if r.Node != fmt.Sprintf("node-%d", i) || string(r.Status) != fmt.Sprintf(`{"index":%d}`, i) || !r.Connected {
			t.Fatalf("report %d: %+v (%s)", i, r, r.Status)
		}
	}
}

func TestConfigValidate(t *testing.T) {
	cfg := cluster.DefaultConfig()
	cfg.NATSURL = "http://x:1, nats://ok:4222"
	cfg.Name = "bad name"
	cfg.TLS.Cert = "c.pem"
	cfg.RequestTimeout = 0
	err := cfg.Validate()
	for _, want := range []string{"cluster.name", "cluster.nats_url: expected a nats://", "cluster.tls: cert and key", "cluster.request_timeout"} {
		if err == nil || !contains(err.Error(), want) {
			t.Errorf("error %v lacks %q", err, want)
		}
	}
	if err := cluster.DefaultConfig().Validate(); err != nil {
		t.Fatal(err)
	}
}

func contains(s, sub string) bool {
	return len(s) >= len(sub) && (s == sub || len(sub) == 0 || indexOf(s, sub) >= 0)
}

func indexOf(s, sub string) int {
	for i := 0; i+len(sub) <= len(s); i++ {
		if s[i:i+len(sub)] == sub {
			return i
		}
	}
	return -1
}

// gathered reads a counter with conn=label (or no label when label is "") from reg.
func gathered(t *testing.T, reg *prometheus.Registry, name, label string) float64 {
	t.Helper()
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, mf := range mfs {
		if mf.GetName() != name {
			continue
		}
		for _, m := range mf.GetMetric() {
			for _, lp := range m.GetLabel() {
				if lp.GetValue() == label {
					return m.GetCounter().GetValue()
				}
			}
		}
	}
	return 0
}

func TestCacheBucketFull(t *testing.T) {
	srv := clustertest.Start(t)
	c := newNode(t, srv.URL(), "small", nil).Cache(8 << 10)
	ctx := context.Background()
	value := string(make([]byte, 1000))
	var err error
	for i := 0; i < 20 && err == nil; i++ {
		err = c.Save(ctx, fmt.Sprintf("k%d", i), value, 1010, 0)
	}
	if !errors.Is(err, cluster.ErrFull) || !contains(err.Error(), "cache bucket is full") {
		t.Fatalf("saves past the bucket's bytes: %v", err)
	}
	// Destroying frees room again.
	for i := range 20 {
		_, _ = c.Destroy(ctx, fmt.Sprintf("k%d", i))
	}
	if err := c.Save(ctx, "again", "v", 6, 0); err != nil {
		t.Fatalf("save after destroying: %v", err)
	}
}

// TestBackplaneStreamBatchedInOrder: a stream of mixed values (strings and byte strings, which are encoded
// straight into the batch, and other values) from one node reaches a subscriber on another exactly once,
// in order and equal, in far fewer NATS messages than bus messages (batches), counted as received.
func TestBackplaneStreamBatchedInOrder(t *testing.T) {
	srv := clustertest.Start(t)
	r1, r2 := prometheus.NewRegistry(), prometheus.NewRegistry()
	n1, n2 := newNode(t, srv.URL(), "n1", r1), newNode(t, srv.URL(), "n2", r2)
	b1, b2 := newBus(t, n1, r1), newBus(t, n2, r2)
	var rec recorder
	if _, err := b2.Subscribe("stream", rec.add, bus.QueueSize(1<<16)); err != nil {
		t.Fatal(err)
	}
	subscribed(t, b1, "stream", &rec)
	// A raw NATS subscriber counts the NATS messages the stream takes.
	nc, err := nats.Connect(srv.URL())
	if err != nil {
		t.Fatal(err)
	}
	defer nc.Close()
	var natsMsgs atomic.Int64
	subj, _ := n1.Backplane(r1).Subject("stream")
	if _, err := nc.Subscribe(subj, func(*nats.Msg) { natsMsgs.Add(1) }); err != nil {
		t.Fatal(err)
	}
	if err := nc.Flush(); err != nil {
		t.Fatal(err)
	}
	value := func(i int) any {
		switch i % 4 {
		case 0:
			return fmt.Sprintf("s%d", i)
		case 1:
			return []byte(fmt.Sprintf("b%d\xff", i))
		case 2:
			return int64(i)
		}
		return map[string]any{"i": int64(i), "s": strings.Repeat("x", i%300)}
	}
	const n = 20000
	for i := range n {
		b1.Publish("stream", value(i))
	}
	waitFor(t, "the stream", func() bool { return rec.len() == n })
	for i, m := range rec.get() {
		if fmt.Sprintf("%#v", m.Payload) != fmt.Sprintf("%#v", value(i)) || m.Topic != "stream" {
			t.Fatalf("message %d: %#v, want %#v", i, m.Payload, value(i))
		}
	}
	waitFor(t, "the raw subscriber", func() bool { return natsMsgs.Load() > 0 })
	if got := natsMsgs.Load(); got > n/4 {
		t.Fatalf("%d bus messages took %d NATS messages, want batches (at most %d)", n, got, n/4)
	}
	mfs, err := r2.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, mf := range mfs {
		if mf.GetName() == "switchboard_cluster_topic_received_total" {
			if r := mf.GetMetric()[0].GetCounter().GetValue(); r < n {
				t.Fatalf("received counter %v, want at least %d", r, n)
			}
		}
	}
}
