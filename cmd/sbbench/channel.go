package main

import (
	"context"
	"fmt"
	"io"
	"net"
	"os"
	"runtime"
	"runtime/pprof"
	"strings"
	"testing/fstest"
	"time"

	"github.com/sirupsen/logrus"
	"github.com/spf13/cobra"

	"github.com/switchboard/switchboard/engine/bus"
	"github.com/switchboard/switchboard/engine/channel"
	"github.com/switchboard/switchboard/luabind"
)

func channelCmd() *cobra.Command {
	var (
		conns int
		dur   time.Duration
		size  int
		noLua bool
		prof  string
	)
	cmd := &cobra.Command{
		Use:   "channel",
		Short: "messages/s through text-messages channels with a Lua transform each way, against echo",
		Long: `channel first runs the echo baseline (same conns, duration and line size), then starts the
same in-process line-echo server as the upstream of --conns permanent text-messages channels
(one connection each). Each worker calls Channel.Request in a closed loop: the out transform
(Lua: prefix the message) runs, the line goes through the channel's outbox to the echo server,
comes back through the channel's framing reader, the in transform (Lua: strip the prefix) runs,
and the reply is checked. Prints both results and the channel rate as a fraction of echo.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			out := cmd.OutOrStdout()
			fmt.Fprintf(out, "sbbench channel: %d conns, %d-byte lines, %s, lua transforms %v, GOMAXPROCS %d\n",
				conns, size, dur, !noLua, runtime.GOMAXPROCS(0))
			base, err := runEchoBaseline(cmd.Context(), conns, dur, size)
			if err != nil {
				return err
			}
			printResult(out, "echo", base)
			if prof != "" {
				f, err := os.Create(prof)
				if err != nil {
					return err
				}
				defer f.Close()
				if err := pprof.StartCPUProfile(f); err != nil {
					return err
				}
				defer pprof.StopCPUProfile()
			}
			r, err := runChannelBench(cmd.Context(), conns, dur, size, !noLua)
			if err != nil {
				return err
			}
			printResult(out, "channel", r)
			printRatio(out, "channel", r, base)
			return nil
		},
	}
	f := cmd.Flags()
	f.IntVar(&conns, "conns", 50, "channels (one connection each) and concurrent workers")
	f.DurationVar(&dur, "duration", 5*time.Second, "how long each run lasts")
	f.IntVar(&size, "size", 64, "line size on the wire in bytes, newline included")
	f.StringVar(&prof, "cpuprofile", "", "write a CPU profile of the channel run to this file")
	f.BoolVar(&noLua, "no-lua", false, "run without transforms (to see what Lua costs)")
	return cmd
}

// benchPrefix is what the out transform adds and the in transform removes.
const benchPrefix = "> "

func runChannelBench(ctx context.Context, conns int, dur time.Duration, size int, withLua bool) (LoadResult, error) {
	if size < len(benchPrefix)+2 {
		return LoadResult{}, fmt.Errorf("channel: size must be >= %d, got %d", len(benchPrefix)+2, size)
	}
	srv, err := startEchoServer("127.0.0.1:0")
	if err != nil {
		return LoadResult{}, err
	}
	defer srv.Close()
	host, portStr, _ := net.SplitHostPort(srv.Addr())
	var port int
	fmt.Sscan(portStr, &port)

	l := logrus.New()
	l.Out = io.Discard
	log := logrus.NewEntry(l)
	b := bus.New(bus.Options{Log: log})
	defer b.Close()

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
		return LoadResult{}, err
	}
	defer rt.Close()
	if err := rt.Load(); err != nil {
		return LoadResult{}, fmt.Errorf("channel: scripts: %w", err)
	}
	opts := channel.Options{Configs: cfgs, Bus: b, Log: log}
	if withLua {
		opts.Transform = luabind.ChannelTransforms(rt)
	}
	set, err := channel.New(opts)
	if err != nil {
		return LoadResult{}, err
	}
	if err := set.Start(ctx); err != nil {
		return LoadResult{}, err
	}
	defer func() {
		sctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		_ = set.Shutdown(sctx)
	}()
	// Wait for every channel to connect so the run measures steady state.
	deadline := time.Now().Add(10 * time.Second)
	for _, name := range set.Names() {
		ch, _ := set.Channel(name)
		for {
			if st, _ := ch.State(); st == channel.StateUp {
				break
			}
			if time.Now().After(deadline) {
				return LoadResult{}, fmt.Errorf("channel %s: not connected after 10s", name)
			}
			time.Sleep(5 * time.Millisecond)
		}
	}

	body := strings.Repeat("x", size-1)
	if withLua {
		body = body[len(benchPrefix):] // the out transform adds the prefix back on the wire
	}
	return runClosedLoop(ctx, conns, dur, func(i int) (func() error, func(), error) {
		ch, _ := set.Channel(fmt.Sprintf("bench-%d", i))
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
