package main

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"net"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/spf13/cobra"

	"github.com/switchboard/switchboard/engine/cluster"
	"github.com/switchboard/switchboard/engine/socket"
	"github.com/switchboard/switchboard/engine/socket/roomscluster"
)

func clusterSayCmd() *cobra.Command {
	var (
		dur     time.Duration
		rate    int
		members int
		size    int
		natsURL string
	)
	cmd := &cobra.Command{
		Use:   "cluster-say",
		Short: "latency of a say from a member on one node to the members on another, at a fixed rate",
		Long: `cluster-say runs two nodes in this process (two cluster nodes, each with its socket server
and the cluster's rooms) on one NATS server, one member of defaultRoom on node A and --members on node B,
all real TCP clients of the socket servers. The member on A says --rate messages a second for --duration
("say defaultRoom <seq> <unix ns> <padding to --size bytes>"); each member on B reads the chat lines and
takes the time from just before the say was written to when its line was read: client to server A,
server A to NATS, NATS to server B, server B to the client. The same run is then made with the members
on node A itself (local delivery) for comparison. Prints p50, p99 and max of each and what was lost.
NATS is a server embedded in this process (loopback) unless --nats-url names one.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			out := cmd.OutOrStdout()
			if rate < 1 || members < 1 || size < 0 {
				return fmt.Errorf("cluster-say: --rate and --members must be >= 1 and --size >= 0")
			}
			url, stop, err := natsServerFor(natsURL)
			if err != nil {
				return err
			}
			defer stop()
			fmt.Fprintf(out, "sbbench cluster-say: %d says/s for %s, %d-byte messages, %d member(s) listening, GOMAXPROCS %d, NATS %s\n",
				rate, dur, size, members, runtime.GOMAXPROCS(0), url)
			a, err := startSayNode(url, "sbbench-a")
			if err != nil {
				return err
			}
			defer a.close()
			b, err := startSayNode(url, "sbbench-b")
			if err != nil {
				return err
			}
			defer b.close()
			for _, run := range []struct {
				name string
				to   *sayNode
			}{{"cross-node", b}, {"local", a}} {
				res, err := sayRun(cmd.Context(), a, run.to, members, rate, size, dur)
				if err != nil {
					return fmt.Errorf("cluster-say %s: %w", run.name, err)
				}
				fmt.Fprintf(out, "%-10s says %d, lines expected %d, received %d, lost %d; latency p50 %s  p99 %s  max %s\n",
					run.name, res.sent, res.sent*int64(members), len(res.lat), res.sent*int64(members)-int64(len(res.lat)),
					fmtDur(res.pct(0.50)), fmtDur(res.pct(0.99)), fmtDur(res.pct(1)))
			}
			return nil
		},
	}
	cmd.Flags().DurationVar(&dur, "duration", 10*time.Second, "measuring time of each run")
	cmd.Flags().IntVar(&rate, "rate", 1000, "says per second")
	cmd.Flags().IntVar(&members, "members", 1, "members listening (on the other node, then on the same node)")
	cmd.Flags().IntVar(&size, "size", 64, "bytes of each message")
	cmd.Flags().StringVar(&natsURL, "nats-url", "", "a NATS server with JetStream (default: one embedded in this process)")
	return cmd
}

type sayNode struct {
	n     *cluster.Node
	rooms *roomscluster.Rooms
	srv   *socket.Server
	addr  string
}

func startSayNode(url, id string) (*sayNode, error) {
	cc := cluster.DefaultConfig()
	cc.NATSURL, cc.Name, cc.NodeID = url, "sbbenchsay", id
	n, err := cluster.New(cc, cluster.Options{})
	if err != nil {
		return nil, err
	}
	cfg := socket.DefaultConfig()
	cfg.Listen, cfg.PublicDir = "127.0.0.1:0", ""
	r, err := roomscluster.New(n, roomscluster.Options{Starting: cfg.Rooms.Starting})
	if err != nil {
		return nil, err
	}
	srv, err := socket.New(cfg, socket.Options{Rooms: r, ID: id})
	if err != nil {
		return nil, err
	}
	if err := r.Start(srv); err != nil {
		return nil, err
	}
	if err := srv.Start(context.Background()); err != nil {
		return nil, err
	}
	return &sayNode{n: n, rooms: r, srv: srv, addr: srv.Addrs()["socket"].String()}, nil
}

func (s *sayNode) close() {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	_ = s.srv.Shutdown(ctx)
	s.rooms.Close(ctx)
	_ = s.n.Shutdown(ctx)
}

type sayResult struct {
	sent int64
	lat  []time.Duration
}

func (r sayResult) pct(p float64) time.Duration {
	if len(r.lat) == 0 {
		return 0
	}
	return r.lat[min(int(p*float64(len(r.lat))), len(r.lat)-1)]
}

// sayConn is a member: it joins defaultRoom and hands every chat line to onChat.
func sayConn(addr string, onChat func(line string, at time.Time)) (net.Conn, error) {
	c, err := net.Dial("tcp", addr)
	if err != nil {
		return nil, err
	}
	r := bufio.NewReader(c)
	if _, err := r.ReadString('\n'); err != nil { // welcome
		c.Close()
		return nil, err
	}
	if _, err := io.WriteString(c, "roomAdd defaultRoom\n"); err != nil {
		c.Close()
		return nil, err
	}
	if line, err := r.ReadString('\n'); err != nil || !strings.Contains(line, `"status":"OK"`) {
		c.Close()
		return nil, fmt.Errorf("roomAdd: %q %v", line, err)
	}
	go func() {
		for {
			line, err := r.ReadString('\n')
			if err != nil {
				return
			}
			at := time.Now()
			if strings.Contains(line, `"context":"user"`) {
				onChat(line, at)
			}
		}
	}()
	return c, nil
}

// sayRun: one member on from says; members on to listen.
func sayRun(ctx context.Context, from, to *sayNode, members, rate, size int, dur time.Duration) (sayResult, error) {
	var mu sync.Mutex
	var res sayResult
	var measuring atomic.Bool
	var warm atomic.Int64
	listen := func(line string, at time.Time) {
		// "message":"<seq> <unix ns> ..."
		i := strings.Index(line, `"message":"`)
		if i < 0 {
			return
		}
		f := strings.Fields(line[i+len(`"message":"`):])
		if len(f) < 2 {
			return
		}
		if f[0] == "warm" {
			warm.Add(1)
			return
		}
		ns, err := strconv.ParseInt(f[1], 10, 64)
		if err != nil || !measuring.Load() {
			return
		}
		mu.Lock()
		res.lat = append(res.lat, at.Sub(time.Unix(0, ns)))
		mu.Unlock()
	}
	var conns []net.Conn
	defer func() {
		for _, c := range conns {
			c.Close()
		}
	}()
	for range members {
		c, err := sayConn(to.addr, listen)
		if err != nil {
			return res, err
		}
		conns = append(conns, c)
	}
	sender, err := sayConn(from.addr, func(string, time.Time) {})
	if err != nil {
		return res, err
	}
	conns = append(conns, sender)
	// Until every listener got a say (its join reached the other node), say "warm".
	deadline := time.Now().Add(20 * time.Second)
	for warm.Load() < int64(members) {
		if time.Now().After(deadline) {
			return res, fmt.Errorf("the listeners never got a say")
		}
		warm.Store(0)
		if _, err := io.WriteString(sender, "say defaultRoom warm 0\n"); err != nil {
			return res, err
		}
		time.Sleep(100 * time.Millisecond)
	}
	pad := ""
	if size > 40 {
		pad = " " + strings.Repeat("x", size-40)
	}
	measuring.Store(true)
	interval := time.Second / time.Duration(rate)
	start := time.Now()
	buf := make([]byte, 0, 128+size)
	for seq := int64(0); ; seq++ {
		next := start.Add(time.Duration(seq) * interval)
		if next.Sub(start) >= dur || ctx.Err() != nil {
			break
		}
		if d := time.Until(next); d > 0 {
			time.Sleep(d)
		}
		buf = append(buf[:0], "say defaultRoom "...)
		buf = strconv.AppendInt(buf, seq, 10)
		buf = append(buf, ' ')
		buf = strconv.AppendInt(buf, time.Now().UnixNano(), 10)
		buf = append(buf, pad...)
		buf = append(buf, '\n')
		if _, err := sender.Write(buf); err != nil {
			return res, err
		}
		res.sent++
	}
	want := int(res.sent) * members
	for wait := time.Now().Add(3 * time.Second); time.Now().Before(wait); time.Sleep(20 * time.Millisecond) {
		mu.Lock()
		n := len(res.lat)
		mu.Unlock()
		if n >= want {
			break
		}
	}
	measuring.Store(false)
	mu.Lock()
	defer mu.Unlock()
	slices.Sort(res.lat)
	return res, nil
}
