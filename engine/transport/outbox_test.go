package transport

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"runtime"
	"strings"
	"sync"
	"testing"
	"time"
)

// gateWriter blocks every Write until released and records what it got.
type gateWriter struct {
	mu     sync.Mutex
	buf    bytes.Buffer
	writes int
	gate   chan struct{}
	in     chan struct{} // signalled when a Write starts
	err    error
}

func newGateWriter() *gateWriter {
	return &gateWriter{gate: make(chan struct{}), in: make(chan struct{}, 100)}
}

func (g *gateWriter) Write(p []byte) (int, error) {
	g.in <- struct{}{}
	<-g.gate
	g.mu.Lock()
	defer g.mu.Unlock()
	g.writes++
	if g.err != nil {
		return 0, g.err
	}
	return g.buf.Write(p)
}

func (g *gateWriter) result() (string, int) {
	g.mu.Lock()
	defer g.mu.Unlock()
	return g.buf.String(), g.writes
}

func TestOutboxCoalescesAndKeepsOrder(t *testing.T) {
	g := newGateWriter()
	o := NewOutbox(g, 1000)
	if err := o.Send([]byte("m000\n")); err != nil {
		t.Fatal(err)
	}
	<-g.in // the writer is now blocked on the first message
	var want bytes.Buffer
	want.WriteString("m000\n")
	for i := 1; i < 200; i++ {
		m := fmt.Sprintf("m%03d\n", i)
		want.WriteString(m)
		if err := o.Send([]byte(m)); err != nil {
			t.Fatal(err)
		}
	}
	close(g.gate)
	if err := o.Close(context.Background()); err != nil {
		t.Fatal(err)
	}
	got, writes := g.result()
	if got != want.String() {
		t.Fatalf("wrote %q", got)
	}
	if writes != 2 {
		t.Fatalf("%d writes for 200 messages, want 2 (one blocked, one coalesced)", writes)
	}
	if err := o.Send([]byte("late")); !errors.Is(err, net.ErrClosed) {
		t.Fatalf("Send after Close: %v", err)
	}
}

func TestOutboxFull(t *testing.T) {
	g := newGateWriter()
	o := NewOutbox(g, 4)
	for i := 0; i < 4; i++ {
		if err := o.Send([]byte("x")); err != nil {
			t.Fatalf("send %d: %v", i, err)
		}
	}
	if err := o.Send([]byte("x")); !errors.Is(err, ErrOutboxFull) {
		t.Fatalf("5th send: %v, want ErrOutboxFull", err)
	}
	if n := o.Pending(); n != 4 {
		t.Fatalf("pending %d", n)
	}
	close(g.gate)
	o.Close(context.Background())
	if got, _ := g.result(); got != "xxxx" {
		t.Fatalf("wrote %q", got)
	}
}

func TestOutboxByteBound(t *testing.T) {
	g := newGateWriter()
	o := NewBoundedOutbox(g, OutboxLimits{Messages: 100, Bytes: 10})
	// A lone message larger than the bound is taken: it could never be sent otherwise.
	if err := o.Send(bytes.Repeat([]byte("L"), 25)); err != nil {
		t.Fatal(err)
	}
	if err := o.Send([]byte("x")); !errors.Is(err, ErrOutboxFull) {
		t.Fatalf("send behind a 25-byte message with a 10-byte bound: %v, want ErrOutboxFull", err)
	}
	<-g.in // the writer holds the big message
	g.gate <- struct{}{}
	if err := o.WaitBelow(context.Background(), 0); err != nil {
		t.Fatal(err)
	}
	for i := 0; i < 10; i++ { // exactly the bound
		if err := o.Send([]byte{byte('0' + i)}); err != nil {
			t.Fatalf("send %d: %v", i, err)
		}
	}
	if got := o.PendingBytes(); got != 10 {
		t.Fatalf("pending bytes %d, want 10", got)
	}
	if err := o.Send([]byte("y")); !errors.Is(err, ErrOutboxFull) {
		t.Fatalf("11th byte: %v, want ErrOutboxFull", err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Millisecond)
	if err := o.WaitBelow(ctx, 5); !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("WaitBelow with the writer blocked: %v", err)
	}
	cancel()
	close(g.gate)
	if err := o.WaitBelow(context.Background(), 0); err != nil {
		t.Fatal(err)
	}
	o.Close(context.Background())
	if got, _ := g.result(); got != strings.Repeat("L", 25)+"0123456789" {
		t.Fatalf("wrote %q", got)
	}
	if err := o.WaitBelow(context.Background(), -1); !errors.Is(err, net.ErrClosed) {
		t.Fatalf("WaitBelow after Close: %v", err)
	}
}

func TestOutboxWriteErrorSticks(t *testing.T) {
	g := newGateWriter()
	boom := errors.New("boom")
	g.err = boom
	close(g.gate)
	o := NewOutbox(g, 10)
	o.Send([]byte("a"))
	<-o.Done()
	if err := o.Send([]byte("b")); !errors.Is(err, boom) {
		t.Fatalf("Send after write error: %v", err)
	}
	if err := o.Close(context.Background()); !errors.Is(err, boom) {
		t.Fatalf("Close: %v", err)
	}
}

func TestOutboxCloseInterruptsBlockedConn(t *testing.T) {
	a, b := net.Pipe() // nobody reads b: writes block
	defer b.Close()
	o := NewOutbox(a, 10)
	o.Send([]byte("stuck"))
	ctx, cancel := context.WithTimeout(context.Background(), 50*time.Millisecond)
	defer cancel()
	if err := o.Close(ctx); !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("Close: %v", err)
	}
	select {
	case <-o.Done():
	default:
		t.Fatal("writer still running after Close returned")
	}
	a.Close()
}

func TestOutboxOverTCP(t *testing.T) {
	l := mustListen(t, ListenConfig{})
	acc := acceptOne(t, l)
	c, err := net.Dial("tcp", l.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	s := <-acc
	o := NewOutbox(s, 100000)
	big := bytes.Repeat([]byte("B"), 100<<10) // goes out as a vectored write
	var want bytes.Buffer
	for i := 0; i < 1000; i++ {
		m := []byte(fmt.Sprintf("line %d\n", i))
		want.Write(m)
		if err := o.Send(m); err != nil {
			t.Fatal(err)
		}
		if i == 500 {
			want.Write(big)
			o.Send(big)
		}
	}
	if err := o.Close(context.Background()); err != nil {
		t.Fatal(err)
	}
	s.Close()
	got, err := io.ReadAll(c)
	if err != nil || !bytes.Equal(got, want.Bytes()) {
		t.Fatalf("received %d bytes (err %v), want %d", len(got), err, want.Len())
	}
}

func BenchmarkOutbox(b *testing.B) {
	msg := bytes.Repeat([]byte("o"), 64)
	o := NewOutbox(io.Discard, 1024)
	b.SetBytes(int64(len(msg)))
	b.ReportAllocs()
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		for o.Send(msg) == ErrOutboxFull {
			runtime.Gosched() // the writer is behind: let it run
		}
	}
	o.Close(context.Background())
}
