package esllua

import (
	"context"
	"errors"
	"os"
	"strings"
	"sync"
	"testing"
	"testing/fstest"
	"time"

	"github.com/sirupsen/logrus"

	"github.com/switchboard/switchboard/engine/esl"
	"github.com/switchboard/switchboard/engine/esl/esltest"
	"github.com/switchboard/switchboard/internal/testutil"
	"github.com/switchboard/switchboard/luabind"
	"github.com/switchboard/switchboard/luabind/luabindtest"
)

// eslServer serves the runtime's flows on 127.0.0.1:0, logging to the runtime's log buffer.
func eslServer(t *testing.T, rt *testRuntime, buf *luabindtest.LogBuf) string {
	t.Helper()
	l := logrus.New()
	l.SetOutput(buf)
	l.SetLevel(logrus.DebugLevel)
	ecfg := esl.DefaultConfig()
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

func playCall(t *testing.T, call esltest.Call) *esltest.Result {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 15*time.Second)
	defer cancel()
	res, err := esltest.Run(ctx, call)
	if err != nil {
		t.Fatal(err)
	}
	return res
}

func TestLuaIVRScript(t *testing.T) {
	src, err := os.ReadFile("../../../scripts/ivr.lua")
	if err != nil {
		t.Fatal(err)
	}
	rt, _, buf := newRuntime(t, luabind.DefaultConfig(), map[string]string{"ivr.lua": string(src)}, nil)
	addr := eslServer(t, rt, buf)
	res := playCall(t, esltest.Call{Addr: addr, UUID: "ivr-1", Async: true, Full: true, DTMF: []esltest.DTMF{{Digit: "3", At: 50 * time.Millisecond}}, Media: 100 * time.Millisecond})
	want := []string{
		"call ivr-1 from 1000 to 5000 (async full)",
		"> connect",
		"> myevents plain",
		"> event plain BACKGROUND_JOB",
		"> linger",
		"execute answer [event-lock]",
		"complete answer: _none_",
		"execute play_and_get_digits 1 1 3 5000 # ivr/menu.wav ivr/invalid.wav switchboard_digits_1 [1-3] [event-lock]",
		"caller presses 3",
		"complete play_and_get_digits: _none_ switchboard_digits_1=3 (success)",
		"execute say en number pronounced 42 [event-lock]",
		"complete say: _none_",
		"engine hangs up NORMAL_CLEARING",
		"hangup NORMAL_CLEARING",
		"< linger notice",
		"> exit",
		"< disconnect notice",
	}
	got := res.Transcript()
	// The generated variable name depends on how many reads ran before in this process.
	for i := range got {
		if strings.HasPrefix(got[i], "execute play_and_get_digits") || strings.HasPrefix(got[i], "complete play_and_get_digits") {
			got[i] = replaceDigitsVar(got[i])
		}
	}
	if strings.Join(got, "\n") != strings.Join(want, "\n") {
		t.Fatalf("transcript:\n%s\nwant:\n%s", strings.Join(got, "\n"), strings.Join(want, "\n"))
	}
	buf.WaitLog(t, "ivr: caller left (hangup, NORMAL_CLEARING)")
	if n := strings.Count(buf.String(), "ivr: caller left"); n != 1 {
		t.Fatalf("hangup hook ran %d times", n)
	}

	// Static mode, choice 1: bridge then hang up.
	res = playCall(t, esltest.Call{Addr: addr, UUID: "ivr-2", DTMF: []esltest.DTMF{{Digit: "1", At: 50 * time.Millisecond}}, Media: 100 * time.Millisecond})
	if tr := strings.Join(res.Transcript(), "\n"); !strings.Contains(tr, "execute bridge user/1001 [event-lock]\ncomplete bridge: _none_\nengine hangs up NORMAL_CLEARING") {
		t.Fatalf("static transcript:\n%s", tr)
	}
}

func replaceDigitsVar(s string) string {
	i := strings.Index(s, "switchboard_digits_")
	if i < 0 {
		return s
	}
	j := i + len("switchboard_digits_")
	for j < len(s) && s[j] >= '0' && s[j] <= '9' {
		j++
	}
	return s[:i] + "switchboard_digits_1" + s[j:]
}

