package socketlua

import (
	"strings"
	"testing"

	"github.com/switchboard/switchboard/luabind"
	"github.com/switchboard/switchboard/luabind/luabindtest"
)

// Registration mistakes are load errors naming the script line, like sb.action's.
func TestRoomsRegistrationErrors(t *testing.T) {
	for _, tc := range []struct{ src, want string }{
		{`sb.rooms.middleware{ join = function() end }`, "scripts/a.lua:2: sb.rooms.middleware: name must be a non-empty string"},
		{`sb.rooms.middleware{ name = "m", onSay = function() end }`, "scripts/a.lua:2: sb.rooms.middleware m: unknown field onSay (expected name, priority, join, leave, onSayReceive, say)"},
		{`sb.rooms.middleware{ name = "m" }`, "scripts/a.lua:2: sb.rooms.middleware m: no hook: set at least one of join, leave, onSayReceive, say"},
		{`sb.rooms.middleware{ name = "m", join = "no" }`, "scripts/a.lua:2: sb.rooms.middleware m: join must be a function"},
		{`sb.rooms.middleware{ name = "m", priority = "high", join = function() end }`, "scripts/a.lua:2: sb.rooms.middleware m: priority must be a number"},
		{"sb.rooms.middleware{ name = \"m\", join = function() end }\nsb.rooms.middleware{ name = \"m\", join = function() end }",
			`scripts/a.lua:3: sb.rooms.middleware: socket.rooms.join "m" is already registered at scripts/a.lua:2`},
		{"sb.rooms.generateMemberDetails(function() end)\nsb.rooms.generateMemberDetails(function() end)",
			`scripts/a.lua:3: sb.rooms.generateMemberDetails: set twice (first at scripts/a.lua:2); there is one of it`},
		{`sb.on("x", function() sb.rooms.middleware{ name = "late", join = function() end } end) sb.rooms.x = 1`, "scripts/a.lua:2: sb.rooms is read-only"},
	} {
		errs := luabindtest.Check(t, luabind.DefaultConfig(), map[string]string{"a.lua": "local sb = require 'switchboard'\n" + tc.src}, New(nil))
		if len(errs) != 1 || errs[0].Error() != tc.want+" (event load)" {
			t.Errorf("%s:\n got %v\nwant %s", tc.src, errs, tc.want)
		}
	}
}

// Without a socket server (socket.enabled false, switchboard check) the functions that need one say so.
func TestRoomsWithoutServer(t *testing.T) {
	rt, _, _ := newRuntime(t, luabind.DefaultConfig(), map[string]string{"a.lua": `
local sb = require "switchboard"
sb.on("try", function()
  local out = {}
  for _, f in ipairs({ function() return sb.rooms.add("r") end, function() return sb.connections.count() end, sb.server }) do
    local ok, err = pcall(f)
    out[#out + 1] = tostring(err)
  end
  return table.concat(out, "|")
end)`})
	got, err := luabindtest.CallString(t, rt.Current(), "on", "try", "")
	want := []string{
		"sb.rooms.add: the socket server is not running (socket.enabled is false)",
		"sb.connections.count: the socket server is not running (socket.enabled is false)",
		"sb.server: the socket server is not running (socket.enabled is false)",
	}
	parts := strings.Split(got, "|")
	if err != nil || len(parts) != 3 {
		t.Fatalf("%q %v", got, err)
	}
	for i, w := range want {
		if !strings.HasSuffix(parts[i], w) {
			t.Errorf("got %q, want ...%s", parts[i], w)
		}
	}
}
