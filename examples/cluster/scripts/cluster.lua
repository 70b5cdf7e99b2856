-- A topic and a lock across the cluster. `shout` publishes on chat.shout; every engine's subscriber to
-- chat.* logs what it hears (the publishing engine's once, from its own bus; the others' through NATS).
-- `leader` takes a lock that one engine at a time can hold: the others get false until it expires.
local sb = require "switchboard"

sb.action{
  name = "shout",
  inputs = { text = { required = true } },
  run = function(conn, params)
    return { queued = sb.publish("chat.shout", params.text) }
  end,
}

sb.subscribe("chat.*", function(text, topic)
  sb.log.info("heard", { text = text, topic = topic })
end)

sb.action{
  name = "leader",
  run = function()
    local ok, err = sb.cache.lock("leader", 10000)
    return { leader = ok, error = err }
  end,
}
