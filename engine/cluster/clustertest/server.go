// Package clustertest runs a real NATS server with JetStream inside a test process, on loopback, for the
// tests of engine/cluster and the end-to-end tests of a cluster of engines.
package clustertest

import (
	"fmt"
	"net"
	"testing"
	"time"

	"github.com/nats-io/nats-server/v2/server"
)

// Server is an embedded NATS server that can be stopped and started again on the same port and store.
type Server struct {
	t     testing.TB
	dir   string
	port  int
	ns    *server.Server
	extra func(*server.Options)
}

// Start runs a NATS server with JetStream on 127.0.0.1 (a free port), stopped when the test ends.
// extra, if given, changes the options before start.
func Start(t testing.TB, extra ...func(*server.Options)) *Server {
	t.Helper()
	s := &Server{t: t, dir: t.TempDir()}
	if len(extra) > 0 {
		s.extra = extra[0]
	}
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	s.port = l.Addr().(*net.TCPAddr).Port
	_ = l.Close()
	s.start()
	t.Cleanup(s.Stop)
	return s
}

func (s *Server) start() {
	s.t.Helper()
	opts := &server.Options{Host: "127.0.0.1", Port: s.port, JetStream: true, StoreDir: s.dir, NoLog: true, NoSigs: true,
		JetStreamMaxMemory: 256 << 20, JetStreamMaxStore: 1 << 30}
	if s.extra != nil {
		s.extra(opts)
	}
	ns, err := server.NewServer(opts)
	if err != nil {
		s.t.Fatal(err)
	}
	go ns.Start()
	if !ns.ReadyForConnections(10 * time.Second) {
		s.t.Fatal("nats server did not start")
	}
	s.ns = ns
}

// URL is the server's client URL.
func (s *Server) URL() string { return fmt.Sprintf("nats://127.0.0.1:%d", s.port) }

// Stop shuts the server down (idempotent).
func (s *Server) Stop() {
	if s.ns != nil {
		s.ns.Shutdown()
		s.ns.WaitForShutdown()
		s.ns = nil
	}
}

// Restart starts the server again on the same port with the same JetStream store.
func (s *Server) Restart() {
	s.t.Helper()
	s.Stop()
	s.start()
}
