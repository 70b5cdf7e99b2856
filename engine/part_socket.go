package engine

import (
	"context"
	"fmt"
	"net"
	"sync"

	"github.com/switchboard/switchboard/engine/socket"
	"github.com/switchboard/switchboard/luabind"
)

// socketPart runs the actionhero-compatible socket server with the scripts' actions, verbs and hooks.
type socketPart struct {
	srv  *socket.Server
	stop stopOnce

	mu   sync.Mutex
	l    net.Listener
	done chan error // Serve's result; read once, by the first Shutdown
}

// newSocketPart builds the socket part from e.cfg; it returns nil, nil when the part is disabled.
func newSocketPart(e *Engine) (part, error) {
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
	scripts := luabind.NewSocketScripts(e.lua)
	srv, err := socket.New(cfg, socket.Options{Actions: scripts, Verbs: scripts, Hooks: scripts, Log: e.log, Metrics: e.metrics})
	if err != nil {
		return nil, err
	}
	e.lua.Services().Provide("socket", srv)
	return &socketPart{srv: srv}, nil
}

func (p *socketPart) Start(ctx context.Context) error {
	l, err := p.srv.Listen()
	if err != nil {
		return err
	}
	done := make(chan error, 1)
	p.mu.Lock()
	p.l, p.done = l, done
	p.mu.Unlock()
	go func() { done <- p.srv.Serve(l) }()
	return nil
}

// Shutdown is idempotent and safe on a part that never started (see stopOnce).
func (p *socketPart) Shutdown(ctx context.Context) error {
	return p.stop.do(ctx, func() error {
		err := p.srv.Shutdown(ctx)
		p.mu.Lock()
		done := p.done
		p.mu.Unlock()
		if done != nil {
			if serr := <-done; serr != nil && err == nil {
				err = fmt.Errorf("socket: %w", serr)
			}
		}
		return err
	})
}

func (p *socketPart) Addrs() map[string]net.Addr {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.l == nil {
		return nil
	}
	return map[string]net.Addr{"socket": p.l.Addr()}
}
