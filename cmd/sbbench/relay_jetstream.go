package main

import (
	"context"
	"fmt"
	"io"
	"os"
	"sort"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/switchboard/switchboard/engine/relay"
	"github.com/switchboard/switchboard/internal/natstest"
)

// jsBenchOpts configure sbbench relay --journal jetstream.
type jsBenchOpts struct {
	clients, window int
	dur             time.Duration
	rounds          int
	natsURL         string
	servers         int
	replicas        int
	persist         string
	cpuprofile      string // of the (last) JetStream run
}

// runJetStreamComparison runs guaranteed mode on the local journal and on the JetStream journal, rounds
// times each, alternating, and prints both with their ratio.
func runJetStreamComparison(ctx context.Context, out io.Writer, o jsBenchOpts) error {
	url := o.natsURL
	where := url
	if url == "" {
		dir, err := os.MkdirTemp("", "sbbench-nats-")
		if err != nil {
			return err
		}
		defer os.RemoveAll(dir)
		cl, err := natstest.StartCluster("sbbench", o.servers, dir)
		if err != nil {
			return err
		}
		defer cl.Shutdown()
		url = cl.URL()
		where = fmt.Sprintf("%d embedded NATS servers clustered on loopback", o.servers)
	}
	nc, err := nats.Connect(url, nats.MaxReconnects(-1))
	if err != nil {
		return fmt.Errorf("nats %s: %w", url, err)
	}
	defer nc.Close()
	fmt.Fprintf(out, "sbbench relay: %d clients, window %d, %s, guaranteed: local journal vs JetStream journal (R%d, %s)\n",
		o.clients, o.window, o.dur, o.replicas, where)
	var rates, p99s []float64
	for round := 1; round <= o.rounds; round++ {
		var cpuLocal, cpuJS time.Duration
		local, err := runRelayBench(ctx, o.clients, o.window, o.dur, relayBenchJournal{guaranteed: true, persist: o.persist}, &cpuLocal)
		if err != nil {
			return fmt.Errorf("local journal: %w", err)
		}
		printResult(out, "local", local)
		id := fmt.Sprintf("bench-%d-%d", os.Getpid(), round)
		stopProfile := func() {}
		if round == o.rounds {
			if stopProfile, err = startCPUProfile(o.cpuprofile); err != nil {
				return err
			}
		}
		js, err := runRelayBench(ctx, o.clients, o.window, o.dur, relayBenchJournal{guaranteed: true, replicas: o.replicas, relayID: id,
			jetstream: &relay.ClusterOptions{Conn: nc, Name: "sbbench", NodeID: "sbbench"}}, &cpuJS)
		stopProfile()
		cleanupJetStream(nc, id)
		if err != nil {
			return fmt.Errorf("jetstream journal: %w", err)
		}
		printResult(out, "jetstream", js)
		fmt.Fprintf(out, "round %d      jetstream rate %.2fx of the local journal (%.0f vs %.0f msgs/s); ack p99 %s vs %s; cpu/msg %dns vs %dns\n",
			round, js.Rate/local.Rate, js.Rate, local.Rate, fmtDur(js.P99), fmtDur(local.P99), cpuJS.Nanoseconds(), cpuLocal.Nanoseconds())
		rates = append(rates, js.Rate/local.Rate)
		p99s = append(p99s, float64(js.P99)/float64(max(local.P99, 1)))
	}
	if len(rates) > 1 {
		sort.Float64s(rates)
		sort.Float64s(p99s)
		fmt.Fprintf(out, "rounds       %d, jetstream rate ratio min %.2fx median %.2fx max %.2fx; ack p99 ratio median %.2fx\n",
			len(rates), rates[0], rates[len(rates)/2], rates[len(rates)-1], p99s[len(p99s)/2])
	}
	return nil
}

// cleanupJetStream deletes the stream and buckets a bench run made (a NATS given by --nats-url keeps
// nothing of sbbench).
func cleanupJetStream(nc *nats.Conn, relayID string) {
	js, err := jetstream.New(nc)
	if err != nil {
		return
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	base := "sbbench_relay_" + relayToken(relayID)
	_ = js.DeleteStream(ctx, base)
	for _, b := range []string{base, base + "_lease", base + "_objects"} {
		_ = js.DeleteKeyValue(ctx, b)
	}
}

// relayToken is the relay id as the relay names its stream (letters and digits kept, '-' written -2d).
func relayToken(id string) string {
	var b []byte
	for i := 0; i < len(id); i++ {
		c := id[i]
		if c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' {
			b = append(b, c)
			continue
		}
		b = append(b, fmt.Sprintf("-%02x", c)...)
	}
	return string(b)
}
