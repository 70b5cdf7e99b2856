package luabind

import (
	"strings"

	lua "github.com/yuin/gopher-lua"
)

// openSandbox gives a new state its globals (isolation.go): an empty _G whose metatable leads to the
// globals of the scripts' top levels and, below them, the shared sandboxed base functions; per-VM read-only
// proxies of string, table and math; a string metatable of its own; and require. design.md §3 lists what the
// sandbox removes; removed (shared.go) is that list.
func openSandbox(vm *VM) {
	L := vm.L
	s := vm.rt.shared
	openGlobals(vm)
	strProxy := s.proxy(L, "string")
	for name, lib := range map[string]*lua.LTable{"string": strProxy, "table": s.proxy(L, "table"), "math": s.proxy(L, "math")} {
		vm.top.RawSetString(name, lib)
	}
	// Each VM has its own string metatable: ("").__index is this VM's read-only string proxy, never the
	// shared library table.
	strMeta := L.CreateTable(0, 2)
	strMeta.RawSetString("__index", strProxy)
	strMeta.RawSetString("__metatable", lua.LFalse)
	L.SetMetatable(lua.LString(""), strMeta)
	vm.top.RawSetString("require", L.NewFunction(vm.require))
	ud := L.NewUserData()
	ud.Value = vm
	L.G.Registry.RawSetString(vmRegistryKey, ud)
}

// limitLibraries caps, in the builder state's libraries, what could build a huge value or run unbounded in
// one call (strlib.go), and removes what scripts must not have.
func limitLibraries(L *lua.LState, maxStr int) {
	openStrlib(L, maxStr)
	math := L.GetGlobal("math").(*lua.LTable)
	math.RawSetString("randomseed", lua.LNil) // would reseed the process-wide generator
}

// require gives the switchboard module and modules under scripts/lib; nothing from outside scripts/.
func (vm *VM) require(L *lua.LState) int {
	name := L.CheckString(1)
	if name == "switchboard" {
		L.Push(vm.mod)
		return 1
	}
	if v, ok := vm.modules[name]; ok {
		L.Push(v)
		return 1
	}
	rel := strings.ReplaceAll(name, ".", "/") + ".lua"
	for _, s := range vm.gen.scripts {
		if s.Path != rel {
			continue
		}
		if !s.Module {
			return Raise(L, "module %q: only files under %s/lib can be required (scripts outside lib/ run at load)", name, vm.rt.display)
		}
		vm.modules[name] = lua.LTrue // a module that requires itself sees true, as in Lua
		L.Push(L.NewFunctionFromProto(s.Proto))
		L.Call(0, 1)
		v := L.Get(-1)
		if v == lua.LNil {
			v = lua.LTrue
		}
		vm.modules[name] = v
		L.Push(v)
		return 1
	}
	return Raise(L, "module %q not found: require gives \"switchboard\" and files under %s/lib (e.g. require \"lib.util\")", name, vm.rt.display)
}
