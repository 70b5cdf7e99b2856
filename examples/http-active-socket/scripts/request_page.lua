-- requestPage: the seed's TestDirectChannels.testRequestPage. It sends "GET <page>" through the `web`
-- http channel (the same path a message published on http.request takes) and answers {page, body}.
local sb = require "switchboard"

sb.action{
  name = "requestPage",
  description = "I fetch a page through the web active socket",
  inputs = { page = { required = true } },
  outputExample = { page = "/", status = 200, body = "<!doctype html>..." },
  timeout = 6000,
  run = function(conn, params)
    local resp, err = sb.channel("web"):request("GET " .. params.page, 5000)
    if not resp then
      error("requestPage: " .. err, 0)
    end
    return { page = params.page, status = resp.status, body = resp.body }
  end,
}

-- Log what the channel does; sb.on listeners run for every channel.
sb.on("channel.up", function(name, info) sb.log.info("channel up", { channel = name, addr = info.addr }) end)
-- info.failed: a connection attempt failed (refused, unresolvable, no answer); these come at most every 5 s.
sb.on("channel.down", function(name, info)
  sb.log.warn("channel down", { channel = name, error = info.error, failed = info.failed })
end)
