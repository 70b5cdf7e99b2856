package relay

import (
	"errors"
	"fmt"
	"sort"
	"strings"
	"time"

	"github.com/switchboard/switchboard/engine/transport"
)

// Config is the `relay:` section of switchboard.yaml.
type Config struct {
	Enabled bool   `mapstructure:"enabled"`
	ID      string `mapstructure:"id"`
	// Listen is host:port; port -1 disables the listener (centers and journal still run).
	Listen    string             `mapstructure:"listen"`
	TLS       transport.TLSFiles `mapstructure:"tls"` // TLS when cert and key are set
	Whitelist string             `mapstructure:"whitelist"`
	// Centers maps a center name to "host:port", or "tls://host:port" for a TLS link. As text (3forge's
	// ami.centers form, or a list) it reads "[name=]host:port,..."; a center without a name is named by its
	// host:port.
	Centers Centers `mapstructure:"centers"`
	// CenterCA is the CA file that verifies TLS centers ("" = system roots).
	CenterCA string `mapstructure:"center_ca"`
	// CenterTLS gives a center its own TLS client material (3forge's ami.center.<name>.keystore.*): a
	// certificate and key it presents, and a CA that verifies it. A center listed here uses TLS.
	CenterTLS  map[string]CenterTLSConfig `mapstructure:"center_tls"`
	RoutesFile string                     `mapstructure:"routes_file"`
	// RoutesCacheSize bounds the object index (objects remembered, for follow_objects and for E routing);
	// 0 disables it.
	RoutesCacheSize int `mapstructure:"routes_cache_size"`
	// FollowObjects: "off" (the rules alone, 3forge's routing), "deletes" (a D also goes wherever its object
	// went) or "updates_and_deletes" (updates and deletes do).
	FollowObjects string `mapstructure:"follow_objects"`
	// ExpressionCache is how many expression results each connection remembers per rule (0 = evaluate every
	// time). Expressions must then be pure functions of their declared params.
	ExpressionCache int `mapstructure:"expression_cache"`
	// ExpressionCacheBytes bounds the remembered results of one connection (all rules): keys, values and a
	// per-entry overhead. Past it the connection's memo starts over.
	ExpressionCacheBytes int  `mapstructure:"expression_cache_bytes"`
	Guaranteed           bool `mapstructure:"guaranteed"`
	// Journal is where guaranteed mode keeps messages until their centers acknowledge them: "local"
	// (segment files in persist_dir) or "jetstream" (a replicated stream of the NATS cluster, cluster.nats_url:
	// a relay node's loss loses no acknowledged message, and another node with the same relay.id takes over).
	Journal string `mapstructure:"journal"`
	// JetStream tunes relay.journal = jetstream.
	JetStream  JetStreamConfig `mapstructure:"jetstream"`
	PersistDir string          `mapstructure:"persist_dir"`
	// SegmentBytes is the journal segment size before a new segment starts.
	SegmentBytes int64 `mapstructure:"segment_bytes"`
	// JournalRetentionBytes bounds, per center, the journal it has not acknowledged: past it the oldest
	// segment is dropped for that center (counted, logged). 0 = no bound.
	JournalRetentionBytes int64 `mapstructure:"journal_retention_bytes"`
	// JournalRetentionAge drops, per center, the segments whose records are all older than this. 0 = none.
	JournalRetentionAge time.Duration `mapstructure:"journal_retention_age"`
	LogMessages         bool          `mapstructure:"log_messages"`
	// MessageLog is the file log_messages writes to.
	MessageLog    string        `mapstructure:"message_log"`
	SendCR        bool          `mapstructure:"send_cr"`
	WaitForCenter time.Duration `mapstructure:"wait_for_center"`
	// MaxLine is the longest accepted instruction in bytes.
	MaxLine int `mapstructure:"max_line"`
	// MaxLoginBytes is the longest application id (I of the login) accepted.
	MaxLoginBytes int `mapstructure:"max_login_bytes"`
	// ClientQueue is how many statuses may wait for their journal record (guaranteed mode) before the relay
	// stops reading the application.
	ClientQueue int `mapstructure:"client_queue"`
	// ClientQueueBytes bounds the bytes of statuses and E lines waiting for an application that does not
	// read them; past it the application is disconnected (counted).
	ClientQueueBytes int `mapstructure:"client_queue_bytes"`
	// CenterQueue is how many messages may wait for one center (non-guaranteed mode drops past it, counted).
	CenterQueue int `mapstructure:"center_queue"`
	// CenterQueueBytes bounds the bytes waiting for one center (routed lines and R answers).
	CenterQueueBytes int `mapstructure:"center_queue_bytes"`
	// MaxAppSeries is how many application ids get their own switchboard_relay_app_messages_in_total
	// series at a time; the others count under app="other".
	MaxAppSeries   int           `mapstructure:"max_app_series"`
	MaxConnections int           `mapstructure:"max_connections"`
	KeepAlive      time.Duration `mapstructure:"keepalive"`
	// WriteTimeout bounds one write to a center or an application: a peer that takes nothing for this long
	// is disconnected (a center is redialed; its journal records are sent again in guaranteed mode).
	WriteTimeout time.Duration `mapstructure:"write_timeout"`
	// MaxPause caps the delay of a P (pause) instruction.
	MaxPause time.Duration `mapstructure:"max_pause"`
}

