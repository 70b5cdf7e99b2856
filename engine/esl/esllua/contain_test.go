package esllua

import (
	"testing"

	"github.com/switchboard/switchboard/engine/esl/esltest"
	"github.com/switchboard/switchboard/luabind"
)

// Item 5 for call flows: a flow's globals are not seen by the next call, even on the same VM.
func TestFlowGlobalsArePerCall(t *testing.T) {
	cfg := luabind.DefaultConfig()
	cfg.PoolSize = 1
	rt, _, buf := newRuntime(t, cfg, map[string]string{"flows.lua": `
local sb = require "switchboard"
function onHangup(s, why) s:consoleLog("info", "hook sees secret=" .. tostring(secret)) end
sb.flow("a", function(session)
  secret = session.uuid
  session:setHangupHook("onHangup")
  session:answer()
  session:consoleLog("info", "a set secret=" .. secret)
end)
sb.flow("b", function(session)
  session:answer()
  session:consoleLog("info", "b reads secret=" .. tostring(secret))
end)
`}, nil)
	addr := eslServer(t, rt, buf)
	playCall(t, esltest.Call{Addr: addr, Path: "a", UUID: "caller-a", Async: true, Full: true})
	buf.WaitLog(t, "a set secret=caller-a")
	buf.WaitLog(t, "hook sees secret=caller-a")
	playCall(t, esltest.Call{Addr: addr, Path: "b", UUID: "caller-b", Async: true, Full: true})
	buf.WaitLog(t, "b reads secret=nil")
}
