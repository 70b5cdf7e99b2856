-- A mod_lua-style voicemail: runs top to bottom with the globals session, freeswitch and argv, as FreeSWITCH's
-- `lua` application would run it. Here it is the flow "voicemail": point FreeSWITCH's socket at
-- 127.0.0.1:8084/voicemail/<mailbox> (argv[1] = mailbox) with "async full".
--
-- As in mod_lua, recordFile returns when the caller hangs up and the script goes on: the message is saved
-- after the hangup. Messages are listed in an SQLite database in esl.data_dir (freeswitch.Dbh) and in a
-- text log there (io.open is confined to esl.data_dir).

local mailbox = argv[1] or "1000"
local caller = session:getVariable("caller_id_number") or "unknown"
local uuid = session:get_uuid()

local dbh = freeswitch.Dbh("sqlite://voicemail")
dbh:query("CREATE TABLE IF NOT EXISTS messages (uuid TEXT, mailbox TEXT, caller TEXT, path TEXT, saved_at INTEGER)")

session:answer()
session:setVariable("voicemail_mailbox", mailbox)
session:streamFile("voicemail/vm-record_message.wav")
session:streamFile("tone_stream://%(500,0,800)")

local path = "/var/lib/freeswitch/recordings/" .. mailbox .. "/" .. uuid .. ".wav"
local recorded = session:recordFile(path, 120, 30, 5)
freeswitch.consoleLog("info", "voicemail: record returned " .. recorded .. ", ready " .. tostring(session:ready()) .. "\n")

-- Save whatever was recorded, whether the caller pressed a key or hung up.
dbh:query(string.format("INSERT INTO messages VALUES ('%s', '%s', '%s', '%s', %d)", uuid, mailbox, caller, path, os.time()))
freeswitch.consoleLog("notice", "voicemail: saved " .. dbh:affected_rows() .. " message for " .. mailbox .. " from " .. caller .. "\n")
local log = io.open("voicemail/" .. mailbox .. ".log", "a")
log:write(caller .. " " .. uuid .. "\n")
log:close()
dbh:release()

if session:ready() then
  session:streamFile("voicemail/vm-goodbye.wav")
  session:hangup()
end
