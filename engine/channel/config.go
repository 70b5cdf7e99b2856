package channel

import (
	"errors"
	"fmt"
	"math"
	"net"
	"sort"
	"strconv"
	"strings"
	"time"
)

// Protocol names accepted in `protocol`.
const (
	TextMessages = "text-messages"
	XMLMessages  = "xml-messages"
	HTTP         = "http"
	TextStream   = "text-stream"
	Asymmetric   = "asymmetric"
	RESP         = "resp"
)

// Framing is one direction's framing of an asymmetric channel.
type Framing struct {
	Protocol     string // text-messages, xml-messages, text-stream
	Delimiter    string // unescaped bytes
	ShowMessages bool
	ShowPackets  bool
}

// Config is one entry of the `channels:` list in switchboard.yaml. The canonical keys are snake_case
// (redirect_in, reconnection_timeout, ...); the seed's forms (redirect-in, reconnectionTimeout,
// protocol.showmessages, protocol.inbound, ...) are accepted as aliases.
type Config struct {
	Name     string
	Run      bool
	Protocol string
	MsgType  string // text | xml (informational: payloads are strings either way)
	Host     string
	Port     int

	Permanent           bool
	RedirectIn          bool
	RedirectOut         bool
	TopicIn             string
	TopicOut            string
	ReconnectionTimeout time.Duration // first wait after a break or a failed connect
	ReconnectMax        time.Duration // cap of the backoff that follows
	DialTimeout         time.Duration
	KeepAlive           time.Duration // TCP keepalive period; 0 = off
	IdleTimeout         time.Duration // no inbound bytes for this long forces a reconnect; 0 = off

	ResponseTimeout time.Duration // a reply due (http, resp: every request; others: ch:request) must be complete within this; 0 = off

	// Heartbeat, when set, is written every HeartbeatInterval; some input must arrive within HeartbeatTimeout
	// of it or the connection is closed as dead. With a heartbeat a new connection is up only once the peer
	// has sent something. On http and resp the heartbeat is a request whose reply is consumed; on the other
	// framings an inbound message equal to HeartbeatReply (if set) is consumed.
	Heartbeat         string // unescaped; "" = off
	HeartbeatReply    string // unescaped
	HeartbeatInterval time.Duration
	HeartbeatTimeout  time.Duration

	Delimiter       string // text-messages: unescaped; "" = every read is one message
	FixedSize       int    // text-stream: exactly this many bytes per message; 0 = what is available
	MaxMessageSize  int    // bytes; bounds every inbound message (HTTP: the body)
	MaxHeaderSize   int    // http: status line + headers
	SendBuffer      int    // messages held while down (and queued for writing while up)
	SendBufferBytes int    // the same in bytes
	ReceiveBuffer   int    // bytes of inbound messages with no taker kept for Receive; 0 = none kept
	FollowAbsolute  bool   // http: a request for an absolute URL of another host is fetched from that host
	ShowMessages    bool
	ShowPackets     bool

	Inbound, Outbound Framing // asymmetric only

	TLS       bool
	TLSServer string // server name checked on the certificate; "" = host
	TLSCA     string // CA file; "" = system roots
}

// DefaultConfig returns the defaults applied to every channel entry.
func DefaultConfig() Config {
	return Config{
		Run: true, Protocol: TextMessages, MsgType: "text", Delimiter: "\n",
		ReconnectionTimeout: 10 * time.Second, ReconnectMax: 5 * time.Minute, DialTimeout: 10 * time.Second,
		KeepAlive: 30 * time.Second, MaxMessageSize: 1_000_000, MaxHeaderSize: 64 << 10, SendBuffer: 1024,
		SendBufferBytes: 16 << 20, ReceiveBuffer: 1 << 20, ResponseTimeout: 30 * time.Second,
		HeartbeatInterval: 10 * time.Second, HeartbeatTimeout: 5 * time.Second,
	}
}

// Addr is host:port.
func (c Config) Addr() string { return net.JoinHostPort(c.Host, strconv.Itoa(c.Port)) }

// Validate reports the first bad value, naming its key path.
func (c Config) Validate() error { return c.validate(fmt.Sprintf("channels[%s]", c.Name)) }

