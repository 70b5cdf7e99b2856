//go:build unix

package socket

import (
	"crypto/tls"
	"net"
	"syscall"
)

// directWriter writes replies straight to a plain TCP socket without waiting (Conn.write). Its fields
// are guarded by Conn.wmu; the callback is bound once so a write allocates nothing.
type directWriter struct {
	rc   syscall.RawConn
	fn   func(fd uintptr) bool
	p    []byte
	sent int
}

// newDirectWriter returns nil for connections that cannot be written directly: a TLS connection must
// encrypt, so its replies always go through the outbox.
func newDirectWriter(nc net.Conn) *directWriter {
	for {
		switch c := nc.(type) {
		case *tls.Conn:
			return nil
		case *net.TCPConn:
			rc, err := c.SyscallConn()
			if err != nil {
				return nil
			}
			w := &directWriter{rc: rc}
			w.fn = w.writeFD
			return w
		case interface{ NetConn() net.Conn }: // the listener's wrappers (connection cap)
			nc = c.NetConn()
		default:
			return nil
		}
	}
}

func (w *directWriter) writeFD(fd uintptr) bool {
	n, err := syscall.Write(int(fd), w.p)
	if err == nil && n > 0 {
		w.sent = n
	}
	return true // never wait for writability: that is the outbox's job
}

// write writes as much of p as the socket takes now and returns how much that was. Any error (EAGAIN,
// EINTR, a broken connection, a deadline) just means the caller queues the rest, and the outbox's writer
// meets and reports the same condition.
func (w *directWriter) write(p []byte) int {
	w.p, w.sent = p, 0
	err := w.rc.Write(w.fn)
	w.p = nil
	if err != nil {
		return 0
	}
	return w.sent
}
