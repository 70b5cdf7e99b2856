package cluster

import (
	"errors"
	"fmt"
	"net/url"
	"regexp"
	"strings"
	"time"
)

// Config is the `cluster:` section. An empty NATSURL keeps the engine a single process: no connection is
// made and nothing of this package is on the hot path.
type Config struct {
	// NATSURL lists the NATS servers, comma-separated: nats://host:4222,nats://other:4222 (tls:// for TLS).
	NATSURL string `mapstructure:"nats_url"`
	// Name prefixes every subject and bucket, so that several clusters can share NATS servers.
	Name string `mapstructure:"name"`
	// NodeID names this engine in the cluster (lock holder, status, presence); "" = hostname:port.
	NodeID string `mapstructure:"node_id"`
	// Credentials is a NATS .creds file (JWT and NKey seed); "" connects without one.
	Credentials string `mapstructure:"credentials"`
	// TLS holds the files for a TLS connection to NATS (client certificate and the CA to trust).
	TLS TLSFiles `mapstructure:"tls"`
	// ConnectTimeout bounds one attempt to connect to a server.
	ConnectTimeout time.Duration `mapstructure:"connect_timeout"`
	// RequestTimeout bounds one request to NATS: a sb.cache operation, a status request to the nodes.
	RequestTimeout time.Duration `mapstructure:"request_timeout"`
	// SendBufferBytes bounds the topic messages waiting to be sent to NATS (published faster than NATS
	// takes them); past it a publish reaches this node's subscribers only, counted and logged.
	SendBufferBytes int `mapstructure:"send_buffer_bytes"`
	// ReconnectWait is the pause between two attempts to reach a server after the connection is lost.
	ReconnectWait time.Duration `mapstructure:"reconnect_wait"`
	// Rooms bounds the socket server's rooms shared by the nodes (rooms.go).
	Rooms RoomsConfig `mapstructure:"rooms"`
}

// TLSFiles are the files of a TLS connection to NATS; all are paths (resolved from the config's folder).
type TLSFiles struct {
	Cert string `mapstructure:"cert"` // client certificate (PEM), with key
	Key  string `mapstructure:"key"`
	CA   string `mapstructure:"ca"` // CA bundle to verify the servers; "" = the system's roots
}

// DefaultConfig is the section's defaults: no cluster.
func DefaultConfig() Config {
	return Config{Name: "switchboard", ConnectTimeout: 2 * time.Second, RequestTimeout: 2 * time.Second, ReconnectWait: time.Second,
		SendBufferBytes: 8 << 20, Rooms: DefaultRoomsConfig()}
}

// Enabled says whether the engine joins a cluster.
func (c Config) Enabled() bool { return strings.TrimSpace(c.NATSURL) != "" }

var nameRE = regexp.MustCompile(`^[A-Za-z0-9_-]{1,64}$`)

// Validate checks the section; every problem is reported.
func (c Config) Validate() error {
	var errs []error
	if !nameRE.MatchString(c.Name) {
		errs = append(errs, fmt.Errorf("cluster.name: expected 1 to 64 letters, digits, _ or -, got %q", c.Name))
	}
	if len(c.NodeID) > 128 || strings.ContainsAny(c.NodeID, " \t\r\n") {
		errs = append(errs, fmt.Errorf("cluster.node_id: expected at most 128 characters without spaces, got %q", c.NodeID))
	}
	if c.Enabled() {
		for _, u := range c.servers() {
			p, err := url.Parse(u)
			if err != nil || p.Host == "" {
				errs = append(errs, fmt.Errorf("cluster.nats_url: expected URLs such as nats://127.0.0.1:4222, got %q", u))
				continue
			}
			switch p.Scheme {
			case "nats", "tls", "ws", "wss":
			default:
				errs = append(errs, fmt.Errorf("cluster.nats_url: expected a nats://, tls://, ws:// or wss:// URL, got %q", u))
			}
		}
	}
	if c.SendBufferBytes < 64<<10 {
		errs = append(errs, fmt.Errorf("cluster.send_buffer_bytes: expected at least 65536, got %d", c.SendBufferBytes))
	}
	if err := c.Rooms.Validate(); err != nil {
		errs = append(errs, err)
	}
	if (c.TLS.Cert == "") != (c.TLS.Key == "") {
		errs = append(errs, errors.New("cluster.tls: cert and key go together: set both or neither"))
	}
	for _, d := range []struct {
		key string
		v   time.Duration
	}{{"cluster.connect_timeout", c.ConnectTimeout}, {"cluster.request_timeout", c.RequestTimeout}, {"cluster.reconnect_wait", c.ReconnectWait}} {
		if d.v <= 0 {
			errs = append(errs, fmt.Errorf("%s: expected a positive duration such as 2s, got %v", d.key, d.v))
		}
	}
	return errors.Join(errs...)
}

// servers splits NATSURL; a bare host:port gets nats://.
func (c Config) servers() []string {
	var out []string
	for _, s := range strings.Split(c.NATSURL, ",") {
		s = strings.TrimSpace(s)
		if s == "" {
			continue
		}
		if !strings.Contains(s, "://") {
			s = "nats://" + s
		}
		out = append(out, s)
	}
	return out
}
