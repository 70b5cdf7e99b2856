package main

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"runtime"
	"sync"
	"time"

	"github.com/spf13/cobra"
)

func echoCmd() *cobra.Command {
	var (
		conns int
		dur   time.Duration
		size  int
		addr  string
	)
	cmd := &cobra.Command{
		Use:   "echo",
		Short: "closed-loop line echo: the baseline every other subcommand is compared with",
		Long: `echo runs N connections; each sends one line of --size bytes (newline included) and waits
for it to come back before sending the next. Without --addr it starts a bare Go line-echo
server in this process (goroutine per connection, bufio reader, each line written back at
once). Prints round trips per second, p50 and p99 latency and allocations per round trip.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			out := cmd.OutOrStdout()
			where := "in-process echo server"
			if addr != "" {
				where = addr
			}
			fmt.Fprintf(out, "sbbench echo: %d conns, %d-byte lines, %s, %s, GOMAXPROCS %d\n",
				conns, size, dur, where, runtime.GOMAXPROCS(0))
			var r LoadResult
			var err error
			if addr == "" {
				r, err = runEchoBaseline(cmd.Context(), conns, dur, size)
			} else {
				r, err = runEcho(cmd.Context(), addr, conns, dur, size)
			}
			if err != nil {
				return err
			}
			printResult(out, "echo", r)
			return nil
		},
	}
	f := cmd.Flags()
	f.IntVar(&conns, "conns", 50, "concurrent connections")
	f.DurationVar(&dur, "duration", 5*time.Second, "how long to run")
	f.IntVar(&size, "size", 64, "line size in bytes, newline included")
	f.StringVar(&addr, "addr", "", "host:port of an external line-echo server (default: start one in-process)")
	return cmd
}

// runEchoBaseline starts an in-process echo server on 127.0.0.1, drives it
// with conns closed-loop connections for dur and stops it. Other subcommands
// call it to report their rate relative to bare Go on the same machine.
func runEchoBaseline(ctx context.Context, conns int, dur time.Duration, size int) (LoadResult, error) {
	if err := raiseFileLimit(2*conns + 64); err != nil {
		return LoadResult{}, err
	}
	srv, err := startEchoServer("127.0.0.1:0")
	if err != nil {
		return LoadResult{}, err
	}
	defer srv.Close()
	return runEcho(ctx, srv.Addr(), conns, dur, size)
}

// runEcho drives the line-echo server at addr.
func runEcho(ctx context.Context, addr string, conns int, dur time.Duration, size int) (LoadResult, error) {
	if size < 1 {
		return LoadResult{}, fmt.Errorf("echo: size must be >= 1, got %d", size)
	}
	payload := bytes.Repeat([]byte("x"), size)
	payload[size-1] = '\n'
	return runClosedLoop(ctx, conns, dur, func(int) (func() error, func(), error) {
		c, err := net.DialTimeout("tcp", addr, 10*time.Second)
		if err != nil {
			return nil, nil, fmt.Errorf("echo: dial %s: %w", addr, err)
		}
		resp := make([]byte, size)
		do := func() error {
			if _, err := c.Write(payload); err != nil {
				return fmt.Errorf("echo: write: %w", err)
			}
			if _, err := io.ReadFull(c, resp); err != nil {
				return fmt.Errorf("echo: read: %w", err)
			}
			if !bytes.Equal(resp, payload) {
				return fmt.Errorf("echo: got %q back", resp)
			}
			return nil
		}
		return do, func() { c.Close() }, nil
	})
}

// echoServer is the bare baseline: what a straightforward, well-written Go
// line server costs, with no batching a real server could not do.
type echoServer struct {
	ln     net.Listener
	wg     sync.WaitGroup
	mu     sync.Mutex
	conns  map[net.Conn]struct{}
	closed bool
}

func startEchoServer(addr string) (*echoServer, error) {
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return nil, fmt.Errorf("echo: listen %s: %w", addr, err)
	}
	s := &echoServer{ln: ln, conns: map[net.Conn]struct{}{}}
	s.wg.Add(1)
	go s.serve()
	return s, nil
}

func (s *echoServer) Addr() string { return s.ln.Addr().String() }

func (s *echoServer) serve() {
	defer s.wg.Done()
	for {
		c, err := s.ln.Accept()
		if err != nil {
			var ne net.Error
			if errors.As(err, &ne) && ne.Timeout() {
				time.Sleep(5 * time.Millisecond)
				continue
			}
			return
		}
		s.mu.Lock()
		if s.closed {
			s.mu.Unlock()
			c.Close()
			return
		}
		s.conns[c] = struct{}{}
		s.wg.Add(1)
		s.mu.Unlock()
		go s.handle(c)
	}
}

func (s *echoServer) handle(c net.Conn) {
	defer s.wg.Done()
	defer func() {
		s.mu.Lock()
		delete(s.conns, c)
		s.mu.Unlock()
		c.Close()
	}()
	br := bufio.NewReaderSize(c, 4096)
	for {
		line, err := br.ReadSlice('\n')
		if len(line) > 0 {
			if _, werr := c.Write(line); werr != nil {
				return
			}
		}
		if err != nil && !errors.Is(err, bufio.ErrBufferFull) {
			return
		}
	}
}

// Close stops the server and its connections and waits for them.
func (s *echoServer) Close() {
	s.ln.Close()
	s.mu.Lock()
	s.closed = true
	for c := range s.conns {
		c.Close()
	}
	s.mu.Unlock()
	s.wg.Wait()
}
