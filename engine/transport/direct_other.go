//go:build !unix

package transport

import (
	"net"
	"sync"
)

// DirectWriter: direct writes are a unix optimisation; elsewhere everything goes through the outbox.
type DirectWriter struct{ mu sync.Mutex }

// NewDirectWriter returns nil: every write is queued.
func NewDirectWriter(net.Conn) *DirectWriter { return nil }

func (*DirectWriter) tryWrite([]byte) int { return 0 }
