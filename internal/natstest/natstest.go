// Package natstest runs real NATS servers (github.com/nats-io/nats-server/v2) inside a test or benchmark
// process: one server, or a cluster of servers routed to each other on loopback, each with JetStream and its
// own store directory. It is for tests and sbbench only: the engine binary never embeds a server.
package natstest

import (
	"errors"
	"fmt"
	"net"
	"net/url"
	"path/filepath"
	"strings"
	"sync"
	"time"

	"github.com/nats-io/nats-server/v2/server"
)

// Cluster is n NATS servers with JetStream, routed to each other on 127.0.0.1.
type Cluster struct {
	Name string
	dir  string

	mu      sync.Mutex
	servers []*server.Server
	opts    []*server.Options
}

// StartCluster starts n servers (n >= 1; with n >= 3 JetStream replicates up to R3) storing under dir, and
// waits until every server accepts clients and JetStream has a meta leader. Stop them with Shutdown.
func StartCluster(name string, n int, dir string) (*Cluster, error) {
	if n < 1 {
		return nil, fmt.Errorf("natstest: %d servers", n)
	}
	c := &Cluster{Name: name, dir: dir}
	clusterPorts := make([]int, n)
	for i := range clusterPorts {
		p, err := freePort()
		if err != nil {
			return nil, err
		}
		clusterPorts[i] = p
	}
	var routes []*url.URL
	if n > 1 {
		for _, p := range clusterPorts {
			routes = append(routes, &url.URL{Scheme: "nats-route", Host: fmt.Sprintf("127.0.0.1:%d", p)})
		}
	}
	for i := 0; i < n; i++ {
		o := &server.Options{
			ServerName: fmt.Sprintf("%s-%d", name, i+1),
			Host:       "127.0.0.1",
			Port:       -1,
			NoLog:      true,
			NoSigs:     true,
			JetStream:  true,
			StoreDir:   filepath.Join(dir, fmt.Sprintf("s%d", i+1)),
			// limits, not allocations: a stream's max_bytes (relay.journal_retention_bytes, 4 GiB by
			// default) is reserved against the store limit, so several relays fit only under a large one
			JetStreamMaxMemory: 256 << 20,
			JetStreamMaxStore:  1 << 40,
		}
		if n > 1 {
			o.Cluster = server.ClusterOpts{Name: name, Host: "127.0.0.1", Port: clusterPorts[i]}
			o.Routes = routes
		}
		c.opts = append(c.opts, o)
	}
	for i := range c.opts {
		s, err := c.start(i)
		if err != nil {
			c.Shutdown()
			return nil, err
		}
		c.servers = append(c.servers, s)
	}
	if err := c.WaitReady(30 * time.Second); err != nil {
		c.Shutdown()
		return nil, err
	}
	return c, nil
}

func (c *Cluster) start(i int) (*server.Server, error) {
	o := *c.opts[i]
	s, err := server.NewServer(&o)
	if err != nil {
		return nil, fmt.Errorf("natstest: server %d: %w", i+1, err)
	}
	go s.Start()
	if !s.ReadyForConnections(20 * time.Second) {
		s.Shutdown()
		return nil, fmt.Errorf("natstest: server %d not ready", i+1)
	}
	// the client port was random: keep it for AllURLs
	if c.opts[i].Port <= 0 {
		c.opts[i].Port = s.Addr().(*net.TCPAddr).Port
	}
	return s, nil
}

// WaitReady waits until every running server reports a JetStream meta leader and is current.
func (c *Cluster) WaitReady(timeout time.Duration) error {
	deadline := time.Now().Add(timeout)
	for {
		ok := true
		c.mu.Lock()
		for _, s := range c.servers {
			if s == nil {
				continue
			}
			if len(c.servers) > 1 && (!s.JetStreamIsCurrent() || s.JetStreamIsClustered() && !hasLeader(c.servers)) {
				ok = false
			}
		}
		c.mu.Unlock()
		if ok {
			return nil
		}
		if time.Now().After(deadline) {
			return errors.New("natstest: JetStream cluster not ready")
		}
		time.Sleep(50 * time.Millisecond)
	}
}

func hasLeader(servers []*server.Server) bool {
	for _, s := range servers {
		if s != nil && s.JetStreamIsLeader() {
			return true
		}
	}
	return false
}

// URL is every running server's client URL, comma-separated (nats.Connect takes it as is).
func (c *Cluster) URL() string {
	c.mu.Lock()
	defer c.mu.Unlock()
	var urls []string
	for i, s := range c.servers {
		if s != nil {
			urls = append(urls, fmt.Sprintf("nats://127.0.0.1:%d", c.opts[i].Port))
		}
	}
	return strings.Join(urls, ",")
}

// AllURLs is every server's client URL, running or not (a client given it finds a server that returns).
func (c *Cluster) AllURLs() string {
	var urls []string
	for _, o := range c.opts {
		urls = append(urls, fmt.Sprintf("nats://127.0.0.1:%d", o.Port))
	}
	return strings.Join(urls, ",")
}

// Size is the number of servers, running or stopped.
func (c *Cluster) Size() int { return len(c.opts) }

// Stop shuts server i down (as a machine that goes away: its clients see the connection drop).
func (c *Cluster) Stop(i int) {
	c.mu.Lock()
	s := c.servers[i]
	c.servers[i] = nil
	c.mu.Unlock()
	if s != nil {
		s.Shutdown()
		s.WaitForShutdown()
	}
}

// Shutdown stops every server. The store directory is left to its owner (t.TempDir removes it).
func (c *Cluster) Shutdown() {
	for i := range c.opts {
		if i < len(c.servers) {
			c.Stop(i)
		}
	}
}

func freePort() (int, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, fmt.Errorf("natstest: %w", err)
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port, nil
}

// Index returns the position of the server named name (its ServerName, "<cluster>-<n>"), -1 if none.
func (c *Cluster) Index(name string) int {
	for i, o := range c.opts {
		if o.ServerName == name {
			return i
		}
	}
	return -1
}
