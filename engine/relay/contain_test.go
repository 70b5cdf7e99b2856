package relay_test

import (
	"bufio"
	"errors"
	"fmt"
	"net"
	"os"
	"runtime"
	"runtime/metrics"
	"strings"
	"sync"
	"testing"
	"time"
	"unicode/utf8"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/sirupsen/logrus"
	"github.com/sirupsen/logrus/hooks/test"

	"github.com/switchboard/switchboard/engine/relay"
	"github.com/switchboard/switchboard/engine/relay/relaytest"
	"github.com/switchboard/switchboard/internal/testutil"
)

// Tests of issue 10 (items 13 and 15 and the relay's other peer-controlled allocations): each bound is
// attacked over real sockets while a bystander application keeps being served.

// bystander logs in an application that must keep getting OK statuses throughout a test; check sends one
// instruction and expects its OK.
type bystander struct {
	t   *testing.T
	app *relaytest.Client
	seq int64
}

func newBystander(t *testing.T, g *rig) *bystander {
	return &bystander{t: t, app: dial(t, g, "bystander", ""), seq: 1}
}

func (b *bystander) check() {
	b.t.Helper()
	if err := b.app.Send('O', fmt.Sprintf(`T="Tick"|I="t%d"`, b.seq)); err != nil {
		b.t.Fatalf("bystander: %v", err)
	}
	expectStatus(b.t, b.app, b.seq, 0, "OK")
	b.seq++
}

// appSeries returns the app label values of switchboard_relay_app_messages_in_total.
func appSeries(t *testing.T, reg *prometheus.Registry) map[string]float64 {
	t.Helper()
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	out := map[string]float64{}
	for _, mf := range mfs {
		if mf.GetName() != "switchboard_relay_app_messages_in_total" {
			continue
		}
		for _, m := range mf.GetMetric() {
			out[m.GetLabel()[0].GetValue()] = m.GetCounter().GetValue()
		}
	}
	return out
}

// Item 13: 300 applications with 4 KB ids (one not valid UTF-8) log in at once. At most
// relay.max_app_series ids get a series, the rest count under app="other", every label value is valid
// UTF-8 of at most 64 bytes, and the series go when the applications do.
func TestAppSeriesAreBounded(t *testing.T) {
	reg := prometheus.NewRegistry()
	const maxSeries, apps = 20, 300
	g := startWith(t, "", func(c *relay.Config) { c.MaxAppSeries = maxSeries; c.MaxLoginBytes = 8 << 10 }, relay.Options{Metrics: reg}, "a")
	by := newBystander(t, g)

	// a login id that is not valid UTF-8 used to panic the Prometheus client and end the process
	raw, err := relaytest.DialRaw(g.addr)
	if err != nil {
		t.Fatal(err)
	}
	defer raw.Close()
	raw.Raw("L#0|I=\"\xff\xfe" + strings.Repeat("z", 4000) + "\"\n")
	expectStatus(t, raw, 0, 0, "OK")
	by.check()

	var (
		wg    sync.WaitGroup
		mu    sync.Mutex
		conns []*relaytest.Client
	)
	for i := 0; i < apps; i++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			c, err := relaytest.Dial(g.addr, fmt.Sprintf("%04d-%s", i, strings.Repeat("x", 4000)), "")
			if err != nil {
				t.Error(err)
				return
			}
			if err := c.Send('O', `T="x"`); err != nil {
				t.Error(err)
			}
			if _, err := c.ReadStatus(5 * time.Second); err != nil {
				t.Error(err)
			}
			mu.Lock()
			conns = append(conns, c)
			mu.Unlock()
		}()
	}
	wg.Wait()
	if t.Failed() {
		t.FailNow()
	}
	by.check()
	series := appSeries(t, reg)
	if len(series) != maxSeries+1 {
		t.Fatalf("%d app series for %d applications, want %d + other", len(series), apps+2, maxSeries)
	}
	total := 0.0
	for v, n := range series {
		if len(v) > 64 || !utf8.ValidString(v) {
			t.Fatalf("label value %q (%d bytes)", v, len(v))
		}
		total += n
	}
	// every instruction is counted somewhere: the bystander's L and 2 O, the raw L, 2 per flooding app
	if want := float64(3 + 1 + 2*apps); total != want {
		t.Fatalf("app series add up to %v instructions, want %v", total, want)
	}
	if series["bystander"] != 3 || series["other"] == 0 {
		t.Fatalf("bystander %v, other %v", series["bystander"], series["other"])
	}

	// the applications leave: their series go (the freed places are for new ids), the bystander's stays
	for _, c := range conns {
		c.Close()
	}
	raw.Close()
	if !testutil.Poll(testutil.Wait, func() bool {
		series = appSeries(t, reg)
		_, other := series["other"]
		return len(series) == 2 && other || len(series) == 1
	}) {
		t.Fatalf("series left after the applications went: %d", len(series))
	}
	if _, ok := series["bystander"]; !ok {
		t.Fatal("the bystander's series went")
	}
	late := dial(t, g, "late-app", "")
	late.Send('O', `T="x"`)
	expectStatus(t, late, 1, 0, "OK")
	if appSeries(t, reg)["late-app"] != 2 {
		t.Fatalf("a new application after the others left has no series of its own: %v", appSeries(t, reg))
	}
	by.check()
}

