package bus

import (
	"context"
	"fmt"
	"runtime"
	"sync"
	"sync/atomic"
	"testing"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/sirupsen/logrus"
	logtest "github.com/sirupsen/logrus/hooks/test"
	"go.uber.org/goleak"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

// counter reads name{topic} from reg.
func counter(t *testing.T, reg *prometheus.Registry, name, topic string) float64 {
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
				if lp.GetName() == "topic" && lp.GetValue() == topic {
					return m.GetCounter().GetValue()
				}
			}
		}
	}
	return 0
}

func TestPublishOrderAndFanout(t *testing.T) {
	reg := prometheus.NewRegistry()
	b := New(Options{Metrics: reg})
	defer b.Close()
	const n = 1000
	var wg sync.WaitGroup
	got := make([][]int, 3)
	for i := range got {
		i := i
		wg.Add(n)
		if _, err := b.Subscribe("ticks", func(m Message) {
			got[i] = append(got[i], m.Payload.(int))
			wg.Done()
		}, QueueSize(n)); err != nil {
			t.Fatal(err)
		}
	}
	other := 0
	b.Subscribe("other", func(Message) { other++ })
	for i := 0; i < n; i++ {
		if k := b.Publish("ticks", i); k != 3 {
			t.Fatalf("Publish reached %d subscribers, want 3", k)
		}
	}
	wg.Wait()
	for i, g := range got {
		for j, v := range g {
			if v != j {
				t.Fatalf("subscriber %d got %d at position %d", i, v, j)
			}
		}
	}
	if other != 0 {
		t.Fatal("message leaked to another topic")
	}
	if p, d := counter(t, reg, "switchboard_bus_published_total", "ticks"), counter(t, reg, "switchboard_bus_delivered_total", "ticks"); p != n || d != 3*n {
		t.Fatalf("published %v delivered %v", p, d)
	}
	if b.Publish("nobody", 1) != 0 {
		t.Fatal("publish to a topic without subscribers reached someone")
	}
}

// slowSubscriber subscribes a handler that blocks on release and reports each
// payload on got.
func slowSubscriber(t *testing.T, b *Bus, opts ...SubOption) (*Subscription, chan struct{}, chan int, chan struct{}) {
	entered := make(chan struct{}, 100)
	release := make(chan struct{})
	got := make(chan int, 100)
	s, err := b.Subscribe("quotes", func(m Message) {
		entered <- struct{}{}
		<-release
		got <- m.Payload.(int)
	}, opts...)
	if err != nil {
		t.Fatal(err)
	}
	return s, release, got, entered
}

func TestSlowSubscriberPolicies(t *testing.T) {
	for _, tc := range []struct {
		name string
		opts []SubOption
		want []int
	}{
		{"drop newest (default)", []SubOption{QueueSize(2)}, []int{0, 1, 2}},
		{"drop oldest", []SubOption{QueueSize(2), DropOldest()}, []int{0, 3, 4}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			reg := prometheus.NewRegistry()
			logger, hook := logtest.NewNullLogger()
			b := New(Options{Metrics: reg, Log: logrus.NewEntry(logger)})
			defer b.Close()
			s, release, got, entered := slowSubscriber(t, b, tc.opts...)
			fast := 0
			b.Subscribe("quotes", func(Message) { fast++ }, Sync())

			b.Publish("quotes", 0)
			<-entered // 0 is in the handler; the queue (2) is empty
			for i := 1; i <= 4; i++ {
				b.Publish("quotes", i)
			}
			close(release)
			for _, w := range tc.want {
				if g := <-got; g != w {
					t.Fatalf("got %d, want %d", g, w)
				}
			}
			if s.Dropped() != 2 {
				t.Fatalf("Dropped() = %d, want 2", s.Dropped())
			}
			if d := counter(t, reg, "switchboard_bus_dropped_total", "quotes"); d != 2 {
				t.Fatalf("dropped counter %v", d)
			}
			if fast != 5 {
				t.Fatalf("the other subscriber got %d of 5", fast)
			}
			// first drop logged at once; the second within the same second is not
			if n := len(hook.AllEntries()); n != 1 {
				t.Fatalf("%d drop log lines, want 1", n)
			}
			if e := hook.LastEntry(); e.Data["topic"] != "quotes" || e.Level != logrus.WarnLevel {
				t.Fatalf("log entry %v", e.Data)
			}
		})
	}
}

