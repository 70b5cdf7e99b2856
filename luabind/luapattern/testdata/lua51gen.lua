-- Generates lua51.txt, the reference answers of Lua 5.1's own string.find for random well-formed
-- patterns and subjects: `lua5.1 lua51gen.lua > lua51.txt` (Debian package lua5.1).
-- Each line: pattern TAB subject TAB init TAB result, every field escaped by esc below; result is
-- "nil", "ERR message" or "start,end[,capture...]" with string captures in quotes and positions bare.

math.randomseed(51)

local function esc(s)
  return (s:gsub("[^%w !#$&'()*+%-./:;<=>?@%[%]^_`{|}~]", function(c) return string.format("\\%03d", c:byte()) end))
end

local function pick(t) return t[math.random(#t)] end

local chars = { "a", "b", "c", "x", " ", "-", "(", ")", "]", "[", "%", "^", "$", ".", "1", "\n", "\t", "\200" }
local common = { "a", "a", "a", "b", "b", "c", " ", " ", "x", "1", "(", ")" }
local classes = { "%a", "%c", "%d", "%l", "%p", "%s", "%u", "%w", "%x", "%z", "%A", "%S", "%D", "%W", "%P" }
local escaped = { "%%", "%.", "%(", "%)", "%[", "%]", "%-", "%*", "%+", "%?", "%^", "%$", "%g", "%q" }

local function setElem()
  local r = math.random(9)
  if r <= 3 then
    local c = pick(chars)
    if c == "%" then c = "%%" end
    if c == "]" then c = "%]" end
    return c
  elseif r <= 5 then
    return pick({ "a", "b", "0", "x", " " }) .. "-" .. pick({ "c", "z", "9", "x", "~" })
  elseif r <= 7 then
    return pick(classes)
  elseif r == 8 then
    return pick(escaped)
  else
    return pick({ "-", "^", "[", ".", "(", ")" })
  end
end

local function set()
  local s = "["
  if math.random(4) == 1 then s = s .. "^" end
  if math.random(8) == 1 then s = s .. "]" end
  for _ = 1, math.random(3) do
    local e = setElem()
    if s == "[" and e == "^" then e = "%^" end -- a first '^' would negate the set instead
    s = s .. e
  end
  if math.random(8) == 1 then s = s .. "-" end
  return s .. "]"
end

local function single()
  local r = math.random(10)
  if r <= 4 then
    local c = pick(math.random(2) == 1 and chars or common)
    if c:match("[%%%(%)%[%]%.%^%$]") then c = "%" .. c end
    return c
  elseif r == 5 then
    return "."
  elseif r <= 7 then
    return pick(classes)
  elseif r == 8 then
    return pick(escaped)
  else
    return set()
  end
end

-- seq returns a pattern fragment and updates st (captures opened, closed list).
local seq
local function item(st, depth)
  local r = math.random(20)
  if r <= 11 then
    local q = ""
    local k = math.random(8)
    if k <= 4 then q = ({ "*", "+", "-", "?" })[k] end
    return single() .. q
  elseif r <= 13 and depth < 3 and st.n < 30 then
    st.n = st.n + 1
    local me = st.n
    local inner = seq(st, depth + 1, math.random(0, 3))
    st.closed[#st.closed + 1] = me
    return "(" .. inner .. ")"
  elseif r == 14 and st.n < 30 then
    st.n = st.n + 1
    st.pos[st.n] = true
    return "()"
  elseif r == 15 then
    return "%b" .. pick({ "()", "[]", "ab", "xx", "((" })
  elseif r == 16 then
    return "%f" .. set()
  elseif r == 17 and #st.closed > 0 then
    local n = pick(st.closed)
    if n <= 9 and not st.pos[n] then return "%" .. n end
    return "a"
  else
    return pick({ ".-", ".*", "%s*", "%w+", "a-", "x?" })
  end
end

seq = function(st, depth, n)
  local s = ""
  for _ = 1, n do s = s .. item(st, depth) end
  return s
end

local function pattern()
  local st = { n = 0, closed = {}, pos = {} }
  local p = seq(st, 0, math.random(1, 4))
  if math.random(5) == 1 then p = "^" .. p end
  if math.random(5) == 1 then p = p .. "$" end
  return p
end

local function subject()
  local s = {}
  for i = 1, math.random(0, 14) do
    if math.random(3) == 1 then s[i] = pick(chars) else s[i] = pick(common) end
  end
  return table.concat(s)
end

local function result(ok, ...)
  if not ok then return "ERR " .. tostring((...)) end
  if (...) == nil then return "nil" end
  local out = {}
  for i = 1, select("#", ...) do
    local v = select(i, ...)
    if type(v) == "string" then out[i] = '"' .. v .. '"' else out[i] = tostring(v) end
  end
  return table.concat(out, ",")
end

for _ = 1, 5000 do
  local p, s = pattern(), subject()
  local init = math.random(1, #s + 1)
  print(table.concat({ esc(p), esc(s), init, esc(result(pcall(string.find, s, p, init))) }, "\t"))
end
