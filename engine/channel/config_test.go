package channel

import (
	"os"
	"strings"
	"testing"
	"time"

	"go.yaml.in/yaml/v3"
)

func parseYAML(t *testing.T, src string) ([]Config, error) {
	t.Helper()
	var raw map[string]any
	if err := yaml.Unmarshal([]byte(src), &raw); err != nil {
		t.Fatal(err)
	}
	return ParseConfigs(raw["channels"])
}

func TestParseConfigsSeedKeys(t *testing.T) {
	cs, err := parseYAML(t, `
channels:
  - name: google
    run: true
    protocol: http
    protocol.showmessages: "false"
    protocol.showpackets: true
    msgtype: text
    permanent: true
    host: www.google.com
    port: 80
    redirect-in: true
    redirect-out: "true"
    topic-in: http.response
    topic-out: http.request
    reconnectionTimeout: 3
  - name: image-processor
    protocol: text-messages
    protocol.delimiter: '\1'
    host: 127.0.0.1
    port: 9000
    reconnection_timeout: 1500ms
    tls: {server_name: img.example.com}
  - name: asym
    protocol: asymmetric
    protocol.inbound: xml-messages
    protocol.outbound: text-messages
    protocol.outbound.delimiter: '\r\n'
    host: h
    port: 1
`)
	if err != nil {
		t.Fatal(err)
	}
	g := cs[0]
	if g.Name != "google" || g.Protocol != HTTP || g.ShowMessages || !g.ShowPackets || !g.Permanent || !g.RedirectIn ||
		!g.RedirectOut || g.TopicIn != "http.response" || g.TopicOut != "http.request" || g.ReconnectionTimeout != 3*time.Second {
		t.Errorf("google: %+v", g)
	}
	ip := cs[1]
	if ip.Delimiter != "\x01" || ip.ReconnectionTimeout != 1500*time.Millisecond || !ip.TLS || ip.TLSServer != "img.example.com" || ip.Permanent {
		t.Errorf("image-processor: %+v", ip)
	}
	a := cs[2]
	if a.Inbound.Protocol != XMLMessages || a.Outbound.Protocol != TextMessages || a.Outbound.Delimiter != "\r\n" {
		t.Errorf("asym: %+v / %+v", a.Inbound, a.Outbound)
	}
}

func TestParseConfigsNestedProtocol(t *testing.T) {
	cs, err := parseYAML(t, `
channels:
  - name: n
    protocol: {name: text-messages, delimiter: "\x01", showmessages: true}
    host: h
    port: 5
`)
	if err != nil {
		t.Fatal(err)
	}
	if cs[0].Protocol != TextMessages || cs[0].Delimiter != "\x01" || !cs[0].ShowMessages {
		t.Errorf("%+v", cs[0])
	}
}

func TestParseConfigsErrors(t *testing.T) {
	for _, tc := range []struct{ entry, want string }{
		{"{name: b, host: h, port: 0}", "channels[1].port: expected 1-65535, got 0"},
		{"{name: b, host: h, port: 1, colour: red}", "channels[1].colour: unknown key"},
		{"{name: b, host: h, port: 1, protocol: smtp}", "channels[1].protocol: expected text-messages"},
		{"{name: b, host: h, port: 1, reconnectionTimeout: soon}", "channels[1].reconnectionTimeout: expected a duration"},
		{"{name: b, host: h, port: 1, redirect_in: true}", "channels[1].topic_in: expected a topic name"},
		{"{name: a, host: h, port: 1}", `channels[1].name: "a" already used by channels[0]`},
		{"{name: b, host: h, port: x}", `channels[1].port: expected a whole number, got "x"`},
		{"{name: b, host: h, port: 1, reconnection_timeout: 3}", "channels[1].reconnection_timeout: expected a duration with a unit such as 10s"},
		{"{name: b, host: h, port: 1, keepalive: soon}", `channels[1].keepalive: expected a duration such as 500ms, 10s or 2m, got "soon"`},
		{"{name: b, port: 1}", "channels[1].host: expected"},
		{"{name: b, host: h, port: 1, delimiter: '\\q'}", "channels[1].delimiter: expected a string with C escapes"},
		{"{name: b, host: h, port: 1, protocol: asymmetric, inbound: http}", "channels[1].inbound.protocol: expected"},
		{"{name: b, host: h, port: 1, send_buffer: 0}", "channels[1].send_buffer: expected a positive"},
	} {
		_, err := parseYAML(t, "channels:\n  - {name: a, host: h, port: 1}\n  - "+tc.entry+"\n")
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%s: got %v, want %q", tc.entry, err, tc.want)
		}
	}
	if cs, err := ParseConfigs(nil); err != nil || cs != nil {
		t.Errorf("nil: %v %v", cs, err)
	}
	if _, err := ParseConfigs("x"); err == nil {
		t.Error("a string was accepted as the channel list")
	}
}

