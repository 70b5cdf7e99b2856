package main

import (
	"bytes"
	"context"
	"strings"
	"testing"
	"time"
)

// TestRelayServerProcess runs `sbbench relay --server-process --routes big` for one tiny round: the engine
// built from this repository (relay part alone) against the amiforwarder process; both runs check that
// every acknowledged message reached the center.
func TestRelayServerProcess(t *testing.T) {
	if testing.Short() {
		t.Skip("builds the engine")
	}
	var out bytes.Buffer
	cmp, err := runRelayProcesses(context.Background(), &out, relayProcOptions{
		workload: &bigWorkload, clients: 2, window: 16, dur: 300 * time.Millisecond, rounds: 1,
	})
	if err != nil {
		t.Fatalf("%v\n%s", err, out.String())
	}
	if cmp.Base.Results[0].Ops == 0 || cmp.Target.Results[0].Ops == 0 || cmp.Target.Results[0].Errors != 0 {
		t.Fatalf("runs: %+v\n%s", cmp, out.String())
	}
	if !strings.Contains(out.String(), "relay: rate ") {
		t.Fatalf("no ratio line:\n%s", out.String())
	}
}

// TestRelayServerProcessVsEngine is the before/after form: a second engine (here the same build) takes the
// forwarder's place, with the same configuration and its own centers, and its messages are checked too.
func TestRelayServerProcessVsEngine(t *testing.T) {
	if testing.Short() {
		t.Skip("builds the engine")
	}
	bin, err := buildEngine(context.Background(), t.TempDir(), "")
	if err != nil {
		t.Fatal(err)
	}
	var out bytes.Buffer
	cmp, err := runRelayProcesses(context.Background(), &out, relayProcOptions{
		workload: &trueWorkload, clients: 2, window: 16, dur: 300 * time.Millisecond, rounds: 1, engine: bin, vsEngine: bin,
	})
	if err != nil {
		t.Fatalf("%v\n%s", err, out.String())
	}
	if cmp.Base.Results[0].Ops == 0 || cmp.Target.Results[0].Ops == 0 || cmp.Base.Results[0].Errors != 0 {
		t.Fatalf("runs: %+v\n%s", cmp, out.String())
	}
	if !strings.Contains(out.String(), "relay: rate ") || !strings.Contains(out.String(), "of vs-engine") {
		t.Fatalf("no ratio line:\n%s", out.String())
	}
}
