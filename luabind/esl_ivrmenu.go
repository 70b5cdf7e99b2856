package luabind

import lua "github.com/yuin/gopher-lua"

func newIVRMenu(L *lua.LState) int {
	L.RaiseError("freeswitch.IVRMenu is not available yet")
	return 0
}
