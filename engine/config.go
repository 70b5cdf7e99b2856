package engine

import (
	"bytes"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"reflect"
	"slices"
	"sort"
	"strings"
	"time"

	"github.com/spf13/viper"
	"go.yaml.in/yaml/v3"

	"github.com/switchboard/switchboard/engine/bus"
	"github.com/switchboard/switchboard/engine/channel"
	"github.com/switchboard/switchboard/engine/cluster"
	"github.com/switchboard/switchboard/engine/esl"
	"github.com/switchboard/switchboard/engine/relay"
	"github.com/switchboard/switchboard/engine/socket"
	"github.com/switchboard/switchboard/engine/transport"
	"github.com/switchboard/switchboard/internal/decode"
	"github.com/switchboard/switchboard/luabind"
)

// Config is the whole of switchboard.yaml. Each part owns the type of its section.
type Config struct {
	Log             LogConfig        `mapstructure:"log"`
	Lua             luabind.Config   `mapstructure:"lua"`
	Admin           AdminConfig      `mapstructure:"admin"`
	Bus             BusConfig        `mapstructure:"bus"`
	ShutdownTimeout time.Duration    `mapstructure:"shutdown_timeout"`
	GCFloorMB       int              `mapstructure:"gc_floor_mb"` // engine/gcfloor; read at start
	Socket          socket.Config    `mapstructure:"socket"`
	Relay           relay.Config     `mapstructure:"relay"`
	ESL             esl.Config       `mapstructure:"esl"`
	Channels        []channel.Config `mapstructure:"-"` // decoded entry by entry (channel.ParseConfigs, on internal/decode)
	Cluster         cluster.Config   `mapstructure:"cluster"`

	// Origin says where this configuration came from; it is not a key.
	Origin Origin `mapstructure:"-"`
}

// Origin says where a loaded configuration came from.
type Origin struct {
	// File is the absolute path of the file read; "" when the built-in defaults were used.
	File string
	// Overridden lists the keys set by environment variables or flags, sorted.
	Overridden []string
	// IgnoredEnv lists the SWITCHBOARD_* environment variables that name no key, sorted. They are
	// ignored (a Kubernetes Service named switchboard injects SWITCHBOARD_PORT=tcp://...); the caller
	// warns about them once.
	IgnoredEnv []string
}

// IsOverridden says whether key was set by an environment variable or a flag.
func (o Origin) IsOverridden(key string) bool {
	for _, k := range o.Overridden {
		if k == key {
			return true
		}
	}
	return false
}

// LogConfig is the `log:` section.
type LogConfig struct {
	Level  string `mapstructure:"level"`  // debug | info | warn | error
	Format string `mapstructure:"format"` // text | json
}

// AdminConfig is the `admin:` section (engine/admin.go).
type AdminConfig struct {
	Listen string `mapstructure:"listen"` // "" disables /healthz, /metrics, POST /reload and the status page
	// Token, when set, is required as "Authorization: Bearer <token>" by POST /reload and every other
	// request that is not a GET or HEAD, and by reads of the status page, /api and /debug/pprof (there
	// Basic credentials with the token as password do too).
	Token string `mapstructure:"token"`
	// TokenFile names a file holding the token (read at start; surrounding whitespace is ignored).
	TokenFile string `mapstructure:"token_file"`
	// Hosts are further names the admin listener may be reached by (Host and Origin headers of write
	// requests), besides its own address and, for a loopback or wildcard listener, localhost.
	Hosts []string `mapstructure:"hosts"`
	// MaxConnections caps the admin listener's connections, apart from every part's.
	MaxConnections int `mapstructure:"max_connections"`
	// StatusMaxBytes bounds each response of the status page's /api (a list is cut short past it).
	StatusMaxBytes int `mapstructure:"status_max_bytes"`
	// PProf serves Go's profiler at /debug/pprof/ (behind the same Host check and token as /api).
	PProf bool `mapstructure:"pprof"`
}

// BusConfig is the `bus:` section.
type BusConfig struct {
	QueueSize  int `mapstructure:"queue_size"`  // per subscriber; see engine/bus for the slow-subscriber policy
	QueueBytes int `mapstructure:"queue_bytes"` // the same bound in bytes
}

