package engine

import (
	"errors"

	"github.com/switchboard/switchboard/engine/relay"
	"github.com/switchboard/switchboard/engine/relay/relaylua"
)

// newRelayPart builds the AMI relay from e.cfg: route expressions are Lua, evaluated on the serving script
// generation. nil, nil when the part is disabled.
func newRelayPart(e *Engine) (Part, error) {
	cfg := e.cfg.Relay
	if !cfg.Enabled {
		return nil, nil
	}
	if !cfg.ListenDisabled() {
		cfg.MaxConnections = e.connBudget().capFor(e.log.WithField("part", "relay"), "relay.max_connections", cfg.MaxConnections, fdPerRelayConn)
	}
	var cluster relay.ClusterOptions
	if cfg.Guaranteed && cfg.Journal == relay.JournalJetStream {
		n := e.node // built by newCluster before the parts
		if n == nil {
			return nil, errors.New("relay.journal: jetstream needs the NATS cluster: set cluster.nats_url")
		}
		cluster = relay.ClusterOptions{Conn: n.Conn(), Name: n.Name(), NodeID: n.ID()}
	}
	return relay.New(cfg, relay.Options{Compile: relaylua.Compiler(e.lua), Log: e.log, Metrics: e.metrics, Cluster: cluster})
}
