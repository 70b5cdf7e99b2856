package esllua

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/sirupsen/logrus"

	"github.com/switchboard/switchboard/engine/esl"
	"github.com/switchboard/switchboard/engine/esl/esltest"
	"github.com/switchboard/switchboard/luabind"
	"github.com/switchboard/switchboard/luabind/luabindtest"
)

// modServer serves the runtime's flows with cfg (data folder in a temp dir), logging to buf.
func modServer(t *testing.T, rt *testRuntime, buf *luabindtest.LogBuf, cfg esl.Config) string {
	t.Helper()
	l := logrus.New()
	l.SetOutput(buf)
	l.SetLevel(logrus.DebugLevel)
	if cfg.DataDir == esl.DefaultConfig().DataDir {
		cfg.DataDir = t.TempDir()
	}
	ecfg := cfg
	ecfg.Listen = "127.0.0.1:0"
	srv, err := esl.New(ecfg, esl.Options{Flows: rt.b.Flows(rt.Runtime), Log: logrus.NewEntry(l)})
	if err != nil {
		t.Fatal(err)
	}
	if err := srv.Start(context.Background()); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		_ = srv.Shutdown(ctx)
	})
	return srv.Addrs()["esl"].String()
}

func transcript(r *esltest.Result) string { return strings.Join(r.Transcript(), "\n") }

func TestModLuaFreshStatePerCall(t *testing.T) {
	rt, _, buf := newRuntime(t, luabind.DefaultConfig(), map[string]string{
		"freeswitch/hello.lua": `session:answer()
counter = (counter or 0) + 1
freeswitch.consoleLog("info", "hello " .. argv[0] .. " " .. (argv[1] or "-") .. " " .. (argv[2] or "-") .. " from " .. session:getVariable("caller_id_number") ..
  " to " .. session:getVariable("destination_number") .. " in " .. session:getVariable("context") .. " counter " .. counter .. "\n")
local r = session:streamFile("welcome.wav")
local s = session:sleep("50")
freeswitch.consoleLog("notice", "stream " .. r .. " sleep " .. s .. " ready " .. tostring(session:ready()))
`}, nil)
	addr := modServer(t, rt, buf, esl.DefaultConfig())
	for i, path := range []string{"hello/a/b%20c", "hello"} {
		res := playCall(t, esltest.Call{Addr: addr, Path: path, UUID: "h-" + string(rune('a'+i)), Async: true, Full: true, Caller: "2002", Dest: "5005"})
		tr := transcript(res)
		for _, want := range []string{"execute answer [event-lock]", "execute set playback_terminators=none [event-lock]", "execute playback welcome.wav [event-lock]\ncomplete playback: FILE PLAYED\n> exit", "> exit"} {
			if !strings.Contains(tr, want) {
				t.Fatalf("call %d lacks %q:\n%s", i, want, tr)
			}
		}
		if strings.Contains(tr, "engine hangs up") || res.HangupCause != "" {
			t.Fatalf("mod_lua flow hung up its own leg at the end:\n%s", tr)
		}
	}
	buf.WaitLog(t, "hello hello.lua a b c from 2002 to 5005 in default counter 1")
	buf.WaitLog(t, "hello hello.lua - - from 2002 to 5005 in default counter 1")
	buf.WaitLog(t, "stream 1 sleep 1 ready true")
}

func TestModLuaHangupReturnsAndGraceCancels(t *testing.T) {
	rt, _, buf := newRuntime(t, luabind.DefaultConfig(), map[string]string{
		"freeswitch/loop.lua": `session:answer()
local r = session:streamFile("long.wav")
local d = session:getDigits(3, "#", 5000)
freeswitch.consoleLog("info", "after hangup: stream " .. r .. " digits '" .. d .. "' ready " .. tostring(session:ready()) .. " answer " .. session:answer())
while true do end
`}, nil)
	cfg := esl.DefaultConfig()
	cfg.FlowGrace = 300 * time.Millisecond
	addr := modServer(t, rt, buf, cfg)
	start := time.Now()
	res := playCall(t, esltest.Call{Addr: addr, Path: "loop", UUID: "loop-1", Async: true, Full: true, Media: 10 * time.Second, HangupAfter: 100 * time.Millisecond})
	buf.WaitLog(t, "after hangup: stream 0 digits '' ready false answer 0")
	buf.WaitLog(t, "flow cancelled: still running esl.flow_grace after the call ended")
	if took := time.Since(start); took > 5*time.Second {
		t.Fatalf("a script looping after hangup ran %s (flow_grace 300ms)", took)
	}
	if res.HangupCause != "NORMAL_CLEARING" {
		t.Fatalf("cause %q", res.HangupCause)
	}
	buf.WaitLog(t, "scripts/freeswitch/loop.lua:5:")
}

