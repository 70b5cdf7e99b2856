package main

import (
	"bytes"
	"context"
	"errors"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"go.uber.org/goleak"
)

func TestLatencyHistQuantiles(t *testing.T) {
	var h latencyHist
	for i := 1; i <= 1000; i++ {
		h.record(time.Duration(i) * time.Microsecond)
	}
	for _, c := range []struct {
		q    float64
		want time.Duration
	}{{0.5, 500 * time.Microsecond}, {0.99, 990 * time.Microsecond}, {1, time.Millisecond}} {
		got := h.quantile(c.q)
		if diff := float64(got-c.want) / float64(c.want); diff < -0.02 || diff > 0.02 {
			t.Errorf("q%.2f = %v, want %v ±2%%", c.q, got, c.want)
		}
	}
	// exact for tiny values, clamped for huge ones, bucket middles inside their bucket
	if histValue(histIndex(17)) != 17 {
		t.Fatal("values below 64ns must be exact")
	}
	if histIndex(1<<62) != histBuckets-1 {
		t.Fatal("huge value not clamped")
	}
	for _, v := range []uint64{64, 100, 127, 128, 1000, 123456789, 1 << 40} {
		i := histIndex(v)
		if got := histValue(i); histIndex(got) != i {
			t.Errorf("bucket %d of %d: middle %d falls in bucket %d", i, v, got, histIndex(got))
		}
	}
	var empty latencyHist
	if empty.quantile(0.5) != 0 {
		t.Fatal("empty histogram")
	}
}

func TestClosedLoopCountsAndStopsOnError(t *testing.T) {
	var closed atomic.Int32
	r, err := runClosedLoop(context.Background(), 3, 100*time.Millisecond, func(i int) (func() error, func(), error) {
		n := 0
		return func() error {
			n++
			if i == 2 && n == 5 {
				return errors.New("broken")
			}
			time.Sleep(time.Millisecond)
			return nil
		}, func() { closed.Add(1) }, nil
	})
	if err != nil {
		t.Fatal(err)
	}
	if r.Errors != 1 || r.Ops < 10 || r.P50 < time.Millisecond || r.Rate <= 0 {
		t.Fatalf("result %+v", r)
	}
	if closed.Load() != 3 {
		t.Fatalf("close called %d times, want 3", closed.Load())
	}
	if _, err := runClosedLoop(context.Background(), 2, time.Second, func(i int) (func() error, func(), error) {
		if i == 1 {
			return nil, nil, errors.New("no route")
		}
		return func() error { return nil }, func() { closed.Add(1) }, nil
	}); err == nil || !strings.Contains(err.Error(), "worker 1") {
		t.Fatalf("setup error: %v", err)
	}
}

func TestClosedLoopUnblocksStuckWorkers(t *testing.T) {
	unblock := make(chan struct{})
	r, err := runClosedLoop(context.Background(), 1, 50*time.Millisecond, func(int) (func() error, func(), error) {
		first := true
		return func() error {
			if first {
				first = false
				return nil
			}
			<-unblock // a peer that never answers
			return errors.New("closed")
		}, func() { close(unblock) }, nil
	})
	if err != nil || r.Ops != 1 || r.Errors != 1 {
		t.Fatalf("%+v %v", r, err)
	}
}

func TestEchoBaselineAndOutput(t *testing.T) {
	defer goleak.VerifyNone(t)
	r, err := runEchoBaseline(context.Background(), 4, 200*time.Millisecond, 64)
	if err != nil {
		t.Fatal(err)
	}
	if r.Ops == 0 || r.Errors != 0 || r.P50 <= 0 || r.P99 < r.P50 {
		t.Fatalf("echo result %+v", r)
	}
	var buf bytes.Buffer
	printResult(&buf, "echo", r)
	printRatio(&buf, "socket", LoadResult{Rate: r.Rate / 2, P50: 2 * r.P50, P99: 2 * r.P99}, r)
	out := buf.String()
	if !strings.Contains(out, "ops/s") || !strings.Contains(out, "rate 0.50x of echo") || !strings.Contains(out, "p50 2.00x") {
		t.Fatalf("output:\n%s", out)
	}

	cmd := echoCmd()
	cmd.SetArgs([]string{"--conns", "2", "--duration", "100ms", "--size", "16"})
	buf.Reset()
	cmd.SetOut(&buf)
	if err := cmd.Execute(); err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(buf.String(), "sbbench echo: 2 conns, 16-byte lines") || !strings.Contains(buf.String(), "errors 0") {
		t.Fatalf("echo command output:\n%s", buf.String())
	}
}

func TestEchoExternalAddr(t *testing.T) {
	srv, err := startEchoServer("127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer srv.Close()
	r, err := runEcho(context.Background(), srv.Addr(), 2, 100*time.Millisecond, 1)
	if err != nil || r.Ops == 0 {
		t.Fatalf("%+v %v", r, err)
	}
	if _, err := runEcho(context.Background(), "127.0.0.1:1", 1, time.Second, 8); err == nil {
		t.Fatal("dialing a closed port succeeded")
	}
}

func TestEchoThousandConnections(t *testing.T) {
	if testing.Short() {
		t.Skip("2000 sockets")
	}
	r, err := runEchoBaseline(context.Background(), 1000, 300*time.Millisecond, 64)
	if err != nil {
		t.Fatal(err)
	}
	if r.Errors != 0 || r.Ops < 1000 {
		t.Fatalf("1000 conns: %+v", r)
	}
}
