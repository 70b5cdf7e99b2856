package luabind

import (
	lua "github.com/yuin/gopher-lua"
)

// Isolation (docs/lua-api.md): what one handler invocation does to globals or to the tables every request
// reaches must not be seen by another request.
//
//   - _G is always empty. Its metatable (vm.gmeta) sends reads to vm.top, the globals the scripts' top
//     levels defined, which falls through to the shared base functions, and writes to setGlobal. The first
//     write of an invocation creates its scratch table and puts it in front of vm.top for reads. While
//     scripts load, _G reads and writes vm.top.
//   - When an invocation ends, its scratch table, if it has one, is dropped (OpenResty's per-request
//     globals), and a VM whose _G was written raw (rawset(_G, ...), table.insert(_G, ...)) is discarded.
//   - Library tables (string, table, math) and the switchboard module tables (sb, sb.log, sb.cache,
//     sb.json) are per-VM proxies that are writable at a script's top level (the common
//     `function string.trim(s) ... end`) and raise inside handlers.

// openGlobals builds the VM's global tables; vm.top receives what a script's top level defines.
func openGlobals(vm *VM) {
	L := vm.L
	s := vm.rt.shared
	g := L.G.Global
	vm.top = L.CreateTable(0, 8)
	vm.top.Metatable = s.baseMeta
	vm.top.RawSetString("_G", g)
	vm.gmeta = L.CreateTable(0, 3)
	vm.gmeta.RawSetString("__index", vm.top)
	vm.gmeta.RawSetString("__newindex", vm.top)
	vm.gmeta.RawSetString("__metatable", lua.LFalse)
	g.Metatable = vm.gmeta
}

// endLoading switches _G from the top-level globals to per-invocation scratch tables.
func (vm *VM) endLoading() {
	L := vm.L
	g := L.G.Global
	// A top level that wrote _G raw (rawset) defined globals like any other: move them to vm.top.
	var keys []lua.LValue
	for k, v := g.Next(lua.LNil); k != lua.LNil; k, v = g.Next(k) {
		vm.top.RawSet(k, v)
		keys = append(keys, k)
	}
	for _, k := range keys {
		g.RawSet(k, lua.LNil)
	}
	vm.gmeta.RawSetString("__newindex", L.NewFunction(vm.setGlobal))
}

// setGlobal is _G's __newindex inside handlers: the value lives until the invocation ends. Most invocations
// write no global, so the scratch table is made on the first write (and its metatable on the VM's first):
// a VM waiting between invocations, or a call flow parked in one that wrote none, holds neither.
func (vm *VM) setGlobal(L *lua.LState) int {
	if vm.scratch == nil {
		if vm.scratchMeta == nil {
			vm.scratchMeta = L.CreateTable(0, 2)
			vm.scratchMeta.RawSetString("__index", vm.top)
			vm.scratchMeta.RawSetString("__metatable", lua.LFalse)
		}
		// Sized for a few globals: a table made empty takes a 32-entry map at its first string key.
		vm.scratch = L.CreateTable(0, 4)
		vm.scratch.Metatable = vm.scratchMeta
		vm.gmeta.RawSetString("__index", vm.scratch)
	}
	vm.scratch.RawSet(L.Get(2), L.Get(3))
	return 0
}

// endInvocation drops what the finished invocation wrote to globals.
func (vm *VM) endInvocation() {
	if vm.scratch != nil {
		vm.scratch = nil
		vm.gmeta.RawSetString("__index", vm.top)
	}
	if k, _ := vm.L.G.Global.Next(lua.LNil); k != lua.LNil {
		vm.dead.Store(true) // _G written raw: the next request must not see it
	}
}

// libNames are how errors name the library proxies.
var libNames = map[string]string{
	"string": "string", "table": "table", "math": "math", "switchboard": "the switchboard module",
	"log": "sb.log", "cache": "sb.cache", "json": "sb.json",
}

// libWriteGuard is the __newindex of the proxies of library table name: at a script's top level the value
// goes to the VM's own extension table (created on the first write), inside a handler it is refused.
func (s *shared) libWriteGuard(name string) lua.LGFunction {
	display := libNames[name]
	return func(L *lua.LState) int {
		proxy := L.CheckTable(1)
		key, val := L.Get(2), L.Get(3)
		vm := VMOf(L)
		if vm == nil || !vm.loading && !vm.private {
			return Raise(L, "%s is read-only inside handlers (it is shared by every request this VM serves): "+
				"set %s at the top level of a script", display, key.String())
		}
		if key == lua.LNil {
			return Raise(L, "table index is nil")
		}
		meta, _ := proxy.Metatable.(*lua.LTable)
		if meta == nil {
			return Raise(L, "%s: not a library proxy", display)
		}
		ext, _ := meta.RawGetString("__index").(*lua.LTable)
		if meta == s.libMeta[name] {
			// First extension of this library in this VM: put a table of its own between the proxy and the
			// shared library.
			ext = L.CreateTable(0, 4)
			ext.Metatable = meta
			own := L.CreateTable(0, 3)
			own.RawSetString("__index", ext)
			own.RawSetString("__newindex", meta.RawGetString("__newindex"))
			own.RawSetString("__metatable", lua.LFalse)
			proxy.Metatable = own
		}
		ext.RawSet(key, val)
		return 0
	}
}

// readOnlyProxy returns an empty table reading through to inner and writing through the guard of name
// (the proxy of a per-VM table such as the switchboard module).
func (s *shared) readOnlyProxy(L *lua.LState, name string, inner *lua.LTable) *lua.LTable {
	meta := L.CreateTable(0, 3)
	meta.RawSetString("__index", inner)
	meta.RawSetString("__newindex", s.libMeta[name].RawGetString("__newindex"))
	meta.RawSetString("__metatable", lua.LFalse)
	p := L.CreateTable(0, 0)
	p.Metatable = meta
	return p
}

// readOnlyName names the library t is a read-only proxy of, or "" for any other table.
func (s *shared) readOnlyName(t *lua.LTable) string {
	meta, ok := t.Metatable.(*lua.LTable)
	if !ok {
		return ""
	}
	fn, ok := meta.RawGetString("__newindex").(*lua.LFunction)
	if !ok {
		return ""
	}
	return s.guards[fn]
}

// guardRawWrites makes the functions that write tables raw (rawset, table.remove, table.sort; table.insert
// in limitTables) refuse the read-only proxies, which __newindex alone cannot protect.
func (s *shared) guardRawWrites(L *lua.LState) {
	guard := func(name string, orig lua.LValue) *lua.LFunction {
		return L.NewFunction(func(L *lua.LState) int {
			if t, ok := L.Get(1).(*lua.LTable); ok && t.Metatable != lua.LNil {
				if lib := s.readOnlyName(t); lib != "" {
					return Raise(L, "%s: %s is read-only (assign %s fields at the top level of a script)", name, lib, lib)
				}
			}
			top := L.GetTop()
			L.Push(orig)
			for i := 1; i <= top; i++ {
				L.Push(L.Get(i))
			}
			L.Call(top, lua.MultRet)
			return L.GetTop() - top
		})
	}
	s.base.RawSetString("rawset", guard("rawset", s.base.RawGetString("rawset")))
	tbl := L.GetGlobal("table").(*lua.LTable)
	for _, name := range []string{"remove", "sort"} {
		tbl.RawSetString(name, guard("table."+name, tbl.RawGetString(name)))
	}
}
