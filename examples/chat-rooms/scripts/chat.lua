-- Chat rooms: everyone starts in the lobby, picks a nick, and every message is signed with it.
local sb = require "switchboard"

sb.on("socket.connect", function(conn)
  conn:roomAdd("lobby")
  conn:send{ chat = "you are in the lobby; nick <name> to pick a name, say <room> <text> to talk" }
end)

-- nick <name>: stored as a connection param, so detailsView shows it too.
sb.verb("nick", function(conn, args)
  if args == "" or #args > 20 or args:find("%s") then
    return nil, "a nick is 1 to 20 characters without spaces"
  end
  conn:setParam("nick", args)
  return args
end)

-- Sign every message with the sender's nick; refuse floods of text.
sb.on("socket.say", function(conn, room, text)
  if #text > 500 then
    return false
  end
  return (conn:param("nick") or "anonymous") .. ": " .. text
end)