func (c Config) validate(path string) error {
	switch {
	case c.Name == "":
		return fmt.Errorf("%s.name: expected a non-empty name", path)
	case c.Host == "":
		return fmt.Errorf("%s.host: expected a hostname or IP address", path)
	case c.Port < 1 || c.Port > 65535:
		return fmt.Errorf("%s.port: expected 1-65535, got %d", path, c.Port)
	case c.RedirectIn && c.TopicIn == "":
		return fmt.Errorf("%s.topic_in: expected a topic name (redirect_in is true)", path)
	case c.RedirectOut && c.TopicOut == "":
		return fmt.Errorf("%s.topic_out: expected a topic name (redirect_out is true)", path)
	case c.ReconnectionTimeout <= 0:
		return fmt.Errorf("%s.reconnection_timeout: expected a positive duration such as 10s or 10, got %v", path, c.ReconnectionTimeout)
	case c.ReconnectMax < c.ReconnectionTimeout:
		return fmt.Errorf("%s.reconnect_max: expected a duration >= reconnection_timeout (%v), got %v", path, c.ReconnectionTimeout, c.ReconnectMax)
	case c.MaxMessageSize < 1:
		return fmt.Errorf("%s.max_message_size: expected a positive byte count, got %d", path, c.MaxMessageSize)
	case c.MaxHeaderSize < 256:
		return fmt.Errorf("%s.max_header_size: expected at least 256, got %d", path, c.MaxHeaderSize)
	case c.SendBuffer < 1:
		return fmt.Errorf("%s.send_buffer: expected a positive message count, got %d", path, c.SendBuffer)
	case c.SendBufferBytes < 1:
		return fmt.Errorf("%s.send_buffer_bytes: expected a positive byte count, got %d", path, c.SendBufferBytes)
	case c.ReceiveBuffer < 0:
		return fmt.Errorf("%s.receive_buffer_bytes: expected 0 (keep none) or a byte count, got %d", path, c.ReceiveBuffer)
	case c.ResponseTimeout < 0:
		return fmt.Errorf("%s.response_timeout: expected 0 (off) or a duration such as 30s, got %v", path, c.ResponseTimeout)
	case c.Heartbeat != "" && c.HeartbeatInterval <= 0:
		return fmt.Errorf("%s.heartbeat_interval: expected a positive duration (heartbeat is set), got %v", path, c.HeartbeatInterval)
	case c.Heartbeat != "" && c.HeartbeatTimeout <= 0:
		return fmt.Errorf("%s.heartbeat_timeout: expected a positive duration (heartbeat is set), got %v", path, c.HeartbeatTimeout)
	case c.HeartbeatReply != "" && c.Heartbeat == "":
		return fmt.Errorf("%s.heartbeat_reply: set without heartbeat", path)
	case c.FollowAbsolute && c.Protocol != HTTP:
		return fmt.Errorf("%s.follow_absolute: only for protocol http, got %s", path, c.Protocol)
	case !c.Permanent && c.RedirectIn && !c.RedirectOut:
		return fmt.Errorf("%s.permanent: false with redirect_in: true and redirect_out: false: nothing would open the connection "+
			"for topic_in (an on-demand channel connects when a message is sent); set permanent: true", path)
	case c.FixedSize < 0 || c.FixedSize > c.MaxMessageSize:
		return fmt.Errorf("%s.fixed_size: expected 0-%d (max_message_size), got %d", path, c.MaxMessageSize, c.FixedSize)
	case c.DialTimeout < 0 || c.KeepAlive < 0 || c.IdleTimeout < 0:
		return fmt.Errorf("%s: dial_timeout, keepalive and idle_timeout must not be negative", path)
	}
	switch c.Protocol {
	case TextMessages, XMLMessages, HTTP, TextStream, RESP:
	case Asymmetric:
		for _, f := range []struct {
			key string
			f   Framing
		}{{"inbound", c.Inbound}, {"outbound", c.Outbound}} {
			switch f.f.Protocol {
			case TextMessages, XMLMessages, TextStream:
			default:
				return fmt.Errorf("%s.%s.protocol: expected text-messages, xml-messages or text-stream, got %q", path, f.key, f.f.Protocol)
			}
		}
	default:
		return fmt.Errorf("%s.protocol: expected text-messages, xml-messages, http, text-stream, resp or asymmetric, got %q", path, c.Protocol)
	}
	switch c.MsgType {
	case "text", "xml":
	default:
		return fmt.Errorf("%s.msgtype: expected text or xml, got %q", path, c.MsgType)
	}
	return nil
}

// keyKind is how a key's value is decoded.
type keyKind int