func TestDropLogIsRateLimited(t *testing.T) {
	logger, hook := logtest.NewNullLogger()
	b := New(Options{Log: logrus.NewEntry(logger)})
	defer b.Close()
	_, release, _, entered := slowSubscriber(t, b, QueueSize(1))
	b.Publish("quotes", 0)
	<-entered
	for i := 0; i < 1000; i++ {
		b.Publish("quotes", i)
	}
	if n := len(hook.AllEntries()); n != 1 {
		t.Fatalf("%d log lines for 999 drops, want 1", n)
	}
	close(release)
}

func TestSyncRunsInPublisher(t *testing.T) {
	b := New(Options{})
	defer b.Close()
	var seen []string
	b.Subscribe("t", func(m Message) { seen = append(seen, m.Payload.(string)) }, Sync())
	b.Publish("t", "a")
	if len(seen) != 1 || seen[0] != "a" { // no synchronisation needed: same goroutine
		t.Fatalf("seen %v right after Publish", seen)
	}
}

func TestHandlerPanicIsContained(t *testing.T) {
	logger, hook := logtest.NewNullLogger()
	b := New(Options{Log: logrus.NewEntry(logger)})
	defer b.Close()
	done := make(chan string, 2)
	b.Subscribe("t", func(m Message) {
		if m.Payload == "bad" {
			panic("boom")
		}
		done <- m.Payload.(string)
	})
	b.Publish("t", "bad")
	b.Publish("t", "good")
	if got := <-done; got != "good" {
		t.Fatal(got)
	}
	if hook.LastEntry() == nil || hook.LastEntry().Level != logrus.ErrorLevel {
		t.Fatal("panic not logged")
	}
}

func TestSubscriptionClose(t *testing.T) {
	b := New(Options{})
	defer b.Close()
	var calls atomic.Int32
	s, _ := b.Subscribe("t", func(Message) { calls.Add(1) }, Sync())
	b.Publish("t", 1)
	s.Close()
	s.Close()
	if b.Publish("t", 2) != 0 || calls.Load() != 1 {
		t.Fatal("closed subscription still receives")
	}
	// closing from inside its own handler does not deadlock
	done := make(chan struct{})
	var self *Subscription
	var mu sync.Mutex
	mu.Lock()
	self, _ = b.Subscribe("u", func(Message) {
		mu.Lock()
		defer mu.Unlock()
		self.Close()
		close(done)
	})
	mu.Unlock()
	b.Publish("u", 1)
	<-done
	if _, err := b.Subscribe("t", nil); err == nil {
		t.Fatal("nil handler accepted")
	}
}

func TestCloseStopsEverything(t *testing.T) {
	b := New(Options{})
	for i := 0; i < 10; i++ {
		b.Subscribe(fmt.Sprint("t", i%3), func(Message) {})
	}
	for i := 0; i < 100; i++ {
		b.Publish(fmt.Sprint("t", i%3), i)
	}
	b.Close() // goleak in TestMain checks the goroutines are gone
	if _, err := b.Subscribe("t0", func(Message) {}); err != ErrClosed {
		t.Fatalf("Subscribe after Close: %v", err)
	}
	if b.Publish("t0", 1) != 0 {
		t.Fatal("Publish after Close delivered")
	}
}

// broker is an in-memory cluster broker: a node's messages go to the other
// nodes' subscriptions.
type broker struct {
	mu   sync.Mutex
	subs map[string][]*bpSub
}

type bpSub struct {
	node    *fakeBackplane
	deliver func(Message)
}

type fakeBackplane struct{ b *broker }

func (f *fakeBackplane) Publish(_ context.Context, m Message) error {
	f.b.mu.Lock()
	subs := append([]*bpSub(nil), f.b.subs[m.Topic]...)
	f.b.mu.Unlock()
	for _, s := range subs {
		if s.node != f {
			s.deliver(m)
		}
	}
	return nil
}

