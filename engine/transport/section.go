package transport

import (
	"fmt"
	"net"
	"strconv"
	"time"
)

// TLSFiles is the tls: subsection of a listener's configuration (socket.tls, relay.tls): the PEM
// certificate and key, and how long a client may take to finish its handshake.
type TLSFiles struct {
	Cert string `mapstructure:"cert"`
	Key  string `mapstructure:"key"`
	// HandshakeTimeout closes a connection whose TLS handshake is not done this long after accept.
	HandshakeTimeout time.Duration `mapstructure:"handshake_timeout"`
}

// Section is a part's listener as its configuration section gives it. Every part that listens (socket,
// relay, esl) describes its listener with one and opens it through ListenConfig, so that TLS, the
// allowlist, keepalive, the connection cap and the handshake limit mean the same in every part. The
// sections' keys keep the names operators know (relay.whitelist and esl.allow are both the allowlist;
// socket.secure switches socket.tls on).
type Section struct {
	Key       string        // the configuration section ("relay"), for errors
	Listen    string        // host:port
	TLS       *TLSFiles     // nil: plain TCP
	Allow     string        // allowlist ("" = everyone; "text:..." or "file:path")
	AllowKey  string        // the allowlist's key ("relay.whitelist"), for errors
	KeepAlive time.Duration // 0 = off
	MaxConns  int           // 0 = no cap
}

// ListenConfig loads what the section names (certificate, allowlist file) and returns the ListenConfig to
// complete (Log and the part's hooks) and hand to Listen. Its errors name the key that is wrong:
// "relay.tls: load key pair ...", "esl.allow: bad CIDR ...".
func (s Section) ListenConfig() (ListenConfig, error) {
	lc := ListenConfig{Addr: s.Listen, KeepAlive: s.KeepAlive, MaxConns: s.MaxConns}
	if s.TLS != nil {
		tc, err := ServerTLS(s.TLS.Cert, s.TLS.Key)
		if err != nil {
			return lc, fmt.Errorf("%s.tls: %w", s.Key, err)
		}
		lc.TLS, lc.HandshakeTimeout = tc, s.TLS.HandshakeTimeout
	}
	allow, err := ParseAllowlist(s.Allow)
	if err != nil {
		return lc, fmt.Errorf("%s: %w", s.AllowKey, err)
	}
	lc.Allow = allow
	return lc, nil
}

// CheckHostPort checks an address to listen on or dial: host:port with a port 0-65535 (0 picks a free
// port); the host may be empty (every interface), a name or an IP address ([::1] for IPv6). Every section
// that names an address checks it here, so the error reads the same for every key.
func CheckHostPort(addr string) error {
	_, port, err := net.SplitHostPort(addr)
	if err != nil {
		return fmt.Errorf("expected host:port such as 127.0.0.1:9090, got %q", addr)
	}
	if n, err := strconv.Atoi(port); err != nil || n < 0 || n > 65535 {
		return fmt.Errorf("expected host:port with a port 0-65535, got %q", addr)
	}
	return nil
}
