package engine

import (
	"bytes"
	"encoding/json"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"
)

// notPathKeys are the string keys that do not name a file. With pathKeys they must cover every string key,
// so a new key is classified on purpose (a path key left out would resolve from the working directory).
var notPathKeys = []string{
	"log.level", "log.format", "admin.listen", "admin.token",
	"lua.freeswitch_dir", "lua.freeswitch_require_root", // folders inside lua.scripts_dir, not paths of their own
	"socket.listen", "socket.delimiter", "socket.welcome", "socket.goodbye", "socket.file_mode",
	"relay.id", "relay.listen", "relay.follow_objects", "relay.journal",
	"esl.listen", "esl.default_flow", "esl.flow_variable", "esl.event_format",
	"cluster.nats_url", "cluster.name", "cluster.node_id",
}

func TestEveryStringKeyIsClassified(t *testing.T) {
	flat := map[string]any{}
	flattenValue(DefaultConfig(), flat)
	known := map[string]bool{}
	for _, pk := range pathKeys {
		known[pk.key] = true
		if _, ok := flat[pk.key]; !ok {
			t.Errorf("pathKeys names %s, which is not a key", pk.key)
		}
	}
	for _, k := range notPathKeys {
		known[k] = true
	}
	for k, v := range flat {
		if _, ok := v.(string); ok && !known[k] {
			t.Errorf("%s is a string key in neither pathKeys nor notPathKeys: is it a path?", k)
		}
	}
}

const allPathsYAML = `lua:
  scripts_dir: scripts
admin:
  token_file: secrets/admin.token
socket:
  secure: true
  tls: {cert: tls/socket.pem, key: tls/socket.key}
  public_dir: ./public
relay:
  tls: {cert: tls/relay.pem, key: /abs/relay.key}
  whitelist: "file: allow/relay.txt"
  center_ca: tls/ca.pem
  routes_file: ../shared/relay.routes
  persist_dir: data/persist
  message_log: data/messages.log
esl:
  allow: "text:127.0.0.1"
  data_dir: data/freeswitch
cluster:
  credentials: nats/node.creds
  tls: {cert: nats/client.pem, key: nats/client.key, ca: /abs/nats-ca.pem}
channels:
  - {name: web, host: example.com, port: 443, tls: {ca: tls/web-ca.pem}}
`

// TestPathsResolveFromTheConfigFolder: every path in a file resolves from the file's folder whatever the
// working directory; absolute paths and text: allowlists are left alone.
func TestPathsResolveFromTheConfigFolder(t *testing.T) {
	dir := t.TempDir()
	conf := filepath.Join(dir, "etc", "switchboard")
	if err := os.MkdirAll(conf, 0o755); err != nil {
		t.Fatal(err)
	}
	file := filepath.Join(conf, "switchboard.yaml")
	if err := os.WriteFile(file, []byte(allPathsYAML), 0o644); err != nil {
		t.Fatal(err)
	}
	t.Chdir(t.TempDir()) // somewhere else
	for _, name := range []string{file, mustRel(t, file)} {
		cfg, err := LoadConfig(ConfigSource{File: name})
		if err != nil {
			t.Fatal(err)
		}
		want := map[string]string{
			"lua.scripts_dir":     filepath.Join(conf, "scripts"),
			"admin.token_file":    filepath.Join(conf, "secrets", "admin.token"),
			"socket.tls.cert":     filepath.Join(conf, "tls", "socket.pem"),
			"socket.tls.key":      filepath.Join(conf, "tls", "socket.key"),
			"socket.public_dir":   filepath.Join(conf, "public"),
			"relay.tls.cert":      filepath.Join(conf, "tls", "relay.pem"),
			"relay.tls.key":       "/abs/relay.key",
			"relay.whitelist":     "file:" + filepath.Join(conf, "allow", "relay.txt"),
			"relay.center_ca":     filepath.Join(conf, "tls", "ca.pem"),
			"relay.routes_file":   filepath.Join(dir, "etc", "shared", "relay.routes"),
			"relay.persist_dir":   filepath.Join(conf, "data", "persist"),
			"relay.message_log":   filepath.Join(conf, "data", "messages.log"),
			"esl.allow":           "text:127.0.0.1",
			"esl.data_dir":        filepath.Join(conf, "data", "freeswitch"),
			"cluster.credentials": filepath.Join(conf, "nats", "node.creds"),
			"cluster.tls.cert":    filepath.Join(conf, "nats", "client.pem"),
			"cluster.tls.key":     filepath.Join(conf, "nats", "client.key"),
			"cluster.tls.ca":      "/abs/nats-ca.pem",
		}
		checkPaths(t, cfg, want)
		if got := cfg.Channels[0].TLSCA; got != filepath.Join(conf, "tls", "web-ca.pem") {
			t.Errorf("channels[0].tls.ca = %q", got)
		}
		if cfg.Origin.File != file {
			t.Errorf("origin %q, want %q", cfg.Origin.File, file)
		}
	}
}

