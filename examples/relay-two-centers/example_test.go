// Package example runs examples/relay-two-centers end to end: the example's config and routes, two test
// centers, and an AMI application.
package example

import (
	"fmt"
	"io"
	"net"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"go.uber.org/goleak"

	"github.com/switchboard/switchboard/engine/relay/relaytest"
	"github.com/switchboard/switchboard/tests/harness"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

func TestRelayTwoCenters(t *testing.T) {
	root := harness.Root()
	yaml, err := os.ReadFile(filepath.Join(root, "examples/relay-two-centers/switchboard.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	primary, err := relaytest.NewCenter("127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer primary.Close()
	// risk is down at first
	risk, err := relaytest.NewCenter("127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	riskAddr := risk.Addr()
	risk.Close()
	routes, err := os.ReadFile(filepath.Join(root, "examples/relay-two-centers/relay.routes"))
	if err != nil {
		t.Fatal(err)
	}
	// The config's paths are relative to its folder: the harness's directory gets the scripts and the
	// routes file, and the journal goes to its data/.
	cfg := string(yaml)
	for old, repl := range map[string]string{
		"127.0.0.1:3289":          "127.0.0.1:0",
		"127.0.0.1:9090":          "127.0.0.1:0",
		"primary: 127.0.0.1:3270": "primary: " + primary.Addr(),
		"risk: 127.0.0.1:3271":    "risk: " + riskAddr,
	} {
		if !strings.Contains(cfg, old) {
			t.Fatalf("example config no longer has %q", old)
		}
		cfg = strings.Replace(cfg, old, repl, 1)
	}
	e := harness.Start(t, cfg, harness.Options{Scripts: map[string]string{"README.lua": "-- none\n"},
		Files: map[string]string{"relay.routes": string(routes)}})
	if got := e.Config().Relay.PersistDir; got != filepath.Join(e.Dir, "data") {
		t.Fatalf("persist_dir %q, want the data folder beside the config", got)
	}
	app, err := relaytest.Dial(e.Addr(t, "relay"), "sor-1", "")
	if err != nil {
		t.Fatal(err)
	}
	defer app.Close()
	lines := []string{
		`O|T="Order"|I="o1"|qty=5000L|px=250.0D`,
		`O|T="Order"|I="o2"|qty=10|px=3.5D`,
		`D|T="Order"|I="o1"`,
	}
	for i, l := range lines {
		if err := app.Send(l[0], l[2:]); err != nil {
			t.Fatal(err)
		}
		st, err := app.ReadStatus(5 * time.Second)
		if err != nil || st.Seq != int64(i+1) || st.Code != 0 || st.Text != "OK" {
			t.Fatalf("status %+v %v", st, err)
		}
	}
	if err := primary.WaitCount(3, 5*time.Second); err != nil {
		t.Fatal(err)
	}
	if got := strings.Join(primary.Bodies(), "\n"); got != strings.Join(lines, "\n") {
		t.Fatalf("primary got\n%s", got)
	}
	// risk comes up late and gets o1 and, following it, o1's delete
	risk2, err := relaytest.NewCenter(riskAddr)
	if err != nil {
		t.Fatal(err)
	}
	defer risk2.Close()
	if err := risk2.WaitCount(2, 10*time.Second); err != nil {
		t.Fatal(err)
	}
	want := fmt.Sprintf("%s\n%s", lines[0], lines[2])
	if got := strings.Join(risk2.Bodies(), "\n"); got != want {
		t.Fatalf("risk got\n%s\nwant\n%s", got, want)
	}

	// the README's pipeline, byte for byte (printf ... | nc): one status per instruction, X's last, then the
	// relay closes
	readme, err := os.ReadFile(filepath.Join(root, "examples/relay-two-centers/README.md"))
	if err != nil {
		t.Fatal(err)
	}
	m := regexp.MustCompile(`printf '([^']*)' \\\n\s*\| nc 127\.0\.0\.1 3289`).FindSubmatch(readme)
	if m == nil {
		t.Fatal("README has no printf ... | nc pipeline")
	}
	session := strings.ReplaceAll(string(m[1]), `\n`, "\n")
	conn, err := net.Dial("tcp", e.Addr(t, "relay"))
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	if _, err := conn.Write([]byte(session)); err != nil {
		t.Fatal(err)
	}
	conn.SetReadDeadline(time.Now().Add(10 * time.Second))
	got, err := io.ReadAll(conn)
	if err != nil {
		t.Fatal(err)
	}
	statuses := strings.Split(strings.TrimSuffix(string(got), "\n"), "\n")
	if n := strings.Count(session, "\n"); len(statuses) != n {
		t.Fatalf("%d statuses for %d instructions: %q", len(statuses), n, got)
	}
	for i, st := range statuses {
		if !regexp.MustCompile(fmt.Sprintf(`^M@\d{13}\|Q=%d\|S=0\|M="OK"$`, i)).MatchString(st) {
			t.Fatalf("status %d: %q", i, st)
		}
	}
}
