package luabind

import (
	"regexp"
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

// limitLibraries caps, in the builder state's libraries, what could build a huge value in one call.
func limitLibraries(L *lua.LState, maxStr int) {
	str := L.GetGlobal("string").(*lua.LTable)
	str.RawSetString("dump", lua.LNil)
	str.RawSetString("rep", L.NewFunction(func(L *lua.LState) int {
		s := L.CheckString(1)
		n := L.CheckInt64(2)
		if n <= 0 || s == "" {
			L.Push(lua.LString(""))
			return 1
		}
		if n > int64(maxStr) || int64(len(s))*n > int64(maxStr) {
			return raise(L, "string.rep: result of %d bytes exceeds lua.max_string_bytes (%d)", int64(len(s))*n, maxStr)
		}
		L.Push(lua.LString(strings.Repeat(s, int(n))))
		return 1
	}))
	format := str.RawGetString("format").(*lua.LFunction)
	str.RawSetString("format", L.NewFunction(func(L *lua.LState) int {
		if m := hugeWidth.FindString(L.CheckString(1)); m != "" {
			return raise(L, "string.format: width or precision in %q is too large", m)
		}
		top := L.GetTop()
		L.Push(format)
		for i := 1; i <= top; i++ {
			L.Push(L.Get(i))
		}
		L.Call(top, 1)
		return 1
	}))
	math := L.GetGlobal("math").(*lua.LTable)
	math.RawSetString("randomseed", lua.LNil) // would reseed the process-wide generator

	tbl := L.GetGlobal("table").(*lua.LTable)
	tbl.RawSetString("concat", L.NewFunction(func(L *lua.LState) int { return tableConcat(L, maxStr) }))
}

var hugeWidth = regexp.MustCompile(`%[-+ #0]*(\d{4,}|\d*\.\d{4,})`)

// tableConcat is table.concat with the size of the result checked before it is built.
func tableConcat(L *lua.LState, max int) int {
	t := L.CheckTable(1)
	sep := L.OptString(2, "")
	i := L.OptInt(3, 1)
	j := L.OptInt(4, t.Len())
	if i > j {
		L.Push(lua.LString(""))
		return 1
	}
	size := 0
	parts := make([]string, 0, j-i+1)
	for k := i; k <= j; k++ {
		v := t.RawGetInt(k)
		switch v.Type() {
		case lua.LTString, lua.LTNumber:
		default:
			return raise(L, "invalid value (at index %d) in table for 'concat'", k)
		}
		s := v.String()
		size += len(s) + len(sep)
		if size > max {
			return raise(L, "table.concat: result exceeds lua.max_string_bytes (%d)", max)
		}
		parts = append(parts, s)
	}
	L.Push(lua.LString(strings.Join(parts, sep)))
	return 1
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
		if s.rel != rel {
			continue
		}
		if !s.module {
			return raise(L, "module %q: only files under %s/lib can be required (scripts outside lib/ run at load)", name, vm.rt.display)
		}
		vm.modules[name] = lua.LTrue // a module that requires itself sees true, as in Lua
		L.Push(L.NewFunctionFromProto(s.proto))
		L.Call(0, 1)
		v := L.Get(-1)
		if v == lua.LNil {
			v = lua.LTrue
		}
		vm.modules[name] = v
		L.Push(v)
		return 1
	}
	return raise(L, "module %q not found: require gives \"switchboard\" and files under %s/lib (e.g. require \"lib.util\")", name, vm.rt.display)
}
