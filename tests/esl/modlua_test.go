package esl

import (
	"context"
	"database/sql"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	_ "github.com/jackc/pgx/v5/stdlib"
	_ "modernc.org/sqlite"

	"github.com/switchboard/switchboard/engine/esl/esltest"
	"github.com/switchboard/switchboard/tests/harness"
)

// These tests run mod_lua scripts as FreeSWITCH users write them (scripts/freeswitch/ and
// tests/esl/testdata/freeswitch/), unmodified, over the simulator in async full mode.

func readScripts(t *testing.T, extra map[string]string) map[string]string {
	t.Helper()
	out := map[string]string{}
	for _, root := range []string{filepath.Join(harness.Root(), "scripts"), filepath.Join("testdata")} {
		err := filepath.Walk(filepath.Join(root, "freeswitch"), func(p string, info os.FileInfo, err error) error {
			if err != nil || info.IsDir() {
				return err
			}
			rel, _ := filepath.Rel(root, p)
			b, err := os.ReadFile(p)
			out[filepath.ToSlash(rel)] = string(b)
			return err
		})
		if err != nil {
			t.Fatal(err)
		}
	}
	for k, v := range extra {
		out[k] = v
	}
	return out
}

func modYAML(dataDir string) string {
	return fmt.Sprintf("esl:\n  listen: 127.0.0.1:0\n  flow_grace: 2s\n  data_dir: %s\n", dataDir)
}

// lines keeps the transcript lines that do not change from run to run.
func lines(res *esltest.Result) string { return strings.Join(res.Transcript(), "\n") }

func wantInOrder(t *testing.T, tr string, want ...string) {
	t.Helper()
	at := 0
	for _, w := range want {
		i := strings.Index(tr[at:], w)
		if i < 0 {
			t.Fatalf("transcript lacks %q after position %d:\n%s", w, at, tr)
		}
		at += i + len(w)
	}
}

// TestModLuaVoicemailSavesAfterHangup: the caller hangs up while recording; recordFile returns, ready() is
// false, and the script saves the message (SQLite row and a file in esl.data_dir) before it ends.
func TestModLuaVoicemailSavesAfterHangup(t *testing.T) {
	data := t.TempDir()
	e := harness.Start(t, modYAML(data), harness.Options{Scripts: readScripts(t, nil)})
	addr := e.Addr(t, "esl")
	res := call(t, esltest.Call{Addr: addr, Path: "voicemail/1001", UUID: "vm-1", Async: true, Full: true, Caller: "2000",
		Prompts: map[string]time.Duration{"voicemail/vm-record_message.wav": 50 * time.Millisecond,
			"/var/lib/freeswitch/recordings/1001/vm-1.wav": 20 * time.Second},
		HangupAfter: 400 * time.Millisecond})
	wantInOrder(t, lines(res),
		"call vm-1 from 2000 to 5000 (async full)",
		"execute answer [event-lock]",
		"complete answer: _none_",
		"> api uuid_setvar vm-1 voicemail_mailbox 1001",
		"execute set playback_terminators=none [event-lock]",
		"execute playback voicemail/vm-record_message.wav [event-lock]",
		"complete playback: FILE PLAYED",
		"execute playback tone_stream://%(500,0,800) [event-lock]",
		"execute record /var/lib/freeswitch/recordings/1001/vm-1.wav 120 30 5 [event-lock]",
		"caller hangs up",
		"hangup NORMAL_CLEARING",
		"< linger notice", // (the simulator notes the record's end and the notice from two goroutines: either order)
		"> exit",
		"< disconnect notice")
	wantInOrder(t, lines(res), "hangup NORMAL_CLEARING", "complete record: _none_ caller hung up", "> exit")
	if strings.Contains(lines(res), "engine hangs up") {
		t.Fatalf("the engine hung up a call the caller had left:\n%s", lines(res))
	}
	e.Logs.WaitFor(t, "voicemail: record returned 0, ready false", 5*time.Second)
	e.Logs.WaitFor(t, "voicemail: saved 1 message for 1001 from 2000", 5*time.Second)
	db, err := sql.Open("sqlite", filepath.Join(data, "voicemail.db"))
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	var uuid, mailbox, caller string
	if err := db.QueryRow("SELECT uuid, mailbox, caller FROM messages").Scan(&uuid, &mailbox, &caller); err != nil {
		t.Fatal(err)
	}
	if uuid != "vm-1" || mailbox != "1001" || caller != "2000" {
		t.Fatalf("saved %s %s %s", uuid, mailbox, caller)
	}
	b, err := os.ReadFile(filepath.Join(data, "voicemail", "1001.log"))
	if err != nil || string(b) != "2000 vm-1\n" {
		t.Fatalf("message log %q, %v", b, err)
	}

	// The API-style script reads what the voicemail saved: switchboard run-script, stream:write.
	cfg := filepath.Join(t.TempDir(), "sb.yaml")
	scripts := filepath.Join(e.Dir, "scripts")
	if err := os.WriteFile(cfg, []byte(harness.Complete(modYAML(data), scripts)), 0o644); err != nil {
		t.Fatal(err)
	}
	out, err := exec.Command(harness.Binary(t), "run-script", "-c", cfg, "vm_count", "1001").CombinedOutput()
	if err != nil || string(out) != "mailbox 1001: 1 message(s)\nrequest: lua vm_count 1001\n" {
		t.Fatalf("run-script: %v\n%s", err, out)
	}
	// The same through the admin listener.
	resp, err := http.Post("http://"+e.Addr(t, "admin")+"/lua?cmd="+url.QueryEscape("vm_count 1001"), "text/plain", nil)
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != 200 || string(body) != "mailbox 1001: 1 message(s)\nrequest: lua vm_count 1001\n" {
		t.Fatalf("POST /lua: %d %q", resp.StatusCode, body)
	}
	out, err = exec.Command(harness.Binary(t), "run-script", "-c", cfg, "nosuch").CombinedOutput()
	if err == nil || !strings.Contains(string(out), "no script nosuch.lua in") {
		t.Fatalf("run-script nosuch: %v\n%s", err, out)
	}
}

