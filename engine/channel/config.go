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

	"github.com/switchboard/switchboard/internal/decode"
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
	Protocol     string `mapstructure:"protocol"`  // text-messages, xml-messages, text-stream
	Delimiter    string `mapstructure:"delimiter"` // unescaped bytes
	ShowMessages bool   `mapstructure:"showmessages"`
	ShowPackets  bool   `mapstructure:"showpackets"`
}

// Config is one entry of the `channels:` list in switchboard.yaml, decoded like every other section
// (internal/decode: durations with a unit, weakly typed values, errors naming the key). The canonical keys
// are snake_case (redirect_in, reconnection_timeout, ...); the seed's spellings (redirect-in,
// reconnectionTimeout as a bare number of seconds, protocol.showmessages, protocol.inbound, ...) are
// accepted as aliases (keys, ParseConfigs).
type Config struct {
	Name     string `mapstructure:"name"`
	Run      bool   `mapstructure:"run"`
	Protocol string `mapstructure:"protocol"`
	MsgType  string `mapstructure:"msgtype"` // text | xml (informational: payloads are strings either way)
	Host     string `mapstructure:"host"`
	Port     int    `mapstructure:"port"`

	Permanent           bool          `mapstructure:"permanent"`
	RedirectIn          bool          `mapstructure:"redirect_in"`
	RedirectOut         bool          `mapstructure:"redirect_out"`
	TopicIn             string        `mapstructure:"topic_in"`
	TopicOut            string        `mapstructure:"topic_out"`
	ReconnectionTimeout time.Duration `mapstructure:"reconnection_timeout"` // first wait after a break or a failed connect
	ReconnectMax        time.Duration `mapstructure:"reconnect_max"`        // cap of the backoff that follows
	DialTimeout         time.Duration `mapstructure:"dial_timeout"`
	KeepAlive           time.Duration `mapstructure:"keepalive"`    // TCP keepalive period; 0 = off
	IdleTimeout         time.Duration `mapstructure:"idle_timeout"` // no inbound bytes for this long forces a reconnect; 0 = off

	ResponseTimeout time.Duration `mapstructure:"response_timeout"` // a reply due (http, resp: every request; others: ch:request) must be complete within this; 0 = off

	// Heartbeat, when set, is written every HeartbeatInterval; some input must arrive within HeartbeatTimeout
	// of it or the connection is closed as dead. With a heartbeat a new connection is up only once the peer
	// has sent something. On http and resp the heartbeat is a request whose reply is consumed; on the other
	// framings an inbound message equal to HeartbeatReply (if set) is consumed.
	Heartbeat         string        `mapstructure:"heartbeat"`       // unescaped; "" = off
	HeartbeatReply    string        `mapstructure:"heartbeat_reply"` // unescaped
	HeartbeatInterval time.Duration `mapstructure:"heartbeat_interval"`
	HeartbeatTimeout  time.Duration `mapstructure:"heartbeat_timeout"`

	Delimiter       string `mapstructure:"delimiter"`            // text-messages: unescaped; "" = every read is one message
	FixedSize       int    `mapstructure:"fixed_size"`           // text-stream: exactly this many bytes per message; 0 = what is available
	MaxMessageSize  int    `mapstructure:"max_message_size"`     // bytes; bounds every inbound message (HTTP: the body)
	MaxHeaderSize   int    `mapstructure:"max_header_size"`      // http: status line + headers
	SendBuffer      int    `mapstructure:"send_buffer"`          // messages held while down (and queued for writing while up)
	SendBufferBytes int    `mapstructure:"send_buffer_bytes"`    // the same in bytes
	ReceiveBuffer   int    `mapstructure:"receive_buffer_bytes"` // bytes of inbound messages with no taker kept for Receive; 0 = none kept
	FollowAbsolute  bool   `mapstructure:"follow_absolute"`      // http: a request for an absolute URL of another host is fetched from that host
	ShowMessages    bool   `mapstructure:"showmessages"`
	ShowPackets     bool   `mapstructure:"showpackets"`

	Inbound  Framing `mapstructure:"inbound"` // asymmetric only
	Outbound Framing `mapstructure:"outbound"`

	// tls: true, or {server_name:, ca:}: the map's keys are tls.server_name and tls.ca, flat here.
	TLS       bool   `mapstructure:"tls"`
	TLSServer string `mapstructure:"tls.server_name"` // server name checked on the certificate; "" = host
	TLSCA     string `mapstructure:"tls.ca"`          // CA file; "" = system roots
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

// Validate reports every bad value, each naming its key path.
func (c Config) Validate() error {
	return errors.Join(c.validateAll(fmt.Sprintf("channels[%s]", c.Name))...)
}

func (c Config) validateAll(path string) []error {
	var errs []error
	bad := func(format string, args ...any) {
		errs = append(errs, fmt.Errorf("%s"+format, append([]any{path}, args...)...))
	}
	if c.Name == "" {
		bad(".name: expected a non-empty name")
	}
	if c.Host == "" {
		bad(".host: expected a hostname or IP address")
	}
	if c.Port < 1 || c.Port > 65535 {
		bad(".port: expected 1-65535, got %d", c.Port)
	}
	if c.RedirectIn && c.TopicIn == "" {
		bad(".topic_in: expected a topic name (redirect_in is true)")
	}
	if c.RedirectOut && c.TopicOut == "" {
		bad(".topic_out: expected a topic name (redirect_out is true)")
	}
	if c.ReconnectionTimeout <= 0 {
		bad(".reconnection_timeout: expected a positive duration such as 10s, got %v", c.ReconnectionTimeout)
	} else if c.ReconnectMax < c.ReconnectionTimeout {
		bad(".reconnect_max: expected a duration >= reconnection_timeout (%v), got %v", c.ReconnectionTimeout, c.ReconnectMax)
	}
	if c.MaxMessageSize < 1 {
		bad(".max_message_size: expected a positive byte count, got %d", c.MaxMessageSize)
	}
	if c.MaxHeaderSize < 256 {
		bad(".max_header_size: expected at least 256, got %d", c.MaxHeaderSize)
	}
	if c.SendBuffer < 1 {
		bad(".send_buffer: expected a positive message count, got %d", c.SendBuffer)
	}
	if c.SendBufferBytes < 1 {
		bad(".send_buffer_bytes: expected a positive byte count, got %d", c.SendBufferBytes)
	}
	if c.ReceiveBuffer < 0 {
		bad(".receive_buffer_bytes: expected 0 (keep none) or a byte count, got %d", c.ReceiveBuffer)
	}
	if c.ResponseTimeout < 0 {
		bad(".response_timeout: expected 0 (off) or a duration such as 30s, got %v", c.ResponseTimeout)
	}
	if c.Heartbeat != "" && c.HeartbeatInterval <= 0 {
		bad(".heartbeat_interval: expected a positive duration (heartbeat is set), got %v", c.HeartbeatInterval)
	}
	if c.Heartbeat != "" && c.HeartbeatTimeout <= 0 {
		bad(".heartbeat_timeout: expected a positive duration (heartbeat is set), got %v", c.HeartbeatTimeout)
	}
	if c.HeartbeatReply != "" && c.Heartbeat == "" {
		bad(".heartbeat_reply: set without heartbeat")
	}
	if c.FollowAbsolute && c.Protocol != HTTP {
		bad(".follow_absolute: only for protocol http, got %s", c.Protocol)
	}
	if !c.Permanent && c.RedirectIn && !c.RedirectOut {
		bad(".permanent: false with redirect_in: true and redirect_out: false: nothing would open the connection " +
			"for topic_in (an on-demand channel connects when a message is sent); set permanent: true")
	}
	if c.FixedSize < 0 || c.FixedSize > c.MaxMessageSize {
		bad(".fixed_size: expected 0-%d (max_message_size), got %d", c.MaxMessageSize, c.FixedSize)
	}
	if c.DialTimeout < 0 || c.KeepAlive < 0 || c.IdleTimeout < 0 {
		bad(": dial_timeout, keepalive and idle_timeout must not be negative")
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
				bad(".%s.protocol: expected text-messages, xml-messages or text-stream, got %q", f.key, f.f.Protocol)
			}
		}
	default:
		bad(".protocol: expected text-messages, xml-messages, http, text-stream, resp or asymmetric, got %q", c.Protocol)
	}
	switch c.MsgType {
	case "text", "xml":
	default:
		bad(".msgtype: expected text or xml, got %q", c.MsgType)
	}
	return errs
}

