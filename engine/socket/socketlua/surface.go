package socketlua

import (
	"math"
	"runtime/metrics"
	"strings"

	lua "github.com/yuin/gopher-lua"

	"github.com/switchboard/switchboard/engine/socket"
	"github.com/switchboard/switchboard/internal/buildinfo"
	"github.com/switchboard/switchboard/luabind"
)

// MaxPage is the most items one call of sb.rooms.list, sb.rooms.members and sb.connections.list returns
// (each is a short string or a connection object: at most some hundred KB per call); scripts page on with
// offset.
const MaxPage = 1000

// defaultPage is what those calls return without a limit.
const defaultPage = 100

// openSurface adds sb.rooms, sb.connections and sb.server to a VM's module: per-VM read-only proxies of
// tables built once per runtime.
func (b *Binding) openSurface(vm *luabind.VM, mod *lua.LTable) {
	L := vm.L
	rt := vm.Runtime()
	mod.RawSetString("rooms", proxyOf(L, rt, "sb.rooms", b.roomsFuncs()))
	mod.RawSetString("connections", proxyOf(L, rt, "sb.connections", b.connectionsFuncs()))
	mod.RawSetString("server", rt.Shared("socket.sb.server", func(B *lua.LState) lua.LValue {
		return B.NewFunction(b.sbServer)
	}))
}

// proxyOf returns an empty table that reads through to a table of functions shared by the runtime's VMs
// and refuses writes.
func proxyOf(L *lua.LState, rt *luabind.Runtime, name string, fns map[string]lua.LGFunction) *lua.LTable {
	t := L.CreateTable(0, 0)
	t.Metatable = rt.Shared("socket.meta."+name, func(B *lua.LState) lua.LValue {
		lib := B.SetFuncs(B.NewTable(), fns)
		mt := B.NewTable()
		mt.RawSetString("__metatable", lua.LFalse)
		mt.RawSetString("__index", lib)
		mt.RawSetString("__newindex", B.NewFunction(func(L *lua.LState) int {
			return luabind.Raise(L, "%s is read-only", name)
		}))
		return mt
	})
	return t
}

// server returns the socket server, or raises for a function that needs it when the part is not running.
func (b *Binding) server(L *lua.LState, fn string) *socket.Server {
	if b.srv == nil {
		luabind.Raise(L, "%s: the socket server is not running (socket.enabled is false)", fn)
	}
	return b.srv
}

// pushPage pushes a page of items as a JSON array (each converted by conv) and the total they are a page of:
// the two results of sb.rooms.list and sb.connections.list.
func pushPage[T any](L *lua.LState, items []T, total int, conv func(T) lua.LValue) int {
	t := L.CreateTable(len(items), 0)
	for i, it := range items {
		t.RawSetInt(i+1, conv(it))
	}
	luabind.MarkArray(L, t)
	L.Push(t)
	L.Push(lua.LNumber(total))
	return 2
}

// page reads the optional offset and limit arguments at positions i and i+1.
func page(L *lua.LState, i int, fn string) (offset, limit int) {
	o, l := L.OptNumber(i, 0), L.OptNumber(i+1, defaultPage)
	if o < 0 || o != lua.LNumber(math.Trunc(float64(o))) || l < 0 || l != lua.LNumber(math.Trunc(float64(l))) {
		luabind.Raise(L, "%s: offset and limit must be whole numbers from 0", fn)
	}
	return int(min(o, math.MaxInt32)), int(min(l, MaxPage))
}

func (b *Binding) roomsFuncs() map[string]lua.LGFunction {
	return map[string]lua.LGFunction{
		"add": func(L *lua.LState) int {
			s := b.server(L, "sb.rooms.add")
			return okOrErr(L, s.CreateRoom(L.Context(), L.CheckString(1)))
		},
		"destroy": func(L *lua.LState) int {
			s := b.server(L, "sb.rooms.destroy")
			return okOrErr(L, s.DestroyRoom(L.Context(), L.CheckString(1)))
		},
		"exists": func(L *lua.LState) int {
			s := b.server(L, "sb.rooms.exists")
			ok, err := s.RoomExists(L.Context(), L.CheckString(1))
			if err != nil {
				return okOrErr(L, err)
			}
			L.Push(lua.LBool(ok))
			return 1
		},
		"list": func(L *lua.LState) int {
			s := b.server(L, "sb.rooms.list")
			offset, limit := page(L, 1, "sb.rooms.list")
			names, total, err := s.RoomNames(L.Context(), offset, limit)
			if err != nil {
				return okOrErr(L, err)
			}
			return pushPage(L, names, total, func(n string) lua.LValue { return lua.LString(n) })
		},
		"members": func(L *lua.LState) int {
			s := b.server(L, "sb.rooms.members")
			room := L.CheckString(1)
			offset, limit := page(L, 2, "sb.rooms.members")
			st, err := s.RoomStatus(L.Context(), room, offset, limit)
			if err != nil {
				return okOrErr(L, err)
			}
			L.Push(goToLua(L, st, 0))
			return 1
		},
		"addMember": func(L *lua.LState) int {
			s := b.server(L, "sb.rooms.addMember")
			return okOrErr(L, s.AddMember(L.Context(), L.CheckString(1), L.CheckString(2)))
		},
		"removeMember": func(L *lua.LState) int {
			s := b.server(L, "sb.rooms.removeMember")
			return okOrErr(L, s.RemoveMember(L.Context(), L.CheckString(1), L.CheckString(2)))
		},
		"broadcast": func(L *lua.LState) int {
			s := b.server(L, "sb.rooms.broadcast")
			room := L.CheckString(1)
			bud := luabind.BudgetFor(L)
			msg, err := orderedFromLua(L.Get(2), 0, &bud)
			if err != nil {
				return okOrErr(L, err)
			}
			return okOrErr(L, s.Broadcast(L.Context(), room, msg))
		},
		"middleware":             sbMiddleware,
		"generateMemberDetails":  registerOne(kindDetails, "sb.rooms.generateMemberDetails"),
		"sanitizeMemberDetails":  registerOne(kindSanitize, "sb.rooms.sanitizeMemberDetails"),
		"generateMessagePayload": registerOne(kindPayload, "sb.rooms.generateMessagePayload"),
	}
}

