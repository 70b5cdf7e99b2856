-- A message player with an input callback, as mod_lua scripts write it: the callback is named by a global,
-- its argument too. 6 skips ahead, 4 back, 5 pauses, * stops the message, # ends it; an event queued to
-- the channel with action=stop ends it too.
function on_input(s, kind, obj, arg)
  if kind == "dtmf" then
    freeswitch.consoleLog("info", "player: key " .. obj.digit .. " during " .. arg.name .. "\n")
    if obj.digit == "6" then return "seek:+3000" end
    if obj.digit == "4" then return "seek:-3000" end
    if obj.digit == "5" then return "pause" end
    if obj.digit == "*" then return "stop" end
    if obj.digit == "#" then return "break" end
  elseif kind == "event" then
    freeswitch.consoleLog("info", "player: event " .. obj:getHeader("Event-Name") .. " action " .. tostring(obj:getHeader("action")) .. "\n")
    if obj:getHeader("action") == "stop" then return "break" end
  end
end

player = { name = "message 1" }
session:answer()
session:setInputCallback("on_input", "player")
local first = session:streamFile("voicemail/msg-0001.wav")
player.name = "message 2"
local second = session:streamFile("voicemail/msg-0002.wav")
player.name = "message 3"
local third = session:streamFile("voicemail/msg-0003.wav")
session:unsetInputCallback()
freeswitch.consoleLog("info", "player: results " .. first .. " " .. second .. " " .. third .. "\n")
session:hangup()