const (
	kString keyKind = iota
	kEscaped
	kBool
	kInt
	kDuration
	kFraming
	kTLS
)

type keySpec struct {
	canon string
	kind  keyKind
	set   func(c *Config, v any)
}

// keys lists every canonical key with its aliases (compared after dropping '-', '_', '.' and case).
var keys = []struct {
	spec    keySpec
	aliases []string
}{
	{keySpec{"name", kString, func(c *Config, v any) { c.Name = v.(string) }}, nil},
	{keySpec{"run", kBool, func(c *Config, v any) { c.Run = v.(bool) }}, nil},
	{keySpec{"protocol", kString, func(c *Config, v any) { c.Protocol = v.(string) }}, []string{"protocol.name"}},
	{keySpec{"msgtype", kString, func(c *Config, v any) { c.MsgType = v.(string) }}, []string{"msg_type"}},
	{keySpec{"host", kString, func(c *Config, v any) { c.Host = v.(string) }}, nil},
	{keySpec{"port", kInt, func(c *Config, v any) { c.Port = v.(int) }}, nil},
	{keySpec{"permanent", kBool, func(c *Config, v any) { c.Permanent = v.(bool) }}, nil},
	{keySpec{"redirect_in", kBool, func(c *Config, v any) { c.RedirectIn = v.(bool) }}, nil},
	{keySpec{"redirect_out", kBool, func(c *Config, v any) { c.RedirectOut = v.(bool) }}, nil},
	{keySpec{"topic_in", kString, func(c *Config, v any) { c.TopicIn = v.(string) }}, []string{"redirect_in_topic"}},
	{keySpec{"topic_out", kString, func(c *Config, v any) { c.TopicOut = v.(string) }}, []string{"redirect_out_topic"}},
	{keySpec{"reconnection_timeout", kDuration, func(c *Config, v any) { c.ReconnectionTimeout = v.(time.Duration) }}, []string{"reconnection_timeout_sec"}},
	{keySpec{"reconnect_max", kDuration, func(c *Config, v any) { c.ReconnectMax = v.(time.Duration) }}, nil},
	{keySpec{"dial_timeout", kDuration, func(c *Config, v any) { c.DialTimeout = v.(time.Duration) }}, nil},
	{keySpec{"keepalive", kDuration, func(c *Config, v any) { c.KeepAlive = v.(time.Duration) }}, nil},
	{keySpec{"idle_timeout", kDuration, func(c *Config, v any) { c.IdleTimeout = v.(time.Duration) }}, nil},
	{keySpec{"delimiter", kEscaped, func(c *Config, v any) { c.Delimiter = v.(string) }}, []string{"protocol.delimiter"}},
	{keySpec{"fixed_size", kInt, func(c *Config, v any) { c.FixedSize = v.(int) }}, []string{"protocol.fixed_size"}},
	{keySpec{"max_message_size", kInt, func(c *Config, v any) { c.MaxMessageSize = v.(int) }}, []string{"protocol.max_packet_size", "max_packet_size"}},
	{keySpec{"max_header_size", kInt, func(c *Config, v any) { c.MaxHeaderSize = v.(int) }}, nil},
	{keySpec{"send_buffer", kInt, func(c *Config, v any) { c.SendBuffer = v.(int) }}, nil},
	{keySpec{"send_buffer_bytes", kInt, func(c *Config, v any) { c.SendBufferBytes = v.(int) }}, nil},
	{keySpec{"receive_buffer_bytes", kInt, func(c *Config, v any) { c.ReceiveBuffer = v.(int) }}, nil},
	{keySpec{"response_timeout", kDuration, func(c *Config, v any) { c.ResponseTimeout = v.(time.Duration) }}, nil},
	{keySpec{"heartbeat", kEscaped, func(c *Config, v any) { c.Heartbeat = v.(string) }}, nil},
	{keySpec{"heartbeat_reply", kEscaped, func(c *Config, v any) { c.HeartbeatReply = v.(string) }}, nil},
	{keySpec{"heartbeat_interval", kDuration, func(c *Config, v any) { c.HeartbeatInterval = v.(time.Duration) }}, nil},
	{keySpec{"heartbeat_timeout", kDuration, func(c *Config, v any) { c.HeartbeatTimeout = v.(time.Duration) }}, nil},
	{keySpec{"follow_absolute", kBool, func(c *Config, v any) { c.FollowAbsolute = v.(bool) }}, nil},
	{keySpec{"showmessages", kBool, func(c *Config, v any) { c.ShowMessages = v.(bool) }}, []string{"protocol.showmessages"}},
	{keySpec{"showpackets", kBool, func(c *Config, v any) { c.ShowPackets = v.(bool) }}, []string{"protocol.showpackets"}},
	{keySpec{"inbound", kFraming, func(c *Config, v any) { c.Inbound = mergeFraming(c.Inbound, v.(Framing)) }}, []string{"protocol.inbound"}},
	{keySpec{"outbound", kFraming, func(c *Config, v any) { c.Outbound = mergeFraming(c.Outbound, v.(Framing)) }}, []string{"protocol.outbound"}},
	{keySpec{"tls", kTLS, nil}, nil},
}