func TestUnescape(t *testing.T) {
	for in, want := range map[string]string{`\n`: "\n", `\1`: "\x01", `\x01`: "\x01", `a\r\n`: "a\r\n", `\\`: `\`, "plain": "plain", `\001`: "\x01", `\0`: "\x00"} {
		if got, err := Unescape(in); err != nil || got != want {
			t.Errorf("%q: got %q %v, want %q", in, got, err, want)
		}
	}
	for _, bad := range []string{`\`, `\x`, `\xZZ`, `\q`, `\777`} {
		if _, err := Unescape(bad); err == nil {
			t.Errorf("%q accepted", bad)
		}
	}
}

// TestShippedConfigExample parses the commented channel entry in configs/switchboard.yaml, so the
// documented keys stay real.
func TestShippedConfigExample(t *testing.T) {
	data, err := os.ReadFile("../../configs/switchboard.yaml")
	if err != nil {
		t.Fatal(err)
	}
	var b strings.Builder
	b.WriteString("channels:\n")
	in := false
	for _, line := range strings.Split(string(data), "\n") {
		if strings.HasPrefix(line, "#  - name:") {
			in = true
		}
		if in {
			if !strings.HasPrefix(line, "#  ") {
				break
			}
			b.WriteString(strings.TrimPrefix(line, "#") + "\n")
		}
	}
	if !in {
		t.Fatal("no commented channel entry in configs/switchboard.yaml")
	}
	cs, err := parseYAML(t, strings.Replace(b.String(), "protocol: text-messages      #", "protocol: asymmetric #", 1))
	if err != nil {
		t.Fatalf("%v\n%s", err, b.String())
	}
	if c := cs[0]; c.Name != "web" || c.Delimiter != "\n" || !c.TLS || c.Outbound.Delimiter != "\r\n" || c.SendBuffer != 1024 {
		t.Errorf("%+v", c)
	}
}

// Every key is documented in docs/configuration.md and shown in the commented entry of configs/switchboard.yaml.
func TestEveryChannelKeyDocumented(t *testing.T) {
	doc, err := os.ReadFile("../../docs/configuration.md")
	if err != nil {
		t.Fatal(err)
	}
	yml, err := os.ReadFile("../../configs/switchboard.yaml")
	if err != nil {
		t.Fatal(err)
	}
	for _, k := range keys {
		if !strings.Contains(string(doc), "`"+k.spec.canon+"`") {
			t.Errorf("docs/configuration.md does not list channels key %s", k.spec.canon)
		}
		if !strings.Contains(string(yml), "#    "+k.spec.canon+":") && k.spec.canon != "name" {
			t.Errorf("configs/switchboard.yaml does not show channels key %s", k.spec.canon)
		}
	}
}

// Every problem of every entry is reported at once.
func TestParseConfigsReportsEveryError(t *testing.T) {
	_, err := parseYAML(t, "channels:\n  - {name: a, host: h, port: 0, send_buffer: 0, colour: red}\n  - {name: b, port: 1, protocol: smtp}\n")
	want := []string{
		"channels[0].colour: unknown key",
		"channels[1].host: expected a hostname or IP address",
		"channels[1].protocol: expected text-messages, xml-messages, http, text-stream, resp or asymmetric",
	}
	for _, w := range want {
		if err == nil || !strings.Contains(err.Error(), w) {
			t.Errorf("missing %q in:\n%v", w, err)
		}
	}
	_, err = parseYAML(t, "channels:\n  - {name: a, host: h, port: 0, send_buffer: 0}\n")
	for _, w := range []string{"channels[0].port: expected 1-65535, got 0", "channels[0].send_buffer: expected a positive message count, got 0"} {
		if err == nil || !strings.Contains(err.Error(), w) {
			t.Errorf("missing %q in:\n%v", w, err)
		}
	}
}

// The canonical key path of what a user may write (--set channels[0].<key>, and the aliases).
func TestCanonicalKey(t *testing.T) {
	for in, want := range map[string]string{
		"port": "port", "redirect-in": "redirect_in", "reconnectionTimeout": "reconnection_timeout",
		"tls.ca": "tls.ca", "tls.server_name": "tls.server_name", "TLS.CAFile": "tls.ca", "tls.enabled": "tls",
		"protocol.inbound.delimiter": "inbound.delimiter", "outbound.name": "outbound.protocol", "protocol.showmessages": "showmessages",
	} {
		if got, ok := CanonicalKey(in); !ok || got != want {
			t.Errorf("CanonicalKey(%q) = %q %v, want %q", in, got, ok, want)
		}
	}
	for _, bad := range []string{"colour", "inbound.colour", "tls.pin"} {
		if got, ok := CanonicalKey(bad); ok {
			t.Errorf("CanonicalKey(%q) = %q, want unknown", bad, got)
		}
	}
}