func (f *fakeBackplane) Subscribe(topic string, deliver func(Message)) (func(), error) {
	s := &bpSub{node: f, deliver: deliver}
	f.b.mu.Lock()
	f.b.subs[topic] = append(f.b.subs[topic], s)
	f.b.mu.Unlock()
	return func() {
		f.b.mu.Lock()
		defer f.b.mu.Unlock()
		list := f.b.subs[topic]
		for i, x := range list {
			if x == s {
				f.b.subs[topic] = append(list[:i:i], list[i+1:]...)
				break
			}
		}
	}, nil
}

func TestBackplaneSpansNodes(t *testing.T) {
	br := &broker{subs: map[string][]*bpSub{}}
	nodeA := New(Options{Backplane: &fakeBackplane{b: br}})
	nodeB := New(Options{Backplane: &fakeBackplane{b: br}})
	defer nodeA.Close()
	defer nodeB.Close()
	gotA := make(chan any, 10)
	gotB := make(chan any, 10)
	nodeA.Subscribe("orders", func(m Message) { gotA <- m.Payload }, Sync())
	sb, _ := nodeB.Subscribe("orders", func(m Message) { gotB <- m.Payload }, Sync())

	nodeA.Publish("orders", map[string]any{"id": int64(7)})
	if m := (<-gotB).(map[string]any); m["id"] != int64(7) {
		t.Fatalf("node B got %v", m)
	}
	if len(gotA) != 1 || len(gotB) != 0 {
		t.Fatalf("duplicates: A has %d, B has %d more", len(gotA), len(gotB))
	}
	<-gotA
	// the last local subscriber leaving cancels the broker subscription
	sb.Close()
	br.mu.Lock()
	n := len(br.subs["orders"])
	br.mu.Unlock()
	if n != 1 {
		t.Fatalf("broker holds %d subscriptions, want 1", n)
	}
	nodeA.Publish("orders", "x")
	if len(gotB) != 0 {
		t.Fatal("closed subscription got a remote message")
	}
}

func BenchmarkBusPublish(b *testing.B) {
	for _, subs := range []int{1, 8} {
		b.Run(fmt.Sprintf("subscribers=%d", subs), func(b *testing.B) {
			bus := New(Options{QueueSize: 1 << 16, Metrics: prometheus.NewRegistry()})
			defer bus.Close()
			var handled atomic.Int64
			var all []*Subscription
			for i := 0; i < subs; i++ {
				s, _ := bus.Subscribe("bench", func(Message) { handled.Add(1) })
				all = append(all, s)
			}
			defer func() {
				var dropped uint64
				for _, s := range all {
					dropped += s.Dropped()
				}
				b.ReportMetric(float64(dropped)/float64(b.N*subs), "dropped/delivery")
			}()
			payload := "tick"
			b.ReportAllocs()
			b.ResetTimer()
			for i := 0; i < b.N; i++ {
				bus.Publish("bench", payload)
			}
		})
	}
}

// Item 7 of issue 16: a slow subscriber's queue is bounded in bytes, not only in messages.
func TestQueueBoundedInBytes(t *testing.T) {
	for _, oldest := range []bool{false, true} {
		t.Run(fmt.Sprintf("dropOldest=%v", oldest), func(t *testing.T) {
			logger, hook := logtest.NewNullLogger()
			b := New(Options{QueueBytes: 1 << 20, Log: logrus.NewEntry(logger)})
			defer b.Close()
			release := make(chan struct{})
			got := make(chan int, 100)
			opts := []SubOption{}
			if oldest {
				opts = append(opts, DropOldest())
			}
			sub, err := b.Subscribe("big", func(m Message) {
				<-release
				got <- m.Payload.(map[string]any)["n"].(int)
			}, opts...)
			if err != nil {
				t.Fatal(err)
			}
			chunk := string(make([]byte, 300_000))
			// The first message is taken by the handler (blocked on release); the queue then holds three
			// messages of ~300 KB within 1 MiB, whatever its length in messages (1024).
			b.Publish("big", map[string]any{"n": 0, "data": chunk})
			for sub.QueuedBytes() != 0 {
				runtime.Gosched()
			}
			for i := 1; i <= 10; i++ {
				b.Publish("big", map[string]any{"n": i, "data": chunk})
			}
			if q := sub.QueuedBytes(); q > 1<<20 || q < 900_000 {
				t.Fatalf("queued %d bytes, want at most 1 MiB and about 900 KB", q)
			}
			if d := sub.Dropped(); d != 7 {
				t.Fatalf("dropped %d, want 7", d)
			}
			close(release)
			want := []int{0, 1, 2, 3}
			if oldest {
				want = []int{0, 8, 9, 10}
			}
			for _, w := range want {
				if n := <-got; n != w {
					t.Fatalf("got message %d, want %d", n, w)
				}
			}
			logged := false
			for _, e := range hook.AllEntries() {
				logged = logged || (e.Message == "bus: subscriber queue full, messages dropped" && e.Data["queue_bytes"] == 1<<20)
			}
			if !logged {
				t.Error("no log line naming the byte bound")
			}
		})
	}
}