// DefaultConfig is every key's default; configs/switchboard.yaml repeats them with comments (its paths are
// relative to configs/, so they point at the repository's scripts/, public/ and data/). Relative paths
// are resolved by LoadConfig (see pathKeys).
func DefaultConfig() Config {
	relayCfg := relay.DefaultConfig()
	relayCfg.RoutesFile = "relay.routes" // beside the configuration file
	return Config{
		Log:             LogConfig{Level: "info", Format: "text"},
		Lua:             luabind.DefaultConfig(),
		Admin:           AdminConfig{Listen: "127.0.0.1:9090", Hosts: []string{}, MaxConnections: 16, StatusMaxBytes: 1 << 20},
		Bus:             BusConfig{QueueSize: 1024, QueueBytes: bus.DefaultQueueBytes},
		ShutdownTimeout: 10 * time.Second,
		GCFloorMB:       32,
		Socket:          socket.DefaultConfig(),
		Relay:           relayCfg,
		ESL:             esl.DefaultConfig(),
		Cluster:         cluster.DefaultConfig(),
	}
}

// maxGCFloorMB (1 TiB) keeps the floor's byte count far from overflowing.
const maxGCFloorMB = 1 << 20

// GCFloor is the floor for engine/gcfloor in bytes: gc_floor_mb, but at most half of lua.memory_limit_mb
// when that is set, since the Lua memory guard counts garbage not yet collected and must not trip on
// what the floor lets pile up.
func (c Config) GCFloor() uint64 {
	mb := max(c.GCFloorMB, 0)
	if c.Lua.MemoryLimitMB > 0 {
		mb = min(mb, c.Lua.MemoryLimitMB/2)
	}
	return uint64(mb) << 20
}

// Validate checks the engine's own keys and asks each part to check its section.
func (c Config) Validate() error {
	var errs []error
	switch c.Log.Level {
	case "debug", "info", "warn", "warning", "error":
	default:
		errs = append(errs, fmt.Errorf("log.level: expected debug, info, warn or error, got %q", c.Log.Level))
	}
	switch c.Log.Format {
	case "text", "json":
	default:
		errs = append(errs, fmt.Errorf("log.format: expected text or json, got %q", c.Log.Format))
	}
	if c.Admin.Listen != "" {
		if err := transport.CheckHostPort(c.Admin.Listen); err != nil {
			errs = append(errs, fmt.Errorf("admin.listen: %w", err))
		}
	}
	errs = append(errs, c.Admin.validate()...)
	if c.Bus.QueueSize < 1 {
		errs = append(errs, fmt.Errorf("bus.queue_size: expected a positive number, got %d", c.Bus.QueueSize))
	}
	if c.Bus.QueueBytes < 1 {
		errs = append(errs, fmt.Errorf("bus.queue_bytes: expected a positive byte count, got %d", c.Bus.QueueBytes))
	}
	if c.GCFloorMB < 0 || c.GCFloorMB > maxGCFloorMB {
		errs = append(errs, fmt.Errorf("gc_floor_mb: expected 0 (off) or a size in MB up to %d, got %d", maxGCFloorMB, c.GCFloorMB))
	}
	if c.ShutdownTimeout <= 0 {
		errs = append(errs, fmt.Errorf("shutdown_timeout: expected a positive duration such as 10s, got %v", c.ShutdownTimeout))
	}
	for _, v := range []interface{ Validate() error }{c.Lua, c.Socket, c.Relay, c.ESL, c.Cluster} {
		if err := v.Validate(); err != nil {
			errs = append(errs, err)
		}
	}
	for _, ch := range c.Channels {
		if err := ch.Validate(); err != nil {
			errs = append(errs, err)
		}
	}
	if r := c.Relay; r.Enabled && r.Guaranteed && r.Journal == relay.JournalJetStream && !c.Cluster.Enabled() {
		errs = append(errs, errors.New("relay.journal: jetstream needs the NATS cluster: set cluster.nats_url"))
	}
	return errors.Join(errs...)
}

// ConfigSource says where LoadConfig reads from.
type ConfigSource struct {
	File     string            // YAML file; "" uses Fallback
	Fallback []byte            // YAML used when File is ""; empty = the built-in defaults alone
	Env      []string          // KEY=VALUE pairs; SWITCHBOARD_SOCKET_LISTEN overrides socket.listen
	Set      map[string]string // key path -> value, from flags (highest precedence)
}

