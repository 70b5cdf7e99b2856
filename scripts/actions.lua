-- The shipped socket actions: the ones of actionhero's example project (randomNumber, cacheTest, sleepTest) and
-- of its default project (status, createChatRoom), so the documented socket session (detailsView, randomNumber,
-- cacheTest, paramAdd, say...) and the official clients' own tests work out of the box.
-- Edit freely: `kill -HUP <pid>` (or POST /reload on the admin address) reloads every script.
local sb = require "switchboard"
local random = math.random

sb.action{
  name = "randomNumber",
  description = "I am an API method which will generate a random number",
  outputExample = { randomNumber = 0.123, stringRandomNumber = "Your random number is 0.123" },
  run = function() -- no arguments: the server then builds neither the conn object nor the params table
    -- a number converts to its shortest round-trip digits, the same digits the JSON reply shows
    local n = random()
    return { randomNumber = n, stringRandomNumber = "Your random number is " .. n }
  end,
}

local function atLeast3(v)
  if #tostring(v) < 3 then
    return "inputs should be at least 3 letters long"
  end
end

sb.action{
  name = "cacheTest",
  description = "I will test the internal cache functions of the API",
  inputs = {
    key = { required = true, validator = atLeast3 },
    value = { required = true, validator = atLeast3 },
  },
  outputExample = {
    cacheTestResults = {
      saveResp = true, sizeResp = 1,
      loadResp = { key = "cacheTest_key", value = "value", expireTimestamp = 1420953274716, createdAt = 1420953269716 },
      deleteResp = true,
    },
  },
  run = function(conn, params)
    local key = "cacheTest_" .. tostring(params.key)
    local saveResp, err = sb.cache.save(key, tostring(params.value), 5000)
    if not saveResp then
      return nil, err
    end
    local sizeResp = sb.cache.size()
    local _, info = sb.cache.load(key)
    local deleteResp = sb.cache.destroy(key)
    return {
      cacheTestResults = {
        saveResp = saveResp,
        sizeResp = sizeResp,
        loadResp = {
          key = info.key,
          value = info.value,
          expireTimestamp = info.expireTimestamp,
          createdAt = info.createdAt,
          lastReadAt = info.lastReadAt or sb.json.null, -- never read before: null, as actionhero answers
        },
        deleteResp = deleteResp,
      },
    }
  end,
}

sb.action{
  name = "sleepTest",
  description = "I will sleep and then return",
  inputs = {
    sleepDuration = { required = true, default = 1000 },
  },
  timeout = 65000, -- sleepDuration may be up to a minute
  run = function(conn, params)
    local sleepDuration = tonumber(params.sleepDuration)
    if sleepDuration == nil or sleepDuration < 0 or sleepDuration > 60000 then
      return nil, "sleepDuration must be a number of milliseconds from 0 to 60000"
    end
    local sleepStarted = sb.now()
    sb.sleep(sleepDuration)
    local sleepEnded = sb.now()
    return {
      sleepStarted = sleepStarted,
      sleepEnded = sleepEnded,
      sleepDelta = sleepEnded - sleepStarted,
      sleepDuration = sleepDuration,
    }
  end,
}

-- status: actionhero's default project's health check (v20 field order). A node is unhealthy past
-- maxMemoryMB of live heap; problems is always an array, [] when healthy. Switchboard has no event loop
-- to time and no resque queues, so eventLoopDelay and resqueTotalQueueLength are not reported.
local maxMemoryMB = 500

sb.action{
  name = "status",
  description = "I will return some basic information about the API",
  outputExample = {
    nodeStatus = "Node Healthy", problems = {}, id = "host:5000", actionheroVersion = "v1.0.0",
    uptime = 10469, name = "switchboard", description = "...", version = "v1.0.0", consumedMemoryMB = 12.34,
  },
  run = function()
    local server = sb.server()
    local consumedMemoryMB = math.floor(server.heapBytes / 1024 / 1024 * 100 + 0.5) / 100
    local problems = sb.json.array()
    if consumedMemoryMB > maxMemoryMB then
      problems[#problems + 1] = "Using more than " .. maxMemoryMB .. " MB of RAM/HEAP"
    end
    return {
      nodeStatus = #problems == 0 and "Node Healthy" or "Unhealthy",
      problems = problems,
      id = server.id,
      actionheroVersion = server.version,
      uptime = server.uptime,
      name = server.name,
      description = "Switchboard: an actionhero-compatible socket server, AMI relay and FreeSWITCH call control in one binary",
      version = server.version,
      consumedMemoryMB = consumedMemoryMB,
    }
  end,
}

-- createChatRoom: actionhero's default project's room creation (v20: didCreate 1, or the error
-- "room exists").
sb.action{
  name = "createChatRoom",
  description = "I will create a chatroom with the given name",
  inputs = { name = { required = true } },
  outputExample = { didCreate = 1 },
  run = function(conn, params)
    local ok, err = sb.rooms.add(tostring(params.name))
    if not ok then
      return nil, err
    end
    return { didCreate = 1 }
  end,
}