func TestModLuaDigitsConsumedOnce(t *testing.T) {
	rt, _, buf := newRuntime(t, luabind.DefaultConfig(), map[string]string{
		"freeswitch/digits.lua": `session:answer()
local a = session:playAndGetDigits(1, 3, 1, 2000, "#", "menu.wav", "", "")
local b = session:read(1, 1, "", 300, "#")
local c = session:getDigits(5, "", 300)
freeswitch.consoleLog("info", "pagd '" .. a .. "' read '" .. b .. "' rest '" .. c .. "' result " .. session:getVariable("read_result"))
`}, nil)
	addr := modServer(t, rt, buf, esl.DefaultConfig())
	playCall(t, esltest.Call{Addr: addr, Path: "digits", Async: true, Full: true, Prompts: map[string]time.Duration{"menu.wav": time.Second},
		PressDuring: map[string]string{"menu.wav": "12#3"}})
	buf.WaitLog(t, "pagd '12' read '3' rest '' result success")
}

func TestModLuaDTMFQueueBounded(t *testing.T) {
	rt, _, buf := newRuntime(t, luabind.DefaultConfig(), map[string]string{
		"freeswitch/flood.lua": `session:answer()
session:sleep(1500)
local d = session:getDigits(1000, "", 100)
freeswitch.consoleLog("info", "kept " .. #d .. " digits")
`}, nil)
	cfg := esl.DefaultConfig()
	cfg.DTMFQueueBytes = 64 * 45 // 64 digits of "1" with a 4-character duration (1 + 4 + 40 bytes each)
	addr := modServer(t, rt, buf, cfg)
	var presses []esltest.DTMF
	for i := 0; i < 500; i++ {
		presses = append(presses, esltest.DTMF{Digit: "1", At: time.Duration(i) * time.Millisecond})
	}
	playCall(t, esltest.Call{Addr: addr, Path: "flood", Async: true, Full: true, DTMF: presses})
	buf.WaitLog(t, "kept 64 digits")
	buf.WaitLog(t, "DTMF queue full (esl.dtmf_queue_bytes): digits dropped")
}

func TestModLuaErrorsNameTheMissingThing(t *testing.T) {
	rt, _, buf := newRuntime(t, luabind.DefaultConfig(), map[string]string{
		"flows.lua": `local sb = require "switchboard"
sb.flow("sbf", function(session) local ok, err = pcall(function() return freeswitch.consoleLog end) sb.log.info("sb: " .. err) end)
sb.flow("sbw", function(session)
  local ok, err = pcall(function() freeswitch.mark = true end)
  sb.log.info("sbw: " .. tostring(ok) .. " " .. err .. " seen: " .. tostring(rawget(freeswitch, "mark")))
end)
`,
		"freeswitch/errs.lua": `local ok, err = pcall(function() return freeswitch.EventConsumer("all") end)
freeswitch.consoleLog("info", "1: " .. err)
ok, err = pcall(function() return freeswitch.Nope end)
freeswitch.consoleLog("info", "2: " .. err)
ok, err = pcall(session.sleep, session, "soon")
freeswitch.consoleLog("info", "3: " .. err)
ok, err = pcall(session.getDigits, session, 3)
freeswitch.consoleLog("info", "4: " .. err)
ok, err = pcall(function() return require "resources.missing" end)
freeswitch.consoleLog("info", "5: " .. err)
ok, err = pcall(function() return io.open("/etc/passwd") end)
freeswitch.consoleLog("info", "6: " .. tostring(ok) .. " " .. tostring(err))
local f, msg = io.open("../escape.txt", "w")
freeswitch.consoleLog("info", "7: " .. tostring(f) .. " " .. tostring(msg))
freeswitch.consoleLog("info", "8: " .. tostring(os.getenv("HOME")) .. " " .. tostring(pcall(function() return os.execute end)))
`}, nil)
	addr := modServer(t, rt, buf, esl.DefaultConfig())
	playCall(t, esltest.Call{Addr: addr, Path: "sbf", Async: true, Full: true})
	buf.WaitLog(t, "sb: scripts/flows.lua:2: freeswitch.consoleLog: the freeswitch table exists only in mod_lua-style scripts")
	// a write raises and leaves nothing behind for the next call on the same VM
	for i := 0; i < 2; i++ {
		playCall(t, esltest.Call{Addr: addr, Path: "sbw", Async: true, Full: true})
	}
	buf.WaitLogCount(t, "sbw: false scripts/flows.lua:4: freeswitch.mark: the freeswitch table exists only in mod_lua-style scripts (lua.freeswitch_dir, scripts/freeswitch/); it cannot be written in sb.flow seen: nil", 2)
	playCall(t, esltest.Call{Addr: addr, Path: "errs", Async: true, Full: true})
	for _, want := range []string{
		"1: scripts/freeswitch/errs.lua:1: freeswitch.EventConsumer is not available in switchboard: it reads switch-wide events",
		"2: scripts/freeswitch/errs.lua:3: freeswitch.Nope is not available in switchboard: see the mod_lua compatibility table",
		`3: scripts/freeswitch/errs.lua:5: session:sleep: argument #1 expected a number, got \"soon\"`,
		"4: scripts/freeswitch/errs.lua:7: session:getDigits: argument #3 expected a number, got nil",
		`5: scripts/freeswitch/errs.lua:9: module \"resources.missing\" not found: require looks for resources/missing.lua under scripts/freeswitch`,
		"6: true nil",
		"7: nil ../escape.txt: ../escape.txt is outside esl.data_dir",
	} {
		buf.WaitLog(t, want)
	}
	buf.WaitLog(t, "8: nil false")
}

