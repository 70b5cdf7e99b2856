package transport

import (
	"bufio"
	"context"
	"errors"
	"io"
	"net"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/sirupsen/logrus"
	logtest "github.com/sirupsen/logrus/hooks/test"

	"github.com/switchboard/switchboard/internal/testutil"
)

func TestBackoffDelay(t *testing.T) {
	exact := Backoff{Jitter: -1}
	for i, want := range []time.Duration{100 * time.Millisecond, 200 * time.Millisecond, 400 * time.Millisecond} {
		if got := exact.Delay(i); got != want {
			t.Errorf("Delay(%d) = %v, want %v", i, got, want)
		}
	}
	if got := exact.Delay(1000); got != 30*time.Second {
		t.Errorf("Delay(1000) = %v, want the 30s cap", got)
	}
	var def Backoff
	for i := 0; i < 200; i++ {
		if d := def.Delay(0); d < 80*time.Millisecond || d > 120*time.Millisecond {
			t.Fatalf("Delay(0) = %v outside 100ms ±20%%", d)
		}
		if d := def.Delay(50); d < 24*time.Second || d > 30*time.Second {
			t.Fatalf("Delay(50) = %v outside [24s, 30s]", d)
		}
	}
	custom := Backoff{Initial: time.Second, Max: 5 * time.Second, Multiplier: 3, Jitter: -1}
	if got := custom.Delay(1); got != 3*time.Second {
		t.Errorf("custom Delay(1) = %v", got)
	}
}

// TestDialerRunReconnects drives Run against a listener that goes away and
// comes back on the same port.
func TestDialerRunReconnects(t *testing.T) {
	l, err := Listen(ListenConfig{Addr: "127.0.0.1:0"})
	if err != nil {
		t.Fatal(err)
	}
	addr := l.Addr().String()
	serve := func(l net.Listener, greeting string) {
		for {
			c, err := l.Accept()
			if err != nil {
				return
			}
			io.WriteString(c, greeting)
			c.Close()
		}
	}
	go serve(l, "first\n")

	ctx, cancel := context.WithCancel(context.Background())
	got := make(chan string, 100)
	var failed atomic.Int64
	d := &Dialer{Addr: addr, Timeout: time.Second, Backoff: Backoff{Initial: 5 * time.Millisecond, Max: 20 * time.Millisecond},
		OnDialError: func(error, time.Duration) { failed.Add(1) }}
	done := make(chan error, 1)
	go func() {
		done <- d.Run(ctx, func(ctx context.Context, c net.Conn) error {
			line, err := bufio.NewReader(c).ReadString('\n')
			if err == nil {
				got <- line
			}
			return err
		})
	}()
	if line := <-got; line != "first\n" {
		t.Fatalf("first session got %q", line)
	}
	l.Close()
	// Run is now failing to dial; drain sessions that raced the close
	testutil.WaitFor(t, "a failed dial after the close", func() bool { return failed.Load() > 0 })
	for len(got) > 0 {
		<-got
	}
	l2, err := Listen(ListenConfig{Addr: addr})
	if err != nil {
		t.Fatal(err)
	}
	defer l2.Close()
	go serve(l2, "second\n")
	for line := range got {
		if line == "second\n" {
			break
		}
	}
	cancel()
	if err := <-done; !errors.Is(err, context.Canceled) {
		t.Fatalf("Run returned %v", err)
	}
}

