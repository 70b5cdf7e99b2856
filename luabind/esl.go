package luabind

import lua "github.com/yuin/gopher-lua"

// openESL adds the esl part's functions to the switchboard module table.
func openESL(vm *VM, mod *lua.LTable) {}