// sb.rooms.middleware{ name=, priority=, join=, leave=, onSayReceive=, say= } (actionhero's
// chatRoom.addMiddleware).
func sbMiddleware(L *lua.LState) int {
	vm := luabind.VMOf(L)
	spec := L.CheckTable(1)
	name, ok := spec.RawGetString("name").(lua.LString)
	if !ok || name == "" {
		return luabind.Raise(L, "sb.rooms.middleware: name must be a non-empty string")
	}
	meta := middlewareMeta{priority: defaultPriority}
	switch p := spec.RawGetString("priority").(type) {
	case lua.LNumber:
		if p != 0 { // actionhero: no priority or 0 is the default
			meta.priority = float64(p)
		}
	case *lua.LNilType:
	default:
		return luabind.Raise(L, "sb.rooms.middleware %s: priority must be a number", name)
	}
	var bad string
	hooks := 0
	spec.ForEach(func(k, v lua.LValue) {
		key, _ := k.(lua.LString)
		if key == "name" || key == "priority" || bad != "" {
			return
		}
		if _, ok := middlewareKinds[string(key)]; !ok {
			bad = "unknown field " + k.String() + " (expected name, priority, join, leave, onSayReceive, say)"
			return
		}
		if _, ok := v.(*lua.LFunction); !ok {
			bad = string(key) + " must be a function"
			return
		}
		hooks++
	})
	if bad == "" && hooks == 0 {
		bad = "no hook: set at least one of join, leave, onSayReceive, say"
	}
	if bad != "" {
		return luabind.Raise(L, "sb.rooms.middleware %s: %s", name, bad)
	}
	for _, field := range []string{"join", "leave", "onSayReceive", "say"} {
		fn, ok := spec.RawGetString(field).(*lua.LFunction)
		if !ok {
			continue
		}
		if _, err := vm.Register(middlewareKinds[field], string(name), fn, meta); err != nil {
			return luabind.Raise(L, "sb.rooms.middleware: %v", err)
		}
	}
	return 0
}

// registerOne registers the one function of a kind (a second registration is an error naming the first).
func registerOne(kind, fn string) lua.LGFunction {
	return func(L *lua.LState) int {
		f := L.CheckFunction(1)
		if _, err := luabind.VMOf(L).Register(kind, "", f, nil); err != nil {
			if _, first, twice := strings.Cut(err.Error(), " is already registered at "); twice {
				return luabind.Raise(L, "%s: set twice (first at %s); there is one of it", fn, first)
			}
			return luabind.Raise(L, "%s: %v", fn, err)
		}
		return 0
	}
}

func (b *Binding) connectionsFuncs() map[string]lua.LGFunction {
	return map[string]lua.LGFunction{
		"list": func(L *lua.LState) int {
			s := b.server(L, "sb.connections.list")
			offset, limit := page(L, 1, "sb.connections.list")
			conns, total := s.Connections(offset, limit)
			return pushPage(L, conns, total, func(c *socket.Conn) lua.LValue { return connValue(L, c) })
		},
		"get": func(L *lua.LState) int {
			s := b.server(L, "sb.connections.get")
			c, ok := s.Conn(L.CheckString(1))
			if !ok {
				L.Push(lua.LNil)
				return 1
			}
			L.Push(connValue(L, c))
			return 1
		},
		"count": func(L *lua.LState) int {
			L.Push(lua.LNumber(b.server(L, "sb.connections.count").Conns()))
			return 1
		},
	}
}

// sb.server(): what a status action reports of this engine.
func (b *Binding) sbServer(L *lua.LState) int {
	s := b.server(L, "sb.server")
	t := L.CreateTable(0, 8)
	now := s.Now()
	t.RawSetString("id", lua.LString(s.ID()))
	t.RawSetString("name", lua.LString("switchboard"))
	t.RawSetString("version", lua.LString(buildinfo.Get().Version))
	t.RawSetString("startedAt", lua.LNumber(s.Created().UnixMilli()))
	t.RawSetString("uptime", lua.LNumber(now.Sub(s.Created()).Milliseconds()))
	t.RawSetString("connections", lua.LNumber(s.Conns()))
	t.RawSetString("rooms", lua.LNumber(s.RoomCount()))
	t.RawSetString("heapBytes", lua.LNumber(heapBytes()))
	L.Push(t)
	return 1
}

// heapBytes is the memory of live heap objects (runtime/metrics: no stop-the-world, unlike ReadMemStats).
func heapBytes() uint64 {
	sample := []metrics.Sample{{Name: "/memory/classes/heap/objects:bytes"}}
	metrics.Read(sample)
	if sample[0].Value.Kind() != metrics.KindUint64 {
		return 0
	}
	return sample[0].Value.Uint64()
}