// LoadConfig reads YAML, then environment, then flags over the defaults; unknown keys in the file or the
// flags and bad values are errors naming the key path and the expected form. SWITCHBOARD_* environment
// variables that name no key are ignored and listed in Origin.IgnoredEnv.
//
// Paths (pathKeys) come back absolute: a relative path in the file, or a default the file leaves in place,
// is resolved from the file's folder (from the working directory when there is no file); a relative path
// from an environment variable or a flag is resolved from the working directory, as a shell user expects.
func LoadConfig(src ConfigSource) (Config, error) {
	def := DefaultConfig()
	v := viper.New()
	v.SetConfigType("yaml")
	flat := map[string]any{}
	flatten("", reflect.ValueOf(def), flat)
	for k, val := range flat {
		v.SetDefault(k, val)
	}

	data := src.Fallback
	name := "built-in defaults"
	var origin Origin
	if src.File != "" {
		b, err := os.ReadFile(src.File)
		if err != nil {
			return Config{}, fmt.Errorf("config: %w", err)
		}
		data, name = b, src.File
		if origin.File, err = filepath.Abs(src.File); err != nil {
			return Config{}, fmt.Errorf("config: %s: %w", name, err)
		}
	}
	if len(bytes.TrimSpace(data)) == 0 {
		data = []byte("{}")
	}
	var raw map[string]any
	if err := yaml.Unmarshal(data, &raw); err != nil {
		return Config{}, fmt.Errorf("config: %s: %v", name, err)
	}
	var errs []error
	for _, k := range unknownKeys("", raw, reflect.TypeOf(def)) {
		errs = append(errs, fmt.Errorf("%s: unknown key (see docs/configuration.md for the keys that exist)", k))
	}
	if err := v.ReadConfig(bytes.NewReader(data)); err != nil {
		return Config{}, fmt.Errorf("config: %s: %v", name, err)
	}
	maps := mapKeys(reflect.TypeOf(def))
	var entries []entryOverride    // map entries from the environment, then from flags (applied after decoding)
	var chanSets []channelOverride // keys of channel entries, the same way (applied to the file's list)
	envKeys := make([]string, 0, len(src.Env))
	envVals := map[string]string{}
	for _, kv := range src.Env {
		if k, val, ok := strings.Cut(kv, "="); ok && strings.HasPrefix(k, "SWITCHBOARD_") {
			envKeys = append(envKeys, k)
			envVals[k] = val
		}
	}
	sort.Strings(envKeys)
	for _, k := range envKeys {
		val := envVals[k]
		name := strings.TrimPrefix(k, "SWITCHBOARD_")
		if path, known := envKey(name, flat); known {
			v.Set(path, val)
			origin.Overridden = append(origin.Overridden, path)
			continue
		}
		if e, ok := envEntry(name, maps); ok {
			e.value = val
			entries = append(entries, e)
			origin.Overridden = append(origin.Overridden, e.key())
			continue
		}
		if o, ok := envChannel(name, val); ok {
			chanSets = append(chanSets, o)
			origin.Overridden = append(origin.Overridden, o.path())
			continue
		}
		origin.IgnoredEnv = append(origin.IgnoredEnv, k)
	}
	setKeys := make([]string, 0, len(src.Set))
	for k := range src.Set {
		setKeys = append(setKeys, k)
	}
	sort.Strings(setKeys)
	for _, k := range setKeys {
		if _, ok := flat[k]; ok {
			v.Set(k, src.Set[k])
			origin.Overridden = append(origin.Overridden, k)
			// a whole map from a flag replaces the environment's entries of it too
			entries = slices.DeleteFunc(entries, func(e entryOverride) bool { return e.mapKey == k })
			continue
		}
		if e, ok := setEntry(k, maps); ok {
			e.value = src.Set[k]
			entries = append(entries, e)
			origin.Overridden = append(origin.Overridden, k)
			continue
		}
		if o, ok, err := setChannel(k, src.Set[k]); ok {
			if err != nil {
				errs = append(errs, err)
				continue
			}
			chanSets = append(chanSets, o)
			origin.Overridden = append(origin.Overridden, o.path())
			continue
		}
		errs = append(errs, fmt.Errorf("%s: unknown key (from --set)", k))
	}
	sort.Strings(origin.IgnoredEnv)
	sort.Strings(origin.Overridden)
	origin.Overridden = slices.Compact(origin.Overridden)

	cfg := def
	settings := v.AllSettings()
	delete(settings, "channels")
	errs = append(errs, decode.Into(&cfg, settings, "", v.Get)...)
	for _, e := range entries {
		if err := e.apply(&cfg); err != nil {
			errs = append(errs, err)
		}
	}
	rawChans, err := applyChannels(raw["channels"], chanSets)
	if err != nil {
		errs = append(errs, err)
	} else if cfg.Channels, err = channel.ParseConfigs(rawChans); err != nil {
		errs = append(errs, err)
	}
	cfg.Origin = origin
	if err := cfg.resolvePaths(); err != nil {
		errs = append(errs, err)
	}
	// Every problem at once (switchboard check lists them all): a value that did not decode kept its
	// default, so validation does not report it twice.
	if err := cfg.Validate(); err != nil {
		errs = append(errs, err)
	}
	if len(errs) > 0 {
		return Config{}, &ConfigError{Source: name, Errors: flattenErrors(errs)}
	}
	return cfg, nil
}

