package engine

import (
	"context"
	"net"

	"github.com/switchboard/switchboard/engine/relay"
	"github.com/switchboard/switchboard/engine/relay/relaylua"
	"github.com/switchboard/switchboard/internal/lifecycle"
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
	r, err := relay.New(relay.Options{Config: cfg, Compile: relaylua.Compiler(e.lua), Log: e.log, Metrics: e.metrics})
	if err != nil {
		return nil, err
	}
	return &relayPart{Relay: r}, nil
}

// relayPart makes the relay's Shutdown wait for a first one in progress (relay.Shutdown alone returns at
// once when called again).
type relayPart struct {
	*relay.Relay
	stop lifecycle.StopOnce
}

func (p *relayPart) Shutdown(ctx context.Context) error {
	return p.stop.Do(ctx, func() error { return p.Relay.Shutdown(ctx) })
}

var _ interface {
	Part
	Reloader
	Addrs() map[string]net.Addr
} = (*relayPart)(nil)
