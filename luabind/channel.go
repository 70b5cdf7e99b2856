package luabind

import lua "github.com/yuin/gopher-lua"

// openChannel adds the channel part's functions to the switchboard module table.
func openChannel(vm *VM, mod *lua.LTable) {}
