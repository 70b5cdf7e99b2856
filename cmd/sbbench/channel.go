package main

import (
	"context"
	"fmt"
	"io"
	"net"
	"runtime"
	"strings"
	"testing/fstest"
	"time"

	"github.com/sirupsen/logrus"
	"github.com/spf13/cobra"

	"github.com/switchboard/switchboard/engine/bus"
	"github.com/switchboard/switchboard/engine/channel"
	"github.com/switchboard/switchboard/engine/channel/channellua"
	"github.com/switchboard/switchboard/luabind"
)

func channelCmd() *cobra.Command {
	var (
		conns  int
		dur    time.Duration
		size   int
		noLua  bool
		prof   string
		rounds int
	)
	cmd := &cobra.Command{
		Use:   "channel",
		Short: "messages/s through text-messages channels with a Lua transform each way, against echo",
		Long: `channel compares two closed loops with the same conns and line size, alternating in --rounds
slices of --duration so that outside load falls on both alike:
  echo:    the echo baseline (client lines to a bare Go line-echo server);
  channel: --conns permanent text-messages channels (one connection each) to the same kind of
           echo server. Each worker calls Channel.Request in a loop: the out transform (Lua: add a
           prefix) runs, the line goes through the channel's outbox to the server, comes back
           through the channel's framing reader, the in transform (Lua: strip the prefix) runs and
           the reply is checked.
Prints each round, both totals and the channel rate as a fraction of echo.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			out := cmd.OutOrStdout()
			fmt.Fprintf(out, "sbbench channel: %d conns, %d-byte lines, %s, lua transforms %v, GOMAXPROCS %d\n",
				conns, size, dur, !noLua, runtime.GOMAXPROCS(0))
			bench, err := newChannelBench(cmd.Context(), conns, size, !noLua)
			if err != nil {
				return err
			}
			defer bench.close()
			// Echo and channel alternate in short rounds so that load from elsewhere on the machine falls
			// on both alike; the totals are compared.
			if rounds < 1 {
				return fmt.Errorf("channel: --rounds must be >= 1, got %d", rounds)
			}
			stopProfile, err := startCPUProfile(prof)
			if err != nil {
				return err
			}
			defer stopProfile()
			var base, r LoadResult
			slice := dur / time.Duration(rounds)
			for i := 0; i < rounds; i++ {
				b, err := runEchoBaseline(cmd.Context(), conns, slice, size)
				if err != nil {
					return err
				}
				c, err := bench.run(cmd.Context(), slice)
				if err != nil {
					return err
				}
				fmt.Fprintf(out, "round %d: echo %.0f ops/s, channel %.0f ops/s (%.2fx)\n", i+1, b.Rate, c.Rate, c.Rate/b.Rate)
				base, r = addResult(base, b), addResult(r, c)
			}
			printResult(out, "echo", base)
			printResult(out, "channel", r)
			printRatio(out, "channel", r, base)
			return nil
		},
	}
	f := cmd.Flags()
	f.IntVar(&conns, "conns", 50, "channels (one connection each) and concurrent workers")
	f.DurationVar(&dur, "duration", 5*time.Second, "total time of each side, split between rounds")
	f.IntVar(&size, "size", 64, "line size on the wire in bytes, newline included")
	f.IntVar(&rounds, "rounds", 5, "alternate echo and channel this many times (duration is split between rounds)")
	f.StringVar(&prof, "cpuprofile", "", "write a CPU profile of the whole run (echo rounds included) to this file")
	f.BoolVar(&noLua, "no-lua", false, "run without transforms (to see what Lua costs)")
	return cmd
}

// benchPrefix is what the out transform adds and the in transform removes.
const benchPrefix = "> "

// addResult sums two runs of equal setup: ops, durations and errors add; latencies and allocations are
// weighted by ops.
func addResult(a, b LoadResult) LoadResult {
	ops := a.Ops + b.Ops
	if ops == 0 {
		return b
	}
	w := func(x, y float64) float64 { return (x*float64(a.Ops) + y*float64(b.Ops)) / float64(ops) }
	out := LoadResult{Ops: ops, Duration: a.Duration + b.Duration, Errors: a.Errors + b.Errors,
		P50: time.Duration(w(float64(a.P50), float64(b.P50))), P99: time.Duration(w(float64(a.P99), float64(b.P99))),
		Allocs: w(a.Allocs, b.Allocs)}
	if out.Duration > 0 {
		out.Rate = float64(ops) / out.Duration.Seconds()
	}
	return out
}

// channelBench is the channel side: an echo upstream, a script generation and the channels, set up once.
type channelBench struct {
	set   *channel.Set
	body  string
	close func()
	conns int
}

func newChannelBench(ctx context.Context, conns, size int, withLua bool) (*channelBench, error) {
	if size < len(benchPrefix)+2 {
		return nil, fmt.Errorf("channel: size must be >= %d, got %d", len(benchPrefix)+2, size)
	}
	var closers []func()
	cleanup := func() {
		for i := len(closers) - 1; i >= 0; i-- {
			closers[i]()
		}
	}
	ok := false
	defer func() {
		if !ok {
			cleanup()
		}
	}()
	srv, err := startEchoServer("127.0.0.1:0")
	if err != nil {
		return nil, err
	}
	closers = append(closers, func() { srv.Close() })
	host, portStr, _ := net.SplitHostPort(srv.Addr())
	var port int
	fmt.Sscan(portStr, &port)

	l := logrus.New()
	l.Out = io.Discard
	log := logrus.NewEntry(l)
	b := bus.New(bus.Options{Log: log})
	closers = append(closers, b.Close)

	var script strings.Builder
	script.WriteString("local sb = require \"switchboard\"\n")
	script.WriteString("local function out(msg) return \"" + benchPrefix + "\" .. msg end\n")
	script.WriteString("local function inb(msg) return string.sub(msg, " + fmt.Sprint(len(benchPrefix)+1) + ") end\n")
	cfgs := make([]channel.Config, conns)
	for i := range cfgs {
		c := channel.DefaultConfig()
		c.Name, c.Host, c.Port, c.Permanent = fmt.Sprintf("bench-%d", i), host, port, true
		c.ReconnectionTimeout = 100 * time.Millisecond
		cfgs[i] = c
		fmt.Fprintf(&script, "sb.transform(%q, \"out\", out)\nsb.transform(%q, \"in\", inb)\n", c.Name, c.Name)
	}
	lcfg := luabind.DefaultConfig()
	rt, err := luabind.New(luabind.Options{Config: lcfg, Log: log,
		FS: fstest.MapFS{"bench.lua": &fstest.MapFile{Data: []byte(script.String())}}})
	if err != nil {
		return nil, err
	}
	closers = append(closers, rt.Close)
	opts := channel.Options{Bus: b, Log: log}
	if withLua {
		opts.Transform = channellua.Transforms(rt)
	}
	set, err := channel.New(cfgs, opts)
	if err != nil {
		return nil, err
	}
	if err := rt.Bind(channellua.New(set)); err != nil {
		return nil, err
	}
	if err := rt.Load(); err != nil {
		return nil, fmt.Errorf("channel: scripts: %w", err)
	}
	if err := set.Start(ctx); err != nil {
		return nil, err
	}
	closers = append(closers, func() {
		sctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		_ = set.Shutdown(sctx)
	})
	// Wait for every channel to connect so the run measures steady state.
	deadline := time.Now().Add(10 * time.Second)
	for _, name := range set.Names() {
		ch, _ := set.Channel(name)
		for {
			if st, _ := ch.State(); st == channel.StateUp {
				break
			}
			if time.Now().After(deadline) {
				return nil, fmt.Errorf("channel %s: not connected after 10s", name)
			}
			time.Sleep(5 * time.Millisecond)
		}
	}

	body := strings.Repeat("x", size-1)
	if withLua {
		body = body[len(benchPrefix):] // the out transform adds the prefix back on the wire
	}
	ok = true
	return &channelBench{set: set, body: body, close: cleanup, conns: conns}, nil
}

// run drives every channel with one closed-loop worker for dur.
func (cb *channelBench) run(ctx context.Context, dur time.Duration) (LoadResult, error) {
	body := cb.body
	return runClosedLoop(ctx, cb.conns, dur, func(i int) (func() error, func(), error) {
		ch, _ := cb.set.Channel(fmt.Sprintf("bench-%d", i))
		do := func() error {
			r, err := ch.Request(ctx, body, 10*time.Second)
			if err != nil {
				return err
			}
			if s, _ := r.(string); s != body {
				return fmt.Errorf("channel: got %.40q back", r)
			}
			return nil
		}
		return do, func() {}, nil
	})
}
