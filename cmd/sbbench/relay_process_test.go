package main

import (
	"bytes"
	"context"
	"strings"
	"testing"
	"time"
)

// TestRelayServerProcess runs `sbbench relay --server-process` for one tiny round: the engine built from
// this repository (relay part alone) against the amiforwarder process (--routes big), then against itself
// (--vs-engine: the second engine takes the forwarder's place with the same configuration and its own
// centers); every run checks that every acknowledged message reached the center.
func TestRelayServerProcess(t *testing.T) {
	if testing.Short() {
		t.Skip("builds the engine")
	}
	bin, err := buildEngine(context.Background(), t.TempDir(), "")
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		vs       string
		workload *relayWorkload
		base     string
	}{{"", &bigWorkload, "forwarder"}, {bin, &trueWorkload, "vs-engine"}} {
		var out bytes.Buffer
		cmp, err := runRelayProcesses(context.Background(), &out, relayProcOptions{
			workload: tc.workload, clients: 2, window: 16, dur: 300 * time.Millisecond, rounds: 1, engine: bin, vsEngine: tc.vs,
		})
		if err != nil {
			t.Fatalf("%v\n%s", err, out.String())
		}
		base, target := cmp.Base.Results[0], cmp.Target.Results[0]
		if base.Ops == 0 || target.Ops == 0 || base.Errors != 0 || target.Errors != 0 {
			t.Fatalf("runs: %+v\n%s", cmp, out.String())
		}
		if !strings.Contains(out.String(), "relay: rate ") || !strings.Contains(out.String(), "x of "+tc.base) {
			t.Fatalf("no ratio line against %s:\n%s", tc.base, out.String())
		}
	}
}
