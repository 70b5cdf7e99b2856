package engine

import (
	"context"
	"errors"
	"fmt"
	"net"
	"sync"

	"github.com/switchboard/switchboard/engine/esl"
	"github.com/switchboard/switchboard/engine/transport"
	"github.com/switchboard/switchboard/luabind"
)

// eslPart serves FreeSWITCH's outbound sockets; each call runs its sb.flow on the script generation that
// was serving when the call arrived.
type eslPart struct {
	e    *Engine
	cfg  esl.Config
	srv  *esl.Server
	stop stopOnce

	mu   sync.Mutex
	l    net.Listener
	done chan error // Serve's result; read once, by the first Shutdown
}

// newESLPart builds the esl part from e.cfg; it returns nil, nil when the part is disabled.
func newESLPart(e *Engine) (part, error) {
	cfg := e.cfg.ESL
	if !cfg.Enabled {
		return nil, nil
	}
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	cfg.MaxCalls = e.connBudget().capFor(e.log.WithField("part", "esl"), "esl.max_calls", cfg.MaxCalls, fdPerESLCall)
	// NewServer adds part=esl to the entry it is given.
	return &eslPart{e: e, cfg: cfg, srv: esl.NewServer(cfg, luabind.FlowResolver(e.lua), e.log, e.metrics)}, nil
}

func (p *eslPart) Start(ctx context.Context) error {
	allow, err := transport.ParseAllowlist(p.cfg.Allow)
	if err != nil {
		return fmt.Errorf("esl.allow: %w", err)
	}
	log := p.e.log.WithField("part", "esl")
	l, err := transport.Listen(transport.ListenConfig{Addr: p.cfg.Listen, Allow: allow, KeepAlive: p.cfg.KeepAlive,
		MaxConns: p.cfg.MaxCalls, Log: log})
	if err != nil {
		return fmt.Errorf("esl: %w", err)
	}
	done := make(chan error, 1)
	p.mu.Lock()
	p.l, p.done = l, done
	p.mu.Unlock()
	log.WithField("addr", l.Addr().String()).Info("listening")
	go func() { done <- p.srv.Serve(l) }()
	return nil
}

// Shutdown is idempotent and safe on a part that never started (see stopOnce).
func (p *eslPart) Shutdown(ctx context.Context) error {
	return p.stop.do(ctx, func() error {
		err := p.srv.Shutdown(ctx)
		p.mu.Lock()
		done := p.done
		p.mu.Unlock()
		if done != nil {
			if serr := <-done; serr != nil && !errors.Is(serr, esl.ErrServerClosed) && err == nil {
				err = serr
			}
		}
		return err
	})
}

func (p *eslPart) Addrs() map[string]net.Addr {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.l == nil {
		return nil
	}
	return map[string]net.Addr{"esl": p.l.Addr()}
}