// pathKeys are the keys that name a file or a directory. allowlist marks the "file:path" | "text:..."
// form, where only a file: value is a path. A test checks that every string key is either here or in
// notPathKeys, so a new path key cannot be forgotten.
var pathKeys = []struct {
	key       string
	ref       func(*Config) *string
	allowlist bool
}{
	{"lua.scripts_dir", func(c *Config) *string { return &c.Lua.ScriptsDir }, false},
	{"admin.token_file", func(c *Config) *string { return &c.Admin.TokenFile }, false},
	{"socket.tls.cert", func(c *Config) *string { return &c.Socket.TLS.Cert }, false},
	{"socket.tls.key", func(c *Config) *string { return &c.Socket.TLS.Key }, false},
	{"socket.public_dir", func(c *Config) *string { return &c.Socket.PublicDir }, false},
	{"relay.tls.cert", func(c *Config) *string { return &c.Relay.TLS.Cert }, false},
	{"relay.tls.key", func(c *Config) *string { return &c.Relay.TLS.Key }, false},
	{"relay.whitelist", func(c *Config) *string { return &c.Relay.Whitelist }, true},
	{"relay.center_ca", func(c *Config) *string { return &c.Relay.CenterCA }, false},
	{"relay.routes_file", func(c *Config) *string { return &c.Relay.RoutesFile }, false},
	{"relay.persist_dir", func(c *Config) *string { return &c.Relay.PersistDir }, false},
	{"relay.message_log", func(c *Config) *string { return &c.Relay.MessageLog }, false},
	{"esl.allow", func(c *Config) *string { return &c.ESL.Allow }, true},
	{"esl.data_dir", func(c *Config) *string { return &c.ESL.DataDir }, false},
	{"cluster.credentials", func(c *Config) *string { return &c.Cluster.Credentials }, false},
	{"cluster.tls.cert", func(c *Config) *string { return &c.Cluster.TLS.Cert }, false},
	{"cluster.tls.key", func(c *Config) *string { return &c.Cluster.TLS.Key }, false},
	{"cluster.tls.ca", func(c *Config) *string { return &c.Cluster.TLS.CA }, false},
}

// resolvePaths makes every path absolute (see LoadConfig); channels[].tls.ca comes only from the file.
func (c *Config) resolvePaths() error {
	wd, err := os.Getwd()
	if err != nil {
		return fmt.Errorf("working directory: %w", err)
	}
	fileBase := wd
	if c.Origin.File != "" {
		fileBase = filepath.Dir(c.Origin.File)
	}
	for _, pk := range pathKeys {
		base := fileBase
		if c.Origin.IsOverridden(pk.key) {
			base = wd
		}
		p := pk.ref(c)
		*p = resolvePath(base, *p, pk.allowlist)
	}
	for i := range c.Channels {
		base := fileBase
		if c.Origin.IsOverridden(fmt.Sprintf("channels[%d].tls.ca", i)) {
			base = wd
		}
		c.Channels[i].TLSCA = resolvePath(base, c.Channels[i].TLSCA, false)
	}
	for name, t := range c.Relay.CenterTLS {
		for field, p := range map[string]*string{"cert": &t.Cert, "key": &t.Key, "ca": &t.CA} {
			base := fileBase
			if c.Origin.IsOverridden("relay.center_tls."+name+"."+field) || c.Origin.IsOverridden("relay.center_tls") {
				base = wd
			}
			*p = resolvePath(base, *p, false)
		}
		c.Relay.CenterTLS[name] = t
	}
	return nil
}