// fusionConfig is resources/functions/config.lua as FusionPBX generates it, pointing at dsn.
func fusionConfig(dsn string) string {
	return "database = {}\ndatabase.system = \"" + dsn + "\"\ndatabase.switch = database.system\n"
}

var fusionSchema = []string{
	`CREATE TABLE v_ivr_menus (ivr_menu_uuid TEXT, domain_name TEXT, ivr_menu_name TEXT, ivr_menu_extension TEXT,
	   ivr_menu_greet_long TEXT, ivr_menu_invalid_sound TEXT, ivr_menu_exit_sound TEXT, ivr_menu_delay TEXT,
	   ivr_menu_timeout TEXT, ivr_menu_digit_len TEXT)`,
	`CREATE TABLE v_ivr_menu_options (ivr_menu_uuid TEXT, ivr_menu_option_digits TEXT, ivr_menu_option_action TEXT, ivr_menu_option_param TEXT)`,
	`INSERT INTO v_ivr_menus VALUES ('m-1', 'default', 'Main', '5000', 'ivr/main.wav', 'ivr/invalid.wav', 'ivr/bye.wav', '100', '3000', '2')`,
	`INSERT INTO v_ivr_menu_options VALUES ('m-1', '1', 'transfer', '1001 XML default')`,
	`INSERT INTO v_ivr_menu_options VALUES ('m-1', '42', 'playback', 'ivr/forty-two.wav')`,
}

