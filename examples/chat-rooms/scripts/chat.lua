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

-- Announce arrivals and departures in every room but the lobby: the server speaks ("from":0), as
-- actionhero's chat middleware does. The hook runs before the change, so the newcomer does not hear its own
-- arrival and the leaver hears its own departure.
local function announce(conn, room, what)
  if room ~= "lobby" then
    sb.rooms.broadcast(room, (conn:param("nick") or "anonymous") .. " " .. what)
  end
end
sb.rooms.middleware{
  name = "announce",
  join = function(conn, room) announce(conn, room, "joined") end,
  leave = function(conn, room) announce(conn, room, "left") end,
}

-- rooms: the open rooms (the first 100, by name).
sb.verb("rooms", function(conn, args)
  local names = sb.rooms.list(0, 100)
  return names
end)
