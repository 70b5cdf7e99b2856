package deploy

import (
	"bufio"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/switchboard/switchboard/engine"
	"github.com/switchboard/switchboard/tests/harness"
)

const unitFile = "deploy/systemd/switchboard.service"

// unit is a parsed systemd unit: section -> key -> values in order.
type unit map[string]map[string][]string

func parseUnit(t *testing.T, path string) unit {
	t.Helper()
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	u := unit{}
	section := ""
	sc := bufio.NewScanner(f)
	for n := 1; sc.Scan(); n++ {
		line := strings.TrimSpace(sc.Text())
		switch {
		case line == "" || strings.HasPrefix(line, "#") || strings.HasPrefix(line, ";"):
		case strings.HasPrefix(line, "[") && strings.HasSuffix(line, "]"):
			section = line[1 : len(line)-1]
			u[section] = map[string][]string{}
		default:
			k, v, ok := strings.Cut(line, "=")
			if !ok || section == "" || strings.HasSuffix(line, "\\") {
				t.Fatalf("%s:%d: %q is not key=value in a section", path, n, line)
			}
			u[section][strings.TrimSpace(k)] = append(u[section][strings.TrimSpace(k)], strings.TrimSpace(v))
		}
	}
	return u
}

func (u unit) get(section, key string) string {
	v := u[section][key]
	if len(v) == 0 {
		return "<unset>"
	}
	return v[len(v)-1]
}

// TestSystemdUnit checks the unit says what docs/operations.md promises.
func TestSystemdUnit(t *testing.T) {
	u := parseUnit(t, filepath.Join(harness.Root(), unitFile))
	for key, want := range map[string]string{
		"Type":                    "notify",
		"ExecStart":               "/usr/local/bin/switchboard run -c /etc/switchboard/switchboard.yaml",
		"ExecReload":              "/bin/kill -HUP $MAINPID",
		"DynamicUser":             "yes",
		"ConfigurationDirectory":  "switchboard",
		"StateDirectory":          "switchboard",
		"WorkingDirectory":        "/var/lib/switchboard",
		"ProtectSystem":           "strict",
		"ProtectHome":             "yes",
		"PrivateTmp":              "yes",
		"NoNewPrivileges":         "yes",
		"CapabilityBoundingSet":   "",
		"AmbientCapabilities":     "",
		"RestrictAddressFamilies": "AF_UNIX AF_INET AF_INET6",
		"LimitNOFILE":             "65536",
		"Restart":                 "on-failure",
	} {
		if got := u.get("Service", key); got != want {
			t.Errorf("[Service] %s=%s, want %s", key, got, want)
		}
	}
	// Graceful shutdown must finish before systemd resorts to SIGKILL.
	stop, err := time.ParseDuration(u.get("Service", "TimeoutStopSec"))
	if err != nil || stop <= engine.DefaultConfig().ShutdownTimeout {
		t.Errorf("TimeoutStopSec=%s: want a duration above shutdown_timeout (%v)", u.get("Service", "TimeoutStopSec"), engine.DefaultConfig().ShutdownTimeout)
	}
	if got := u.get("Install", "WantedBy"); got != "multi-user.target" {
		t.Errorf("[Install] WantedBy=%s", got)
	}
}

// TestSystemdAnalyzeVerify runs systemd's own checker over the unit (with ExecStart pointing at a real
// build of the binary, since verify insists the executable exists), and its offline security review.
func TestSystemdAnalyzeVerify(t *testing.T) {
	analyze, err := exec.LookPath("systemd-analyze")
	if err != nil {
		t.Skip("systemd-analyze is not installed (Debian: apt-get install systemd)")
	}
	src, err := os.ReadFile(filepath.Join(harness.Root(), unitFile))
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(string(src), "ExecStart=/usr/local/bin/switchboard ") {
		t.Fatal("ExecStart does not run /usr/local/bin/switchboard")
	}
	dir := t.TempDir()
	unitPath := filepath.Join(dir, "switchboard.service")
	writeFile(t, unitPath, strings.ReplaceAll(string(src), "/usr/local/bin/switchboard", stampedBinary(t)))

	out, err := exec.Command(analyze, "verify", unitPath).CombinedOutput()
	if err != nil || len(out) > 0 {
		t.Errorf("systemd-analyze verify: %v\n%s", err, out)
	}

	out, err = exec.Command(analyze, "security", "--offline=true", unitPath).CombinedOutput()
	if err != nil && strings.Contains(string(out), "--offline") {
		t.Skipf("systemd-analyze security --offline unsupported here: %s", out)
	}
	m := regexp.MustCompile(`Overall exposure level for switchboard\.service: ([0-9.]+)`).FindSubmatch(out)
	if m == nil {
		t.Fatalf("systemd-analyze security: %v\n%s", err, out)
	}
	// 0 is fully locked down, 10 is unprotected; 1.2 when written. A network daemon cannot go much lower.
	if level, _ := strconv.ParseFloat(string(m[1]), 64); level > 2 {
		t.Errorf("exposure level %s, want at most 2:\n%s", m[1], out)
	}
}

