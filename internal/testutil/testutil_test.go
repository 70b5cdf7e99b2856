package testutil

import (
	"crypto/tls"
	"net"
	"sync/atomic"
	"testing"
	"time"
)

func TestPoll(t *testing.T) {
	var n atomic.Int32
	if !Poll(5*time.Second, func() bool { return n.Add(1) >= 3 }) {
		t.Fatal("Poll gave up on a condition that holds at the third look")
	}
	if n.Load() != 3 {
		t.Fatalf("looked %d times, want 3", n.Load())
	}
	if Poll(20*time.Millisecond, func() bool { return false }) {
		t.Fatal("Poll reported a condition that never holds")
	}
}

// The certificate serves a TLS handshake for 127.0.0.1 and localhost, verified through Pool.
func TestSelfSigned(t *testing.T) {
	c := SelfSigned(t)
	l, err := tls.Listen("tcp", "127.0.0.1:0", c.ServerConfig())
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	go func() {
		for {
			conn, err := l.Accept()
			if err != nil {
				return
			}
			_, _ = conn.Write([]byte("ok"))
			conn.Close()
		}
	}()
	for _, name := range []string{"127.0.0.1", "localhost"} {
		conn, err := tls.DialWithDialer(&net.Dialer{Timeout: 5 * time.Second}, "tcp", l.Addr().String(), c.ClientConfig(name))
		if err != nil {
			t.Fatalf("%s: %v", name, err)
		}
		buf := make([]byte, 2)
		if _, err := conn.Read(buf); err != nil || string(buf) != "ok" {
			t.Fatalf("%s: read %q, %v", name, buf, err)
		}
		conn.Close()
	}
	if _, err := tls.LoadX509KeyPair(c.CertFile, c.KeyFile); err != nil {
		t.Fatalf("files: %v", err)
	}
}
