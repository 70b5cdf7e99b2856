package engine

import (
	"context"
	"net"

	"github.com/nats-io/nats.go"

	"github.com/switchboard/switchboard/engine/relay"
	"github.com/switchboard/switchboard/luabind"
)

// relayPart runs the AMI relay; route expressions are Lua, evaluated on the serving script generation.
type relayPart struct {
	r    *relay.Relay
	nc   *nats.Conn // relay.journal = jetstream: the connection to the cluster, closed after the relay stops
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
	cluster, nc, err := relayNATS(e.cfg, e.log)
	if err != nil {
		return nil, err
	}
	r, err := relay.New(relay.Options{Config: cfg, Compile: luabind.RelayExprCompiler(e.lua), Log: e.log, Metrics: e.metrics, Cluster: cluster})
	if err != nil {
		if nc != nil {
			nc.Close()
		}
		return nil, err
	}
	e.lua.Services().Provide("relay", r)
	return &relayPart{r: r, nc: nc}, nil
}

func (p *relayPart) Start(ctx context.Context) error { return p.r.Start(ctx) }

// Shutdown is idempotent: a second call waits for the first (relay.Shutdown alone returns at once).
func (p *relayPart) Shutdown(ctx context.Context) error {
	return p.stop.do(ctx, func() error {
		err := p.r.Shutdown(ctx)
		if p.nc != nil {
			p.nc.Close()
		}
		return err
	})
}
func (p *relayPart) Reload(ctx context.Context) error { return p.r.Reload(ctx) }
func (p *relayPart) Addrs() map[string]net.Addr       { return p.r.Addrs() }
