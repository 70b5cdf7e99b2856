package engine

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"reflect"
	"sort"
	"strings"
	"testing"
	"time"
)

// The shipped file says every default, except that its paths, relative to configs/, name the repository's
// scripts/, public/ and data/ (the defaults, relative to the file's folder, would name configs/scripts...).
func TestShippedConfigEqualsDefaults(t *testing.T) {
	root, err := filepath.Abs("..")
	if err != nil {
		t.Fatal(err)
	}
	cfg, err := LoadConfig(ConfigSource{File: filepath.Join("..", "configs", "switchboard.yaml")})
	if err != nil {
		t.Fatal(err)
	}
	if cfg.Origin.File != filepath.Join(root, "configs", "switchboard.yaml") {
		t.Fatalf("origin %q", cfg.Origin.File)
	}
	got, want := map[string]any{}, map[string]any{}
	flattenValue(cfg, got)
	flattenValue(DefaultConfig(), want)
	paths := map[string]string{
		"lua.scripts_dir":   filepath.Join(root, "scripts"),
		"socket.public_dir": filepath.Join(root, "public"),
		"relay.routes_file": filepath.Join(root, "configs", "relay.routes"),
		"relay.persist_dir": filepath.Join(root, "data", "persist"),
		"relay.message_log": filepath.Join(root, "data", "relay-messages.log"),
		"esl.data_dir":      filepath.Join(root, "data", "freeswitch"),
	}
	for k, w := range want {
		if p, ok := paths[k]; ok {
			w = p
		}
		if !reflect.DeepEqual(got[k], w) {
			t.Errorf("%s: shipped %#v, default %#v", k, got[k], w)
		}
	}
	if len(cfg.Channels) != 0 {
		t.Errorf("shipped channels: %+v", cfg.Channels)
	}
}

