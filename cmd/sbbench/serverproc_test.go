package main

import (
	"bytes"
	"context"
	"errors"
	"os"
	"strconv"
	"strings"
	"testing"
	"time"

	"go.uber.org/goleak"
)

func TestParseProcStatCPU(t *testing.T) {
	// field 2 may hold spaces and parentheses; utime (14) = 1234, stime (15) = 56
	line := "4242 (a) b (c) S 1 4242 4242 0 -1 4194560 100 0 0 0 1234 56 0 0 20 0 3 0 999 1000000 200 18446744073709551615\n"
	u, s, err := parseProcStatCPU([]byte(line))
	if err != nil || u != 1234 || s != 56 {
		t.Fatalf("parseProcStatCPU = %d, %d, %v; want 1234, 56", u, s, err)
	}
	for _, bad := range []string{"", "4242 no parenthesis", "4242 (x) S 1 2", "4242 (x) S 1 4242 4242 0 -1 4194560 100 0 0 0 x 56 0",
		"4242 (x) S 1 4242 4242 0 -1 4194560 100 0 0 0 12 y 0"} {
		if _, _, err := parseProcStatCPU([]byte(bad)); err == nil {
			t.Errorf("parseProcStatCPU(%q): no error", bad)
		}
	}
}

func TestProcCPUTimeGrowsWithWork(t *testing.T) {
	if ct := clockTicks(); ct == 0 || ct > 10000 {
		t.Fatalf("clockTicks = %d", ct)
	}
	c0, err := procCPUTime(os.Getpid())
	if err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(30 * time.Second)
	x := uint64(1)
	for {
		for i := 0; i < 1e6; i++ { // spin: the CPU time moves one clock tick (10 ms) at a time
			x = x*6364136223846793005 + 1442695040888963407
		}
		c1, err := procCPUTime(os.Getpid())
		if err != nil {
			t.Fatal(err)
		}
		if c1.Total() > c0.Total() {
			if c1.User < c0.User || c1.System < c0.System {
				t.Fatalf("CPU time went back: %+v then %+v", c0, c1)
			}
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("CPU time stayed at %v after 30 s of spinning (%d)", c0, x)
		}
	}
	if _, err := procCPUTime(-1); err == nil {
		t.Fatal("no error for a pid that cannot exist")
	}
}

// TestServerProcessRound runs the harness end to end on two processes of the echo baseline: build from the
// embedded source, start on free ports, one alternating round, CPU read from /proc, stop.
func TestServerProcessRound(t *testing.T) {
	defer goleak.VerifyNone(t)
	ctx := context.Background()
	dir := t.TempDir()
	bin, err := buildBaseline(ctx, dir, "echoserver")
	if err != nil {
		t.Fatal(err)
	}
	start := func(name string) (*serverProcess, string) {
		addr, err := freeAddr()
		if err != nil {
			t.Fatal(err)
		}
		p, err := startServerProcess(ctx, name, bin, dir, []string{"-listen", addr}, addr)
		if err != nil {
			t.Fatal(err)
		}
		return p, addr
	}
	a, aAddr := start("echo-a")
	b, bAddr := start("echo-b")
	side := func(name string, p *serverProcess, addr string) procSide {
		return procSide{name: name, proc: p, run: func(ctx context.Context) (LoadResult, error) {
			return runEcho(ctx, addr, 2, 200*time.Millisecond, 64)
		}}
	}
	var out bytes.Buffer
	cmp, err := compareProcesses(ctx, &out, 1, side("echo-a", a, aAddr), side("echo-b", b, bAddr))
	if err != nil {
		t.Fatal(err)
	}
	if len(cmp.Base.Results) != 1 || len(cmp.Target.Results) != 1 || cmp.Base.Results[0].Ops == 0 || cmp.Target.Results[0].Ops == 0 {
		t.Fatalf("runs: %+v", cmp)
	}
	if cmp.RateRatio <= 0 || cmp.PairedRateRatio != cmp.RateRatio {
		t.Fatalf("rate ratio %v", cmp.RateRatio)
	}
	for _, want := range []string{"round 1\n", "echo-a       server cpu/op", "echo-b       server cpu/op", "(user ", ", system ", "medians of 1 rounds (server processes):", "echo-b: rate ", "per-round ratios, median: rate "} {
		if !strings.Contains(out.String(), want) {
			t.Errorf("output lacks %q:\n%s", want, out.String())
		}
	}
	for _, p := range []*serverProcess{a, b} {
		pid := p.Pid()
		if err := p.Stop(); err != nil {
			t.Fatalf("stop: %v", err)
		}
		if _, err := os.Stat("/proc/" + strconv.Itoa(pid)); !errors.Is(err, os.ErrNotExist) {
			t.Fatalf("process %d still there after Stop: %v", pid, err)
		}
		if _, err := p.CPUTime(); err == nil {
			t.Fatal("CPU time of a stopped process")
		}
	}
}

func TestServerProcessExitsBeforeListening(t *testing.T) {
	ctx := context.Background()
	dir := t.TempDir()
	bin, err := buildBaseline(ctx, dir, "echoserver")
	if err != nil {
		t.Fatal(err)
	}
	addr, err := freeAddr()
	if err != nil {
		t.Fatal(err)
	}
	_, err = startServerProcess(ctx, "echo", bin, dir, []string{"-listen", "256.0.0.1:1"}, addr)
	if err == nil || !strings.Contains(err.Error(), "echo: exited before listening on "+addr) || !strings.Contains(err.Error(), "echoserver: listen tcp") {
		t.Fatalf("err = %v", err)
	}
	if _, err := buildBaseline(ctx, dir, "nosuchbaseline"); err == nil {
		t.Fatal("no error for a baseline that does not exist")
	}
}

// TestSocketServerProcess runs `sbbench socket --server-process` for one tiny round: the engine built from
// this repository with the shipped scripts against the echo process, then against itself (--vs-engine).
func TestSocketServerProcess(t *testing.T) {
	if testing.Short() {
		t.Skip("builds the engine")
	}
	bin, err := buildEngine(context.Background(), t.TempDir(), "")
	if err != nil {
		t.Fatal(err)
	}
	for _, vs := range []string{"", bin} {
		var out bytes.Buffer
		cmp, err := runSocketProcesses(context.Background(), &out, socketProcOptions{
			engine: bin, vsEngine: vs, scripts: "../../scripts", conns: 2, dur: 300 * time.Millisecond,
			request: "randomNumber", pipeline: 1, rounds: 1,
		})
		if err != nil {
			t.Fatalf("%v\n%s", err, out.String())
		}
		if cmp.Base.Results[0].Ops == 0 || cmp.Target.Results[0].Ops == 0 {
			t.Fatalf("runs: %+v\n%s", cmp, out.String())
		}
		want := "socket: rate "
		if vs != "" {
			want = "vs-engine    server cpu/op"
		}
		if !strings.Contains(out.String(), want) {
			t.Fatalf("output lacks %q:\n%s", want, out.String())
		}
	}
}
