package socket

import (
	"bytes"
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/switchboard/switchboard/internal/testutil"
)

// Files larger than socket.max_outbound_bytes, requested back to back, all arrive: each file request
// waits for the previous one to leave the outbound queue instead of finding the queue over its bound.
func TestPipelinedFilesLargerThanTheOutboundBound(t *testing.T) {
	dir := t.TempDir()
	big := bytes.Repeat([]byte("0123456789abcdef"), 16<<10) // 256 KiB
	if err := os.WriteFile(filepath.Join(dir, "big.bin"), big, 0o644); err != nil {
		t.Fatal(err)
	}
	ts := startServer(t, func(cfg *Config, o *Options) { cfg.PublicDir = dir; cfg.MaxOutboundBytes = 1024 })
	c := dial(t, ts.addr)
	c.line()
	c.send(strings.Repeat("file big.bin\n", 4))
	got := make([]byte, len(big))
	for i := 0; i < 4; i++ {
		_ = c.c.SetReadDeadline(time.Now().Add(10 * time.Second))
		if _, err := io.ReadFull(c.r, got); err != nil {
			t.Fatalf("file %d: %v", i, err)
		}
		if !bytes.Equal(got, big) {
			t.Fatalf("file %d differs", i)
		}
		time.Sleep(20 * time.Millisecond) // a client that reads, slowly
	}
	expectShape(t, c.do("paramView x"), `{"status":"OK","context":"response","messageId":"UUID","messageCount":5}`)
}

// A client that asks for files and never reads is disconnected as a slow reader once a file request has
// waited the action time limit for the queue to drain; it is counted once.
func TestFileRequestsOfAClientThatDoesNotRead(t *testing.T) {
	dir := t.TempDir()
	if err := os.WriteFile(filepath.Join(dir, "big.bin"), make([]byte, 4<<20), 0o644); err != nil {
		t.Fatal(err)
	}
	reg := prometheus.NewRegistry()
	ts := startServer(t, func(cfg *Config, o *Options) {
		cfg.PublicDir, cfg.MaxOutboundBytes, cfg.ActionTimeout = dir, 1024, 200*time.Millisecond
		o.Metrics = reg
	})
	c := dial(t, ts.addr)
	c.send(strings.Repeat("file big.bin\n", 8))
	testutil.WaitFor(t, "the client that does not read to be disconnected", func() bool {
		return counterValue(t, reg, "switchboard_socket_slow_readers_total") != 0 && ts.Conns() == 0
	})
	time.Sleep(50 * time.Millisecond) // the remaining requests meet a closed connection
	if n := counterValue(t, reg, "switchboard_socket_slow_readers_total"); n != 1 {
		t.Fatalf("slow readers counted %v times, want 1", n)
	}
}

// counterValue reads a counter without labels from reg.
func counterValue(t *testing.T, reg *prometheus.Registry, name string) float64 {
	t.Helper()
	families, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, f := range families {
		if f.GetName() == name {
			return f.GetMetric()[0].GetCounter().GetValue()
		}
	}
	t.Fatalf("no metric %s", name)
	return 0
}