func TestEveryDefaultKeyIsInShippedFile(t *testing.T) {
	data, err := os.ReadFile(filepath.Join("..", "configs", "switchboard.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	flat := map[string]any{}
	flattenValue(DefaultConfig(), flat)
	for key := range flat {
		last := key[strings.LastIndex(key, ".")+1:]
		if !strings.Contains(string(data), last+":") {
			t.Errorf("configs/switchboard.yaml does not show %s", key)
		}
	}
}

func TestOverridesFileEnvFlags(t *testing.T) {
	dir := t.TempDir()
	file := filepath.Join(dir, "c.yaml")
	os.WriteFile(file, []byte("socket:\n  listen: 127.0.0.1:6000\n  welcome: hi\nshutdown_timeout: 3s\n"), 0o644)
	cfg, err := LoadConfig(ConfigSource{File: file,
		Env: []string{"SWITCHBOARD_SOCKET_LISTEN=127.0.0.1:7000", "SWITCHBOARD_LUA_HANDLER_TIMEOUT=250ms", "HOME=/root"},
		Set: map[string]string{"socket.welcome": "from flag", "socket.rooms.starting": "a,b"}})
	if err != nil {
		t.Fatal(err)
	}
	if cfg.Socket.Listen != "127.0.0.1:7000" || cfg.Socket.Welcome != "from flag" || cfg.Lua.HandlerTimeout != 250*time.Millisecond ||
		cfg.ShutdownTimeout != 3*time.Second || strings.Join(cfg.Socket.Rooms.Starting, "|") != "a|b" || cfg.ESL.Listen != "127.0.0.1:8084" {
		t.Fatalf("got %+v", cfg)
	}
}

func TestBadConfigNamesKeys(t *testing.T) {
	cases := map[string]string{
		"sockett:\n  listen: x\n":                            "sockett: unknown key",
		"socket:\n  listn: x\n":                              "socket.listn: unknown key",
		"socket:\n  max_data_length: abc\n":                  `socket.max_data_length: expected a whole number, got "abc"`,
		"shutdown_timeout: 10\n":                             "shutdown_timeout: expected a duration with a unit",
		"lua:\n  handler_timeout: soon\n":                    `expected a duration such as 500ms, 10s or 2m, got "soon"`,
		"log:\n  format: xml\n":                              `log.format: expected text or json, got "xml"`,
		"admin:\n  listen: nowhere\n":                        `admin.listen: expected host:port`,
		"lua:\n  scripts_dir: \"\"\n":                        "lua.scripts_dir: expected a directory",
		"socket: [1, 2]\n":                                   "socket",
		"log: {level: info}\nlog: {level: debug}\n":          "mapping key \"log\" already defined",
		"relay:\n  guaranteed: true\n  journal: jetstream\n": "relay.journal: jetstream needs the NATS cluster: set cluster.nats_url",
		"relay:\n  journal: jetstream\n":                     "relay.journal: jetstream journals guaranteed mode",
	}
	for yaml, want := range cases {
		file := filepath.Join(t.TempDir(), "c.yaml")
		os.WriteFile(file, []byte(yaml), 0o644)
		_, err := LoadConfig(ConfigSource{File: file})
		if err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("%q: got %v, want %q", yaml, err, want)
		}
	}
	_, err := LoadConfig(ConfigSource{Fallback: []byte("{}"), Set: map[string]string{"socket.nope": "1"}})
	if err == nil || !strings.Contains(err.Error(), "socket.nope: unknown key") {
		t.Errorf("set: %v", err)
	}
}

func TestReconfigureAppliesLogAndNamesTheRest(t *testing.T) {
	cfg := DefaultConfig()
	cfg.Admin.Listen = ""
	cfg.Socket.Enabled, cfg.Relay.Enabled, cfg.ESL.Enabled = false, false, false
	cfg.Lua.ScriptsDir = t.TempDir()
	e, err := New(Options{Config: cfg})
	if err != nil {
		t.Fatal(err)
	}
	defer e.close()
	next := cfg
	next.Log.Level = "debug"
	next.Socket.Welcome = "changed"
	keys := e.Reconfigure(next)
	if e.logger.GetLevel().String() != "debug" || strings.Join(keys, ",") != "socket.welcome" {
		t.Fatalf("level %v, keys %v", e.logger.GetLevel(), keys)
	}
}

// The GC floor never reaches the Lua memory guard's limit, which counts uncollected garbage.
func TestGCFloor(t *testing.T) {
	cfg := DefaultConfig()
	if got := cfg.GCFloor(); got != 32<<20 {
		t.Fatalf("default floor %d, want 32 MiB", got)
	}
	cfg.Lua.MemoryLimitMB = 40
	if got := cfg.GCFloor(); got != 20<<20 {
		t.Fatalf("floor under a 40 MiB guard %d, want 20 MiB", got)
	}
	cfg.Lua.MemoryLimitMB = 0
	cfg.GCFloorMB = 100
	if got := cfg.GCFloor(); got != 100<<20 {
		t.Fatalf("floor without a guard %d, want 100 MiB", got)
	}
	for _, bad := range []int{-1, 1<<20 + 1, 1 << 50} {
		cfg.GCFloorMB = bad
		if err := cfg.Validate(); err == nil || !strings.Contains(err.Error(), "gc_floor_mb") {
			t.Fatalf("gc_floor_mb %d: %v", bad, err)
		}
	}
}

// A bad duration names the key, what was expected and what was given, each once.
func TestDurationErrorsSayGotOnce(t *testing.T) {
	file := filepath.Join(t.TempDir(), "c.yaml")
	os.WriteFile(file, []byte("lua:\n  handler_timeout: soon\nshutdown_timeout: 10\n"), 0o644)
	_, err := LoadConfig(ConfigSource{File: file})
	var ce *ConfigError
	if !errors.As(err, &ce) {
		t.Fatalf("got %v", err)
	}
	var got []string
	for _, e := range ce.Errors {
		got = append(got, e.Error())
	}
	sort.Strings(got)
	want := []string{
		`lua.handler_timeout: expected a duration such as 500ms, 10s or 2m, got "soon"`,
		`shutdown_timeout: expected a duration with a unit such as 10s (a bare number's unit would be a guess), got 10`,
	}
	if strings.Join(got, "\n") != strings.Join(want, "\n") {
		t.Fatalf("got\n%s\nwant\n%s", strings.Join(got, "\n"), strings.Join(want, "\n"))
	}
}

// TestMapEntriesFromFlagsAndEnv (issue 15 item 12): a map key (relay.centers, relay.center_tls) takes single
// entries from --set and the environment on top of the file, the whole map as text, and a list in YAML; a
// list key takes commas. Flags beat the environment, which beats the file.
func TestMapEntriesFromFlagsAndEnv(t *testing.T) {
	dir := t.TempDir()
	wd, _ := os.Getwd()
	file := filepath.Join(dir, "c.yaml")
	os.WriteFile(file, []byte("relay:\n  centers:\n    risk: 10.0.0.2:3270\n    hist: 10.0.0.3:3270\n  center_tls:\n    risk: {ca: risk-ca.pem}\n"), 0o644)
	cfg, err := LoadConfig(ConfigSource{File: file,
		Env: []string{"SWITCHBOARD_RELAY_CENTERS_EU_WEST=10.0.0.9:3270", "SWITCHBOARD_RELAY_CENTER_TLS_RISK_CERT=risk.pem",
			"SWITCHBOARD_RELAY_CENTER_TLS_RISK_KEY=/keys/risk.key", "SWITCHBOARD_SOCKET_ROOMS_STARTING=lobby,support"},
		Set: map[string]string{"relay.centers.primary": "127.0.0.1:3270", "relay.centers.hist": "",
			"relay.centers.10.0.0.7:3270": "tls://10.0.0.7:3270", "relay.center_tls.primary.ca": "/etc/ca.pem"}})
	if err != nil {
		t.Fatal(err)
	}
	wantCenters := relayCenters{"risk": "10.0.0.2:3270", "eu_west": "10.0.0.9:3270", "primary": "127.0.0.1:3270",
		"10.0.0.7:3270": "tls://10.0.0.7:3270"}
	if !reflect.DeepEqual(relayCenters(cfg.Relay.Centers), wantCenters) {
		t.Errorf("centers %v, want %v", cfg.Relay.Centers, wantCenters)
	}
	tlsGot := fmt.Sprint(cfg.Relay.CenterTLS)
	tlsWant := fmt.Sprintf("map[primary:{  /etc/ca.pem} risk:{%s /keys/risk.key %s}]", filepath.Join(wd, "risk.pem"), filepath.Join(dir, "risk-ca.pem"))
	if tlsGot != tlsWant {
		t.Errorf("center_tls %s, want %s", tlsGot, tlsWant)
	}
	if got := strings.Join(cfg.Socket.Rooms.Starting, "|"); got != "lobby|support" {
		t.Errorf("rooms %q", got)
	}
	for _, k := range []string{"relay.centers.eu_west", "relay.centers.primary", "relay.centers.hist", "relay.center_tls.risk.cert",
		"relay.center_tls.primary.ca", "socket.rooms.starting"} {
		if !cfg.Origin.IsOverridden(k) {
			t.Errorf("%s not listed as overridden: %v", k, cfg.Origin.Overridden)
		}
	}
	if len(cfg.Origin.IgnoredEnv) != 0 {
		t.Errorf("ignored %v", cfg.Origin.IgnoredEnv)
	}

	// the whole map as text (3forge's ami.centers form): a center without a name is named by its host:port;
	// from a flag it replaces the file's map and the environment's entries
	cfg, err = LoadConfig(ConfigSource{File: file, Env: []string{"SWITCHBOARD_RELAY_CENTERS_EU=10.0.0.9:3270"},
		Set: map[string]string{"relay.centers": "primary=127.0.0.1:3270, 127.0.0.1:3271,Risk=tls://10.0.0.2:3270"}})
	if err != nil {
		t.Fatal(err)
	}
	wantCenters = relayCenters{"primary": "127.0.0.1:3270", "127.0.0.1:3271": "127.0.0.1:3271", "Risk": "tls://10.0.0.2:3270"}
	if !reflect.DeepEqual(relayCenters(cfg.Relay.Centers), wantCenters) {
		t.Errorf("text form: centers %v, want %v", cfg.Relay.Centers, wantCenters)
	}
	cfg, err = LoadConfig(ConfigSource{Env: []string{"SWITCHBOARD_RELAY_CENTERS=a=127.0.0.1:1,127.0.0.1:2"}})
	if err != nil {
		t.Fatal(err)
	}
	if want := (relayCenters{"a": "127.0.0.1:1", "127.0.0.1:2": "127.0.0.1:2"}); !reflect.DeepEqual(relayCenters(cfg.Relay.Centers), want) {
		t.Errorf("text form from the environment: %v", cfg.Relay.Centers)
	}
	// a YAML list of the same entries
	os.WriteFile(file, []byte("relay:\n  centers: [\"127.0.0.1:3270\", \"risk=10.0.0.2:3270\"]\n"), 0o644)
	cfg, err = LoadConfig(ConfigSource{File: file})
	if err != nil {
		t.Fatal(err)
	}
	if want := (relayCenters{"127.0.0.1:3270": "127.0.0.1:3270", "risk": "10.0.0.2:3270"}); !reflect.DeepEqual(relayCenters(cfg.Relay.Centers), want) {
		t.Errorf("list form: %v", cfg.Relay.Centers)
	}

	// errors name the key
	for set, want := range map[string]string{
		"relay.centers.x=nowhere":                   `relay.centers.x: expected host:port or tls://host:port, got "nowhere"`,
		"relay.center_tls.x.nosuch=1":               `relay.center_tls.x.nosuch: unknown key (from --set)`,
		"relay.center_tls.nosuch.ca=ca.pem":         `relay.center_tls.nosuch: no such center in relay.centers`,
		"relay.centers=a=127.0.0.1:1,a=127.0.0.1:2": `center "a" given twice`,
	} {
		k, v, _ := strings.Cut(set, "=")
		_, err := LoadConfig(ConfigSource{Set: map[string]string{k: v}})
		if err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("--set %s: %v, want %q", set, err, want)
		}
	}
}

