// Package example runs examples/cluster: two engines on the example's config and script, joined by a NATS
// server embedded in the test, driven as the README says.
package example

import (
	"bufio"
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/switchboard/switchboard/engine/cluster/clustertest"
	"github.com/switchboard/switchboard/tests/harness"
)

func call(t *testing.T, addr, req string) map[string]any {
	t.Helper()
	c := harness.Dial(t, addr)
	r := bufio.NewReader(c)
	if _, err := c.Write([]byte(req + "\n")); err != nil {
		t.Fatal(err)
	}
	for {
		line, err := r.ReadString('\n')
		if err != nil {
			t.Fatalf("read: %v", err)
		}
		var m map[string]any
		if json.Unmarshal([]byte(line), &m) == nil && m["context"] == "response" {
			return m
		}
	}
}

func TestTwoEnginesShareTopicsAndLocks(t *testing.T) {
	srv := clustertest.Start(t)
	dir := filepath.Join(harness.Root(), "examples", "cluster")
	raw, err := os.ReadFile(filepath.Join(dir, "switchboard.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	src, err := os.ReadFile(filepath.Join(dir, "scripts", "cluster.lua"))
	if err != nil {
		t.Fatal(err)
	}
	yaml := strings.NewReplacer("127.0.0.1:5000", "127.0.0.1:0", "127.0.0.1:9090", "127.0.0.1:0",
		`nats_url: ""`, "nats_url: "+srv.URL(), "scripts_dir: scripts", "scripts_dir: ./scripts").Replace(string(raw))
	opts := harness.Options{Scripts: map[string]string{"cluster.lua": string(src)}}
	a := harness.StartBinary(t, yaml, opts, "socket")
	b := harness.StartBinary(t, yaml, opts, "socket")

	deadline := time.Now().Add(20 * time.Second)
	for !strings.Contains(b.Logs.String(), `"text":"hello"`) {
		if time.Now().After(deadline) {
			t.Fatalf("the second engine never heard the shout; its logs:\n%s", b.Logs.String())
		}
		if r := call(t, a.Addr(t, "socket"), `{"action":"shout","params":{"text":"hello"}}`); r["queued"] != 1.0 {
			t.Fatalf("shout: %v", r)
		}
		time.Sleep(50 * time.Millisecond)
	}
	if !strings.Contains(b.Logs.String(), `"topic":"chat.shout"`) {
		t.Fatalf("the subscriber of chat.* was not told the topic; logs:\n%s", b.Logs.String())
	}
	if !strings.Contains(a.Logs.String(), `"text":"hello"`) {
		t.Fatal("the publishing engine's own subscriber did not hear the shout")
	}
	first := call(t, a.Addr(t, "socket"), `{"action":"leader"}`)
	second := call(t, b.Addr(t, "socket"), `{"action":"leader"}`)
	if first["leader"] != true || second["leader"] != false {
		t.Fatalf("leader: first engine %v, second %v", first, second)
	}
}
