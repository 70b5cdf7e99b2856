//go:build unix

package transport

import (
	"bytes"
	"context"
	"crypto/tls"
	"io"
	"net"
	"testing"
	"time"
)

// tcpPair returns both ends of a loopback TCP connection, closed when the test ends.
func tcpPair(t *testing.T) (server, client net.Conn) {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	client, err = net.Dial("tcp", ln.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	server, err = ln.Accept()
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { server.Close(); client.Close() })
	return server, client
}

// gatedConn is a connection as an outbox writes to it, each write held until the gate opens.
type gatedConn struct {
	net.Conn
	gate chan struct{}
	in   chan struct{}
}

func (g gatedConn) Write(p []byte) (int, error) {
	g.in <- struct{}{}
	<-g.gate
	return g.Conn.Write(p)
}

func readExactly(t *testing.T, c net.Conn, n int) []byte {
	t.Helper()
	_ = c.SetReadDeadline(time.Now().Add(30 * time.Second))
	b := make([]byte, n)
	if _, err := io.ReadFull(c, b); err != nil {
		t.Fatalf("read %d bytes: %v", n, err)
	}
	return b
}

// Send writes at once when nothing is queued, queues behind what is, and keeps the order either way.
func TestDirectWriterSendKeepsOrder(t *testing.T) {
	server, client := tcpPair(t)
	w := NewDirectWriter(server)
	if w == nil {
		t.Fatal("no direct writer for a plain TCP connection")
	}
	g := gatedConn{Conn: server, gate: make(chan struct{}), in: make(chan struct{}, 4)}
	out := NewOutbox(g, 16)
	defer out.Close(context.Background())

	if taken, err := w.Send(out, []byte("a\n"), out.Send); !taken || err != nil {
		t.Fatalf("nothing queued: taken %v, err %v; want written at once", taken, err)
	}
	if err := out.Send([]byte("b\n")); err != nil {
		t.Fatal(err)
	}
	<-g.in // the outbox's writer holds b
	if taken, err := w.Send(out, []byte("c\n"), out.Send); taken || err != nil {
		t.Fatalf("b queued: taken %v, err %v; want c queued behind it", taken, err)
	}
	close(g.gate)
	if got := readExactly(t, client, 6); string(got) != "a\nb\nc\n" {
		t.Fatalf("peer read %q", got)
	}
}

// What the socket does not take at once is queued, and only that: the peer gets p whole, once.
func TestDirectWriterSendQueuesTheRest(t *testing.T) {
	server, client := tcpPair(t)
	w := NewDirectWriter(server)
	out := NewOutbox(server, 16)
	defer out.Close(context.Background())
	p := bytes.Repeat([]byte("0123456789abcdef"), 2<<20) // 32 MiB: more than loopback buffers hold
	var rest []byte
	taken, err := w.Send(out, p, func(b []byte) error { rest = b; return out.Send(b) })
	if taken || err != nil {
		t.Fatalf("taken %v, err %v; want part of 32 MiB queued", taken, err)
	}
	if len(rest) == 0 || len(rest) == len(p) || !bytes.Equal(rest, p[len(p)-len(rest):]) {
		t.Fatalf("queued %d of %d bytes; want the end the socket did not take", len(rest), len(p))
	}
	if got := readExactly(t, client, len(p)); !bytes.Equal(got, p) {
		t.Fatal("the peer's bytes differ from what was sent")
	}
}

// A TLS connection has no direct writer, and a nil one queues everything.
func TestDirectWriterNilQueues(t *testing.T) {
	server, _ := tcpPair(t)
	if w := NewDirectWriter(tls.Server(server, &tls.Config{})); w != nil {
		t.Fatal("a direct writer for a TLS connection")
	}
	var w *DirectWriter
	var queued []byte
	taken, err := w.Send(nil, []byte("x\n"), func(b []byte) error { queued = b; return nil })
	if taken || err != nil || string(queued) != "x\n" {
		t.Fatalf("taken %v, err %v, queued %q", taken, err, queued)
	}
}