type relayCenters map[string]string

// switchboard check lists every problem in one run: one error per bad value, whatever section it is in.
func TestEveryProblemAtOnce(t *testing.T) {
	file := filepath.Join(t.TempDir(), "c.yaml")
	os.WriteFile(file, []byte(`socket:
  delimiter: ""
  max_buffer: 1
  listen: nowhere
lua:
  max_timers: 0
  pool_size: -1
esl:
  max_calls: -1
  listen: "127.0.0.1:99999"
relay:
  max_line: 1
  client_queue: 0
colour: red
channels:
  - {name: a, host: h, port: 0, send_buffer: 0}
  - {name: b, host: h, port: 1, flavour: x}
`), 0o644)
	_, err := LoadConfig(ConfigSource{File: file})
	var ce *ConfigError
	if !errors.As(err, &ce) {
		t.Fatalf("got %v", err)
	}
	var got []string
	for _, e := range ce.Errors {
		got = append(got, e.Error())
	}
	for _, want := range []string{
		"colour: unknown key",
		`socket.delimiter: expected a non-empty string`,
		"socket.max_buffer: expected at least 1024 bytes, got 1",
		`socket.listen: expected host:port such as 127.0.0.1:9090, got "nowhere"`,
		"lua.max_timers: expected a positive number, got 0",
		"lua.pool_size: expected 0 (automatic) or a positive number, got -1",
		"esl.max_calls: expected 0 (unlimited) or more, got -1",
		`esl.listen: expected host:port with a port 0-65535, got "127.0.0.1:99999"`,
		"relay.max_line: expected at least 64 bytes, got 1",
		"relay.client_queue: expected at least 1, got 0",
		"channels[0].port: expected 1-65535, got 0",
		"channels[0].send_buffer: expected a positive message count, got 0",
		"channels[1].flavour: unknown key",
	} {
		found := false
		for _, g := range got {
			found = found || strings.HasPrefix(g, want)
		}
		if !found {
			t.Errorf("missing %q in\n%s", want, strings.Join(got, "\n"))
		}
	}
}

