//go:build unix

package transport

import (
	"crypto/tls"
	"net"
	"sync"
	"syscall"
)

// DirectWriter writes straight to a plain TCP socket from the calling goroutine, without waiting: a
// part whose peer is idle sends a reply or a burst's statuses this way when its Outbox has nothing
// queued, which spares the outbox's writer goroutine a wake-up per reply (docs/benchmarks.md). What the
// socket does not take at once goes through the Outbox, in order, behind it (Send). The callback is
// bound once so a write allocates nothing.
type DirectWriter struct {
	mu   sync.Mutex // Send's: orders direct writes with queued ones
	rc   syscall.RawConn
	fn   func(fd uintptr) bool
	p    []byte
	sent int
}

// NewDirectWriter returns nil for connections that cannot be written directly: a TLS connection must
// encrypt, so what goes to it always goes through the outbox. Wrappers that expose NetConn() (the
// listener's connection cap) are looked through.
func NewDirectWriter(nc net.Conn) *DirectWriter {
	for {
		switch c := nc.(type) {
		case *tls.Conn:
			return nil
		case *net.TCPConn:
			rc, err := c.SyscallConn()
			if err != nil {
				return nil
			}
			w := &DirectWriter{rc: rc}
			w.fn = w.writeFD
			return w
		case interface{ NetConn() net.Conn }: // the listener's wrappers (connection cap)
			nc = c.NetConn()
		default:
			return nil
		}
	}
}

func (w *DirectWriter) writeFD(fd uintptr) bool {
	n, err := syscall.Write(int(fd), w.p)
	if err == nil && n > 0 {
		w.sent = n
	}
	return true // never wait for writability: that is the outbox's job
}

// tryWrite writes as much of p as the socket takes now and returns how much that was. Any error
// (EAGAIN, EINTR, a broken connection, a deadline) just means Send queues the rest, and the outbox's
// writer meets and reports the same condition.
func (w *DirectWriter) tryWrite(p []byte) int {
	w.p, w.sent = p, 0
	err := w.rc.Write(w.fn)
	w.p = nil
	if err != nil {
		return 0
	}
	return w.sent
}