// The values of relay.journal.
const (
	JournalLocal     = "local"
	JournalJetStream = "jetstream"
)

// JetStreamConfig is relay.jetstream.
type JetStreamConfig struct {
	// Replicas is the number of servers holding the journal stream and the relay's buckets (3 survives the
	// loss of one server; at most 5, and at most the cluster's servers).
	Replicas int `mapstructure:"replicas"`
	// LeaseTTL bounds the active node's lease: after the active node dies, another takes over within about
	// LeaseTTL * 1.2; a node that cannot renew stops being active after LeaseTTL * 3/4, so LeaseTTL * 3/4
	// should exceed what NATS takes to elect a new leader after losing a server (4 to 9 s when it dies
	// abruptly) for the active node to ride through it.
	LeaseTTL time.Duration `mapstructure:"lease_ttl"`
	// AckTimeout is how long a record may wait for the stream's acknowledgement before the node looks at
	// the stream and sends again what it did not store.
	AckTimeout time.Duration `mapstructure:"ack_timeout"`
	// MaxInflightBytes bounds the records sent to the stream and not acknowledged yet; past it appends
	// wait (the applications' statuses come later).
	MaxInflightBytes int64 `mapstructure:"max_inflight_bytes"`
}

// CenterTLSConfig is one center's TLS client material (PEM files).
type CenterTLSConfig struct {
	Cert string `mapstructure:"cert"` // client certificate presented to the center ("" = none)
	Key  string `mapstructure:"key"`
	CA   string `mapstructure:"ca"` // verifies the center ("" = relay.center_ca, else the system roots)
}

// Centers maps center names to addresses (relay.centers).
type Centers map[string]string

// UnmarshalText reads 3forge's ami.centers form, "[name=]host:port,..." (a value may be tls://host:port):
// a center given without a name is named by its host:port. An entry that is not host:port is kept as is,
// for Validate to name.
func (c *Centers) UnmarshalText(b []byte) error {
	out := Centers{}
	for _, e := range strings.Split(string(b), ",") {
		e = strings.TrimSpace(e)
		if e == "" {
			continue
		}
		name, addr, named := strings.Cut(e, "=")
		if !named {
			addr = e
			name, _ = centerAddr(e)
		}
		name, addr = strings.TrimSpace(name), strings.TrimSpace(addr)
		if _, dup := out[name]; dup {
			return fmt.Errorf("center %q given twice", name)
		}
		out[name] = addr
	}
	*c = out
	return nil
}

