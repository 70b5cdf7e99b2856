// Package esl tests call control end to end: the engine started from YAML with real scripts, FreeSWITCH
// played by esltest over real TCP.
package esl

import (
	"context"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"go.uber.org/goleak"

	"github.com/switchboard/switchboard/engine/esl/esltest"
	"github.com/switchboard/switchboard/internal/testutil"
	"github.com/switchboard/switchboard/tests/harness"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

const eslYAML = "esl:\n  listen: 127.0.0.1:0\n"

func ivrScript(t *testing.T) map[string]string {
	t.Helper()
	src, err := os.ReadFile(filepath.Join(harness.Root(), "scripts", "ivr.lua"))
	if err != nil {
		t.Fatal(err)
	}
	return map[string]string{"ivr.lua": string(src)}
}

func call(t *testing.T, c esltest.Call) *esltest.Result {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	res, err := esltest.Run(ctx, c)
	if err != nil {
		t.Fatal(err)
	}
	return res
}

func TestIVRMenu(t *testing.T) {
	e := harness.Start(t, eslYAML, harness.Options{Scripts: ivrScript(t)})
	addr := e.Addr(t, "esl")
	for _, mode := range []struct {
		name        string
		async, full bool
	}{{"async full", true, true}, {"static", false, false}} {
		t.Run(mode.name, func(t *testing.T) {
			res := call(t, esltest.Call{Addr: addr, Async: mode.async, Full: mode.full, Media: 50 * time.Millisecond,
				DTMF: []esltest.DTMF{{Digit: "2", At: 20 * time.Millisecond}}})
			tr := strings.Join(res.Transcript(), "\n")
			for _, want := range []string{
				"execute answer [event-lock]",
				"complete play_and_get_digits: _none_ switchboard_digits_",
				"=2 (success)",
				"execute playback ivr/support.wav [event-lock]",
				"execute set ivr_choice=support [event-lock]",
				"execute transfer 2000 XML default [event-lock]",
				"transferred to 2000 XML default; the socket session ends",
			} {
				if !strings.Contains(tr, want) {
					t.Fatalf("transcript lacks %q:\n%s", want, tr)
				}
			}
			if res.HangupCause != "" {
				t.Fatalf("transferred call was hung up: %s", res.HangupCause)
			}
		})
	}
	// Caller hangs up mid-prompt: the blocking call fails at once and the hook runs once.
	start := time.Now()
	res := call(t, esltest.Call{Addr: addr, UUID: "gone-1", Async: true, Full: true, Media: 20 * time.Second, HangupAfter: 100 * time.Millisecond})
	if took := time.Since(start); took > 3*time.Second {
		t.Fatalf("hangup mid-prompt took %s", took)
	}
	if res.HangupCause != "NORMAL_CLEARING" {
		t.Fatalf("cause %q", res.HangupCause)
	}
	e.Logs.WaitFor(t, "ivr: caller left (hangup, NORMAL_CLEARING)", 3*time.Second)
	if n := strings.Count(e.Logs.String(), "ivr: caller left (hangup"); n != 1 {
		t.Fatalf("hook ran %d times for the hung-up call", n)
	}
	if n := strings.Count(e.Logs.String(), "ivr: caller left (transfer"); n != 2 {
		t.Fatalf("hook ran %d times for the 2 transferred calls", n)
	}
}

func TestGarbageDoesNotHurt(t *testing.T) {
	e := harness.Start(t, eslYAML, harness.Options{Scripts: ivrScript(t)})
	addr := e.Addr(t, "esl")
	for _, junk := range []string{"\x00\x01\x02\xff\n\n\n", "Content-Type: text/rude-rejection\n\n", "Content-Length: x\n\n", "no colon at all\n\n"} {
		c, err := net.Dial("tcp", addr)
		if err != nil {
			t.Fatal(err)
		}
		c.SetDeadline(time.Now().Add(3 * time.Second))
		buf := make([]byte, 16)
		n, _ := c.Read(buf)
		if string(buf[:n]) != "connect\n\n" {
			t.Fatalf("engine spoke %q first", buf[:n])
		}
		c.Write([]byte(junk))
		c.Close()
	}
	res := call(t, esltest.Call{Addr: addr, Async: true, Full: true, PressOnRead: "3"}) // pressed when the prompt reads, whatever the load
	if !strings.Contains(strings.Join(res.Transcript(), "\n"), "execute say en number pronounced 42") {
		t.Fatalf("after garbage:\n%s", res)
	}
}

const flowV = `local sb = require "switchboard"
sb.flow("main", function(session)
  session:answer()
  session:streamFile("VERSION.wav")
end)
`

// TestSIGHUPWithCallsInFlight: 100 calls on the old scripts keep their flow through a SIGHUP; calls after
// it run the new one.
func TestSIGHUPWithCallsInFlight(t *testing.T) {
	p := harness.StartBinary(t, eslYAML, harness.Options{Scripts: map[string]string{"flow.lua": strings.Replace(flowV, "VERSION", "old", 1)}}, "esl")
	addr := p.Addr(t, "esl")
	const n = 100
	results := make([]*esltest.Result, n)
	errs := make([]error, n)
	var wg sync.WaitGroup
	for i := 0; i < n; i++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
			defer cancel()
			results[i], errs[i] = esltest.Run(ctx, esltest.Call{Addr: addr, Async: true, Full: true, Media: 1500 * time.Millisecond})
		}()
	}
	// Wait until every call is in its playback before reloading.
	testutil.Poll(testutil.Wait, func() bool { return strings.Count(p.Logs.String(), `"msg":"call started"`) >= n })
	if err := os.WriteFile(filepath.Join(p.Dir, "scripts", "flow.lua"), []byte(strings.Replace(flowV, "VERSION", "new", 1)), 0o644); err != nil {
		t.Fatal(err)
	}
	p.Signal(t, syscall.SIGHUP)
	p.Logs.WaitFor(t, `"generation":2`, 5*time.Second)
	fresh := call(t, esltest.Call{Addr: addr, Async: true, Full: true})
	wg.Wait()
	for i, r := range results {
		if errs[i] != nil {
			t.Fatalf("call %d: %v", i, errs[i])
		}
		tr := strings.Join(r.Transcript(), "\n")
		if !strings.Contains(tr, "execute playback old.wav [event-lock]\ncomplete playback: FILE PLAYED") || r.HangupCause != "NORMAL_CLEARING" {
			t.Fatalf("call %d disturbed by reload:\n%s", i, tr)
		}
	}
	if tr := strings.Join(fresh.Transcript(), "\n"); !strings.Contains(tr, "execute playback new.wav") {
		t.Fatalf("call after SIGHUP:\n%s", tr)
	}
	p.Signal(t, syscall.SIGTERM)
	if code := p.Wait(t, 10*time.Second); code != 0 {
		t.Fatalf("exit %d", code)
	}
}