// keyKind is what a key's value needs before the shared decoder (internal/decode) sees it.
type keyKind int

const (
	kPlain   keyKind = iota // decoded as is
	kEscaped                // a string with C escapes (\n, \1, \x01), interpreted
	kFraming                // inbound/outbound: a protocol name or a map {protocol, delimiter, showmessages, showpackets}
	kTLS                    // true/false, or a map {enabled, server_name, ca}
)

type keySpec struct {
	canon string
	kind  keyKind
}

// keys lists every canonical key with its aliases (compared after dropping '-', '_', '.' and case). The
// seed's reconnectionTimeout (any spelling but the canonical reconnection_timeout) may be a bare number of
// seconds, as the seed wrote it; every other duration takes a unit, as in the rest of the file.
var keys = []struct {
	spec    keySpec
	aliases []string
}{
	{keySpec{"name", kPlain}, nil},
	{keySpec{"run", kPlain}, nil},
	{keySpec{"protocol", kPlain}, []string{"protocol.name"}},
	{keySpec{"msgtype", kPlain}, []string{"msg_type"}},
	{keySpec{"host", kPlain}, nil},
	{keySpec{"port", kPlain}, nil},
	{keySpec{"permanent", kPlain}, nil},
	{keySpec{"redirect_in", kPlain}, nil},
	{keySpec{"redirect_out", kPlain}, nil},
	{keySpec{"topic_in", kPlain}, []string{"redirect_in_topic"}},
	{keySpec{"topic_out", kPlain}, []string{"redirect_out_topic"}},
	{keySpec{"reconnection_timeout", kPlain}, []string{"reconnection_timeout_sec"}},
	{keySpec{"reconnect_max", kPlain}, nil},
	{keySpec{"dial_timeout", kPlain}, nil},
	{keySpec{"keepalive", kPlain}, nil},
	{keySpec{"idle_timeout", kPlain}, nil},
	{keySpec{"delimiter", kEscaped}, []string{"protocol.delimiter"}},
	{keySpec{"fixed_size", kPlain}, []string{"protocol.fixed_size"}},
	{keySpec{"max_message_size", kPlain}, []string{"protocol.max_packet_size", "max_packet_size"}},
	{keySpec{"max_header_size", kPlain}, nil},
	{keySpec{"send_buffer", kPlain}, nil},
	{keySpec{"send_buffer_bytes", kPlain}, nil},
	{keySpec{"receive_buffer_bytes", kPlain}, nil},
	{keySpec{"response_timeout", kPlain}, nil},
	{keySpec{"heartbeat", kEscaped}, nil},
	{keySpec{"heartbeat_reply", kEscaped}, nil},
	{keySpec{"heartbeat_interval", kPlain}, nil},
	{keySpec{"heartbeat_timeout", kPlain}, nil},
	{keySpec{"follow_absolute", kPlain}, nil},
	{keySpec{"showmessages", kPlain}, []string{"protocol.showmessages"}},
	{keySpec{"showpackets", kPlain}, []string{"protocol.showpackets"}},
	{keySpec{"inbound", kFraming}, []string{"protocol.inbound"}},
	{keySpec{"outbound", kFraming}, []string{"protocol.outbound"}},
	{keySpec{"tls", kTLS}, nil},
}

