package luabind

import (
	"context"
	"net"
	"strings"
	"testing"
	"time"

	"github.com/sirupsen/logrus"

	"github.com/switchboard/switchboard/engine/esl"
	"github.com/switchboard/switchboard/engine/esl/esltest"
)

// modServer serves the runtime's flows with cfg (data folder in a temp dir), logging to buf.
func modServer(t *testing.T, rt *Runtime, buf *logBuf, cfg esl.Config) string {
	t.Helper()
	l := logrus.New()
	l.SetOutput(buf)
	l.SetLevel(logrus.DebugLevel)
	if cfg.DataDir == esl.DefaultConfig().DataDir {
		cfg.DataDir = t.TempDir()
	}
	srv := esl.NewServer(cfg, FlowResolver(rt), logrus.NewEntry(l), nil)
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	done := make(chan struct{})
	go func() { defer close(done); _ = srv.Serve(ln) }()
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		_ = srv.Shutdown(ctx)
		<-done
	})
	return ln.Addr().String()
}

func transcript(r *esltest.Result) string { return strings.Join(r.Transcript(), "\n") }

func TestModLuaFreshStatePerCall(t *testing.T) {
	rt, _, buf := newRuntime(t, DefaultConfig(), map[string]string{
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
	waitLog(t, buf, "hello hello.lua a b c from 2002 to 5005 in default counter 1")
	waitLog(t, buf, "hello hello.lua - - from 2002 to 5005 in default counter 1")
	waitLog(t, buf, "stream 1 sleep 1 ready true")
}
