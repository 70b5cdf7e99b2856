-- An API-style script (FreeSWITCH: `lua vm_count.lua 1000` from fs_cli or an API call): it answers
-- through stream:write, reads its request from env and argv.
local mailbox = argv[1] or "1000"
local dbh = freeswitch.Dbh("sqlite://voicemail")
local n = 0
dbh:query("SELECT count(*) AS n FROM messages WHERE mailbox = '" .. mailbox .. "'", function(row) n = tonumber(row.n) end)
stream:write("mailbox " .. mailbox .. ": " .. n .. " message(s)\n")
stream:write("request: " .. env:getHeader("API-Command") .. " " .. env:getHeader("API-Command-Argument") .. "\n")
dbh:release()