// A login id longer than relay.max_login_bytes is refused with a clear status; the connection stays and
// may log in with a shorter id.
func TestLongLoginIDIsRefused(t *testing.T) {
	g := start(t, "", nil, "a")
	by := newBystander(t, g)
	raw := dialRaw(t, g)
	raw.Raw("L#0|I=\"" + strings.Repeat("i", 60<<10) + "\"\n")
	expectStatus(t, raw, 0, 1, "Login id of 61440 bytes: at most 256 (relay.max_login_bytes)")
	raw.Raw("L#1|I=\"short\"\n")
	expectStatus(t, raw, 1, 0, "OK")
	by.check()
}

// Error statuses quote what the application sent; their text is cut to 512 bytes.
func TestErrorStatusTextIsClipped(t *testing.T) {
	g := start(t, "", nil, "a")
	app := dial(t, g, "x", "")
	app.Raw("R#1|I=\"" + strings.Repeat("r", 60<<10) + "\"\n")
	st, err := app.ReadStatus(5 * time.Second)
	if err != nil {
		t.Fatal(err)
	}
	if st.Seq != 1 || st.Code != 1 || !strings.HasPrefix(st.Text, "Unknown request id rrr") || len(st.Text) != 512 ||
		!strings.HasSuffix(st.Text, "...") {
		t.Fatalf("status of %d bytes: %.80q...", len(st.Line), st.Line)
	}
}

