-- Sets what the dialplan needs and hands the call back: with argv[1] == "transfer" it transfers the call;
-- otherwise it just returns and FreeSWITCH continues the dialplan after the socket application.
session:setVariable("after_hours", "true")
session:execute("set", "hold_music=local_stream://moh")
if argv[1] == "transfer" then
  local r = session:transfer("5001", "XML", "default")
  freeswitch.consoleLog("info", "after_hours: transfer returned " .. r .. ", ready " .. tostring(session:ready()) .. "\n")
end
freeswitch.consoleLog("info", "after_hours: done\n")