func runFusion(t *testing.T, data, dsn string) {
	t.Helper()
	e := harness.Start(t, modYAML(data), harness.Options{Scripts: readScripts(t, map[string]string{
		"freeswitch/resources/functions/config.lua": fusionConfig(dsn)})})
	addr := e.Addr(t, "esl")

	// Option 1: typed during the greeting; the menu transfers and the script returns to the dialplan.
	res := call(t, esltest.Call{Addr: addr, Path: "ivr_menu", UUID: "fp-1", Async: true, Full: true, Caller: "1002",
		PressDuring: map[string]string{"ivr/main.wav": "1#"}, Prompts: map[string]time.Duration{"ivr/main.wav": 2 * time.Second}})
	wantInOrder(t, lines(res),
		"> api global_getvar domain_name", // getVariable falls back to the global variables
		"execute answer [event-lock]",
		"execute playback ivr/main.wav\n",
		"caller presses 1",
		"execute break",
		"caller presses #",
		"execute transfer 1001 XML default [event-lock]",
		"transferred to 1001 XML default; the socket session ends")
	if res.HangupCause != "" {
		t.Fatalf("transferred call hung up (%s):\n%s", res.HangupCause, lines(res))
	}
	e.Logs.WaitFor(t, "[ivr_menu] menu Main for 1002", 5*time.Second)
	e.Logs.WaitFor(t, "[ivr_menu] caller chose '1'", 5*time.Second)
	e.Logs.WaitFor(t, "[ivr_menu] left over: ''", 5*time.Second)
	e.Logs.WaitFor(t, "[ivr_menu] option 1: transfer 1001 XML default", 5*time.Second)

	// Two digits after the greeting, one invalid try first: the invalid prompt plays, then 42 matches.
	res = call(t, esltest.Call{Addr: addr, Path: "ivr_menu", UUID: "fp-2", Async: true, Full: true, Caller: "1003",
		DTMF: []esltest.DTMF{{Digit: "4", At: 3500 * time.Millisecond}, {Digit: "2", At: 3600 * time.Millisecond}}})
	wantInOrder(t, lines(res),
		"execute playback ivr/main.wav\n",
		"execute playback ivr/invalid.wav [event-lock]",
		"execute playback ivr/main.wav\n",
		"caller presses 4",
		"caller presses 2",
		"execute playback ivr/forty-two.wav [event-lock]",
		"> exit")
	e.Logs.WaitFor(t, "[ivr_menu] caller chose '42'", 5*time.Second)
}

func sqliteSeed(t *testing.T, file string) {
	t.Helper()
	db, err := sql.Open("sqlite", file)
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	for _, q := range fusionSchema {
		if _, err := db.Exec(q); err != nil {
			t.Fatal(err)
		}
	}
}

func TestModLuaFusionPBXStyleSQLite(t *testing.T) {
	data := t.TempDir()
	sqliteSeed(t, filepath.Join(data, "fusionpbx.db"))
	runFusion(t, data, "sqlite://fusionpbx")
}

// TestModLuaFusionPBXStylePostgreSQL needs a server: SB_TEST_PGSQL_DSN (libpq keywords, as .ci/run exports
// it). Under CI it must be there.
func TestModLuaFusionPBXStylePostgreSQL(t *testing.T) {
	dsn := os.Getenv("SB_TEST_PGSQL_DSN")
	if dsn == "" {
		if os.Getenv("CI") != "" {
			t.Fatal("SB_TEST_PGSQL_DSN is not set: .ci/run starts PostgreSQL and exports it")
		}
		t.Skip("SB_TEST_PGSQL_DSN not set (.ci/run starts a PostgreSQL server for this test)")
	}
	schema := fmt.Sprintf("sbtest_%d", time.Now().UnixNano())
	db, err := sql.Open("pgx", dsn)
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if _, err := db.ExecContext(ctx, "CREATE SCHEMA "+schema); err != nil {
		t.Fatalf("PostgreSQL at SB_TEST_PGSQL_DSN: %v", err)
	}
	t.Cleanup(func() { _, _ = db.Exec("DROP SCHEMA " + schema + " CASCADE") })
	for _, q := range fusionSchema {
		if _, err := db.ExecContext(ctx, strings.Replace(strings.Replace(q, "TABLE ", "TABLE "+schema+".", 1), "INTO ", "INTO "+schema+".", 1)); err != nil {
			t.Fatal(err)
		}
	}
	runFusion(t, t.TempDir(), "pgsql://"+dsn+" search_path="+schema)
}