// tlsKeys are the keys of the tls map, by their squashed form; "" is tls.enabled.
var tlsKeys = map[string]string{"tlsservername": "tls.server_name", "tlsca": "tls.ca", "tlscafile": "tls.ca", "tlsenabled": "tls"}

// framingFields are the keys of an inbound/outbound map, by their squashed form.
var framingFields = map[string]string{"protocol": "protocol", "name": "protocol", "delimiter": "delimiter",
	"showmessages": "showmessages", "showpackets": "showpackets"}

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

// CanonicalKey maps a key of an entry as a user may write it (an alias, any case, "tls.ca",
// "protocol.inbound.delimiter") to the canonical key path the decoder reads ("tls.ca",
// "inbound.delimiter"); ok is false for a key that names nothing.
func CanonicalKey(k string) (string, bool) {
	if dir, field, ok := framingKey(k); ok {
		f, known := framingFields[squash(field)]
		return dir + "." + f, known
	}
	if c, ok := tlsKeys[squash(k)]; ok {
		return c, true
	}
	spec, ok := keyIndex[squash(k)]
	return spec.canon, ok
}

// ParseConfigs decodes the raw `channels:` list of switchboard.yaml (a []any of map[string]any, or nil):
// each entry's keys are brought to their canonical form (aliases, the seed's value forms), decoded over
// DefaultConfig by internal/decode, and validated. Names must be unique. Every problem of every entry is
// reported at once.
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
	var errs []error
	for i, item := range list {
		path := fmt.Sprintf("channels[%d]", i)
		m, ok := asMap(item)
		if !ok {
			errs = append(errs, fmt.Errorf("%s: expected a map of keys, got %T", path, item))
			continue
		}
		c, cerrs := parseOne(path, m)
		if len(cerrs) > 0 {
			errs = append(errs, cerrs...)
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

func parseOne(path string, m map[string]any) (Config, []error) {
	c := DefaultConfig()
	norm, errs := normalize(path, m)
	if len(errs) > 0 {
		return c, errs
	}
	if errs := decode.Into(&c, norm, path, func(key string) any { return lookup(norm, key) }); len(errs) > 0 {
		return c, errs
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
	return c, c.validateAll(path)
}

// lookup finds a key path ("port", "inbound.protocol") in a normalized entry.
func lookup(m map[string]any, key string) any {
	if v, ok := m[key]; ok {
		return v
	}
	if dir, field, ok := strings.Cut(key, "."); ok {
		if sub, ok := m[dir].(map[string]any); ok {
			return sub[field]
		}
	}
	return nil
}

// SetKey sets key (a canonical key path, CanonicalKey) of a raw entry to value, replacing whatever spelling
// of that key the entry had (redirect-in, a tls map's ca...). It returns the entry, its nested maps
// flattened to dotted keys.
func SetKey(entry map[string]any, key string, value any) map[string]any {
	flat := flattenEntry(entry)
	for k := range flat {
		if canon, ok := CanonicalKey(k); ok && canon == key {
			delete(flat, k)
		}
	}
	flat[key] = value
	return flat
}

// flattenEntry turns the nested maps of an entry (protocol: {name: http}, tls: {ca: x}, inbound:
// {protocol: x}) into dotted keys.
func flattenEntry(m map[string]any) map[string]any {
	flat := map[string]any{}
	for k, v := range m {
		if sub, ok := asMap(v); ok {
			switch spec, known := keyIndex[squash(k)]; {
			case squash(k) == "protocol", known && (spec.kind == kTLS || spec.kind == kFraming):
				for sk, sv := range sub {
					flat[k+"."+sk] = sv
				}
				continue
			}
		}
		flat[k] = v
	}
	return flat
}

// normalize brings an entry to what the decoder reads: canonical keys (inbound and outbound as maps),
// C escapes interpreted, the seed's bare-number reconnectionTimeout as seconds, tls and protocol maps
// flattened, and permanent true when unset with redirect_in on.
func normalize(path string, m map[string]any) (map[string]any, []error) {
	flat := flattenEntry(m)
	names := make([]string, 0, len(flat))
	for k := range flat {
		names = append(names, k)
	}
	sort.Strings(names) // deterministic errors
	out := map[string]any{}
	var errs []error
	framing := func(dir string) map[string]any {
		f, _ := out[dir].(map[string]any)
		if f == nil {
			f = map[string]any{}
			out[dir] = f
		}
		return f
	}
	tlsMap, permanentSet := false, false
	for _, k := range names {
		v := flat[k]
		kp := path + "." + k
		if dir, field, ok := framingKey(k); ok {
			f, known := framingFields[squash(field)]
			if !known {
				errs = append(errs, fmt.Errorf("%s: unknown key", kp))
				continue
			}
			if f == "delimiter" {
				d, err := escaped(kp, v)
				if err != nil {
					errs = append(errs, err)
					continue
				}
				v = d
			}
			framing(dir)[f] = v
			continue
		}
		if canon, ok := tlsKeys[squash(k)]; ok {
			if canon != "tls" {
				tlsMap = true
			}
			out[canon] = v
			continue
		}
		spec, ok := keyIndex[squash(k)]
		if !ok {
			errs = append(errs, fmt.Errorf("%s: unknown key", kp))
			continue
		}
		permanentSet = permanentSet || spec.canon == "permanent"
		switch {
		case spec.kind == kEscaped:
			d, err := escaped(kp, v)
			if err != nil {
				errs = append(errs, err)
				continue
			}
			out[spec.canon] = d
		case spec.canon == "reconnection_timeout" && k != spec.canon:
			d, err := seedSeconds(kp, v)
			if err != nil {
				errs = append(errs, err)
				continue
			}
			out[spec.canon] = d
		case spec.kind == kFraming:
			s, ok := v.(string)
			if !ok {
				errs = append(errs, fmt.Errorf("%s: expected a protocol name or a map {protocol, delimiter, showmessages, showpackets}, got %T", kp, v))
				continue
			}
			framing(spec.canon)["protocol"] = s
		case spec.kind == kTLS:
			if _, isBool := v.(bool); !isBool {
				if _, isStr := v.(string); !isStr {
					errs = append(errs, fmt.Errorf("%s: expected true/false or a map {enabled, server_name, ca}, got %T", kp, v))
					continue
				}
			}
			out["tls"] = v
		default:
			out[spec.canon] = v
		}
	}
	if _, set := out["tls"]; tlsMap && !set {
		out["tls"] = true // a tls map turns TLS on unless it says enabled: false
	}
	if !permanentSet {
		if on, err := strconv.ParseBool(fmt.Sprint(out["redirect_in"])); err == nil && on {
			// Something listens on topic_in: connect at start and stay connected.
			out["permanent"] = true
		}
	}
	return out, errs
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

// escaped interprets a string value with C escapes.
func escaped(kp string, v any) (string, error) {
	var s string
	switch x := v.(type) {
	case string:
		s = x
	case nil:
		return "", nil
	case int, int64, float64, bool:
		s = fmt.Sprint(x)
	default:
		return "", fmt.Errorf("%s: expected a string, got %T", kp, v)
	}
	d, err := Unescape(s)
	if err != nil {
		return "", fmt.Errorf("%s: expected a string with C escapes such as \\n or \\x01: %v", kp, err)
	}
	return d, nil
}

// seedSeconds reads the seed's reconnectionTimeout: a bare number of seconds, or a duration with a unit.
func seedSeconds(kp string, v any) (time.Duration, error) {
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
