//go:build !unix

package transport

import "net"

// DirectWriter: direct writes are a unix optimisation; elsewhere everything goes through the outbox.
type DirectWriter struct{}

// NewDirectWriter returns nil: every write is queued.
func NewDirectWriter(net.Conn) *DirectWriter { return nil }

// TryWrite writes nothing.
func (*DirectWriter) TryWrite([]byte) int { return 0 }