func TestQueueBytesOneBigMessage(t *testing.T) {
	b := New(Options{QueueBytes: 1000})
	defer b.Close()
	got := make(chan int, 1)
	if _, err := b.Subscribe("t", func(m Message) { got <- len(m.Payload.(string)) }); err != nil {
		t.Fatal(err)
	}
	// A message over the bound still goes through an empty queue (it exists anyway; it is not held twice).
	b.Publish("t", string(make([]byte, 5000)))
	if n := <-got; n != 5000 {
		t.Fatal(n)
	}
}

func TestSizeOf(t *testing.T) {
	for _, tc := range []struct {
		v    any
		want int
	}{
		{"hello", 5},
		{[]byte("abc"), 3},
		{int64(1), 8},
		{nil, 0},
		{map[string]any{"k": "vv"}, 1 + 2 + 2*sizeSlot},
		{[]any{"a", "bc"}, 3 + 2*sizeSlot},
		{map[string]any{"nested": []any{map[string]any{"x": string(make([]byte, 1000))}}}, 6 + 1 + 1000 + 5*sizeSlot},
	} {
		if got := SizeOf(tc.v); got != tc.want {
			t.Errorf("SizeOf(%T) = %d, want %d", tc.v, got, tc.want)
		}
	}
}

func TestPatterns(t *testing.T) {
	for _, c := range []struct {
		name    string
		pattern bool
	}{{"a.b", false}, {"a.*", true}, {"*", true}, {">", true}, {"a.>", true}, {"a.>.b", false}, {"a*", false}, {"a..*", false}, {"", false}} {
		if got := IsPattern(c.name); got != c.pattern {
			t.Errorf("IsPattern(%q) = %v", c.name, got)
		}
	}
	for _, c := range []struct {
		pattern, topic string
		match          bool
	}{{"a.*", "a.b", true}, {"a.*", "a.b.c", false}, {"a.*", "a", false}, {"a.>", "a.b.c", true}, {"a.>", "a", false},
		{"*.b", "a.b", true}, {"*.b", "a.c", false}, {">", "x", true}, {"a.*.c", "a.b.c", true}, {"a.*.c", "a.b.d", false}} {
		if got := Match(c.pattern, c.topic); got != c.match {
			t.Errorf("Match(%q, %q) = %v", c.pattern, c.topic, got)
		}
	}
	b := New(Options{})
	defer b.Close()
	got := make(chan string, 10)
	if _, err := b.Subscribe("prices.*", func(m Message) { got <- m.Topic }, Sync()); err != nil {
		t.Fatal(err)
	}
	if _, err := b.Subscribe("prices.eu", func(m Message) { got <- "exact " + m.Topic }, Sync()); err != nil {
		t.Fatal(err)
	}
	if n := b.Publish("prices.eu", 1); n != 2 {
		t.Fatalf("prices.eu reached %d subscribers, want 2", n)
	}
	if n := b.Publish("prices.*", 1); n != 0 {
		t.Fatalf("a publish to a pattern reached %d", n)
	}
	if n := b.Publish("other", 1); n != 0 {
		t.Fatalf("other reached %d", n)
	}
	close(got)
	var seen []string
	for s := range got {
		seen = append(seen, s)
	}
	if len(seen) != 2 || seen[0] != "exact prices.eu" && seen[1] != "exact prices.eu" {
		t.Fatalf("deliveries %v", seen)
	}
}