func TestModLuaTopLevelSessionIsALoadError(t *testing.T) {
	fsys := map[string]string{"x.lua": "-- pasted from a FreeSWITCH box\nlocal x = 1\nsession:answer()\n"}
	cfg := luabind.DefaultConfig()
	errs := luabindtest.Check(t, cfg, fsys, New(OptionsFrom(cfg)))
	if len(errs) != 1 || errs[0].Error() != "scripts/x.lua:3: uses the global session: mod_lua-style flows belong in scripts/freeswitch/" {
		t.Fatalf("errors: %v", errs)
	}
	fsys = map[string]string{"freeswitch/x.lua": "session:answer(\n"}
	errs = luabindtest.Check(t, cfg, fsys, New(OptionsFrom(cfg)))
	if len(errs) != 1 || !strings.HasPrefix(errs[0].Error(), "scripts/freeswitch/x.lua:1:") {
		t.Fatalf("syntax error: %v", errs)
	}
}

func TestModLuaFreeswitchTable(t *testing.T) {
	rt, _, buf := newRuntime(t, luabind.DefaultConfig(), map[string]string{
		"freeswitch/fs.lua": `local api = freeswitch.API()
freeswitch.consoleLog("info", "api [" .. api:executeString("echo hi there") .. "] [" .. api:execute("uuid_getvar", session:get_uuid() .. " sip_from_user") .. "] [" .. api:execute("nosuch") .. "]")
freeswitch.consoleLog("info", "global " .. tostring(freeswitch.getGlobalVariable("domain")) .. " " .. tostring(freeswitch.getGlobalVariable("nope")) .. " sounds " .. session:getVariable("sounds_dir"))
freeswitch.setGlobalVariable("x", "1")
freeswitch.msleep("20")
local ev = freeswitch.Event("custom", "callcenter::info")
ev:addHeader("Action", "agent-state")
ev:addBody("hello")
freeswitch.consoleLog("info", "event " .. ev:getType() .. " " .. ev:getHeader("Event-Subclass") .. " fire " .. tostring(ev:fire()))
local leg = freeswitch.Session("user/1001")
freeswitch.consoleLog("info", "leg ready " .. tostring(leg:ready()) .. " cause " .. leg:hangupCause())
leg:setVariable("leg_var", "v")
leg:streamFile("whisper.wav")
local busy = freeswitch.Session("user/1002")
freeswitch.consoleLog("info", "busy ready " .. tostring(busy:ready()) .. " cause " .. busy:hangupCause())
session:answer()
freeswitch.bridge(session, leg)
freeswitch.consoleLog("info", "after bridge leg ready " .. tostring(leg:ready()))
local menu = freeswitch.IVRMenu(nil, "main", "menu.wav", "short.wav", "bad.wav", "bye.wav", "", "", "", "", "", 0, 500, 1, 2000, 2, 1)
menu:bindAction("menu-exec-app", "playback option-1.wav", "1")
menu:bindAction("menu-exit", "", "*")
menu:execute(session, "main")
freeswitch.consoleLog("info", "menu done")
`}, nil)
	addr := modServer(t, rt, buf, esl.DefaultConfig())
	res := playCall(t, esltest.Call{Addr: addr, Path: "fs", UUID: "fs-1", Async: true, Full: true, Globals: map[string]string{"domain": "example.com", "sounds_dir": "/snd"},
		Originate: map[string]string{"user/1002": "USER_BUSY"}, BridgeFor: 50 * time.Millisecond,
		Prompts: map[string]time.Duration{"menu.wav": time.Second, "short.wav": time.Second}, PressDuring: map[string]string{"menu.wav": "1", "short.wav": "*"}})
	buf.WaitLog(t, `api [hi there] [1000] [-ERR nosuch Command not found!\n]`)
	buf.WaitLog(t, "global example.com nil sounds /snd")
	buf.WaitLog(t, "event CUSTOM callcenter::info fire true")
	buf.WaitLog(t, "leg ready true cause SUCCESS")
	buf.WaitLog(t, "busy ready false cause USER_BUSY")
	buf.WaitLog(t, "after bridge leg ready false")
	buf.WaitLog(t, "menu done")
	wantIn := []string{
		"> api global_setvar x=1",
		"> sendevent CUSTOM (Event-Subclass: callcenter::info, Action: agent-state) body \"hello\"",
		"originate user/1001: answered (leg 1)",
		"leg 1: execute playback whisper.wav",
		"originate user/1002: USER_BUSY",
		"bridge with leg 1",
		"leg 1: hangup NORMAL_CLEARING",
		"> sendevent CUSTOM (Event-Subclass: menu::enter, Menu-Name: main",
		"execute set playback_terminators=none [event-lock]",
		"execute playback menu.wav\n",
		"caller presses 1",
		"execute playback option-1.wav [event-lock]",
		"execute playback short.wav\n",
		"caller presses *",
		"execute playback bye.wav\n",
		"> sendevent CUSTOM (Event-Subclass: menu::exit, Menu-Name: main",
	}
	tr := transcript(res)
	at := 0
	for _, w := range wantIn {
		i := strings.Index(tr[at:], w)
		if i < 0 {
			t.Fatalf("transcript lacks %q after %d:\n%s", w, at, tr)
		}
		at += i + len(w)
	}
}

