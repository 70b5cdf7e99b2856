package socket

import (
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"

	"github.com/switchboard/switchboard/tests/harness"
)

// exampleConfig reads an example's YAML with its listen address moved to port 0 and its lua section left
// out (the harness points the scripts at a copy).
func exampleConfig(t *testing.T, name string) (string, map[string]string) {
	t.Helper()
	dir := filepath.Join(harness.Root(), "examples", name)
	data, err := os.ReadFile(filepath.Join(dir, "switchboard.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	var out []string
	skip := false
	for _, line := range strings.Split(string(data), "\n") {
		if line != "" && !strings.HasPrefix(line, " ") && !strings.HasPrefix(line, "#") {
			skip = strings.HasPrefix(line, "lua:")
		}
		if !skip {
			out = append(out, line)
		}
	}
	yaml := regexp.MustCompile(`listen: [0-9.]+:[0-9]+`).ReplaceAllString(strings.Join(out, "\n"), "listen: 127.0.0.1:0")
	scripts := map[string]string{}
	files, _ := filepath.Glob(filepath.Join(dir, "scripts", "*.lua"))
	for _, f := range files {
		src, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		scripts[filepath.Base(f)] = string(src)
	}
	return yaml, scripts
}

func TestChatRoomsExample(t *testing.T) {
	yaml, scripts := exampleConfig(t, "chat-rooms")
	e := harness.Start(t, yaml, harness.Options{Scripts: scripts})
	addr := e.Addr(t, "socket")
	ann, bob := dial(t, addr), dial(t, addr)
	for _, c := range []*client{ann, bob} {
		match(t, c.line(), `{"welcome":"Hello! Welcome to the switchboard api","context":"api"}`)
		match(t, c.line(), `{"chat":"you are in the lobby; nick <name> to pick a name, say <room> <text> to talk"}`)
	}
	match(t, ann.do("nick ann"), `{"status":"OK","context":"response","data":"ann","messageId":"UUID","messageCount":1}`)
	match(t, ann.do("nick two words"), `{"error":"a nick is 1 to 20 characters without spaces","context":"response","messageId":"UUID","messageCount":2}`)
	match(t, ann.do("say lobby hello"), `{"status":"OK","context":"response","messageId":"UUID","messageCount":3}`)
	want := `{"message":"ann: hello","room":"lobby","from":"UUID","context":"user","sentAt":MS}`
	match(t, ann.line(), want)
	match(t, bob.line(), want)
	match(t, bob.do("say lobby "+strings.Repeat("x", 501)), `{"status":"OK","context":"response","messageId":"UUID","messageCount":1}`)
	match(t, bob.do("roomAdd games"), `{"status":"OK","context":"response","data":true,"messageId":"UUID","messageCount":2}`)
	match(t, bob.do("say games anyone?"), `{"status":"OK","context":"response","messageId":"UUID","messageCount":3}`)
	match(t, bob.line(), `{"message":"anonymous: anyone?","room":"games","from":"UUID","context":"user","sentAt":MS}`)
	// ann is not in games and the flood was dropped: her next line is the reply to her own request.
	match(t, ann.do("roomView lobby"), `{"status":"OK","context":"response","data":{"room":"lobby","members":{"UUID":{"id":"UUID","joinedAt":MS},"UUID":{"id":"UUID","joinedAt":MS}},"membersCount":2},"messageId":"UUID","messageCount":4}`)
	// Arrivals and departures are announced by the server, outside the lobby.
	match(t, ann.do("roomAdd games"), `{"status":"OK","context":"response","data":true,"messageId":"UUID","messageCount":5}`)
	match(t, bob.line(), `{"message":"ann joined","room":"games","from":0,"context":"user","sentAt":MS}`)
	match(t, bob.do("rooms"), `{"status":"OK","context":"response","data":["games","lobby","support"],"messageId":"UUID","messageCount":4}`)
	left := `{"message":"anonymous left","room":"games","from":0,"context":"user","sentAt":MS}`
	match(t, bob.do("roomLeave games"), left)
	match(t, bob.line(), `{"status":"OK","context":"response","data":true,"messageId":"UUID","messageCount":5}`)
	match(t, ann.line(), left)
}
