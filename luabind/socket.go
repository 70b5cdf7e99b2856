package luabind

import lua "github.com/yuin/gopher-lua"

// openSocket adds the socket part's functions to the switchboard module table.
func openSocket(vm *VM, mod *lua.LTable) {}
