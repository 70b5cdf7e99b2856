package engine

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/sirupsen/logrus"

	"github.com/switchboard/switchboard/engine/channel"
)

// testEngine builds an engine with every part enabled on loopback port 0 (a channel that never dials, so
// the channels part exists too), its logs in the returned buffer.
func testEngine(t *testing.T, edit func(*Config)) (*Engine, *logBuffer) {
	t.Helper()
	cfg := DefaultConfig()
	dir := t.TempDir()
	cfg.Lua.ScriptsDir = filepath.Join(dir, "scripts")
	if err := os.Mkdir(cfg.Lua.ScriptsDir, 0o755); err != nil {
		t.Fatal(err)
	}
	cfg.Admin.Listen = "127.0.0.1:0"
	cfg.Socket.Listen = "127.0.0.1:0"
	cfg.Relay.Listen = "127.0.0.1:0"
	cfg.Relay.RoutesFile = filepath.Join(dir, "relay.routes")
	cfg.Relay.PersistDir = filepath.Join(dir, "persist")
	cfg.ESL.Listen = "127.0.0.1:0"
	ch := channel.DefaultConfig()
	ch.Name, ch.Host, ch.Port, ch.Permanent = "idle", "127.0.0.1", 9, false
	cfg.Channels = []channel.Config{ch}
	if edit != nil {
		edit(&cfg)
	}
	logs := &logBuffer{}
	logger := NewLogger(cfg.Log, logs)
	logger.SetLevel(logrus.DebugLevel)
	e, err := New(Options{Config: cfg, Logger: logger})
	if err != nil {
		t.Fatal(err)
	}
	return e, logs
}

// within runs f and fails the test if it has not returned after a generous deadline (a hang, not a speed
// measurement).
func within(t *testing.T, what string, f func() error) error {
	t.Helper()
	done := make(chan error, 1)
	go func() { done <- f() }()
	select {
	case err := <-done:
		return err
	case <-time.After(20 * time.Second):
		t.Fatalf("%s never returned", what)
		return nil
	}
}

// TestStartFailureStopsEverything: with a part's port taken, Start fails with the part, the configured
// address and the cause; the parts that had started are stopped (their ports are free again); Shutdown
// after the failed Start, and again after that, returns.
func TestStartFailureStopsEverything(t *testing.T) {
	for _, part := range []string{"socket", "relay", "esl", "admin"} {
		t.Run(part, func(t *testing.T) {
			taken, err := net.Listen("tcp", "127.0.0.1:0")
			if err != nil {
				t.Fatal(err)
			}
			defer taken.Close()
			addr := taken.Addr().String()
			e, logs := testEngine(t, func(c *Config) {
				switch part {
				case "socket":
					c.Socket.Listen = addr
				case "relay":
					c.Relay.Listen = addr
				case "esl":
					c.ESL.Listen = addr
				case "admin":
					c.Admin.Listen = addr
				}
			})
			err = within(t, "Start", func() error { return e.Start(context.Background()) })
			var se *StartError
			if !errors.As(err, &se) || se.Part != part || se.Addr != addr || !errors.Is(err, syscall.EADDRINUSE) {
				t.Fatalf("Start: %#v (%v)", err, err)
			}
			if want := fmt.Sprintf("%s: listen %s: address already in use", part, addr); err.Error() != want {
				t.Fatalf("error %q, want %q", err, want)
			}
			if !strings.Contains(logs.String(), `msg="start failed: stopping what started"`) ||
				!strings.Contains(logs.String(), `error="address already in use" part=`+part) {
				t.Fatalf("logs:\n%s", logs)
			}
			// Whatever listened before the failure has stopped: its address can be bound again.
			for name, a := range e.Addrs() {
				if a.String() == addr {
					continue
				}
				l, err := net.Listen("tcp", a.String())
				if err != nil {
					t.Fatalf("%s still listens on %s after the failed start: %v", name, a, err)
				}
				l.Close()
			}
			for i := 0; i < 2; i++ {
				ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
				if err := within(t, "Shutdown", func() error { return e.Shutdown(ctx) }); err != nil {
					t.Fatalf("Shutdown %d: %v", i+1, err)
				}
				cancel()
			}
		})
	}
}

// TestPartShutdownIsIdempotent: every part's Shutdown can be called again, at once and concurrently, after
// a start and on a part that never started; none blocks.
func TestPartShutdownIsIdempotent(t *testing.T) {
	for _, started := range []bool{true, false} {
		t.Run(fmt.Sprintf("started=%v", started), func(t *testing.T) {
			e, _ := testEngine(t, nil)
			defer e.close()
			names := map[string]bool{}
			for _, np := range e.parts {
				names[np.name] = true
				if started {
					if err := np.p.Start(context.Background()); err != nil {
						t.Fatalf("%s: start: %v", np.name, err)
					}
				}
			}
			if len(names) != 4 {
				t.Fatalf("parts %v, want socket, relay, esl and channels", names)
			}
			for _, np := range e.parts {
				ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
				errs := make(chan error, 3)
				for i := 0; i < 3; i++ {
					go func() { errs <- np.p.Shutdown(ctx) }()
				}
				for i := 0; i < 3; i++ {
					select {
					case err := <-errs:
						if err != nil {
							t.Errorf("%s: concurrent Shutdown: %v", np.name, err)
						}
					case <-time.After(20 * time.Second):
						t.Fatalf("%s: concurrent Shutdown never returned", np.name)
					}
				}
				if err := within(t, np.name+" Shutdown again", func() error { return np.p.Shutdown(ctx) }); err != nil {
					t.Errorf("%s: Shutdown again: %v", np.name, err)
				}
				cancel()
			}
		})
	}
}

func TestStartErrorText(t *testing.T) {
	lookup := &net.OpError{Op: "listen", Net: "tcp", Err: &net.DNSError{Err: "no such host", Name: "nowhere.invalid", IsNotFound: true}}
	cases := []struct {
		part, addr string
		err        error
		want       string
	}{
		{"relay", "0.0.0.0:3289", fmt.Errorf("relay: listen 0.0.0.0:3289: %w", &net.OpError{Op: "listen", Net: "tcp",
			Addr: &net.TCPAddr{IP: net.IPv4zero, Port: 3289}, Err: os.NewSyscallError("bind", syscall.EADDRINUSE)}),
			"relay: listen 0.0.0.0:3289: address already in use"},
		{"socket", "nowhere.invalid:5000", fmt.Errorf("socket: listen: %w", lookup), "socket: listen nowhere.invalid:5000: lookup nowhere.invalid: no such host"},
		{"relay", "0.0.0.0:3289", errors.New("relay.tls: open cert.pem: no such file or directory"), "relay.tls: open cert.pem: no such file or directory"},
		{"channels", "", errors.New("channel web: subscribe x: closed"), "channels: channel web: subscribe x: closed"},
	}
	for _, c := range cases {
		if got := startError(c.part, c.addr, c.err).Error(); got != c.want {
			t.Errorf("got %q, want %q", got, c.want)
		}
	}
}

// logBuffer is a goroutine-safe log sink.
type logBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *logBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

func (b *logBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}
