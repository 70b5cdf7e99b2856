-- FusionPBX-style logger: require "resources.functions.log".name gives name.info(...), name.warning(...).
return setmetatable({}, { __index = function(t, name)
  local l = {}
  for _, level in ipairs({ "debug", "info", "notice", "warning", "err" }) do
    l[level] = function(msg) freeswitch.consoleLog(level, "[" .. name .. "] " .. msg .. "\n") end
  end
  rawset(t, name, l)
  return l
end })
