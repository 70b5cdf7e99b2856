package luabind

import (
	"strings"
	"sync"
	"time"

	lua "github.com/yuin/gopher-lua"

	"github.com/switchboard/switchboard/internal/uuid"
)

// shared holds what every VM of a runtime can use without a copy of its own: the sandboxed standard
// libraries and the core module's Go functions, built once in a builder state that no script runs in.
//
// Why: a table entry costs gopher-lua three structures (its map, key list and key index) and a Go function
// value ~80 bytes, so a VM that opened its own libraries and module held ~65 KB before running any script.
// Sharing is safe because (1) these Go functions capture the runtime, never a VM, and get the calling state
// as their argument; (2) gopher-lua resolves globals from the calling function's environment, which is the
// VM's own _G; (3) scripts never get hold of a shared table: they see per-VM proxies ({} whose protected
// metatable's __index is the shared table and whose __newindex refuses writes inside handlers,
// isolation.go), and the shared string library has no __index field (gopher-lua sets string.__index =
// string, which made ("").__index the one table every VM shares).
type shared struct {
	builder *lua.LState

	base     *lua.LTable // sandboxed base functions, below every VM's top-level globals
	baseMeta *lua.LTable // metatable of each VM's top-level globals table
	libMeta  map[string]*lua.LTable
	guards   map[*lua.LFunction]string // the __newindex of each read-only proxy → the library's name

	mu    sync.Mutex // serialises builds (the builder state is not safe for concurrent use)
	parts sync.Map   // key → lua.LValue; read without the lock on every call
}

// proxyMeta returns {__index = t, __metatable = false}: scripts read through it and cannot reach t.
func proxyMeta(L *lua.LState, t *lua.LTable) *lua.LTable {
	m := L.CreateTable(0, 2)
	m.RawSetString("__index", t)
	m.RawSetString("__metatable", lua.LFalse)
	return m
}

// libProxyMeta is proxyMeta plus the write guard of library name.
func (s *shared) libProxyMeta(L *lua.LState, name string, t *lua.LTable) *lua.LTable {
	m := proxyMeta(L, t)
	guard := L.NewFunction(s.libWriteGuard(name))
	s.guards[guard] = libNames[name]
	m.RawSetString("__newindex", guard)
	s.libMeta[name] = m
	return m
}

func newShared(rt *Runtime) *shared {
	L := lua.NewState(lua.Options{SkipOpenLibs: true, CallStackSize: 16, RegistrySize: 256})
	s := &shared{builder: L, libMeta: map[string]*lua.LTable{}, guards: map[*lua.LFunction]string{}}
	for _, lib := range []struct {
		name string
		fn   lua.LGFunction
	}{{lua.BaseLibName, lua.OpenBase}, {lua.TabLibName, lua.OpenTable}, {lua.StringLibName, lua.OpenString}, {lua.MathLibName, lua.OpenMath}} {
		L.Push(L.NewFunction(lib.fn))
		L.Push(lua.LString(lib.name))
		L.Call(1, 0)
	}
	g := L.G.Global
	s.base = L.NewTable()
	g.ForEach(func(k, v lua.LValue) {
		if ks, ok := k.(lua.LString); ok && v.Type() == lua.LTFunction && !removed[string(ks)] {
			s.base.RawSetString(string(ks), v)
		}
	})
	s.base.RawSetString("_VERSION", g.RawGetString("_VERSION"))
	s.base.RawSetString("print", L.NewFunction(func(L *lua.LState) int {
		parts := make([]string, L.GetTop())
		size := 0
		for i := range parts {
			parts[i] = L.ToStringMeta(L.Get(i + 1)).String()
			if size += len(parts[i]) + 1; size > rt.cfg.MaxStringBytes { // print(unpack(t)) of big strings
				return Raise(L, "print: line would exceed lua.max_string_bytes (%d)", rt.cfg.MaxStringBytes)
			}
		}
		rt.log.WithField("script", strings.TrimSuffix(L.Where(1), ":")).Info(strings.Join(parts, "\t"))
		return 0
	}))
	s.baseMeta = proxyMeta(L, s.base)

	limitLibraries(L, rt.cfg.MaxStringBytes)
	s.limitTables(L)
	s.guardRawWrites(L)
	// The string library must not be reachable as ("").__index: each VM's string metatable points at its
	// own proxy (openSandbox).
	g.RawGetString("string").(*lua.LTable).RawSetString("__index", lua.LNil)
	for _, name := range []string{"string", "table", "math"} {
		s.libProxyMeta(L, name, g.RawGetString(name).(*lua.LTable))
	}

	core := L.NewTable()
	L.SetFuncs(core, map[string]lua.LGFunction{
		"publish": func(L *lua.LState) int { return sbPublish(L, rt) },
		"sleep":   sbSleep,
		"now":     func(L *lua.LState) int { L.Push(lua.LNumber(time.Now().UnixMilli())); return 1 },
		"uuid":    func(L *lua.LState) int { L.Push(lua.LString(uuid.New())); return 1 },
	})
	s.libProxyMeta(L, "switchboard", core)
	s.libProxyMeta(L, "log", logTable(L, rt))
	s.libProxyMeta(L, "cache", cacheTable(L, rt))
	s.libProxyMeta(L, "json", jsonTable(L))
	return s
}

// removed are base functions a script must not have: they reach the file system, load code that was not
// checked at load time, or change other functions' environments and the collector. require and print are
// replaced.
var removed = map[string]bool{
	"dofile": true, "loadfile": true, "load": true, "loadstring": true, "getfenv": true, "setfenv": true,
	"collectgarbage": true, "_printregs": true, "module": true, "newproxy": true, "require": true, "print": true,
}

// proxy returns a new empty table reading through the shared metatable named name.
func (s *shared) proxy(L *lua.LState, name string) *lua.LTable {
	t := L.CreateTable(0, 0)
	t.Metatable = s.libMeta[name]
	return t
}

// Shared returns the value built once per runtime under key (a part's metatable, a method table). build runs
// in the runtime's builder state; what it builds must not capture a VM (functions get the calling state as
// their argument, use VMOf(L) when they need the VM) and must not be handed to scripts as a table they could
// write to: use it as a metatable with __metatable set, or behind a proxy.
func (rt *Runtime) Shared(key string, build func(L *lua.LState) lua.LValue) lua.LValue {
	s := rt.shared
	if v, ok := s.parts.Load(key); ok {
		return v.(lua.LValue)
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if v, ok := s.parts.Load(key); ok { // built while we waited
		return v.(lua.LValue)
	}
	v := build(s.builder)
	s.parts.Store(key, v)
	return v
}

// VMOf returns the VM running in L (nil for a state the runtime did not make).
func VMOf(L *lua.LState) *VM {
	ud, ok := L.G.Registry.RawGetString(vmRegistryKey).(*lua.LUserData)
	if !ok {
		return nil
	}
	vm, _ := ud.Value.(*VM)
	return vm
}

const vmRegistryKey = "switchboard.vm"

func (s *shared) close() { s.builder.Close() }
