package sdnotify

import (
	"errors"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"
)

// manager is the service manager's end: a unixgram socket that collects what the Notifier sends.
type manager struct {
	conn *net.UnixConn
	name string
}

func listen(t *testing.T, name string) *manager {
	t.Helper()
	conn, err := net.ListenUnixgram("unixgram", &net.UnixAddr{Name: name, Net: "unixgram"})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close() })
	return &manager{conn: conn, name: name}
}

// next returns the next datagram's lines.
func (m *manager) next(t *testing.T) []string {
	t.Helper()
	buf := make([]byte, 4096)
	if err := m.conn.SetReadDeadline(time.Now().Add(10 * time.Second)); err != nil {
		t.Fatal(err)
	}
	n, err := m.conn.Read(buf)
	if err != nil {
		t.Fatalf("no message from the notifier: %v", err)
	}
	return strings.Split(string(buf[:n]), "\n")
}

func TestLifecycleMessages(t *testing.T) {
	for _, tc := range []struct{ name, socket string }{
		{"path", filepath.Join(t.TempDir(), "notify.sock")},
		{"abstract", fmt.Sprintf("@switchboard-sdnotify-test-%d-%d", os.Getpid(), time.Now().UnixNano())},
	} {
		t.Run(tc.name, func(t *testing.T) {
			m := listen(t, tc.socket)
			n, err := New(tc.socket)
			if err != nil || n == nil {
				t.Fatalf("New(%q) = %v, %v", tc.socket, n, err)
			}

			if err := n.Ready("serving generation 1"); err != nil {
				t.Fatal(err)
			}
			if got, want := m.next(t), []string{"READY=1", "STATUS=serving generation 1"}; !equal(got, want) {
				t.Errorf("ready: got %q, want %q", got, want)
			}

			before, _ := monotonicUsec()
			if err := n.Reloading("reloading"); err != nil {
				t.Fatal(err)
			}
			after, _ := monotonicUsec()
			got := m.next(t)
			if len(got) != 3 || got[0] != "RELOADING=1" || !strings.HasPrefix(got[1], "MONOTONIC_USEC=") || got[2] != "STATUS=reloading" {
				t.Fatalf("reloading: got %q, want RELOADING=1, MONOTONIC_USEC=<usec>, STATUS=reloading", got)
			}
			usec, err := strconv.ParseUint(strings.TrimPrefix(got[1], "MONOTONIC_USEC="), 10, 64)
			if err != nil || usec < before || usec > after {
				t.Errorf("MONOTONIC_USEC=%s: want a number between %d and %d", strings.TrimPrefix(got[1], "MONOTONIC_USEC="), before, after)
			}

			if err := n.Stopping("shutting down\n  on SIGTERM"); err != nil {
				t.Fatal(err)
			}
			if got, want := m.next(t), []string{"STOPPING=1", "STATUS=shutting down; on SIGTERM"}; !equal(got, want) {
				t.Errorf("stopping: got %q, want %q", got, want)
			}
		})
	}
}

// The clock is CLOCK_MONOTONIC: it advances with real time and never exceeds the time since boot, which is
// what systemd compares it with.
func TestMonotonicClock(t *testing.T) {
	a, ok := monotonicUsec()
	if !ok || a == 0 {
		t.Fatalf("monotonicUsec() = %d, %v", a, ok)
	}
	time.Sleep(20 * time.Millisecond)
	b, _ := monotonicUsec()
	if b-a < 20_000 {
		t.Errorf("clock advanced %d µs across a 20 ms sleep", b-a)
	}
	raw, err := os.ReadFile("/proc/uptime")
	if err != nil {
		t.Skip("no /proc/uptime:", err)
	}
	up, err := strconv.ParseFloat(strings.Fields(string(raw))[0], 64)
	if err != nil {
		t.Fatal(err)
	}
	if float64(b) > (up+1)*1e6 {
		t.Errorf("monotonic clock %d µs is past the uptime %.2f s: not CLOCK_MONOTONIC", b, up)
	}
}

func TestNotRunBySystemd(t *testing.T) {
	n, err := New("")
	if err != nil || n != nil {
		t.Fatalf(`New("") = %v, %v; want a nil Notifier`, n, err)
	}
	for _, send := range []func(string) error{n.Ready, n.Reloading, n.Stopping} {
		if err := send("x"); err != nil {
			t.Errorf("nil Notifier: %v", err)
		}
	}
}

func TestBadSocket(t *testing.T) {
	for _, s := range []string{"notify.sock", "run/notify", "@", "vsock:2:1234"} {
		if n, err := New(s); err == nil || n != nil || !strings.Contains(err.Error(), "NOTIFY_SOCKET=") {
			t.Errorf("New(%q) = %v, %v; want an error naming NOTIFY_SOCKET", s, n, err)
		}
	}
}

func TestManagerGone(t *testing.T) {
	path := filepath.Join(t.TempDir(), "notify.sock")
	m := listen(t, path)
	n, _ := New(path)
	m.conn.Close() // the file stays, nobody reads it
	err := n.Ready("serving")
	if !errors.Is(err, syscall.ECONNREFUSED) || !strings.HasPrefix(err.Error(), "sdnotify: ") {
		t.Errorf("Ready to a closed socket: %v; want sdnotify: ... connection refused", err)
	}
	n, _ = New(filepath.Join(t.TempDir(), "absent.sock"))
	if err := n.Stopping("bye"); !errors.Is(err, syscall.ENOENT) {
		t.Errorf("Stopping to a missing socket: %v; want no such file", err)
	}
}

func TestSendRefusesBadFields(t *testing.T) {
	m := listen(t, filepath.Join(t.TempDir(), "notify.sock"))
	n, _ := New(m.name)
	for _, f := range []string{"READY", "STATUS=a\nREADY=1"} {
		if err := n.Send(f); err == nil {
			t.Errorf("Send(%q) = nil, want an error", f)
		}
	}
	if err := n.Send("WATCHDOG=1"); err != nil {
		t.Fatal(err)
	}
	if got := m.next(t); !equal(got, []string{"WATCHDOG=1"}) {
		t.Errorf("got %q after refused fields, want only WATCHDOG=1", got)
	}
}

func equal(a, b []string) bool {
	return strings.Join(a, "\x00") == strings.Join(b, "\x00")
}