// The seed's spellings stay: socket.secure, relay.whitelist, and in channels redirect-in, topic-in and a
// bare-number reconnectionTimeout meaning seconds (only there: elsewhere a duration takes its unit).
func TestSeedSpellings(t *testing.T) {
	file := filepath.Join(t.TempDir(), "c.yaml")
	os.WriteFile(file, []byte(`socket:
  secure: true
  tls: {cert: c.pem, key: k.pem}
relay:
  whitelist: "text:10.0.0.0/8"
channels:
  - name: google
    host: www.example.com
    port: 80
    protocol: http
    redirect-in: true
    topic-in: http.response
    reconnectionTimeout: 10
`), 0o644)
	cfg, err := LoadConfig(ConfigSource{File: file})
	if err != nil {
		t.Fatal(err)
	}
	c := cfg.Channels[0]
	if !cfg.Socket.Secure || cfg.Relay.Whitelist != "text:10.0.0.0/8" || !c.RedirectIn || c.TopicIn != "http.response" ||
		c.ReconnectionTimeout != 10*time.Second || !c.Permanent {
		t.Fatalf("socket.secure %v, relay.whitelist %q, channel %+v", cfg.Socket.Secure, cfg.Relay.Whitelist, c)
	}
	os.WriteFile(file, []byte("channels:\n  - {name: a, host: h, port: 1, reconnection_timeout: 10}\n"), 0o644)
	if _, err := LoadConfig(ConfigSource{File: file}); err == nil ||
		!strings.Contains(err.Error(), "channels[0].reconnection_timeout: expected a duration with a unit such as 10s") {
		t.Fatalf("a bare number under the canonical key: %v", err)
	}
}