// captureBackplane keeps the deliver function the bus subscribes with, so that a test can hand the bus
// "remote" messages; batchCapture also offers SubscribeBatch.
type captureBackplane struct {
	mu      sync.Mutex
	deliver func(Message)
}

func (c *captureBackplane) Publish(context.Context, Message) error { return nil }
func (c *captureBackplane) Subscribe(_ string, deliver func(Message)) (func(), error) {
	c.mu.Lock()
	c.deliver = deliver
	c.mu.Unlock()
	return func() {}, nil
}

type batchCapture struct {
	captureBackplane
	deliverBatch func([]Message)
}

func (c *batchCapture) SubscribeBatch(_ string, deliver func([]Message)) (func(), error) {
	c.mu.Lock()
	c.deliverBatch = deliver
	c.mu.Unlock()
	return func() {}, nil
}

// TestBatchDeliveryMatchesSingle: remote messages delivered a batch at a time (BatchBackplane) reach a
// queued subscriber with the same bounds in messages and bytes, the same drops and the same order as
// delivered one by one, for both drop policies; a Sync subscriber gets every one in order.
func TestBatchDeliveryMatchesSingle(t *testing.T) {
	type outcome struct {
		got            []int
		sync           []int
		dropped        uint64
		droppedCounter float64
	}
	run := func(t *testing.T, batched, oldest bool) outcome {
		reg := prometheus.NewRegistry()
		var bp Backplane
		single := &captureBackplane{}
		batch := &batchCapture{}
		if batched {
			bp = batch
		} else {
			bp = single
		}
		b := New(Options{QueueBytes: 1000, Metrics: reg, Backplane: bp})
		defer b.Close()
		entered := make(chan struct{}, 1)
		release := make(chan struct{})
		got := make(chan int, 100)
		opts := []SubOption{QueueSize(4)}
		if oldest {
			opts = append(opts, DropOldest())
		}
		s, err := b.Subscribe("remote", func(m Message) {
			if m.Payload.(string)[0] == 0 {
				entered <- struct{}{}
				<-release
			}
			got <- len(m.Payload.(string))
		}, opts...)
		if err != nil {
			t.Fatal(err)
		}
		var out outcome
		var syncMu sync.Mutex
		if _, err := b.Subscribe("remote", func(m Message) {
			syncMu.Lock()
			out.sync = append(out.sync, len(m.Payload.(string)))
			syncMu.Unlock()
		}, Sync()); err != nil {
			t.Fatal(err)
		}
		// Payload lengths identify messages; byte 0 of the first one blocks the handler.
		first := Message{Topic: "remote", Payload: "\x00first"}
		var rest []Message
		for i := 1; i <= 14; i++ {
			n := 10 + i
			if i%4 == 0 {
				n = 300 + i // these exceed the 1000-byte bound with the others
			}
			rest = append(rest, Message{Topic: "remote", Payload: "x" + string(make([]byte, n-1))})
		}
		if batched {
			batch.deliverBatch([]Message{first})
		} else {
			single.deliver(first)
		}
		<-entered
		if batched {
			batch.deliverBatch(rest)
		} else {
			for _, m := range rest {
				single.deliver(m)
			}
		}
		out.dropped = s.Dropped()
		close(release)
		want := 1 + len(rest) - int(out.dropped)
		for range want {
			out.got = append(out.got, <-got)
		}
		out.droppedCounter = counter(t, reg, "switchboard_bus_dropped_total", "remote")
		return out
	}
	for _, oldest := range []bool{false, true} {
		t.Run(fmt.Sprintf("dropOldest=%v", oldest), func(t *testing.T) {
			one, many := run(t, false, oldest), run(t, true, oldest)
			if fmt.Sprint(one) != fmt.Sprint(many) {
				t.Fatalf("one by one: %+v\nbatched:    %+v", one, many)
			}
			if one.dropped == 0 || float64(one.dropped) != one.droppedCounter {
				t.Fatalf("dropped %d (counter %v): the test should make the queue drop", one.dropped, one.droppedCounter)
			}
			if len(one.sync) != 15 {
				t.Fatalf("sync subscriber got %d of 15", len(one.sync))
			}
		})
	}
}
