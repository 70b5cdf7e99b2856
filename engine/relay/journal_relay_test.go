package relay_test

import (
	"context"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/switchboard/switchboard/engine/relay"
	"github.com/switchboard/switchboard/engine/relay/relaytest"
	"github.com/switchboard/switchboard/internal/testutil"
)

func freeAddr(t *testing.T) string {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return l.Addr().String()
}

// runRelay starts a relay with cfg (routes given inline) and returns it with its stop function.
func runRelay(t *testing.T, cfg relay.Config, reg prometheus.Registerer) (*relay.Relay, func()) {
	t.Helper()
	r, err := relay.New(cfg, relay.Options{Compile: exprs, Metrics: reg})
	if err != nil {
		t.Fatal(err)
	}
	if err := r.Start(context.Background()); err != nil {
		t.Fatal(err)
	}
	return r, func() {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		if err := r.Shutdown(ctx); err != nil {
			t.Errorf("shutdown: %v", err)
		}
	}
}

// TestJournalNamesCentersAcrossRestart is issue 15 item 1 as found: centers {a, c}, a rule that sends
// everything to c, c down, 50 messages acknowledged. Restarted with {a, b, c}: c gets the 50, b none.
func TestJournalNamesCentersAcrossRestart(t *testing.T) {
	dir := t.TempDir()
	a, err := relaytest.NewCenter("127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer a.Close()
	bAddr, cAddr := freeAddr(t), freeAddr(t)
	cfg := relay.DefaultConfig()
	cfg.Listen = "127.0.0.1:0"
	cfg.Guaranteed = true
	cfg.PersistDir = filepath.Join(dir, "persist")
	cfg.RoutesFile = filepath.Join(dir, "relay.routes")
	writeFile(t, cfg.RoutesFile, "OnlyC;1;O;*;;true;c;BREAK;\n")
	cfg.Centers = relay.Centers{"a": a.Addr(), "c": cAddr}
	r, stop := runRelay(t, cfg, nil)
	app, err := relaytest.Dial(r.Addrs()["relay"].String(), "app", "")
	if err != nil {
		t.Fatal(err)
	}
	for i := 1; i <= 50; i++ {
		app.Queue('O', fmt.Sprintf(`T="x"|I="m%d"`, i))
	}
	app.Flush()
	for i := 1; i <= 50; i++ {
		expectStatus(t, app, int64(i), 0, "OK")
	}
	app.Close()
	stop()

	cfg.Centers = relay.Centers{"a": a.Addr(), "b": bAddr, "c": cAddr}
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
	_, stop = runRelay(t, cfg, nil)
	defer stop()
	if err := c.WaitCount(50, 10*time.Second); err != nil {
		t.Fatal(err)
	}
	if err := b.WaitLogin(1, 5*time.Second); err != nil {
		t.Fatal(err)
	}
	time.Sleep(300 * time.Millisecond)
	if b.Count() != 0 || a.Count() != 0 || c.Count() != 50 {
		t.Fatalf("a got %d, b got %d, c got %d: want 0, 0, 50", a.Count(), b.Count(), c.Count())
	}
	for i, rc := range c.Received() {
		if id, _ := rc.Msg.Text("I"); id != fmt.Sprintf("m%d", i+1) {
			t.Fatalf("c: message %d is %s", i, id)
		}
	}
}

// TestJournalRetentionForCenterThatNeverReturns (issue 15 item 7): with a center down for good the journal
// stays within relay.journal_retention_bytes (+ the segment being written and one more), what that center
// loses is counted in switchboard_relay_journal_dropped_total, and the center that is up gets everything.
func TestJournalRetentionForCenterThatNeverReturns(t *testing.T) {
	dir := t.TempDir()
	a, err := relaytest.NewCenter("127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer a.Close()
	cfg := relay.DefaultConfig()
	cfg.Listen = "127.0.0.1:0"
	cfg.Guaranteed = true
	cfg.PersistDir = filepath.Join(dir, "persist")
	cfg.RoutesFile = ""
	cfg.SegmentBytes = 16 << 10
	cfg.JournalRetentionBytes = 64 << 10
	cfg.Centers = relay.Centers{"a": a.Addr(), "gone": freeAddr(t)}
	reg := prometheus.NewRegistry()
	r, stop := runRelay(t, cfg, reg)
	defer stop()
	app, err := relaytest.Dial(r.Addrs()["relay"].String(), "app", `O="QUIET"`)
	if err != nil {
		t.Fatal(err)
	}
	defer app.Close()
	const n = 5000
	for i := 0; i < n; i++ {
		app.Queue('O', fmt.Sprintf(`T="x"|I="m%d"|pad="0123456789012345678901234567890123456789"`, i))
		if i%100 == 99 {
			app.Flush()
			// a keeps up (at most ~30 KB behind, whatever the machine's load): only gone falls past retention
			for i-a.Count() > 300 {
				time.Sleep(time.Millisecond)
			}
		}
	}
	app.Flush()
	if err := a.WaitCount(n, 20*time.Second); err != nil {
		t.Fatal(err)
	}
	var dropped, size float64
	if !testutil.Poll(testutil.Wait, func() bool {
		m := gather(t, reg)
		dropped = m[`switchboard_relay_journal_dropped_total{center="gone",reason="bytes"}`]
		size = m[`switchboard_relay_journal_bytes{}`]
		return dropped > 0 && size <= float64(cfg.JournalRetentionBytes+2*cfg.SegmentBytes)
	}) {
		t.Fatalf("journal %v bytes (retention %d), dropped %v", size, cfg.JournalRetentionBytes, dropped)
	}
	t.Logf("journal %v bytes, %v records dropped for gone", size, dropped)
}

func writeFile(t *testing.T, path, data string) {
	t.Helper()
	if err := os.WriteFile(path, []byte(data), 0o644); err != nil {
		t.Fatal(err)
	}
}
