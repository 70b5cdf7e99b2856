package engine

import (
	"errors"
	"fmt"
	"net"
	"os"
	"strings"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/sirupsen/logrus"

	"github.com/switchboard/switchboard/engine/relay"
)

// ClusterConfig is the `cluster:` section as the relay's JetStream journal uses it (nats_url, name,
// node_id). The cluster engineer's engine/cluster.Config has the same keys and more (credentials, TLS,
// timeouts); when both land, the relay takes its connection from the engine's cluster node instead and
// this type goes.
type ClusterConfig struct {
	// NATSURL lists the NATS servers, comma-separated (nats://host:4222,nats://other:4222).
	NATSURL string `mapstructure:"nats_url"`
	// Name prefixes every subject, stream and bucket, so several clusters can share NATS servers.
	Name string `mapstructure:"name"`
	// NodeID names this engine in the cluster; "" = hostname:port.
	NodeID string `mapstructure:"node_id"`
}

// Validate checks the section.
func (c ClusterConfig) Validate() error {
	for _, r := range c.Name {
		if !(r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9' || r == '_' || r == '-') {
			return fmt.Errorf("cluster.name: expected letters, digits, _ or -, got %q", c.Name)
		}
	}
	if c.Name == "" || len(c.Name) > 64 {
		return fmt.Errorf("cluster.name: expected 1 to 64 letters, digits, _ or -, got %q", c.Name)
	}
	if len(c.NodeID) > 128 || strings.ContainsAny(c.NodeID, " \t\r\n") {
		return fmt.Errorf("cluster.node_id: expected at most 128 characters without spaces, got %q", c.NodeID)
	}
	return nil
}

// relayNATS connects the relay to the cluster when relay.journal is jetstream: a connection that keeps
// trying for as long as the engine runs (the relay stays standby while NATS cannot be reached). The
// returned conn is closed by the relay part after the relay stops.
func relayNATS(cfg Config, log *logrus.Entry) (relay.ClusterOptions, *nats.Conn, error) {
	r := cfg.Relay
	if !r.Enabled || !r.Guaranteed || r.Journal != relay.JournalJetStream {
		return relay.ClusterOptions{}, nil, nil
	}
	c := cfg.Cluster
	if strings.TrimSpace(c.NATSURL) == "" {
		return relay.ClusterOptions{}, nil, errors.New("relay.journal: jetstream needs the NATS cluster: set cluster.nats_url")
	}
	node := c.NodeID
	if node == "" {
		host, _ := os.Hostname()
		node = host + ":pid" + fmt.Sprint(os.Getpid())
		if _, port, err := net.SplitHostPort(r.Listen); err == nil && port != "0" && port != "-1" {
			node = net.JoinHostPort(host, port)
		}
	}
	l := log.WithFields(logrus.Fields{"part": "relay", "nats": c.NATSURL})
	nc, err := nats.Connect(c.NATSURL, nats.Name("switchboard relay "+node), nats.MaxReconnects(-1),
		nats.RetryOnFailedConnect(true), nats.ReconnectWait(250*time.Millisecond), nats.Timeout(2*time.Second),
		nats.DisconnectErrHandler(func(_ *nats.Conn, err error) { l.WithError(err).Warn("NATS connection lost (reconnecting)") }),
		nats.ReconnectHandler(func(nc *nats.Conn) { l.WithField("server", nc.ConnectedUrlRedacted()).Info("NATS connection restored") }))
	if err != nil {
		return relay.ClusterOptions{}, nil, fmt.Errorf("cluster.nats_url: %w", err)
	}
	return relay.ClusterOptions{Conn: nc, Name: c.Name, NodeID: node}, nc, nil
}