const sessionScript = `local sb = require "switchboard"
sb.flow("cb", function(session)
  session:answer()
  session:setInputCallback(function(s, kind, ev, arg)
    s:consoleLog("info", "cb " .. kind .. " " .. ev.digit .. " " .. arg)
    if ev.digit == "9" then return "break" end
  end, "menu")
  local r = session:streamFile("long.wav")
  session:consoleLog("info", "stream ended " .. r)
  session:unsetInputCallback()
  local d = session:getDigits(2, "#", 2000)
  session:consoleLog("info", "digits " .. d)
end)
sb.flow("hangup", function(session)
  session:setHangupHook("onHangup", "x")
  local ok, err = pcall(function() session:streamFile("long.wav") end)
  session:consoleLog("info", "pcall " .. tostring(ok) .. " " .. tostring(err) .. " ready " .. tostring(session:ready()))
  session:streamFile("again.wav") -- raises "hung up" again: the flow ends quietly
  session:consoleLog("info", "not reached")
end)
function onHangup(s, why, arg) s:consoleLog("info", "hook " .. why .. " " .. arg) end
sb.flow("boom", function(session)
  session:answer()
  local t = nil
  return t.field
end)
sb.flow("vars", function(session)
  session:setVariable("greeting", "hello")
  session:consoleLog("info", "var " .. session:getVariable("greeting") .. " from " .. session:getVariable("sip_from_user") .. " uuid " .. session.uuid .. " " .. session:get_uuid())
  session:consoleLog("info", "api " .. session:api("uuid_getvar", session.uuid .. " greeting") .. " bg " .. session:bgapi("echo", "hi"))
  session:consoleLog("info", "state " .. session:getState() .. " media " .. tostring(session:mediaReady()) .. " bridged " .. tostring(session:bridged()))
  session:answer()
  session:consoleLog("info", "after answer media " .. tostring(session:mediaReady()) .. " answered " .. tostring(session:answered()))
  session:set_tts_params("flite", "kal")
  session:speak("hello world")
  session:sendmsg({["call-command"] = "execute", ["execute-app-name"] = "log", ["execute-app-arg"] = "INFO raw"})
end)
`

func TestLuaSessionAPI(t *testing.T) {
	rt, _, buf := newRuntime(t, luabind.DefaultConfig(), map[string]string{"flows.lua": sessionScript}, nil)
	addr := eslServer(t, rt, buf)

	start := time.Now()
	playCall(t, esltest.Call{Addr: addr, Path: "cb", Async: true, Full: true, Media: 5 * time.Second,
		DTMF: []esltest.DTMF{{Digit: "1", At: 50 * time.Millisecond}, {Digit: "9", At: 150 * time.Millisecond}, {Digit: "4", At: 300 * time.Millisecond}, {Digit: "#", At: 400 * time.Millisecond}}})
	if took := time.Since(start); took > 4*time.Second {
		t.Fatalf("input callback did not break the playback: %s", took)
	}
	for _, want := range []string{"cb dtmf 1 menu", "cb dtmf 9 menu", "stream ended FILE PLAYED", "digits 4"} {
		buf.WaitLog(t, want)
	}

	start = time.Now()
	res := playCall(t, esltest.Call{Addr: addr, Path: "hangup", Async: true, Full: true, Media: 10 * time.Second, HangupAfter: 100 * time.Millisecond})
	if took := time.Since(start); took > 3*time.Second {
		t.Fatalf("hangup mid-prompt took %s", took)
	}
	buf.WaitLog(t, "pcall false hung up ready false")
	buf.WaitLog(t, "hook hangup x")
	if strings.Count(buf.String(), "hook hangup x") != 1 || strings.Contains(buf.String(), "not reached") {
		t.Fatalf("hook count or flow continued:\n%s", buf.String())
	}
	if res.HangupCause != "NORMAL_CLEARING" {
		t.Fatalf("cause %q", res.HangupCause)
	}

	// A Lua error hangs up that call, logs file:line with flow and uuid, and leaves a concurrent call alone.
	var wg sync.WaitGroup
	var other *esltest.Result
	wg.Add(1)
	go func() {
		defer wg.Done()
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		other, _ = esltest.Run(ctx, esltest.Call{Addr: addr, Path: "cb", UUID: "other", Async: true, Full: true, Media: 300 * time.Millisecond})
	}()
	res = playCall(t, esltest.Call{Addr: addr, Path: "boom", UUID: "boom-1", Async: true, Full: true})
	wg.Wait()
	if res.HangupCause != "NORMAL_TEMPORARY_FAILURE" {
		t.Fatalf("boom cause %q", res.HangupCause)
	}
	buf.WaitLog(t, "scripts/flows.lua:25: attempt to index a non-table object(nil) with key 'field' (event esl.flow boom uuid boom-1)")
	if !strings.Contains(buf.String(), "flow=boom") || !strings.Contains(buf.String(), "uuid=boom-1") {
		t.Fatalf("log lacks flow/uuid fields:\n%s", buf.String())
	}
	if other == nil || other.HangupCause != "NORMAL_CLEARING" {
		t.Fatalf("concurrent call disturbed: %+v", other)
	}

	playCall(t, esltest.Call{Addr: addr, Path: "vars", Async: true, Full: true, Caller: "2001", UUID: "v-1"})
	buf.WaitLog(t, "var hello from 2001 uuid v-1 v-1")
	buf.WaitLog(t, "api hello bg hi")
	buf.WaitLog(t, "state CS_EXECUTE media false bridged false")
	buf.WaitLog(t, "after answer media true answered true")
	if rt.LiveVMs() > rt.PoolSize()+1 {
		t.Fatalf("%d VMs alive", rt.LiveVMs())
	}
}