// TestModLuaInputCallbackSeekPause: an input callback named by a global acts on the playing file with
// uuid_fileman (seek, pause, stop), `*` reaches it instead of ending the playback, break stops a file,
// and an event queued to the channel reaches it as "event".
func TestModLuaInputCallbackSeekPause(t *testing.T) {
	e := harness.Start(t, modYAML(t.TempDir()), harness.Options{Scripts: readScripts(t, nil)})
	res := call(t, esltest.Call{Addr: e.Addr(t, "esl"), Path: "player", UUID: "pl-1", Async: true, Full: true,
		Prompts:     map[string]time.Duration{"voicemail/msg-0001.wav": 10 * time.Second, "voicemail/msg-0002.wav": 10 * time.Second, "voicemail/msg-0003.wav": 10 * time.Second},
		PressDuring: map[string]string{"voicemail/msg-0001.wav": "654*", "voicemail/msg-0002.wav": "#"},
		EventDuring: map[string]esltest.SessionEvent{"voicemail/msg-0003.wav": {At: 100 * time.Millisecond, Name: "CUSTOM",
			Headers: map[string]string{"Event-Subclass": "player::control", "action": "stop"}}}})
	wantInOrder(t, lines(res),
		"> divert_events on",
		"execute set playback_terminators=none [event-lock]",
		"execute playback voicemail/msg-0001.wav\n",
		"caller presses 6",
		"> api uuid_fileman pl-1 seek:+3000",
		"fileman voicemail/msg-0001.wav seek:+3000",
		"caller presses 5",
		"> api uuid_fileman pl-1 pause",
		"fileman voicemail/msg-0001.wav pause",
		"caller presses 4",
		"> api uuid_fileman pl-1 seek:-3000",
		"fileman voicemail/msg-0001.wav seek:-3000",
		"caller presses *",
		"> api uuid_fileman pl-1 stop",
		"fileman voicemail/msg-0001.wav stop",
		"complete playback: FILE PLAYED",
		"execute playback voicemail/msg-0002.wav\n",
		"caller presses #",
		"execute break",
		"complete playback: FILE PLAYED",
		"execute playback voicemail/msg-0003.wav\n",
		"event CUSTOM queued to the channel",
		"execute break",
		"complete playback: FILE PLAYED",
		"engine hangs up NORMAL_CLEARING")
	for _, w := range []string{"player: key 6 during message 1", "player: key * during message 1", "player: key # during message 2",
		"player: event CUSTOM action stop", "player: results 0 0 0"} {
		e.Logs.WaitFor(t, w, 5*time.Second)
	}
}

// TestModLuaTransferAndReturn: a transfer returns 1, ready() is false after it, the engine does not hang
// up; a script that just ends hands the call back to the dialplan (exit, no hangup).
func TestModLuaTransferAndReturn(t *testing.T) {
	e := harness.Start(t, modYAML(t.TempDir()), harness.Options{Scripts: readScripts(t, nil)})
	addr := e.Addr(t, "esl")
	res := call(t, esltest.Call{Addr: addr, Path: "after_hours/transfer", UUID: "ah-1", Async: true, Full: true})
	wantInOrder(t, lines(res),
		"> api uuid_setvar ah-1 after_hours true",
		"execute set hold_music=local_stream://moh [event-lock]",
		"execute transfer 5001 XML default [event-lock]",
		"transferred to 5001 XML default; the socket session ends")
	e.Logs.WaitFor(t, "after_hours: transfer returned 1, ready false", 5*time.Second)
	// Through the flow variable, with arguments as the lua application takes them.
	res = call(t, esltest.Call{Addr: addr, UUID: "ah-2", Async: true, Full: true, Vars: map[string]string{"switchboard_flow": "after_hours.lua stay"}})
	tr := lines(res)
	wantInOrder(t, tr, "execute set hold_music=local_stream://moh [event-lock]", "complete set: _none_", "> exit", "< disconnect notice")
	if strings.Contains(tr, "hangs up") || res.HangupCause != "" {
		t.Fatalf("a script that returns to the dialplan was hung up:\n%s", tr)
	}
	if n := strings.Count(e.Logs.String(), "after_hours: done"); n != 2 {
		t.Fatalf("after_hours ran to its end %d times", n)
	}
}