// Item 15: an application that sends and never reads its statuses is disconnected once
// relay.client_queue_bytes are waiting for it (not a count of 16 KiB batches), logged with the bytes that
// waited and counted in switchboard_relay_slow_clients_total (the deprecated name of switchboard_relay_slow_readers_total).
func TestClientQueueIsBoundedInBytes(t *testing.T) {
	for _, guaranteed := range []bool{false, true} {
		t.Run(fmt.Sprintf("guaranteed=%v", guaranteed), func(t *testing.T) {
			reg := prometheus.NewRegistry()
			logger, hook := test.NewNullLogger()
			const bound = 64 << 10
			// relay.write_timeout well past the wait below: the queue's bound, not a blocked write, is what
			// disconnects here (the kernel takes megabytes of statuses first, slow under -race on a busy machine)
			g := startWith(t, "", func(c *relay.Config) {
				c.ClientQueueBytes, c.Guaranteed, c.WriteTimeout = bound, guaranteed, 3*time.Minute
			},
				relay.Options{Metrics: reg, Log: logrus.NewEntry(logger)}, "a")
			by := newBystander(t, g)
			app := dial(t, g, "flood", "")
			// (its receive buffer is left as it is: shrunk after the connection opened, the window already
			// advertised makes the kernel drop the relay's segments, and the acknowledgements they carry,
			// and the flood stalls in TCP before the relay has statuses to hold)
			// each instruction gets a ~540-byte error status (an unknown request id, quoted and clipped)
			line := "R|I=\"" + strings.Repeat("q", 2000) + "\"\n"
			batch := strings.Repeat(line, 200)
			deadline := time.Now().Add(90 * time.Second)
			// straight to the connection, what a write did not take first: a buffered writer would keep the
			// first timeout (the relay busy for 100 ms) and never send again
			rest := []byte(batch)
			for gather(t, reg)["switchboard_relay_slow_clients_total{}"] == 0 {
				if time.Now().After(deadline) {
					t.Fatal("an application that never reads was not disconnected")
				}
				app.Conn().SetWriteDeadline(time.Now().Add(100 * time.Millisecond))
				n, _ := app.Conn().Write(rest) // fails once the relay closed
				if rest = rest[n:]; len(rest) == 0 {
					rest = []byte(batch)
				}
			}
			if m := gather(t, reg); m["switchboard_relay_slow_readers_total{}"] != m["switchboard_relay_slow_clients_total{}"] {
				t.Fatalf("slow_readers_total %v, its former name slow_clients_total %v: one count", m["switchboard_relay_slow_readers_total{}"], m["switchboard_relay_slow_clients_total{}"])
			}
			// the counter moves just before the line is logged: wait for the line
			var waited any
			testutil.Poll(testutil.Wait, func() bool {
				for _, e := range hook.AllEntries() {
					if e.Message == "application does not read its statuses: disconnected" {
						waited = e.Data["queued_bytes"]
					}
				}
				return waited != nil
			})
			// the bytes already waiting when the next batch (at most 16 KiB plus one status) did not fit
			if n, ok := waited.(int64); !ok || n > bound || n < bound-17<<10 {
				t.Fatalf("disconnected with %v bytes waiting, bound %d", waited, bound)
			}
			if v := gather(t, reg)["switchboard_relay_client_queue_bytes{}"]; v > bound {
				t.Fatalf("client_queue_bytes gauge %v after the disconnect", v)
			}
			// the application is gone: after what the socket held, the connection ends
			app.Conn().SetReadDeadline(time.Now().Add(10 * time.Second))
			if _, err := bufio.NewReader(app.Conn()).Discard(1 << 30); err == nil || errors.Is(err, os.ErrDeadlineExceeded) {
				t.Fatalf("connection still open: %v", err)
			}
			by.check()
		})
	}
}

// C instructions register commands; the registry is bounded in bytes (a C past it gets S=1) and C with
// L=0 removes a command, making room again.
func TestCommandRegistryIsBounded(t *testing.T) {
	g := start(t, "", nil, "a")
	by := newBystander(t, g)
	app := dial(t, g, "cmds", "")
	pad := strings.Repeat("c", 60<<10)
	seq := int64(1)
	refused := int64(-1)
	for i := 0; i < 200 && refused < 0; i++ {
		app.Send('C', fmt.Sprintf(`I="%s%d"|N="n"`, pad, i))
		st, err := app.ReadStatus(5 * time.Second)
		if err != nil {
			t.Fatal(err)
		}
		if st.Code != 0 {
			if !strings.HasPrefix(st.Text, "Too many commands registered") || i < 50 {
				t.Fatalf("C %d: %q", i, st.Text)
			}
			refused = int64(i)
		}
		seq++
	}
	if refused < 0 {
		t.Fatal("200 commands of 60 KB were all registered")
	}
	by.check()
	// remove one, then the refused one fits
	app.Send('C', fmt.Sprintf(`I="%s0"|L=0`, pad))
	expectStatus(t, app, seq, 0, "OK")
	app.Send('C', fmt.Sprintf(`I="%s%d"|N="n"`, pad, refused))
	expectStatus(t, app, seq+1, 0, "OK")
}

