//go:build !unix

package socket

import "net"

// directWriter: direct writes are a unix optimisation; elsewhere every reply goes through the outbox.
type directWriter struct{}

func newDirectWriter(net.Conn) *directWriter { return nil }

func (*directWriter) write([]byte) int { return 0 }