func resolvePath(base, v string, allowlist bool) string {
	if allowlist {
		spec := strings.TrimSpace(v)
		if p, ok := strings.CutPrefix(spec, "file:"); ok {
			return "file:" + resolvePath(base, strings.TrimSpace(p), false)
		}
		return v
	}
	if v == "" || filepath.IsAbs(v) {
		return v
	}
	return filepath.Join(base, v)
}

// flattenErrors lists the errors that errs join (errors.Join, nested), one problem each.
func flattenErrors(errs []error) []error {
	var out []error
	for _, err := range errs {
		if j, ok := err.(interface{ Unwrap() []error }); ok {
			out = append(out, flattenErrors(j.Unwrap())...)
			continue
		}
		out = append(out, err)
	}
	return out
}

// ConfigError lists every problem found in a configuration.
type ConfigError struct {
	Source string
	Errors []error
}

func (e *ConfigError) Error() string {
	var b strings.Builder
	for i, err := range e.Errors {
		if i > 0 {
			b.WriteString("\n")
		}
		fmt.Fprintf(&b, "%s: %v", e.Source, err)
	}
	return b.String()
}

// flattenValue lists every key path of cfg with its value.
func flattenValue(cfg Config, out map[string]any) { flatten("", reflect.ValueOf(cfg), out) }

// flatten lists every key path of a config struct with its default value.
func flatten(prefix string, v reflect.Value, out map[string]any) {
	t := v.Type()
	for i := 0; i < t.NumField(); i++ {
		f := t.Field(i)
		tag := strings.Split(f.Tag.Get("mapstructure"), ",")[0]
		if tag == "-" || !f.IsExported() {
			continue
		}
		key := tag
		if prefix != "" {
			key = prefix + "." + tag
		}
		fv := v.Field(i)
		if f.Type.Kind() == reflect.Struct && f.Type != reflect.TypeOf(time.Time{}) {
			flatten(key, fv, out)
			continue
		}
		out[key] = fv.Interface()
	}
}

// unknownKeys walks a decoded YAML map against the config type and lists keys that name nothing.
func unknownKeys(prefix string, raw map[string]any, t reflect.Type) []string {
	var out []string
	fields := map[string]reflect.StructField{}
	for i := 0; i < t.NumField(); i++ {
		f := t.Field(i)
		tag := strings.Split(f.Tag.Get("mapstructure"), ",")[0]
		if f.Type == reflect.TypeOf(Origin{}) {
			continue // not a key
		}
		if tag == "-" {
			tag = strings.ToLower(f.Name)
		}
		fields[tag] = f
	}
	keys := make([]string, 0, len(raw))
	for k := range raw {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	for _, k := range keys {
		path := k
		if prefix != "" {
			path = prefix + "." + k
		}
		f, ok := fields[k]
		if !ok {
			out = append(out, path)
			continue
		}
		sub, isMap := raw[k].(map[string]any)
		if !isMap {
			continue
		}
		switch {
		case f.Type.Kind() == reflect.Struct && f.Type != reflect.TypeOf(time.Time{}):
			out = append(out, unknownKeys(path, sub, f.Type)...)
		case f.Type.Kind() == reflect.Map && f.Type.Elem().Kind() == reflect.Struct:
			for name, val := range sub {
				if m, ok := val.(map[string]any); ok {
					out = append(out, unknownKeys(path+"."+name, m, f.Type.Elem())...)
				}
			}
		}
	}
	return out
}

// envKey maps SOCKET_MAX_DATA_LENGTH to socket.max_data_length by trying every known key.
func envKey(name string, known map[string]any) (string, bool) {
	want := strings.ToLower(name)
	for k := range known {
		if strings.ReplaceAll(k, ".", "_") == want {
			return k, true
		}
	}
	return "", false
}