// framingSuffix keys of the seed's flat form: protocol.inbound.delimiter etc.
var framingKeys = map[string]bool{"protocol": true, "delimiter": true, "showmessages": true, "showpackets": true}

func squash(k string) string {
	return strings.NewReplacer("-", "", "_", "", ".", "").Replace(strings.ToLower(k))
}

var keyIndex = func() map[string]keySpec {
	m := map[string]keySpec{}
	for _, k := range keys {
		m[squash(k.spec.canon)] = k.spec
		for _, a := range k.aliases {
			m[squash(a)] = k.spec
		}
	}
	return m
}()

// ParseConfigs decodes the raw `channels:` list of switchboard.yaml (a []any of map[string]any, or nil),
// applies DefaultConfig to each entry and validates it. Names must be unique.
func ParseConfigs(raw any) ([]Config, error) {
	if raw == nil {
		return nil, nil
	}
	list, ok := raw.([]any)
	if !ok {
		return nil, fmt.Errorf("channels: expected a list of channel entries, got %T", raw)
	}
	out := make([]Config, 0, len(list))
	seen := map[string]int{}
	var errs []error // one per bad entry, all reported at once
	for i, item := range list {
		path := fmt.Sprintf("channels[%d]", i)
		m, ok := asMap(item)
		if !ok {
			errs = append(errs, fmt.Errorf("%s: expected a map of keys, got %T", path, item))
			continue
		}
		c, err := parseOne(path, m)
		if err != nil {
			errs = append(errs, err)
			continue
		}
		if j, dup := seen[c.Name]; dup {
			errs = append(errs, fmt.Errorf("%s.name: %q already used by channels[%d]", path, c.Name, j))
			continue
		}
		seen[c.Name] = i
		out = append(out, c)
	}
	if len(errs) > 0 {
		return nil, errors.Join(errs...)
	}
	return out, nil
}

func asMap(v any) (map[string]any, bool) {
	switch m := v.(type) {
	case map[string]any:
		return m, true
	case map[any]any:
		out := make(map[string]any, len(m))
		for k, v := range m {
			out[fmt.Sprint(k)] = v
		}
		return out, true
	}
	return nil, false
}

func parseOne(path string, m map[string]any) (Config, error) {
	c := DefaultConfig()
	// Nested `protocol: {name: http, showmessages: true}` is flattened to protocol.* keys first.
	flat := map[string]any{}
	for k, v := range m {
		if sub, ok := asMap(v); ok && squash(k) == "protocol" {
			for sk, sv := range sub {
				flat[k+"."+sk] = sv
			}
			continue
		}
		flat[k] = v
	}
	names := make([]string, 0, len(flat))
	for k := range flat {
		names = append(names, k)
	}
	sort.Strings(names) // deterministic errors
	permanentSet := false
	// protocol.inbound.delimiter style keys of asymmetric channels.
	for _, k := range names {
		v := flat[k]
		kp := path + "." + k
		sq := squash(k)
		if dir, rest, ok := framingKey(k); ok {
			f, err := parseFramingField(kp, rest, v)
			if err != nil {
				return c, err
			}
			if dir == "inbound" {
				c.Inbound = mergeFraming(c.Inbound, f)
			} else {
				c.Outbound = mergeFraming(c.Outbound, f)
			}
			continue
		}
		spec, ok := keyIndex[sq]
		if !ok {
			return c, fmt.Errorf("%s: unknown key", kp)
		}
		permanentSet = permanentSet || spec.canon == "permanent"
		var val any
		var err error
		switch spec.kind {
		case kString:
			val, err = asString(kp, v)
		case kEscaped:
			var s string
			s, err = asString(kp, v)
			if err == nil {
				val, err = Unescape(s)
				if err != nil {
					err = fmt.Errorf("%s: expected a string with C escapes such as \\n or \\x01: %v", kp, err)
				}
			}
		case kBool:
			val, err = asBool(kp, v)
		case kInt:
			val, err = asInt(kp, v)
		case kDuration:
			val, err = asDuration(kp, v)
		case kFraming:
			val, err = parseFraming(kp, v)
		case kTLS:
			err = parseTLS(kp, v, &c)
		}
		if err != nil {
			return c, err
		}
		if spec.set != nil {
			spec.set(&c, val)
		}
	}
	if !permanentSet && c.RedirectIn {
		// Something listens on topic_in: connect at start and stay connected.
		c.Permanent = true
	}
	if c.Protocol == Asymmetric {
		// A direction without its own delimiter uses the channel's.
		if c.Inbound.Delimiter == "" && c.Inbound.Protocol == TextMessages {
			c.Inbound.Delimiter = c.Delimiter
		}
		if c.Outbound.Delimiter == "" && c.Outbound.Protocol == TextMessages {
			c.Outbound.Delimiter = c.Delimiter
		}
	}
	if err := c.validate(path); err != nil {
		return c, err
	}
	return c, nil
}

