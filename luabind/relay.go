package luabind

import lua "github.com/yuin/gopher-lua"

// openRelay adds the relay part's functions to the switchboard module table.
func openRelay(vm *VM, mod *lua.LTable) {}