// TestFlowTestModLua: `switchboard flow test` with mod_lua-style scripts: the script's log lines in the
// transcript in order, chosen bridge outcomes and prompt lengths, unknown applications allowed on request,
// a non-zero exit when the script raises or runs past --timeout (transcript printed either way).
func TestFlowTestModLua(t *testing.T) {
	dir := t.TempDir()
	scripts := map[string]string{
		"freeswitch/calls.lua": `freeswitch.consoleLog("info", "calls: start\n")
session:answer()
session:execute("bridge", "user/1001")
freeswitch.consoleLog("info", "calls: bridge " .. session:getVariable("originate_disposition") .. "\n")
session:execute("valet_park", "lot 1")
session:streamFile("ivr/long.wav")
freeswitch.consoleLog("info", "calls: end\n")
`,
		"freeswitch/boom.lua": "session:answer()\nlocal t = nil\nprint(t.x)\n",
		"freeswitch/spin.lua": "session:answer()\nwhile true do end\n",
	}
	for name, src := range scripts {
		p := filepath.Join(dir, "scripts", name)
		_ = os.MkdirAll(filepath.Dir(p), 0o755)
		if err := os.WriteFile(p, []byte(src), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	cfg := filepath.Join(dir, "sb.yaml")
	yaml := fmt.Sprintf("lua:\n  scripts_dir: %s\nesl:\n  flow_grace: 500ms\n  data_dir: %s\nsocket:\n  enabled: false\nrelay:\n  enabled: false\nadmin:\n  listen: \"\"\n",
		filepath.Join(dir, "scripts"), filepath.Join(dir, "data"))
	if err := os.WriteFile(cfg, []byte(yaml), 0o644); err != nil {
		t.Fatal(err)
	}
	run := func(args ...string) (string, int) {
		cmd := exec.Command(harness.Binary(t), append([]string{"flow", "test", "-c", cfg}, args...)...)
		out, _ := cmd.CombinedOutput()
		return string(out), cmd.ProcessState.ExitCode()
	}
	out, code := run("calls", "--bridge", "user/1001=USER_BUSY", "--allow-unknown-apps", "--prompt", "ivr/long.wav=300ms")
	if code != 0 {
		t.Fatalf("exit %d:\n%s", code, out)
	}
	wantInOrder(t, out,
		"log info: calls: start (", "/scripts/freeswitch/calls.lua:1)",
		"execute answer [event-lock]",
		"execute bridge user/1001 [event-lock]",
		"complete bridge: _none_ failed USER_BUSY",
		"log info: calls: bridge USER_BUSY",
		"execute valet_park lot 1 [event-lock]",
		"complete valet_park: _none_ (not simulated)",
		"execute playback ivr/long.wav",
		"complete playback: FILE PLAYED",
		"log info: calls: end",
		"> exit",
		"result: answered=true hangup_cause=none (call left the socket up)")
	out, code = run("calls")
	if code != 0 || !strings.Contains(out, "execute valet_park: Invalid Application") || !strings.Contains(out, "hangup DESTINATION_OUT_OF_ORDER") {
		t.Fatalf("without --allow-unknown-apps, exit %d:\n%s", code, out)
	}
	out, code = run("boom")
	if code == 0 || !strings.Contains(out, "execute answer [event-lock]") ||
		!strings.Contains(out, "the flow failed: ") || !strings.Contains(out, "/scripts/freeswitch/boom.lua:3: attempt to index a non-table object(nil) with key 'x'") {
		t.Fatalf("a raising script: exit %d:\n%s", code, out)
	}
	start := time.Now()
	out, code = run("spin", "--timeout", "1s")
	if code == 0 || !strings.Contains(out, "simulator: max duration") || !strings.Contains(out, "result: answered=true hangup_cause=ALLOTTED_TIMEOUT") ||
		!strings.Contains(out, "the flow ran past --timeout 1s") {
		t.Fatalf("a script past --timeout: exit %d:\n%s", code, out)
	}
	if took := time.Since(start); took > 15*time.Second {
		t.Fatalf("flow test of a spinning script took %s", took)
	}
}