// framingKey recognises protocol.inbound.delimiter, inbound.showmessages and the like.
func framingKey(k string) (dir, rest string, ok bool) {
	parts := strings.Split(strings.ToLower(k), ".")
	if len(parts) > 0 && parts[0] == "protocol" {
		parts = parts[1:]
	}
	if len(parts) != 2 || (parts[0] != "inbound" && parts[0] != "outbound") {
		return "", "", false
	}
	return parts[0], parts[1], true
}

func parseFramingField(kp, field string, v any) (Framing, error) {
	var f Framing
	switch squash(field) {
	case "protocol", "name":
		s, err := asString(kp, v)
		f.Protocol = s
		return f, err
	case "delimiter":
		s, err := asString(kp, v)
		if err != nil {
			return f, err
		}
		f.Delimiter, err = Unescape(s)
		if err != nil {
			return f, fmt.Errorf("%s: expected a string with C escapes such as \\n or \\x01: %v", kp, err)
		}
		return f, nil
	case "showmessages":
		b, err := asBool(kp, v)
		f.ShowMessages = b
		return f, err
	case "showpackets":
		b, err := asBool(kp, v)
		f.ShowPackets = b
		return f, err
	}
	return f, fmt.Errorf("%s: unknown key", kp)
}

// parseFraming reads `inbound: text-messages` or `inbound: {protocol: text-messages, delimiter: "\n"}`.
func parseFraming(kp string, v any) (Framing, error) {
	if s, ok := v.(string); ok {
		return Framing{Protocol: s}, nil
	}
	m, ok := asMap(v)
	if !ok {
		return Framing{}, fmt.Errorf("%s: expected a protocol name or a map {protocol, delimiter, showmessages, showpackets}, got %T", kp, v)
	}
	var out Framing
	for k, sv := range m {
		if !framingKeys[squash(k)] && squash(k) != "name" {
			return out, fmt.Errorf("%s.%s: unknown key", kp, k)
		}
		f, err := parseFramingField(kp+"."+k, k, sv)
		if err != nil {
			return out, err
		}
		out = mergeFraming(out, f)
	}
	return out, nil
}

func mergeFraming(a, b Framing) Framing {
	if b.Protocol != "" {
		a.Protocol = b.Protocol
	}
	if b.Delimiter != "" {
		a.Delimiter = b.Delimiter
	}
	a.ShowMessages = a.ShowMessages || b.ShowMessages
	a.ShowPackets = a.ShowPackets || b.ShowPackets
	return a
}

func parseTLS(kp string, v any, c *Config) error {
	if b, ok := v.(bool); ok {
		c.TLS = b
		return nil
	}
	m, ok := asMap(v)
	if !ok {
		return fmt.Errorf("%s: expected true/false or a map {enabled, server_name, ca}, got %T", kp, v)
	}
	c.TLS = true
	for k, sv := range m {
		p := kp + "." + k
		switch squash(k) {
		case "enabled":
			b, err := asBool(p, sv)
			if err != nil {
				return err
			}
			c.TLS = b
		case "servername":
			s, err := asString(p, sv)
			if err != nil {
				return err
			}
			c.TLSServer = s
		case "ca", "cafile":
			s, err := asString(p, sv)
			if err != nil {
				return err
			}
			c.TLSCA = s
		default:
			return fmt.Errorf("%s: unknown key", p)
		}
	}
	return nil
}