// A center that stops reading: messages wait for it up to relay.center_queue_bytes, then are dropped and
// counted, far below the relay.center_queue count.
func TestCenterQueueIsBoundedInBytes(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	accepted := make(chan net.Conn, 4)
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			// read the relay's login, accept it, then never read again
			line, _ := bufio.NewReader(c).ReadString('\n')
			if strings.HasPrefix(line, "L") {
				fmt.Fprintf(c, "M@%d|Q=0|S=0|M=\"OK\"\n", time.Now().UnixMilli())
			}
			accepted <- c
		}
	}()
	reg := prometheus.NewRegistry()
	g := startWith(t, "", func(c *relay.Config) {
		c.CenterQueueBytes = 1 << 20
		c.Centers = map[string]string{"stuck": ln.Addr().String()}
	}, relay.Options{Metrics: reg})
	c := <-accepted
	defer c.Close()
	by := newBystander(t, g)
	app := dial(t, g, "big", "")
	pad := strings.Repeat("p", 60<<10)
	const n = 600 // 36 MB: far past the socket buffers and the 1 MiB queue
	for i := 0; i < n; i++ {
		if _, err := app.Queue('O', fmt.Sprintf(`T="x"|I="%d"|pad="%s"`, i, pad)); err != nil {
			t.Fatal(err)
		}
		if i%20 == 19 {
			app.Flush()
		}
	}
	app.Flush()
	for i := 1; i <= n; i++ {
		st, err := app.ReadStatus(10 * time.Second)
		if err != nil {
			t.Fatal(err)
		}
		if st.Code != 0 {
			t.Fatalf("status %q", st.Line)
		}
	}
	dropped := gather(t, reg)[`switchboard_relay_center_dropped_total{center="stuck"}`]
	if dropped == 0 || dropped >= n {
		t.Fatalf("%v of %d messages dropped for a center that does not read", dropped, n)
	}
	by.check()
}

// liveHeap is the heap in use after a collection.
func liveHeap() uint64 {
	runtime.GC()
	s := []metrics.Sample{{Name: "/gc/heap/live:bytes"}}
	metrics.Read(s)
	return s[0].Value.Uint64()
}

// Item 15: route expression results are remembered per connection within relay.expression_cache_bytes.
// 500 messages with distinct 60 KB params (the attack: ~30 MB of keys kept before) leave the heap
// where it was while the connection stays open.
func TestExpressionMemoOverSocketsIsBounded(t *testing.T) {
	routes := "R;1;O;*;Symbol String nonull;Symbol < \"F\";a;BREAK;\n"
	g := start(t, routes, nil, "a")
	g.centers["a"].Store = false
	by := newBystander(t, g)
	app := dial(t, g, "memo", "")
	before := liveHeap()
	pad := strings.Repeat("A", 60<<10) // routed: "AAA..." < "F"
	const n = 500
	for i := 0; i < n; i++ {
		if _, err := app.Queue('O', fmt.Sprintf(`T="x"|Symbol="%s%d"`, pad, i)); err != nil {
			t.Fatal(err)
		}
		if i%50 == 49 {
			if err := app.Flush(); err != nil {
				t.Fatal(err)
			}
			for j := 0; j < 50; j++ {
				if st, err := app.ReadStatus(10 * time.Second); err != nil || st.Code != 0 {
					t.Fatalf("status %q %v", st.Line, err)
				}
			}
		}
	}
	if err := g.centers["a"].WaitCount(n, 20*time.Second); err != nil {
		t.Fatal(err)
	}
	after := liveHeap()
	if grew := int64(after) - int64(before); grew > 12<<20 {
		t.Fatalf("the heap grew by %d MB for one connection's route memo", grew>>20)
	}
	by.check()
	runtime.KeepAlive(app)
}
