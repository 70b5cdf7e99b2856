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