// A key of a channel entry can be set from a flag or the environment, in any spelling the file accepts; an
// index one past the end adds an entry; a relative tls.ca from a flag resolves from the working directory.
func TestChannelKeysFromFlagsAndEnv(t *testing.T) {
	conf := t.TempDir()
	file := filepath.Join(conf, "c.yaml")
	os.WriteFile(file, []byte("channels:\n  - {name: web, host: example.com, port: 80, redirect-in: true, topic_in: in, tls: {ca: ca.pem}}\n"), 0o644)
	t.Chdir(t.TempDir())
	wd, _ := os.Getwd()
	cfg, err := LoadConfig(ConfigSource{File: file,
		Env: []string{"SWITCHBOARD_CHANNELS_0_PORT=8080", "SWITCHBOARD_CHANNELS_1_NAME=feed", "SWITCHBOARD_CHANNELS_1_HOST=10.0.0.9",
			"SWITCHBOARD_CHANNELS_1_PORT=9000", "SWITCHBOARD_CHANNELS_1_INBOUND_DELIMITER=\\r\\n"},
		Set: map[string]string{"channels[0].redirect_in": "false", "channels.0.tls.ca": "my-ca.pem", "channels[1].protocol": "asymmetric",
			"channels[1].reconnection_timeout": "2s", "channels[1].inbound.protocol": "text-messages", "channels[1].protocol.outbound": "xml-messages"}})
	if err != nil {
		t.Fatal(err)
	}
	if len(cfg.Channels) != 2 {
		t.Fatalf("channels: %+v", cfg.Channels)
	}
	web, feed := cfg.Channels[0], cfg.Channels[1]
	if web.Port != 8080 || web.RedirectIn || web.TLSCA != filepath.Join(wd, "my-ca.pem") || web.Host != "example.com" {
		t.Errorf("web: %+v", web)
	}
	if feed.Name != "feed" || feed.Host != "10.0.0.9" || feed.Port != 9000 || feed.Protocol != "asymmetric" ||
		feed.Inbound.Delimiter != "\r\n" || feed.Inbound.Protocol != "text-messages" || feed.Outbound.Protocol != "xml-messages" ||
		feed.ReconnectionTimeout != 2*time.Second {
		t.Errorf("feed: %+v", feed)
	}
	for _, k := range []string{"channels[0].port", "channels[0].redirect_in", "channels[0].tls.ca", "channels[1].name"} {
		if !cfg.Origin.IsOverridden(k) {
			t.Errorf("%s not among the overridden keys %v", k, cfg.Origin.Overridden)
		}
	}
	for set, want := range map[string]string{
		"channels[5].port":   "channels[5].port: no such entry: channels has 1",
		"channels[0].colour": "channels[0].colour: unknown key (from --set)",
		"channels[0].port":   `channels[0].port: expected a whole number, got "x"`,
	} {
		_, err := LoadConfig(ConfigSource{File: file, Set: map[string]string{set: "x"}})
		if err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("--set %s=x: %v, want %q", set, err, want)
		}
	}
}