func TestDialerRunStopsOnCancel(t *testing.T) {
	// a port with nobody listening: Run sits in its backoff sleep
	l, _ := net.Listen("tcp", "127.0.0.1:0")
	addr := l.Addr().String()
	l.Close()
	ctx, cancel := context.WithCancel(context.Background())
	var failed atomic.Int64
	d := &Dialer{Addr: addr, Backoff: Backoff{Initial: time.Hour, Max: time.Hour},
		OnDialError: func(error, time.Duration) { failed.Add(1) }}
	done := make(chan error, 1)
	go func() { done <- d.Run(ctx, func(context.Context, net.Conn) error { return nil }) }()
	testutil.WaitFor(t, "a failed attempt (Run then waits in its backoff)", func() bool { return failed.Load() > 0 })
	cancel()
	select {
	case err := <-done:
		if !errors.Is(err, context.Canceled) {
			t.Fatalf("Run: %v", err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("Run ignored cancellation during backoff")
	}

	// and during a session
	l2 := mustListen(t, ListenConfig{})
	go func() {
		for {
			c, err := l2.Accept()
			if err != nil {
				return
			}
			defer c.Close()
		}
	}()
	ctx2, cancel2 := context.WithCancel(context.Background())
	in := make(chan struct{})
	go func() {
		done <- (&Dialer{Addr: l2.Addr().String()}).Run(ctx2, func(ctx context.Context, c net.Conn) error {
			close(in)
			<-ctx.Done()
			return ctx.Err()
		})
	}()
	<-in
	cancel2()
	if err := <-done; !errors.Is(err, context.Canceled) {
		t.Fatalf("Run: %v", err)
	}
}

func TestDialHonoursContext(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	_, err := (&Dialer{Addr: "192.0.2.1:9"}).Dial(ctx) // TEST-NET: would hang without ctx
	if err == nil || !errors.Is(err, context.Canceled) {
		t.Fatalf("Dial with cancelled ctx: %v", err)
	}
}

func TestDialerRunLogsFailuresRateLimited(t *testing.T) {
	l, _ := net.Listen("tcp", "127.0.0.1:0")
	addr := l.Addr().String()
	l.Close()
	logger, hook := logtest.NewNullLogger()
	ctx, cancel := context.WithCancel(context.Background())
	var failed atomic.Int64
	d := &Dialer{Addr: addr, Log: logrus.NewEntry(logger), Backoff: Backoff{Initial: time.Millisecond, Max: 2 * time.Millisecond},
		OnDialError: func(error, time.Duration) { failed.Add(1) }}
	done := make(chan error, 1)
	go func() { done <- d.Run(ctx, func(context.Context, net.Conn) error { return nil }) }()
	// a dozen failed attempts, well within failLogEvery
	testutil.WaitFor(t, "a dozen failed attempts", func() bool { return failed.Load() >= 12 })
	cancel()
	<-done
	entries := hook.AllEntries()
	if len(entries) != 1 {
		t.Fatalf("%d log lines, want 1 (rate-limited)", len(entries))
	}
	e := entries[0]
	if e.Message != "connect failed" || e.Data["addr"] != addr || e.Data["next_in"] == nil || e.Data[logrus.ErrorKey] == nil {
		t.Fatalf("log entry %q %v", e.Message, e.Data)
	}
}

// A session marked Unserved counts as a failed attempt: the waits keep growing. RedialNow redials at once.
func TestDialerRunSessionEnds(t *testing.T) {
	l := mustListen(t, ListenConfig{})
	go func() {
		for {
			c, err := l.Accept()
			if err != nil {
				return
			}
			c.Close()
		}
	}()
	for _, tc := range []struct {
		name string
		end  func(error) error
		grow bool
	}{
		{"unserved", Unserved, true},
		{"plain error", func(err error) error { return err }, false},
		{"redial now", RedialNow, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			ctx, cancel := context.WithCancel(context.Background())
			var at []time.Time
			logger, hook := logtest.NewNullLogger()
			d := &Dialer{Addr: l.Addr().String(), Log: logrus.NewEntry(logger), Quiet: true,
				Backoff: Backoff{Initial: 10 * time.Millisecond, Max: time.Second, Jitter: -1}}
			done := make(chan error, 1)
			go func() {
				done <- d.Run(ctx, func(ctx context.Context, c net.Conn) error {
					at = append(at, time.Now())
					if len(at) == 6 {
						cancel()
					}
					err := tc.end(errors.New("closed at once"))
					if err.Error() != "closed at once" {
						t.Errorf("marked error reads %q", err)
					}
					return err
				})
			}()
			<-done
			first, last := at[1].Sub(at[0]), at[5].Sub(at[4])
			switch {
			case tc.grow && last < 8*first:
				t.Errorf("waits did not grow: %v then %v", first, last)
			case !tc.grow && last > 200*time.Millisecond:
				t.Errorf("wait grew to %v", last)
			}
			if n := len(hook.AllEntries()); n != 0 {
				t.Errorf("Quiet dialer logged %d lines for session ends", n)
			}
		})
	}
}

func TestDialerOnDialError(t *testing.T) {
	l, _ := net.Listen("tcp", "127.0.0.1:0")
	addr := l.Addr().String()
	l.Close()
	ctx, cancel := context.WithCancel(context.Background())
	got := make(chan error, 10)
	d := &Dialer{Addr: addr, Backoff: Backoff{Initial: time.Millisecond, Max: time.Millisecond},
		OnDialError: func(err error, next time.Duration) {
			select {
			case got <- err:
			default:
			}
		}}
	done := make(chan error, 1)
	go func() { done <- d.Run(ctx, func(context.Context, net.Conn) error { return nil }) }()
	err := <-got
	cancel()
	<-done
	if err == nil || !strings.Contains(err.Error(), "refused") {
		t.Fatalf("OnDialError got %v", err)
	}
}
