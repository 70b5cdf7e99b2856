package engine

import (
	"github.com/switchboard/switchboard/engine/socket"
	"github.com/switchboard/switchboard/engine/socket/socketlua"
)

// newSocketPart builds the actionhero-compatible socket server from e.cfg, with the scripts' actions, verbs
// and hooks; nil, nil when the part is disabled.
func newSocketPart(e *Engine) (Part, error) {
	cfg := e.cfg.Socket
	if !cfg.Enabled {
		return nil, nil
	}
	perConn := fdPerSocketConn
	if cfg.PublicDir == "" {
		perConn = 1
	}
	cfg.MaxConnections = e.connBudget().capFor(e.log.WithField("part", "socket"), "socket.max_connections", cfg.MaxConnections, perConn)
	// Actions are looked up in the serving generation per request, so a reload applies to new requests.
	scripts := socketlua.NewScripts(e.lua)
	id := e.cfg.Cluster.NodeID
	if id == "" {
		id = defaultNodeID(e.cfg) // the cluster's node id: one name for this engine everywhere
	}
	srv, err := socket.New(cfg, socket.Options{Actions: scripts, Verbs: scripts, Hooks: scripts, RoomHooks: scripts,
		ID: id, Log: e.log, Metrics: e.metrics})
	if err != nil {
		return nil, err
	}
	return srv, nil
}
