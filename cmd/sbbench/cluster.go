package main

import (
	"context"
	"fmt"
	"net"
	"os"
	"runtime"
	"strings"
	"sync/atomic"
	"time"

	"github.com/nats-io/nats-server/v2/server"
	"github.com/spf13/cobra"

	"github.com/switchboard/switchboard/engine/bus"
	"github.com/switchboard/switchboard/engine/cluster"
)

func clusterTopicCmd() *cobra.Command {
	var (
		dur     time.Duration
		size    int
		rounds  int
		window  int
		natsURL string
		prof    string
	)
	cmd := &cobra.Command{
		Use:   "cluster-topic",
		Short: "topic messages/s from one node to a subscriber on another, against the local bus",
		Long: `cluster-topic compares two runs with the same payload, alternating in --rounds slices of
--duration so that outside load falls on both alike:
  local:  one bus; a publisher publishes --size-byte strings to a topic with one queued subscriber;
  remote: two nodes (two buses with the NATS backplane, two pairs of connections) on one NATS
          server; the publisher publishes on node A, the subscriber is on node B.
Both publishers keep at most --window messages in flight (published, not yet handled; at most
8 MiB of them), so that neither run measures drops. NATS is a server embedded in this process (JetStream on, loopback),
unless --nats-url names one. Prints each round, both totals and the remote rate as a fraction
of the local one.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			out := cmd.OutOrStdout()
			if rounds < 1 || window < 1 || size < 0 {
				return fmt.Errorf("cluster-topic: --rounds and --window must be >= 1 and --size >= 0")
			}
			url, stop, err := natsServerFor(natsURL)
			if err != nil {
				return err
			}
			defer stop()
			fmt.Fprintf(out, "sbbench cluster-topic: %d-byte strings, %s, window %d, GOMAXPROCS %d, NATS %s\n",
				size, dur, min(window, max((8<<20)/(size+64), 1)), runtime.GOMAXPROCS(0), url)
			// Keep what is in flight within the bounds a subscriber's queue has by default (16 MiB), so
			// that neither run loses messages to a full queue.
			if limit := (8 << 20) / (size + 64); window > limit {
				window = max(limit, 1)
			}
			b, err := newClusterBench(url, window)
			if err != nil {
				return err
			}
			defer b.close()
			stopProfile, err := startCPUProfile(prof)
			if err != nil {
				return err
			}
			defer stopProfile()
			var payload any = strings.Repeat("x", size)
			var local, remote LoadResult
			var localCPU, remoteCPU time.Duration
			slice := dur / time.Duration(rounds)
			for i := range rounds {
				l, lc := b.run(cmd.Context(), b.localPub, &b.localGot, payload, slice)
				r, rc := b.run(cmd.Context(), b.remotePub, &b.remoteGot, payload, slice)
				fmt.Fprintf(out, "round %d: local %.0f msgs/s, remote %.0f msgs/s (%.2fx)\n", i+1, l.Rate, r.Rate, r.Rate/l.Rate)
				local, remote = addResult(local, l), addResult(remote, r)
				localCPU, remoteCPU = localCPU+lc, remoteCPU+rc
			}
			printResult(out, "local", local)
			printResult(out, "remote", remote)
			// CPU time of this process (publisher, subscribers, both nodes and the embedded NATS server) per
			// message: outside load changes the rates more than it changes this.
			fmt.Fprintf(out, "cpu per message: local %.0f ns, remote %.0f ns (%.2fx)\n",
				perMsg(localCPU, local.Ops), perMsg(remoteCPU, remote.Ops), perMsg(remoteCPU, remote.Ops)/perMsg(localCPU, local.Ops))
			fmt.Fprintf(out, "remote rate %.2fx of local (%.0f vs %.0f msgs/s); unsent %d, dropped local %d remote %d\n",
				remote.Rate/local.Rate, remote.Rate, local.Rate, b.unsent.Load(), b.localSub.Dropped(), b.remoteSub.Dropped())
			return nil
		},
	}
	cmd.Flags().DurationVar(&dur, "duration", 10*time.Second, "total measuring time of each run")
	cmd.Flags().IntVar(&size, "size", 64, "payload bytes (a string)")
	cmd.Flags().IntVar(&rounds, "rounds", 5, "alternating slices")
	cmd.Flags().IntVar(&window, "window", 65536, "messages in flight at most")
	cmd.Flags().StringVar(&prof, "cpuprofile", "", "write a CPU profile of the whole run to this file")
	cmd.Flags().StringVar(&natsURL, "nats-url", "", "a NATS server with JetStream (default: one embedded in this process)")
	return cmd
}

// natsServerFor returns url, or, when it is empty, the URL of a NATS server embedded in this process
// (stop shuts it down).
func natsServerFor(url string) (string, func(), error) {
	if url != "" {
		return url, func() {}, nil
	}
	ns, u, err := embeddedNATS()
	if err != nil {
		return "", nil, err
	}
	return u, ns.Shutdown, nil
}

func embeddedNATS() (*server.Server, string, error) {
	dir, err := os.MkdirTemp("", "sbbench-nats-")
	if err != nil {
		return nil, "", err
	}
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, "", err
	}
	port := l.Addr().(*net.TCPAddr).Port
	_ = l.Close()
	ns, err := server.NewServer(&server.Options{Host: "127.0.0.1", Port: port, JetStream: true, StoreDir: dir, NoLog: true, NoSigs: true})
	if err != nil {
		return nil, "", err
	}
	go ns.Start()
	if !ns.ReadyForConnections(10 * time.Second) {
		return nil, "", fmt.Errorf("embedded NATS server did not start")
	}
	return ns, fmt.Sprintf("nats://127.0.0.1:%d", port), nil
}

type clusterBench struct {
	window              int
	local, a, b         *bus.Bus
	na, nb              *cluster.Node
	localSub, remoteSub *bus.Subscription
	localGot, remoteGot atomic.Int64
	unsent              atomic.Int64
}

const benchTopic = "bench.ticks"

func newClusterBench(url string, window int) (*clusterBench, error) {
	cb := &clusterBench{window: window}
	queue := bus.QueueSize(4 * window)
	cb.local = bus.New(bus.Options{})
	var err error
	if cb.localSub, err = cb.local.Subscribe(benchTopic, func(bus.Message) { cb.localGot.Add(1) }, queue); err != nil {
		return nil, err
	}
	cfg := cluster.DefaultConfig()
	cfg.NATSURL, cfg.Name = url, "sbbench"
	cfg.NodeID = "a"
	if cb.na, err = cluster.New(cfg, cluster.Options{}); err != nil {
		return nil, err
	}
	cfg.NodeID = "b"
	if cb.nb, err = cluster.New(cfg, cluster.Options{}); err != nil {
		return nil, err
	}
	cb.a = bus.New(bus.Options{Backplane: cb.na.Backplane(nil)})
	cb.b = bus.New(bus.Options{Backplane: cb.nb.Backplane(nil)})
	if cb.remoteSub, err = cb.b.Subscribe(benchTopic, func(bus.Message) { cb.remoteGot.Add(1) }, queue); err != nil {
		return nil, err
	}
	// The subscription reaches the server asynchronously: wait until a message gets through.
	deadline := time.Now().Add(10 * time.Second)
	for cb.remoteGot.Load() == 0 {
		if time.Now().After(deadline) {
			return nil, fmt.Errorf("cluster-topic: no message reached node b")
		}
		cb.a.Publish(benchTopic, "probe")
		time.Sleep(20 * time.Millisecond)
	}
	time.Sleep(100 * time.Millisecond)
	return cb, nil
}

func (cb *clusterBench) localPub(p any)  { cb.local.Publish(benchTopic, p) }
func (cb *clusterBench) remotePub(p any) { cb.a.Publish(benchTopic, p) }

func perMsg(cpu time.Duration, n int64) float64 {
	if n == 0 {
		return 0
	}
	return float64(cpu.Nanoseconds()) / float64(n)
}

// run publishes for d with at most window messages in flight, then waits for the last ones. It returns
// the process CPU time the run took too.
func (cb *clusterBench) run(ctx context.Context, publish func(any), got *atomic.Int64, payload any, d time.Duration) (LoadResult, time.Duration) {
	cpu0 := processCPU()
	start := time.Now()
	base := got.Load()
	var sent int64
	var ms0, ms1 runtime.MemStats
	runtime.ReadMemStats(&ms0)
	for time.Since(start) < d && ctx.Err() == nil {
		for range 256 {
			for sent-(got.Load()-base) >= int64(cb.window) {
				time.Sleep(20 * time.Microsecond) // leave the cores to the pipeline
			}
			publish(payload)
			sent++
		}
	}
	drain := time.Now().Add(5 * time.Second)
	for got.Load()-base < sent && time.Now().Before(drain) {
		time.Sleep(100 * time.Microsecond)
	}
	el := time.Since(start)
	runtime.ReadMemStats(&ms1)
	n := got.Load() - base
	r := LoadResult{Ops: n, Duration: el, Rate: float64(n) / el.Seconds(), Errors: sent - n}
	if n > 0 {
		r.Allocs = float64(ms1.Mallocs-ms0.Mallocs) / float64(n)
	}
	return r, processCPU() - cpu0
}

func (cb *clusterBench) close() {
	for _, b := range []*bus.Bus{cb.local, cb.a, cb.b} {
		if b != nil {
			b.Close()
		}
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	for _, n := range []*cluster.Node{cb.na, cb.nb} {
		if n != nil {
			_ = n.Shutdown(ctx)
		}
	}
}
