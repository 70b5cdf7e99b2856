package engine

import (
	"context"
	"errors"
	"net"

	"github.com/switchboard/switchboard/engine/relay"
	"github.com/switchboard/switchboard/luabind"
)

// relayPart runs the AMI relay; route expressions are Lua, evaluated on the serving script generation.
type relayPart struct {
	r    *relay.Relay
	stop stopOnce
}

// newRelayPart builds the relay part from e.cfg; it returns nil, nil when the part is disabled.
func newRelayPart(e *Engine) (part, error) {
	cfg := e.cfg.Relay
	if !cfg.Enabled {
		return nil, nil
	}
	if !cfg.ListenDisabled() {
		cfg.MaxConnections = e.connBudget().capFor(e.log.WithField("part", "relay"), "relay.max_connections", cfg.MaxConnections, fdPerRelayConn)
	}
	var cluster relay.ClusterOptions
	if cfg.Guaranteed && cfg.Journal == relay.JournalJetStream {
		n := e.Cluster()
		if n == nil {
			return nil, errors.New("relay.journal: jetstream needs the NATS cluster: set cluster.nats_url")
		}
		cluster = relay.ClusterOptions{Conn: n.Conn(), Name: n.Name(), NodeID: n.ID()}
	}
	r, err := relay.New(relay.Options{Config: cfg, Compile: luabind.RelayExprCompiler(e.lua), Log: e.log, Metrics: e.metrics, Cluster: cluster})
	if err != nil {
		return nil, err
	}
	e.lua.Services().Provide("relay", r)
	return &relayPart{r: r}, nil
}

func (p *relayPart) Start(ctx context.Context) error { return p.r.Start(ctx) }

// Shutdown is idempotent: a second call waits for the first (relay.Shutdown alone returns at once).
func (p *relayPart) Shutdown(ctx context.Context) error {
	return p.stop.do(ctx, func() error { return p.r.Shutdown(ctx) })
}
func (p *relayPart) Reload(ctx context.Context) error { return p.r.Reload(ctx) }
func (p *relayPart) Addrs() map[string]net.Addr       { return p.r.Addrs() }