func TestModLuaSayPhraseLanguageAndReturns(t *testing.T) {
	rt, _, buf := newRuntime(t, luabind.DefaultConfig(), map[string]string{
		"freeswitch/say.lua": `local a = session:answer()
local x = session:execute("log", "INFO hi")
session:sayPhrase("voicemail_message_count", "3:new", "fr")
session:sayPhrase("voicemail_goodbye")
session:say("42", "en:de", "number", "pronounced")
local s = session:streamFile("missing/x.wav")
local t = session:transfer("", "XML", "default")
freeswitch.consoleLog("info", "answer " .. a .. " execute " .. tostring(x) .. " stream " .. s .. " transfer " .. t .. " ready " .. tostring(session:ready()))
`}, nil)
	addr := modServer(t, rt, buf, esl.DefaultConfig())
	res := playCall(t, esltest.Call{Addr: addr, Path: "say", Async: true, Full: true, AllowUnknownApps: true, Vars: map[string]string{"default_language": "es"}})
	tr := transcript(res)
	at := 0
	for _, w := range []string{
		"execute set language=fr [event-lock]", "execute phrase voicemail_message_count,3:new [event-lock]", "execute set language= [event-lock]",
		"execute set language=es [event-lock]", "execute phrase voicemail_goodbye [event-lock]", "execute set language= [event-lock]",
		"execute say en:de number pronounced 42 [event-lock]",
		"complete playback: FILE NOT FOUND",
		"execute transfer service XML default [event-lock]",
	} {
		i := strings.Index(tr[at:], w)
		if i < 0 {
			t.Fatalf("transcript lacks %q after %d:\n%s", w, at, tr)
		}
		at += i + len(w)
	}
	buf.WaitLog(t, "answer 1 execute nil stream 0 transfer 1 ready false")
}

