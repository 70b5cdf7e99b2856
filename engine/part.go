package engine

import (
	"context"
	"net"
	"strings"
)

// Part is what the engine runs: the socket server (*socket.Server), the relay (*relay.Relay), call control
// (*esl.Server) and the active sockets (*channel.Set). Each part package builds one with
// New(cfg, Options) from its section of the configuration and the collaborators the engine hands it
// (its logger, the metrics registry, the bus, the small interface it asks of scripts); part_<name>.go
// here does that, applying what only the engine knows (connection caps from the descriptor budget).
//
// Errors: a part names the operation and the address or key that failed ("listen tcp 0.0.0.0:3289: bind:
// address already in use", "relay.tls: load key pair ..."), never itself; the engine adds the part's name
// once (StartError, and "relay: " before a reload or shutdown error).
type Part interface {
	// Start opens what the part serves on, its listener through engine/transport (TLS, allowlist,
	// keepalive, connection cap, TLS handshake timeout) or its outbound links, and returns once it serves.
	Start(ctx context.Context) error
	// Shutdown stops accepting, lets what is pending finish within ctx and says goodbye in the part's
	// protocol. It is idempotent (a second call waits for the first, bounded by its own ctx) and safe on a
	// part that never started.
	Shutdown(ctx context.Context) error
	// Addrs lists what the part listens on, by name ("socket", "relay", "esl"); nil before Start or for a
	// part that only dials out.
	Addrs() map[string]net.Addr
}

// Reloader is a Part with live-reloadable state of its own (the relay's routes file); Engine.Reload calls
// it after the scripts reloaded.
type Reloader interface {
	Reload(ctx context.Context) error
}

// namedPart is a part with the name the engine knows it by in logs, errors and Addrs.
type namedPart struct {
	name string
	p    Part
}

// partError adds the part's name to an error of the part, unless the error already starts with a key of
// the part's section ("relay.tls: ...") or the part's name.
func partError(name string, err error) error {
	if err == nil {
		return nil
	}
	msg := err.Error()
	if strings.HasPrefix(msg, name+".") || strings.HasPrefix(msg, name+":") {
		return err
	}
	return &prefixed{name: name, err: err}
}

type prefixed struct {
	name string
	err  error
}

func (p *prefixed) Error() string { return p.name + ": " + p.err.Error() }
func (p *prefixed) Unwrap() error { return p.err }