// DefaultConfig returns the defaults documented in configs/switchboard.yaml.
func DefaultConfig() Config {
	return Config{
		Enabled:               true,
		ID:                    "relay1",
		Listen:                "0.0.0.0:3289",
		TLS:                   transport.TLSFiles{HandshakeTimeout: 10 * time.Second},
		Centers:               Centers{},
		CenterTLS:             map[string]CenterTLSConfig{},
		RoutesFile:            "configs/relay.routes",
		RoutesCacheSize:       10000,
		FollowObjects:         "off",
		ExpressionCache:       4096,
		ExpressionCacheBytes:  256 << 10,
		Journal:               JournalLocal,
		JetStream:             JetStreamConfig{Replicas: 3, LeaseTTL: 10 * time.Second, AckTimeout: 2 * time.Second, MaxInflightBytes: 4 << 20},
		PersistDir:            "data/persist",
		SegmentBytes:          64 << 20,
		JournalRetentionBytes: 4 << 30,
		JournalRetentionAge:   7 * 24 * time.Hour,
		MessageLog:            "data/relay-messages.log",
		MaxLine:               64 << 10,
		MaxLoginBytes:         256,
		ClientQueue:           4096,
		ClientQueueBytes:      1 << 20,
		CenterQueue:           65536,
		CenterQueueBytes:      64 << 20,
		MaxAppSeries:          100,
		MaxPause:              10 * time.Second,
		WriteTimeout:          30 * time.Second,
	}
}

// Section is the relay's listener (transport.Section): TLS when relay.tls names a certificate, the
// allowlist relay.whitelist, keepalive, the connection cap.
func (c Config) Section() transport.Section {
	sec := transport.Section{Key: "relay", Listen: c.Listen, Allow: c.Whitelist, AllowKey: "relay.whitelist",
		KeepAlive: c.KeepAlive, MaxConns: c.MaxConnections}
	if c.TLS.Cert != "" {
		tf := c.TLS
		sec.TLS = &tf
	}
	return sec
}

// ListenDisabled reports whether the listener is off (port -1).
func (c Config) ListenDisabled() bool { return strings.HasSuffix(c.Listen, ":-1") }

// CenterNames returns the center names in index order (sorted).
func (c Config) CenterNames() []string {
	names := make([]string, 0, len(c.Centers))
	for n := range c.Centers {
		names = append(names, n)
	}
	sort.Strings(names)
	return names
}

// validCenterName: letters, digits, '_', '-', '.', ':', '[', ']' (a host:port is a name), not "." or "..";
// a name is part of file names in persist_dir (cursor.<name>).
func validCenterName(n string) bool {
	if n == "" || n == "." || n == ".." {
		return false
	}
	for i := 0; i < len(n); i++ {
		if !isKeyByte(n[i]) && !strings.ContainsRune("-.:[]", rune(n[i])) {
			return false
		}
	}
	return true
}

// CenterByName returns the configured name matching name without regard to case ("" = none).
func (c Config) CenterByName(name string) string {
	if _, ok := c.Centers[name]; ok {
		return name
	}
	for n := range c.Centers {
		if strings.EqualFold(n, name) {
			return n
		}
	}
	return ""
}

// centerTLS returns the TLS client material of center name (matched without regard to case) and whether it
// has any.
func (c Config) centerTLS(name string) (CenterTLSConfig, bool) {
	for n, t := range c.CenterTLS {
		if strings.EqualFold(n, name) {
			return t, true
		}
	}
	return CenterTLSConfig{}, false
}

// centerAddr splits a center value into its address and whether it uses TLS.
func centerAddr(v string) (addr string, useTLS bool) {
	if rest, ok := strings.CutPrefix(v, "tls://"); ok {
		return rest, true
	}
	return strings.TrimPrefix(v, "tcp://"), false
}