func TestModLuaDbhSQLite(t *testing.T) {
	rt, _, buf := newRuntime(t, luabind.DefaultConfig(), map[string]string{
		"freeswitch/db.lua": `local dbh = freeswitch.Dbh("sqlite://agents")
assert(dbh:connected())
local made = dbh:test_reactive("SELECT count(*) FROM agents", "DROP TABLE agents", "CREATE TABLE agents (name TEXT, state TEXT)")
dbh:query("INSERT INTO agents VALUES ('ann', 'available'), ('bob', NULL), ('cy', 'busy')")
local inserted = dbh:affected_rows()
local seen = {}
dbh:query("SELECT name, state FROM agents ORDER BY name", function(row)
  seen[#seen + 1] = row.name .. "=" .. row.state
  if row.name == "bob" then return 1 end
end)
local ok, rows = dbh:query_rows("SELECT name, state FROM agents ORDER BY name")
local bad = dbh:query("SELECT nope FROM nowhere")
freeswitch.consoleLog("info", "made " .. tostring(made) .. " inserted " .. inserted .. " seen " .. table.concat(seen, ",") ..
  " rows " .. #rows .. " bob state " .. tostring(rows[2].state) .. " bad " .. tostring(bad) .. " error " .. tostring(dbh:last_error() ~= nil) ..
  " again " .. tostring(dbh:test_reactive("SELECT count(*) FROM agents", "DROP TABLE agents", "CREATE TABLE agents (name TEXT)")))
dbh:release()
freeswitch.consoleLog("info", "released connected " .. tostring(dbh:connected()))
local odbc = freeswitch.Dbh("odbc://unmapped:u:p")
freeswitch.consoleLog("info", "odbc connected " .. tostring(odbc:connected()))
`}, nil)
	addr := modServer(t, rt, buf, esl.DefaultConfig())
	playCall(t, esltest.Call{Addr: addr, Path: "db", Async: true, Full: true})
	buf.WaitLog(t, "made true inserted 3 seen ann=available,bob= rows 3 bob state nil bad false error true again true")
	buf.WaitLog(t, "released connected false")
	buf.WaitLog(t, `ODBC DSN \"unmapped\" is not mapped: add it to esl.odbc`)
	buf.WaitLog(t, "odbc connected false")
}

func TestModLuaHangupHook(t *testing.T) {
	rt, _, buf := newRuntime(t, luabind.DefaultConfig(), map[string]string{
		"freeswitch/hook.lua": `function on_hangup(s, why, arg)
  freeswitch.consoleLog("info", "hook " .. why .. " " .. tostring(arg and arg.n))
  return "exit"
end
hook_arg = { n = 7 }
session:setHangupHook("on_hangup", "hook_arg")
session:answer()
session:streamFile("long.wav")
freeswitch.consoleLog("info", "after stream")
session:ready()
freeswitch.consoleLog("info", "not reached")
`,
		"freeswitch/auto.lua": `function on_hangup(s, why) freeswitch.consoleLog("info", "auto hook " .. why) end
session:setHangupHook("on_hangup")
session:setAutoHangup(true)
session:answer()
freeswitch.consoleLog("info", "auto done")
`}, nil)
	addr := modServer(t, rt, buf, esl.DefaultConfig())
	playCall(t, esltest.Call{Addr: addr, Path: "hook", Async: true, Full: true, Media: 10 * time.Second, HangupAfter: 100 * time.Millisecond})
	buf.WaitLog(t, "hook hangup 7")
	res := playCall(t, esltest.Call{Addr: addr, Path: "auto", Async: true, Full: true})
	buf.WaitLog(t, "auto done")
	if !strings.Contains(transcript(res), "engine hangs up NORMAL_CLEARING") {
		t.Fatalf("setAutoHangup(true) did not hang up:\n%s", transcript(res))
	}
	if n := strings.Count(buf.String(), "hook hangup"); n != 1 || strings.Contains(buf.String(), "after stream") || strings.Contains(buf.String(), "not reached") ||
		strings.Contains(buf.String(), "auto hook") {
		t.Fatalf("hooks ran wrongly:\n%s", buf.String())
	}
}
