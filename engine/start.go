package engine

import (
	"errors"
	"fmt"
	"net"
	"os"
	"strings"
)

// StartError says which part could not start, on which address, and why. Its text is what an operator
// needs and nothing twice: `relay: listen 0.0.0.0:3289: address already in use`. The full chain stays
// reachable with errors.Is / errors.As (errors.Is(err, syscall.EADDRINUSE) holds for a port in use).
type StartError struct {
	Part string // socket, relay, esl, channels or admin
	Addr string // the configured address of a listen that failed; "" when the failure was not a listen
	Err  error
}

func (e *StartError) Error() string {
	if e.Addr != "" {
		return fmt.Sprintf("%s: listen %s: %v", e.Part, e.Addr, ListenCause(e.Err))
	}
	msg := e.Err.Error()
	// Parts name their own keys ("relay.tls: ...", "esl.allow: ..."); the part is not said twice.
	if strings.HasPrefix(msg, e.Part+".") || strings.HasPrefix(msg, e.Part+":") {
		return msg
	}
	return e.Part + ": " + msg
}

func (e *StartError) Unwrap() error { return e.Err }

// ListenCause is why a listen failed, without the layers that repeat the address: "address already in
// use", "permission denied", "cannot assign requested address", "lookup nosuch: no such host". It is err
// itself when err holds no failed listen.
func ListenCause(err error) error {
	var op *net.OpError
	if !errors.As(err, &op) || op.Op != "listen" || op.Err == nil {
		return err
	}
	var sys *os.SyscallError
	if errors.As(op.Err, &sys) {
		return sys.Err
	}
	return op.Err
}

// startError describes the failure of a part's start; addr is the address the part was configured to
// listen on, used when the failure is a listen.
func startError(part, addr string, err error) *StartError {
	var op *net.OpError
	if errors.As(err, &op) && op.Op == "listen" {
		if addr == "" && op.Addr != nil {
			addr = op.Addr.String()
		}
		if addr != "" {
			return &StartError{Part: part, Addr: addr, Err: err}
		}
	}
	return &StartError{Part: part, Err: err}
}

// listenAddr is the address a part is configured to listen on ("" for parts that do not listen).
func (c Config) listenAddr(part string) string {
	switch part {
	case "socket":
		return c.Socket.Listen
	case "relay":
		return c.Relay.Listen
	case "esl":
		return c.ESL.Listen
	case "admin":
		return c.Admin.Listen
	}
	return ""
}
