-- Sample IVR menu over FreeSWITCH's outbound event socket (see examples/ivr-menu).
-- Registered as flow "main" (esl.default_flow) and as "ivr" (socket data "host:8084/ivr async full").
-- Written as for mod_lua: paste-compatible session calls, blocking, DTMF through playAndGetDigits.
local sb = require "switchboard"

local function menu(session)
  session:setHangupHook(function(s, why)
    s:consoleLog("info", "ivr: caller left (" .. why .. ", " .. s:hangupCause() .. ")")
  end)
  session:answer()
  -- min, max, tries, timeout ms, terminators, prompt, invalid prompt, regexp (mod_lua order)
  local choice = session:playAndGetDigits(1, 1, 3, 5000, "#", "ivr/menu.wav", "ivr/invalid.wav", "[1-3]")
  if choice == "1" then
    session:streamFile("ivr/sales.wav")
    session:bridge("user/1001")
  elseif choice == "2" then
    session:streamFile("ivr/support.wav")
    session:setVariable("ivr_choice", "support")
    session:transfer("2000", "XML", "default")
    return
  elseif choice == "3" then
    session:say("42", "en", "number", "pronounced")
  else
    session:streamFile("ivr/goodbye.wav")
  end
  session:hangup()
end

sb.flow("main", menu)
sb.flow("ivr", menu)