func mustRel(t *testing.T, p string) string {
	t.Helper()
	wd, err := os.Getwd()
	if err != nil {
		t.Fatal(err)
	}
	rel, err := filepath.Rel(wd, p)
	if err != nil {
		t.Fatal(err)
	}
	return rel
}

func checkPaths(t *testing.T, cfg Config, want map[string]string) {
	t.Helper()
	for _, pk := range pathKeys {
		w, ok := want[pk.key]
		if !ok {
			t.Fatalf("test does not cover %s", pk.key)
		}
		if got := *pk.ref(&cfg); got != w {
			t.Errorf("%s = %q, want %q", pk.key, got, w)
		}
	}
}

// TestDefaultPathsResolveFromTheConfigFolder: a key the file leaves out takes its default from the file's
// folder too; with no file, from the working directory.
func TestDefaultPathsResolveFromTheConfigFolder(t *testing.T) {
	conf := t.TempDir()
	file := filepath.Join(conf, "switchboard.yaml")
	if err := os.WriteFile(file, []byte("log: {level: info}\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	wd := t.TempDir()
	t.Chdir(wd)
	wd, _ = os.Getwd() // the real path, as Getwd reports it
	for base, src := range map[string]ConfigSource{conf: {File: file}, wd: {}} {
		cfg, err := LoadConfig(src)
		if err != nil {
			t.Fatal(err)
		}
		checkPaths(t, cfg, map[string]string{
			"lua.scripts_dir":     filepath.Join(base, "scripts"),
			"admin.token_file":    "",
			"socket.tls.cert":     "",
			"socket.tls.key":      "",
			"socket.public_dir":   filepath.Join(base, "public"),
			"relay.tls.cert":      "",
			"relay.tls.key":       "",
			"relay.whitelist":     "",
			"relay.center_ca":     "",
			"relay.routes_file":   filepath.Join(base, "relay.routes"),
			"relay.persist_dir":   filepath.Join(base, "data", "persist"),
			"relay.message_log":   filepath.Join(base, "data", "relay-messages.log"),
			"esl.allow":           "",
			"esl.data_dir":        filepath.Join(base, "data", "freeswitch"),
			"cluster.credentials": "", "cluster.tls.cert": "", "cluster.tls.key": "", "cluster.tls.ca": "",
		})
		if (src.File == "") != (cfg.Origin.File == "") {
			t.Errorf("origin %q for file %q", cfg.Origin.File, src.File)
		}
	}
}

// TestOverriddenPathsResolveFromTheWorkingDirectory: a relative path from the environment or a flag is the
// shell user's, so it resolves from the working directory; the rest of the file still from its folder.
func TestOverriddenPathsResolveFromTheWorkingDirectory(t *testing.T) {
	conf := t.TempDir()
	file := filepath.Join(conf, "switchboard.yaml")
	if err := os.WriteFile(file, []byte(allPathsYAML), 0o644); err != nil {
		t.Fatal(err)
	}
	t.Chdir(t.TempDir())
	wd, _ := os.Getwd()
	cfg, err := LoadConfig(ConfigSource{File: file,
		Env: []string{"SWITCHBOARD_LUA_SCRIPTS_DIR=my-scripts", "SWITCHBOARD_RELAY_WHITELIST=file:allow.txt"},
		Set: map[string]string{"relay.routes_file": "r.routes", "socket.public_dir": "/srv/public"}})
	if err != nil {
		t.Fatal(err)
	}
	if got := cfg.Lua.ScriptsDir; got != filepath.Join(wd, "my-scripts") {
		t.Errorf("lua.scripts_dir from env = %q", got)
	}
	if got := cfg.Relay.Whitelist; got != "file:"+filepath.Join(wd, "allow.txt") {
		t.Errorf("relay.whitelist from env = %q", got)
	}
	if got := cfg.Relay.RoutesFile; got != filepath.Join(wd, "r.routes") {
		t.Errorf("relay.routes_file from --set = %q", got)
	}
	if got := cfg.Socket.PublicDir; got != "/srv/public" {
		t.Errorf("socket.public_dir from --set = %q", got)
	}
	if got := cfg.Relay.CenterCA; got != filepath.Join(conf, "tls", "ca.pem") {
		t.Errorf("relay.center_ca from the file = %q", got)
	}
	want := []string{"lua.scripts_dir", "relay.routes_file", "relay.whitelist", "socket.public_dir"}
	if !slices.Equal(cfg.Origin.Overridden, want) {
		t.Errorf("overridden %v, want %v", cfg.Origin.Overridden, want)
	}
}

// TestUnknownEnvIsIgnored: Kubernetes injects SWITCHBOARD_PORT=tcp://... and friends for a Service named
// switchboard; they are listed for one warning and do not stop the load, while known variables still
// apply. Unknown keys in the file and in flags stay errors.
func TestUnknownEnvIsIgnored(t *testing.T) {
	env := []string{
		"SWITCHBOARD_SERVICE_HOST=10.96.0.12",
		"SWITCHBOARD_PORT=tcp://10.96.0.12:5000",
		"SWITCHBOARD_PORT_5000_TCP=tcp://10.96.0.12:5000",
		"SWITCHBOARD_SOCKET_LISTEN=127.0.0.1:7000",
		"SWITCHBOARD_SERVICE_PORT=5000",
		"PATH=/usr/bin",
	}
	cfg, err := LoadConfig(ConfigSource{Env: env})
	if err != nil {
		t.Fatal(err)
	}
	if cfg.Socket.Listen != "127.0.0.1:7000" {
		t.Errorf("socket.listen %q", cfg.Socket.Listen)
	}
	want := []string{"SWITCHBOARD_PORT", "SWITCHBOARD_PORT_5000_TCP", "SWITCHBOARD_SERVICE_HOST", "SWITCHBOARD_SERVICE_PORT"}
	if !slices.Equal(cfg.Origin.IgnoredEnv, want) {
		t.Errorf("ignored %v, want %v", cfg.Origin.IgnoredEnv, want)
	}
	if _, err := LoadConfig(ConfigSource{Env: env, Set: map[string]string{"socket.port": "1"}}); err == nil ||
		!strings.Contains(err.Error(), "socket.port: unknown key (from --set)") {
		t.Errorf("--set socket.port: %v", err)
	}
	file := filepath.Join(t.TempDir(), "c.yaml")
	os.WriteFile(file, []byte("port: 5000\n"), 0o644)
	if _, err := LoadConfig(ConfigSource{File: file, Env: env}); err == nil || !strings.Contains(err.Error(), "port: unknown key") {
		t.Errorf("port in the file: %v", err)
	}
}

// An `origin:` key in a file is unknown like any other (Origin is not a key).
func TestOriginIsNotAKey(t *testing.T) {
	file := filepath.Join(t.TempDir(), "c.yaml")
	os.WriteFile(file, []byte("origin: {file: x}\n"), 0o644)
	if _, err := LoadConfig(ConfigSource{File: file}); err == nil || !strings.Contains(err.Error(), "origin: unknown key") {
		t.Fatalf("got %v", err)
	}
}

// TestJSONLogDurationsAreSeconds: logrus would print a time.Duration as nanoseconds; JSON lines carry
// seconds, text lines the Go duration string.
func TestJSONLogDurationsAreSeconds(t *testing.T) {
	var buf bytes.Buffer
	l := NewLogger(LogConfig{Level: "info", Format: "json"}, &buf)
	entry := l.WithField("took", 1500*time.Microsecond).WithField("n", 3)
	entry.Info("done")
	var rec map[string]any
	if err := json.Unmarshal(buf.Bytes(), &rec); err != nil {
		t.Fatalf("%v: %s", err, buf.String())
	}
	if rec["took"] != 0.0015 || rec["n"] != float64(3) || rec["msg"] != "done" {
		t.Fatalf("record %v", rec)
	}
	if _, ok := entry.Data["took"].(time.Duration); !ok {
		t.Fatal("formatting changed the caller's entry")
	}
	buf.Reset()
	l = NewLogger(LogConfig{Level: "info", Format: "text"}, &buf)
	l.WithField("took", 1500*time.Microsecond).Info("done")
	if !strings.Contains(buf.String(), "took=1.5ms") {
		t.Fatalf("text: %s", buf.String())
	}
}
