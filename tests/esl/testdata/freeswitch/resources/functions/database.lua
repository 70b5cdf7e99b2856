-- FusionPBX-style database helper: Database.new(name) opens the DSN named in config.lua and binds :params.
local Database = {}
Database.__index = Database

local function quote(v)
  return "'" .. tostring(v):gsub("'", "''") .. "'"
end

function Database.new(name)
  local dsn = database[name]
  assert(dsn, "no database named " .. tostring(name) .. " in resources/functions/config.lua")
  local self = setmetatable({ dbh = freeswitch.Dbh(dsn) }, Database)
  assert(self.dbh:connected(), "database " .. name .. " is not connected")
  return self
end

function Database:query(sql, params, fn)
  if type(params) == "function" then fn, params = params, nil end
  if params then
    sql = sql:gsub(":(%w+)", function(k)
      if params[k] == nil then return ":" .. k end
      return quote(params[k])
    end)
  end
  return self.dbh:query(sql, fn)
end

function Database:release()
  self.dbh:release()
end

return Database