// Validate reports every bad value, each naming its key path.
func (c Config) Validate() error {
	if !c.Enabled {
		return nil
	}
	var errs []error
	if c.ID == "" {
		errs = append(errs, fmt.Errorf("relay.id: expected a non-empty relay id"))
	}
	if !c.ListenDisabled() {
		if err := transport.CheckHostPort(c.Listen); err != nil {
			errs = append(errs, fmt.Errorf("relay.listen: %v (port -1 disables the listener)", err))
		}
	}
	if (c.TLS.Cert == "") != (c.TLS.Key == "") {
		errs = append(errs, fmt.Errorf("relay.tls: expected both cert and key, or neither"))
	}
	if len(c.Centers) > MaxCenters {
		errs = append(errs, fmt.Errorf("relay.centers: at most %d centers, got %d", MaxCenters, len(c.Centers)))
	}
	for _, n := range c.CenterNames() {
		if n == "" {
			errs = append(errs, fmt.Errorf("relay.centers: a center with an empty name"))
			continue
		}
		if !validCenterName(n) {
			errs = append(errs, fmt.Errorf("relay.centers.%s: expected a name of letters, digits, '_', '-', '.' (or a host:port)", n))
		}
		if addr, _ := centerAddr(c.Centers[n]); transport.CheckHostPort(addr) != nil {
			errs = append(errs, fmt.Errorf("relay.centers.%s: expected host:port or tls://host:port, got %q", n, c.Centers[n]))
		}
	}
	seen := map[string]string{}
	for _, n := range c.CenterNames() {
		if prev, dup := seen[strings.ToLower(n)]; dup {
			errs = append(errs, fmt.Errorf("relay.centers: %q and %q are the same name (names are matched without regard to case)", prev, n))
		}
		seen[strings.ToLower(n)] = n
	}
	tlsNames := make([]string, 0, len(c.CenterTLS))
	for n := range c.CenterTLS {
		tlsNames = append(tlsNames, n)
	}
	sort.Strings(tlsNames)
	for _, n := range tlsNames {
		if c.CenterByName(n) == "" {
			errs = append(errs, fmt.Errorf("relay.center_tls.%s: no such center in relay.centers", n))
			continue
		}
		if t := c.CenterTLS[n]; (t.Cert == "") != (t.Key == "") {
			errs = append(errs, fmt.Errorf("relay.center_tls.%s: expected both cert and key, or neither", n))
		}
	}
	if c.RoutesCacheSize < 0 {
		errs = append(errs, fmt.Errorf("relay.routes_cache_size: expected 0 or more, got %d", c.RoutesCacheSize))
	}
	if _, ok := ParseFollowMode(c.FollowObjects); !ok {
		errs = append(errs, fmt.Errorf("relay.follow_objects: expected off, deletes or updates_and_deletes, got %q", c.FollowObjects))
	}
	if c.FollowObjects != "off" && c.FollowObjects != "" && c.RoutesCacheSize == 0 {
		errs = append(errs, fmt.Errorf("relay.follow_objects: %s needs the object index: relay.routes_cache_size is 0", c.FollowObjects))
	}
	if c.ExpressionCache < 0 {
		errs = append(errs, fmt.Errorf("relay.expression_cache: expected 0 or more, got %d", c.ExpressionCache))
	}
	switch c.Journal {
	case JournalLocal, "":
	case JournalJetStream:
		if !c.Guaranteed {
			errs = append(errs, fmt.Errorf("relay.journal: jetstream journals guaranteed mode: set relay.guaranteed to true"))
		}
		if c.JetStream.Replicas < 1 || c.JetStream.Replicas > 5 {
			errs = append(errs, fmt.Errorf("relay.jetstream.replicas: expected 1 to 5 (3 survives the loss of a server), got %d", c.JetStream.Replicas))
		}
		if c.JetStream.LeaseTTL < time.Second {
			errs = append(errs, fmt.Errorf("relay.jetstream.lease_ttl: expected at least 1s, got %v", c.JetStream.LeaseTTL))
		}
		if c.JetStream.AckTimeout <= 0 {
			errs = append(errs, fmt.Errorf("relay.jetstream.ack_timeout: expected a positive duration such as 5s, got %v", c.JetStream.AckTimeout))
		}
		if c.JetStream.MaxInflightBytes < int64(c.MaxLine) {
			errs = append(errs, fmt.Errorf("relay.jetstream.max_inflight_bytes: expected at least relay.max_line (%d), got %d", c.MaxLine, c.JetStream.MaxInflightBytes))
		}
	default:
		errs = append(errs, fmt.Errorf("relay.journal: expected local or jetstream, got %q", c.Journal))
	}
	if c.Guaranteed && c.Journal != JournalJetStream && c.PersistDir == "" {
		errs = append(errs, fmt.Errorf("relay.persist_dir: expected a directory when relay.guaranteed is true"))
	}
	if c.Guaranteed && c.SegmentBytes < 4096 {
		errs = append(errs, fmt.Errorf("relay.segment_bytes: expected at least 4096, got %d", c.SegmentBytes))
	}
	if c.JournalRetentionBytes < 0 || c.Guaranteed && c.JournalRetentionBytes > 0 && c.JournalRetentionBytes < 2*c.SegmentBytes {
		errs = append(errs, fmt.Errorf("relay.journal_retention_bytes: expected 0 (no bound) or at least twice relay.segment_bytes (%d), got %d", 2*c.SegmentBytes, c.JournalRetentionBytes))
	}
	if c.JournalRetentionAge < 0 {
		errs = append(errs, fmt.Errorf("relay.journal_retention_age: expected 0 (no bound) or a duration such as 168h, got %v", c.JournalRetentionAge))
	}
	if c.LogMessages && c.MessageLog == "" {
		errs = append(errs, fmt.Errorf("relay.message_log: expected a file when relay.log_messages is true"))
	}
	if c.MaxLine < 64 {
		errs = append(errs, fmt.Errorf("relay.max_line: expected at least 64 bytes, got %d", c.MaxLine))
	}
	if c.ExpressionCacheBytes < 0 {
		errs = append(errs, fmt.Errorf("relay.expression_cache_bytes: expected 0 or more, got %d", c.ExpressionCacheBytes))
	}
	if c.MaxLoginBytes < 1 {
		errs = append(errs, fmt.Errorf("relay.max_login_bytes: expected at least 1, got %d", c.MaxLoginBytes))
	}
	if c.ClientQueue < 1 {
		errs = append(errs, fmt.Errorf("relay.client_queue: expected at least 1, got %d", c.ClientQueue))
	}
	if c.ClientQueueBytes < 4096 {
		errs = append(errs, fmt.Errorf("relay.client_queue_bytes: expected at least 4096, got %d", c.ClientQueueBytes))
	}
	if c.CenterQueue < 1 {
		errs = append(errs, fmt.Errorf("relay.center_queue: expected at least 1, got %d", c.CenterQueue))
	}
	if c.CenterQueueBytes < c.MaxLine {
		errs = append(errs, fmt.Errorf("relay.center_queue_bytes: expected at least relay.max_line (%d), got %d", c.MaxLine, c.CenterQueueBytes))
	}
	if c.MaxAppSeries < 0 {
		errs = append(errs, fmt.Errorf("relay.max_app_series: expected 0 or more, got %d", c.MaxAppSeries))
	}
	if c.WriteTimeout <= 0 {
		errs = append(errs, fmt.Errorf("relay.write_timeout: expected a positive duration such as 30s, got %v", c.WriteTimeout))
	}
	if c.MaxConnections < 0 || c.WaitForCenter < 0 || c.KeepAlive < 0 || c.MaxPause < 0 {
		errs = append(errs, fmt.Errorf("relay: max_connections, wait_for_center, keepalive and max_pause must not be negative"))
	}
	if c.TLS.Cert != "" && c.TLS.HandshakeTimeout <= 0 {
		errs = append(errs, fmt.Errorf("relay.tls.handshake_timeout: expected a positive duration such as 10s, got %v", c.TLS.HandshakeTimeout))
	}
	return errors.Join(errs...)
}

// Warnings lists what in a valid configuration deserves the operator's attention (switchboard check):
// guaranteed mode without a bound on the journal.
func (c Config) Warnings() []string {
	if !c.Enabled || !c.Guaranteed {
		return nil
	}
	var out []string
	if c.Journal == JournalJetStream && c.JetStream.Replicas < 3 {
		out = append(out, fmt.Sprintf("relay: relay.jetstream.replicas is %d: the journal survives no server's loss (3 survives one)", c.JetStream.Replicas))
	}
	if c.JournalRetentionBytes == 0 {
		if c.JournalRetentionAge == 0 {
			out = append(out, "relay: journal retention is off (relay.journal_retention_bytes and relay.journal_retention_age are 0): "+
				"the journal grows without bound for a center that never returns, or that relay.centers no longer names")
		} else {
			out = append(out, fmt.Sprintf("relay: relay.journal_retention_bytes is 0: the journal is bounded only by age (%v), "+
				"not in bytes, for a center that does not return", c.JournalRetentionAge))
		}
	}
	return out
}
