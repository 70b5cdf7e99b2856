package engine

import (
	"bytes"
	"errors"
	"fmt"
	"os"
	"reflect"
	"regexp"
	"sort"
	"strings"
	"time"

	"github.com/go-viper/mapstructure/v2"
	"github.com/spf13/viper"
	"go.yaml.in/yaml/v3"

	"github.com/switchboard/switchboard/engine/bus"
	"github.com/switchboard/switchboard/engine/channel"
	"github.com/switchboard/switchboard/engine/esl"
	"github.com/switchboard/switchboard/engine/relay"
	"github.com/switchboard/switchboard/engine/socket"
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
	Channels        []channel.Config `mapstructure:"-"` // decoded by channel.ParseConfigs
}

// LogConfig is the `log:` section.
type LogConfig struct {
	Level  string `mapstructure:"level"`  // debug | info | warn | error
	Format string `mapstructure:"format"` // text | json
}

// AdminConfig is the `admin:` section.
type AdminConfig struct {
	Listen string `mapstructure:"listen"` // "" disables /healthz, /metrics and POST /reload
}

// BusConfig is the `bus:` section.
type BusConfig struct {
	QueueSize  int `mapstructure:"queue_size"`  // per subscriber; see engine/bus for the slow-subscriber policy
	QueueBytes int `mapstructure:"queue_bytes"` // the same bound in bytes
}

// DefaultConfig is every key's default; configs/switchboard.yaml repeats them with comments.
func DefaultConfig() Config {
	return Config{
		Log:             LogConfig{Level: "info", Format: "text"},
		Lua:             luabind.DefaultConfig(),
		Admin:           AdminConfig{Listen: "127.0.0.1:9090"},
		Bus:             BusConfig{QueueSize: 1024, QueueBytes: bus.DefaultQueueBytes},
		ShutdownTimeout: 10 * time.Second,
		GCFloorMB:       32,
		Socket:          socket.DefaultConfig(),
		Relay:           relay.DefaultConfig(),
		ESL:             esl.DefaultConfig(),
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
		if err := checkHostPort(c.Admin.Listen); err != nil {
			errs = append(errs, fmt.Errorf("admin.listen: %w", err))
		}
	}
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
	for _, v := range []interface{ Validate() error }{c.Lua, c.Socket, c.Relay, c.ESL} {
		if err := v.Validate(); err != nil {
			errs = append(errs, err)
		}
	}
	for _, ch := range c.Channels {
		if err := ch.Validate(); err != nil {
			errs = append(errs, err)
		}
	}
	return errors.Join(errs...)
}

var hostPort = regexp.MustCompile(`^(\[[0-9a-fA-F:.]+\]|[^\s:]*):\d{1,5}$`)

func checkHostPort(s string) error {
	if !hostPort.MatchString(s) {
		return fmt.Errorf("expected host:port such as 127.0.0.1:9090, got %q", s)
	}
	return nil
}

// ConfigSource says where LoadConfig reads from.
type ConfigSource struct {
	File     string            // YAML file; "" uses Fallback
	Fallback []byte            // YAML used when File is "" (the embedded defaults)
	Env      []string          // KEY=VALUE pairs; SWITCHBOARD_SOCKET_LISTEN overrides socket.listen
	Set      map[string]string // key path -> value, from flags (highest precedence)
}

// LoadConfig reads YAML, then environment, then flags over the defaults; unknown keys and bad values are
// errors naming the key path and the expected form.
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
	name := "embedded defaults"
	if src.File != "" {
		b, err := os.ReadFile(src.File)
		if err != nil {
			return Config{}, fmt.Errorf("config: %w", err)
		}
		data, name = b, src.File
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
	for _, kv := range src.Env {
		k, val, ok := strings.Cut(kv, "=")
		if !ok || !strings.HasPrefix(k, "SWITCHBOARD_") {
			continue
		}
		path, known := envKey(strings.TrimPrefix(k, "SWITCHBOARD_"), flat)
		if !known {
			errs = append(errs, fmt.Errorf("%s: environment variable names no configuration key", k))
			continue
		}
		v.Set(path, val)
	}
	setKeys := make([]string, 0, len(src.Set))
	for k := range src.Set {
		setKeys = append(setKeys, k)
	}
	sort.Strings(setKeys)
	for _, k := range setKeys {
		if _, ok := flat[k]; !ok {
			errs = append(errs, fmt.Errorf("%s: unknown key (from --set)", k))
			continue
		}
		v.Set(k, src.Set[k])
	}

	cfg := def
	dc := &mapstructure.DecoderConfig{
		Result:           &cfg,
		WeaklyTypedInput: true,
		Squash:           true,
		DecodeHook: mapstructure.ComposeDecodeHookFunc(
			durationHook,
			mapstructure.StringToSliceHookFunc(","),
		),
	}
	settings := v.AllSettings()
	delete(settings, "channels")
	dec, err := mapstructure.NewDecoder(dc)
	if err != nil {
		return Config{}, err
	}
	if err := dec.Decode(settings); err != nil {
		errs = append(errs, decodeErrors(err, v.Get)...)
	}
	chans, err := channel.ParseConfigs(raw["channels"])
	if err != nil {
		errs = append(errs, err)
	}
	cfg.Channels = chans
	if len(errs) == 0 {
		if err := cfg.Validate(); err != nil {
			errs = append(errs, err)
		}
	}
	if len(errs) > 0 {
		return Config{}, &ConfigError{Source: name, Errors: errs}
	}
	return cfg, nil
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

// durationHook accepts "1500ms", "10s", "2m" and a bare 0; other numbers are refused because their unit
// would be a guess.
func durationHook(from, to reflect.Type, data any) (any, error) {
	if to != reflect.TypeOf(time.Duration(0)) {
		return data, nil
	}
	switch x := data.(type) {
	case string:
		d, err := time.ParseDuration(strings.TrimSpace(x))
		if err != nil {
			return nil, fmt.Errorf("expected a duration such as 500ms, 10s or 2m, got %q", x)
		}
		return d, nil
	case int, int64, float64:
		if reflect.ValueOf(x).Convert(reflect.TypeOf(float64(0))).Float() == 0 {
			return time.Duration(0), nil
		}
		return nil, fmt.Errorf("expected a duration with a unit such as 10s, got the bare number %v", x)
	case time.Duration:
		return x, nil
	}
	return data, nil
}

var decodeLine = regexp.MustCompile(`'([^']*)' (.*)`)

// decodeErrors rewrites mapstructure's messages as "key.path: what was wrong".
func decodeErrors(err error, value func(string) any) []error {
	var out []error
	for _, line := range strings.Split(err.Error(), "\n") {
		line = strings.TrimSpace(strings.TrimPrefix(strings.TrimSpace(line), "*"))
		if line == "" || strings.HasPrefix(line, "decoding failed") || strings.HasSuffix(line, "error(s) decoding:") {
			continue
		}
		if m := decodeLine.FindStringSubmatch(line); m != nil {
			msg := m[2]
			for from, to := range map[string]string{"'int'": "a whole number", "'bool'": "true or false",
				"'float64'": "a number", "'string'": "a string"} {
				if strings.Contains(msg, "cannot parse value as "+from) || strings.Contains(msg, "expected type "+from) {
					msg = "expected " + to
				}
			}
			out = append(out, fmt.Errorf("%s: %s, got %#v", m[1], msg, value(m[1])))
			continue
		}
		out = append(out, errors.New(line))
	}
	if len(out) == 0 {
		out = append(out, err)
	}
	return out
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
