-- The same menu as ../ivr.lua, written as a FreeSWITCH mod_lua script (flow "menu": socket path /menu).
-- Files in scripts/freeswitch/ run unmodified, top to bottom, with the globals session, freeswitch and argv,
-- and mod_lua's semantics: no error when the caller hangs up (session:ready() turns false), no hangup at
-- the end unless the script asks, the dialplan continues after the socket application.
session:answer()
local choice = session:playAndGetDigits(1, 1, 3, 5000, "#", "ivr/menu.wav", "ivr/invalid.wav", "[1-3]")
freeswitch.consoleLog("info", "menu: caller chose '" .. choice .. "'\n")
if choice == "1" then
  session:streamFile("ivr/sales.wav")
  session:execute("bridge", "user/1001")
elseif choice == "2" then
  session:streamFile("ivr/support.wav")
  session:setVariable("ivr_choice", "support")
  session:transfer("2000", "XML", "default")
elseif choice == "3" then
  session:say("42", "en", "number", "pronounced")
else
  session:streamFile("ivr/goodbye.wav")
end
if session:ready() then
  session:hangup()
end