func TestLuaFlowReloadKeepsLiveCalls(t *testing.T) {
	v := func(tag string) string {
		return `local sb = require "switchboard"
sb.flow("main", function(session) session:answer(); session:streamFile("` + tag + `.wav") end)`
	}
	rt, fsys, buf := newRuntime(t, luabind.DefaultConfig(), map[string]string{"f.lua": v("old")}, nil)
	addr := eslServer(t, rt, buf)
	var wg sync.WaitGroup
	results := make([]*esltest.Result, 10)
	for i := range results {
		wg.Add(1)
		go func() {
			defer wg.Done()
			results[i], _ = esltest.Run(context.Background(), esltest.Call{Addr: addr, Async: true, Full: true, Media: 500 * time.Millisecond})
		}()
	}
	// Every call has its flow (on the old generation) before the reload.
	testutil.WaitFor(t, "every call to start", func() bool { return strings.Count(buf.String(), "call started") >= len(results) })
	fsys["f.lua"] = &fstest.MapFile{Data: []byte(v("new"))}
	if err := rt.Load(); err != nil {
		t.Fatal(err)
	}
	fresh := playCall(t, esltest.Call{Addr: addr, Async: true, Full: true})
	wg.Wait()
	for _, r := range results {
		if r == nil || !strings.Contains(strings.Join(r.Transcript(), "\n"), "complete playback: FILE PLAYED") || !strings.Contains(strings.Join(r.Transcript(), "\n"), "execute playback old.wav") {
			t.Fatalf("live call disturbed by reload: %v", r)
		}
	}
	if !strings.Contains(strings.Join(fresh.Transcript(), "\n"), "execute playback new.wav") {
		t.Fatalf("new call did not run the new flow:\n%s", fresh)
	}
	if errors.Is(nil, esl.ErrHungUp) {
		t.Fatal()
	}
}

// testRuntime is a runtime with call control's binding (lua.freeswitch_dir as configured).
type testRuntime struct {
	*luabind.Runtime
	b *Binding
}

// newRuntime loads files (name -> source) with call control's binding.
func newRuntime(t testing.TB, cfg luabind.Config, files map[string]string, _ luabind.Topics) (*testRuntime, fstest.MapFS, *luabindtest.LogBuf) {
	t.Helper()
	b := New(OptionsFrom(cfg))
	rt, fsys, buf := luabindtest.New(t, cfg, files, luabindtest.Options{Bindings: []luabind.Binding{b}})
	return &testRuntime{Runtime: rt, b: b}, fsys, buf
}
