-- FusionPBX-style IVR menu: configuration and helpers come from resources/functions through require,
-- the menu and its options from the database (Dbh), parameters are bound by the helper.
require "resources.functions.config"
local Database = require "resources.functions.database"
local log = require "resources.functions.log".ivr_menu

if not session:ready() then return end

local destination_number = session:getVariable("destination_number")
local domain_name = session:getVariable("domain_name") or "default"
local dbh = Database.new("system")

local menu
dbh:query("SELECT * FROM v_ivr_menus WHERE ivr_menu_extension = :ext AND domain_name = :domain",
  {ext = destination_number, domain = domain_name}, function(row) menu = row end)
if not menu then
  log.warning("no IVR menu for " .. destination_number .. "@" .. domain_name)
  return
end
log.notice("menu " .. menu.ivr_menu_name .. " for " .. session:getVariable("caller_id_number"))

session:answer()
session:sleep(menu.ivr_menu_delay) -- a numeric string from the database, as mod_lua accepts it
local digits = session:playAndGetDigits(1, menu.ivr_menu_digit_len, 3, menu.ivr_menu_timeout, "#",
  menu.ivr_menu_greet_long, menu.ivr_menu_invalid_sound, "")
log.info("caller chose '" .. digits .. "'")

local option
dbh:query("SELECT * FROM v_ivr_menu_options WHERE ivr_menu_uuid = :uuid AND ivr_menu_option_digits = :digits",
  {uuid = menu.ivr_menu_uuid, digits = digits}, function(row) option = row end)
-- a macro-style check: the digits the menu consumed must not come back
local again = session:getDigits(1, "", 100)
log.info("left over: '" .. again .. "'")
dbh:release()

if option then
  log.info("option " .. digits .. ": " .. option.ivr_menu_option_action .. " " .. option.ivr_menu_option_param)
  session:execute(option.ivr_menu_option_action, option.ivr_menu_option_param)
else
  session:streamFile(menu.ivr_menu_exit_sound)
  session:hangup("NORMAL_CLEARING")
end