func asString(kp string, v any) (string, error) {
	switch s := v.(type) {
	case string:
		return s, nil
	case nil:
		return "", nil
	case int, int64, float64, bool:
		return fmt.Sprint(s), nil
	}
	return "", fmt.Errorf("%s: expected a string, got %T", kp, v)
}

func asBool(kp string, v any) (bool, error) {
	switch b := v.(type) {
	case bool:
		return b, nil
	case string:
		if p, err := strconv.ParseBool(strings.TrimSpace(b)); err == nil {
			return p, nil
		}
	}
	return false, fmt.Errorf("%s: expected true or false, got %v", kp, v)
}

func asInt(kp string, v any) (int, error) {
	switch n := v.(type) {
	case int:
		return n, nil
	case int64:
		if n >= math.MinInt32 && n <= math.MaxInt32 {
			return int(n), nil
		}
	case uint64:
		if n <= math.MaxInt32 {
			return int(n), nil
		}
	case float64:
		if n == math.Trunc(n) && math.Abs(n) <= math.MaxInt32 {
			return int(n), nil
		}
	case string:
		if p, err := strconv.Atoi(strings.TrimSpace(n)); err == nil {
			return p, nil
		}
	}
	return 0, fmt.Errorf("%s: expected an integer, got %v", kp, v)
}

// asDuration accepts Go durations ("10s", "1m30s") and plain numbers meaning seconds (the seed's form).
func asDuration(kp string, v any) (time.Duration, error) {
	bad := fmt.Errorf("%s: expected a duration such as 10s or a number of seconds, got %v", kp, v)
	var secs float64
	switch n := v.(type) {
	case int:
		secs = float64(n)
	case int64:
		secs = float64(n)
	case uint64:
		secs = float64(n)
	case float64:
		secs = n
	case string:
		s := strings.TrimSpace(n)
		if f, err := strconv.ParseFloat(s, 64); err == nil {
			secs = f
			break
		}
		d, err := time.ParseDuration(s)
		if err != nil {
			return 0, bad
		}
		return d, nil
	default:
		return 0, bad
	}
	if math.IsNaN(secs) || secs < 0 || secs > 1e6 {
		return 0, bad
	}
	return time.Duration(secs * float64(time.Second)), nil
}

// Unescape interprets C string escapes (\n \r \t \0 \\ \xNN, octal \1..\377) so a delimiter can be written
// as the seed writes it ('\n', '\1'). A string without backslashes is returned as is.
func Unescape(s string) (string, error) {
	if !strings.Contains(s, `\`) {
		return s, nil
	}
	var b strings.Builder
	for i := 0; i < len(s); i++ {
		ch := s[i]
		if ch != '\\' {
			b.WriteByte(ch)
			continue
		}
		i++
		if i >= len(s) {
			return "", fmt.Errorf("trailing backslash in %q", s)
		}
		switch c := s[i]; c {
		case 'n':
			b.WriteByte('\n')
		case 'r':
			b.WriteByte('\r')
		case 't':
			b.WriteByte('\t')
		case 'a':
			b.WriteByte('\a')
		case '\\':
			b.WriteByte('\\')
		case '"', '\'':
			b.WriteByte(c)
		case 'x':
			if i+2 >= len(s) {
				return "", fmt.Errorf("short \\x escape in %q", s)
			}
			n, err := strconv.ParseUint(s[i+1:i+3], 16, 8)
			if err != nil {
				return "", fmt.Errorf("bad \\x escape in %q", s)
			}
			b.WriteByte(byte(n))
			i += 2
		default:
			if c < '0' || c > '7' {
				return "", fmt.Errorf("unknown escape \\%c in %q", c, s)
			}
			j := i
			for j < len(s) && j < i+3 && s[j] >= '0' && s[j] <= '7' {
				j++
			}
			n, err := strconv.ParseUint(s[i:j], 8, 16)
			if err != nil || n > 255 {
				return "", fmt.Errorf("bad octal escape in %q", s)
			}
			b.WriteByte(byte(n))
			i = j - 1
		}
	}
	return b.String(), nil
}