// TestExampleIVRMenu runs examples/ivr-menu as shipped (listen moved to port 0).
func TestExampleIVRMenu(t *testing.T) {
	dir := filepath.Join(harness.Root(), "examples", "ivr-menu")
	data, err := os.ReadFile(filepath.Join(dir, "switchboard.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	yaml := strings.Replace(string(data), "listen: 127.0.0.1:8084", "listen: 127.0.0.1:0", 1)
	// scripts_dir (scripts) is relative to the config's folder: the harness writes ivr.lua there.
	src, err := os.ReadFile(filepath.Join(dir, "scripts", "ivr.lua"))
	if err != nil {
		t.Fatal(err)
	}
	menu, err := os.ReadFile(filepath.Join(dir, "scripts", "freeswitch", "menu.lua"))
	if err != nil {
		t.Fatal(err)
	}
	e := harness.Start(t, yaml, harness.Options{Scripts: map[string]string{"ivr.lua": string(src), "freeswitch/menu.lua": string(menu)}})
	addr := e.Addr(t, "esl")
	res := call(t, esltest.Call{Addr: addr, Path: "ivr", Async: true, Full: true, PressOnRead: "1", BridgeFor: 50 * time.Millisecond})
	tr := strings.Join(res.Transcript(), "\n")
	if !strings.Contains(tr, "execute playback ivr/sales.wav [event-lock]\ncomplete playback: FILE PLAYED\nexecute bridge user/1001 [event-lock]\ncomplete bridge: _none_\nengine hangs up NORMAL_CLEARING") {
		t.Fatalf("transcript:\n%s", tr)
	}
	res = call(t, esltest.Call{Addr: addr, Async: true, Full: true, PressOnRead: "3"})
	if !strings.Contains(strings.Join(res.Transcript(), "\n"), "execute say en number pronounced 42") || res.HangupCause != "NORMAL_CLEARING" {
		t.Fatalf("transcript:\n%s", res)
	}
	// The mod_lua-style menu: the key typed during the prompt, say with the module's language.
	res = call(t, esltest.Call{Addr: addr, Path: "menu", Async: true, Full: true, Media: 500 * time.Millisecond,
		PressDuring: map[string]string{"ivr/menu.wav": "3"}})
	if tr := strings.Join(res.Transcript(), "\n"); !strings.Contains(tr, "caller presses 3\nexecute break (nested in playback)") ||
		!strings.Contains(tr, "execute say en number pronounced 42") || res.HangupCause != "NORMAL_CLEARING" {
		t.Fatalf("mod_lua-style menu:\n%s", tr)
	}
	e.Logs.WaitFor(t, "menu: caller chose '3'", 3*time.Second)
}

func TestMetrics(t *testing.T) {
	e := harness.Start(t, eslYAML, harness.Options{Scripts: ivrScript(t)})
	call(t, esltest.Call{Addr: e.Addr(t, "esl"), Async: true, Full: true, PressOnRead: "3"})
	call(t, esltest.Call{Addr: e.Addr(t, "esl"), Path: "nosuch", Async: true, Full: true})
	want := []string{
		`switchboard_esl_calls_total{flow="main",outcome="completed"} 1`,
		`switchboard_esl_calls_total{flow="",outcome="no_flow"} 1`, // a flow no script registered has no series of its own
		`switchboard_esl_hangup_causes_total{cause="NORMAL_CLEARING"} 1`,
		`switchboard_esl_hangup_causes_total{cause="NO_ROUTE_DESTINATION"} 1`,
		"switchboard_esl_calls_active 0",
		"switchboard_esl_command_seconds_count",
		`switchboard_esl_command_engine_seconds_count{phase="write"}`,
		`switchboard_esl_command_engine_seconds_count{phase="receive"}`,
	}
	// The engine counts a call's outcome as its session ends, which may be just after the simulator saw
	// the socket close: read /metrics until everything is there (or a second has passed).
	var missing []string
	for deadline := time.Now().Add(time.Second); ; time.Sleep(10 * time.Millisecond) {
		resp, err := http.Get("http://" + e.Addr(t, "admin") + "/metrics")
		if err != nil {
			t.Fatal(err)
		}
		body, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		missing = missing[:0]
		for _, w := range want {
			if !strings.Contains(string(body), w) {
				missing = append(missing, w)
			}
		}
		if len(missing) == 0 || time.Now().After(deadline) {
			break
		}
	}
	for _, m := range missing {
		t.Errorf("/metrics lacks %q", m)
	}
	e.Logs.WaitFor(t, `no flow \"nosuch\" registered with sb.flow`, time.Second)
}

// TestFlowTestCommand: `switchboard flow test` runs a flow from the configured scripts against a simulated
// call and prints its transcript.
func TestFlowTestCommand(t *testing.T) {
	bin := harness.Binary(t)
	cfg := filepath.Join(harness.Root(), "examples", "ivr-menu", "switchboard.yaml")
	run := func(args ...string) (string, int) {
		cmd := exec.Command(bin, append([]string{"flow", "test"}, append(args, "-c", cfg)...)...)
		cmd.Dir = harness.Root()
		out, _ := cmd.CombinedOutput()
		return string(out), cmd.ProcessState.ExitCode()
	}
	out, code := run("main", "--dtmf", "3@100ms", "--media", "50ms")
	for _, want := range []string{"> connect", "caller presses 3", "execute say en number pronounced 42 [event-lock]",
		"result: answered=true hangup_cause=NORMAL_CLEARING"} {
		if code != 0 || !strings.Contains(out, want) {
			t.Fatalf("exit %d, output lacks %q:\n%s", code, want, out)
		}
	}
	out, code = run("main", "--hangup-after", "200ms", "--media", "5s")
	if code != 0 || !strings.Contains(out, "caller hangs up") || !strings.Contains(out, "ivr: caller left (hangup, NORMAL_CLEARING)") {
		t.Fatalf("exit %d:\n%s", code, out)
	}
	out, code = run("nosuch")
	if code == 0 || !strings.Contains(out, `no flow "nosuch"`) || !strings.Contains(out, "flows: ivr, main") {
		t.Fatalf("exit %d:\n%s", code, out)
	}
}