// TestInstalledLayout installs the way the unit's header and docs/operations.md say, into a temporary root
// standing in for /etc/switchboard and /var/lib/switchboard, and runs the binary there: `check` passes,
// the engine starts with the installed scripts and routes, and its state lands in the state directory.
func TestInstalledLayout(t *testing.T) {
	root := harness.Root()
	tmp := t.TempDir()
	etc, state := filepath.Join(tmp, "etc", "switchboard"), filepath.Join(tmp, "var", "lib", "switchboard")
	for _, d := range []string{etc, state} {
		if err := os.MkdirAll(d, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	cfgText, err := os.ReadFile(filepath.Join(root, "deploy/systemd/switchboard.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	relocated := strings.NewReplacer("/etc/switchboard", etc, "/var/lib/switchboard", state).Replace(string(cfgText))
	writeFile(t, filepath.Join(etc, "switchboard.yaml"), relocated)
	// cp -R scripts public /etc/switchboard/ && cp configs/relay.routes /etc/switchboard/
	if out, err := exec.Command("cp", "-R", filepath.Join(root, "scripts"), filepath.Join(root, "public"), filepath.Join(root, "configs/relay.routes"), etc).CombinedOutput(); err != nil {
		t.Fatalf("cp: %v\n%s", err, out)
	}

	bin := stampedBinary(t)
	cfg := filepath.Join(etc, "switchboard.yaml")
	work := t.TempDir() // not the repository, so nothing falls back to ./configs or ./scripts
	check := exec.Command(bin, "check", "-c", cfg)
	check.Dir = work
	if out, err := check.CombinedOutput(); err != nil || !strings.HasPrefix(string(out), "ok: configuration and scripts are valid (configuration: "+cfg+"; ") {
		t.Fatalf("switchboard check -c %s: %v\n%s", cfg, err, out)
	}

	manager := listenNotify(t, filepath.Join(tmp, "notify.sock"))
	logs := &harness.Buffer{}
	cmd := exec.Command(bin, "run", "-c", cfg, "--log-format", "json",
		"--set", "socket.listen=127.0.0.1:0", "--set", "relay.listen=127.0.0.1:0", "--set", "esl.listen=127.0.0.1:0",
		"--set", "admin.listen=127.0.0.1:0", "--set", "relay.guaranteed=true", "--set", "relay.log_messages=true")
	cmd.Dir = work
	cmd.Env = append(os.Environ(), "NOTIFY_SOCKET="+manager.LocalAddr().String())
	cmd.Stdout, cmd.Stderr = logs, logs
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if cmd.ProcessState == nil {
			_ = cmd.Process.Kill()
			_ = cmd.Wait()
		}
	})
	status := expectState(t, nextNotify(t, manager, logs), "READY=1")
	if !regexp.MustCompile(`^serving generation 1; admin \S+, esl \S+, relay \S+, socket \S+$`).MatchString(status) {
		t.Errorf("READY status %q: want every part listening", status)
	}
	if strings.Contains(logs.String(), "built-in scripts") {
		t.Errorf("the engine fell back to its built-in scripts; logs:\n%s", logs)
	}
	for _, p := range []string{filepath.Join(state, "persist"), filepath.Join(state, "relay-messages.log")} {
		if _, err := os.Stat(p); err != nil {
			t.Errorf("state not in the state directory: %v", err)
		}
	}
	if entries, _ := os.ReadDir(work); len(entries) > 0 {
		t.Errorf("the engine wrote into its working directory: %v", entries)
	}
	_ = cmd.Process.Signal(syscall.SIGTERM)
	if err := cmd.Wait(); err != nil {
		t.Errorf("exit after SIGTERM: %v; logs:\n%s", err, logs)
	}
}

// TestDeployConfigs: both shipped daemon configurations load, and every path in them is absolute and in the
// directory whose access matches its use (read-only configuration, writable state).
func TestDeployConfigs(t *testing.T) {
	def := engine.DefaultConfig()
	for _, name := range []string{"deploy/systemd/switchboard.yaml", "deploy/docker/switchboard.yaml"} {
		t.Run(name, func(t *testing.T) {
			cfg, err := engine.LoadConfig(engine.ConfigSource{File: filepath.Join(harness.Root(), name)})
			if err != nil {
				t.Fatal(err)
			}
			for _, p := range []struct{ key, value, dir string }{
				{"lua.scripts_dir", cfg.Lua.ScriptsDir, "/etc/switchboard/"},
				{"socket.public_dir", cfg.Socket.PublicDir, "/etc/switchboard/"},
				{"relay.routes_file", cfg.Relay.RoutesFile, "/etc/switchboard/"},
				{"relay.persist_dir", cfg.Relay.PersistDir, "/var/lib/switchboard/"},
				{"relay.message_log", cfg.Relay.MessageLog, "/var/lib/switchboard/"},
			} {
				if !strings.HasPrefix(p.value, p.dir) {
					t.Errorf("%s: %q, want a path under %s", p.key, p.value, p.dir)
				}
			}
			wantAdmin, wantESL := def.Admin.Listen, def.ESL.Listen
			if strings.Contains(name, "docker") {
				wantAdmin, wantESL = "0.0.0.0"+port(def.Admin.Listen), "0.0.0.0"+port(def.ESL.Listen)
			}
			if cfg.Admin.Listen != wantAdmin || cfg.ESL.Listen != wantESL || cfg.Socket.Listen != def.Socket.Listen || cfg.Relay.Listen != def.Relay.Listen {
				t.Errorf("listeners admin %s, esl %s, socket %s, relay %s; want admin %s, esl %s and the default socket and relay",
					cfg.Admin.Listen, cfg.ESL.Listen, cfg.Socket.Listen, cfg.Relay.Listen, wantAdmin, wantESL)
			}
		})
	}
}

// port is ":9090" of "127.0.0.1:9090".
func port(addr string) string { return addr[strings.LastIndex(addr, ":"):] }
