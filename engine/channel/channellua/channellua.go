// Package channellua is the active sockets' Lua binding: sb.transform, sb.channel(name) objects (send,
// request, receive, state) and the channel.up / channel.down events (docs/lua-api.md, "Active sockets").
package channellua

import (
	"context"
	"errors"
	"sync"
	"sync/atomic"
	"time"

	lua "github.com/yuin/gopher-lua"

	"github.com/switchboard/switchboard/engine/channel"
	"github.com/switchboard/switchboard/luabind"
)

// channelKind is the handler kind of sb.transform registrations, named "<channel>:<in|out>".
const channelKind = "transform"

const channelObjectType = "switchboard.channel"

// Binding adds sb.transform and sb.channel to every VM (luabind.Binding).
type Binding struct {
	set *channel.Set // nil when no channel is configured
}

// New returns the binding of the channels of set; set may be nil (no channels: sb.channel objects then
// answer "channels are not running").
func New(set *channel.Set) *Binding { return &Binding{set: set} }

// Open adds sb.transform and sb.channel to a VM's module.
func (b *Binding) Open(vm *luabind.VM, mod *lua.LTable) {
	L := vm.L
	mod.RawSetString("transform", L.NewFunction(func(L *lua.LState) int { return sbTransform(vm, L) }))
	mod.RawSetString("channel", L.NewFunction(func(L *lua.LState) int { return b.sbChannel(L) }))
}

// channelMetatable is the metatable of sb.channel(name) objects, built once per runtime and shared by its VMs;
// the methods find their VM through the calling state.
func channelMetatable(rt *luabind.Runtime) lua.LValue {
	return rt.Shared(channelObjectType, func(L *lua.LState) lua.LValue {
		mt := L.NewTable()
		methods := L.SetFuncs(L.NewTable(), map[string]lua.LGFunction{
			"send":    channelSend,
			"request": channelRequest,
			"receive": channelReceive,
			"state":   channelState,
		})
		mt.RawSetString("__index", methods)
		mt.RawSetString("__metatable", lua.LFalse)
		return mt
	})
}

// sb.transform(channel, "in"|"out", fn): top level only. fn(msg, channel) returns the message to pass on, or
// nil to drop it.
func sbTransform(vm *luabind.VM, L *lua.LState) int {
	name := L.CheckString(1)
	dir := L.CheckString(2)
	fn := L.CheckFunction(3)
	if dir != channel.In && dir != channel.Out {
		return luabind.Raise(L, "sb.transform: direction must be \"in\" or \"out\", got %q", dir)
	}
	if _, err := vm.Register(channelKind, name+":"+dir, fn, nil); err != nil {
		return luabind.Raise(L, "sb.transform: %v", err)
	}
	return 0
}

// sb.channel(name): the channel object, or nil, err when no channel has that name.
func (b *Binding) sbChannel(L *lua.LState) int {
	name := L.CheckString(1)
	if set := b.set; set != nil {
		if _, ok := set.Channel(name); !ok {
			L.Push(lua.LNil)
			L.Push(lua.LString("no channel named " + name))
			return 2
		}
	}
	ud := L.NewUserData()
	ud.Value = handle{set: b.set, name: name}
	L.SetMetatable(ud, channelMetatable(luabind.VMOf(L).Runtime()))
	L.Push(ud)
	return 1
}

// handle is what an sb.channel object holds: the set it came from and the channel's name (looked up at
// each call).
type handle struct {
	set  *channel.Set
	name string
}

// checkChannel resolves the object in argument 1; on failure it pushes nil, err and returns false.
func checkChannel(L *lua.LState) (*channel.Channel, bool) {
	ud := L.CheckUserData(1)
	h, ok := ud.Value.(handle)
	if !ok {
		L.ArgError(1, "channel object expected (use ch:method(), not ch.method())")
	}
	set, name := h.set, h.name
	if set == nil {
		L.Push(lua.LNil)
		L.Push(lua.LString("channels are not running"))
		return nil, false
	}
	ch, found := set.Channel(name)
	if !found {
		L.Push(lua.LNil)
		L.Push(lua.LString("no channel named " + name))
		return nil, false
	}
	return ch, true
}

// ch:send(msg) -> true | nil, err
func channelSend(L *lua.LState) int {
	ch, ok := checkChannel(L)
	if !ok {
		return 2
	}
	b := luabind.BudgetFor(L)
	msg, err := luabind.FromLuaWithin(L.CheckAny(2), &b)
	if err != nil {
		return luabind.Raise(L, "channel:send: %v", err)
	}
	if err := ch.Send(L.Context(), msg); err != nil {
		L.Push(lua.LNil)
		L.Push(lua.LString(err.Error()))
		return 2
	}
	L.Push(lua.LTrue)
	return 1
}

// ch:request(msg [, timeout_ms]) -> reply | nil, err. Waits for the next inbound message (the HTTP response);
// without timeout_ms it waits until the handler's own time limit.
func channelRequest(L *lua.LState) int {
	ch, ok := checkChannel(L)
	if !ok {
		return 2
	}
	b := luabind.BudgetFor(L)
	msg, err := luabind.FromLuaWithin(L.CheckAny(2), &b)
	if err != nil {
		return luabind.Raise(L, "channel:request: %v", err)
	}
	timeout := time.Duration(L.OptNumber(3, 0)) * time.Millisecond
	ctx := L.Context()
	if ctx == nil {
		ctx = context.Background()
	}
	done := luabind.VMOf(L).Blocking()
	reply, err := ch.Request(ctx, msg, timeout)
	done()
	if err != nil {
		if ctx.Err() != nil {
			// The handler itself was cancelled (time limit, hangup): stop the script here.
			return luabind.Raise(L, "channel:request: %v", err)
		}
		L.Push(lua.LNil)
		L.Push(lua.LString(err.Error()))
		return 2
	}
	L.Push(luabind.ToLua(L, reply))
	return 1
}

// ch:receive([timeout_ms]) -> msg | nil, "timeout" | nil, err. Takes the oldest inbound message that no request
// and no topic took (redirect_in off); without timeout_ms it waits until the handler's own time limit.
func channelReceive(L *lua.LState) int {
	ch, ok := checkChannel(L)
	if !ok {
		return 2
	}
	timeout := time.Duration(L.OptNumber(2, 0)) * time.Millisecond
	if timeout < 0 {
		L.ArgError(2, "timeout_ms must not be negative")
	}
	ctx := L.Context()
	if ctx == nil {
		ctx = context.Background()
	}
	msg, err := ch.Receive(ctx, timeout)
	if err != nil {
		if ctx.Err() != nil {
			return luabind.Raise(L, "channel:receive: %v", err)
		}
		L.Push(lua.LNil)
		if errors.Is(err, channel.ErrNoMessage) {
			L.Push(lua.LString("timeout"))
		} else {
			L.Push(lua.LString(err.Error()))
		}
		return 2
	}
	L.Push(luabind.ToLua(L, msg))
	return 1
}

// ch:state() -> "up"|"down"|"connecting"|"stopped", last_error_or_nil
func channelState(L *lua.LState) int {
	ch, ok := checkChannel(L)
	if !ok {
		return 2
	}
	st, err := ch.State()
	L.Push(lua.LString(st))
	if err != nil {
		L.Push(lua.LString(err.Error()))
	} else {
		L.Push(lua.LNil)
	}
	return 2
}

// Transforms returns the lookup the channel part asks for every message (channel.Options.Transform): the transform the serving
// scripts registered for (channel, direction), or nil. Lookups are cached per generation.
func Transforms(rt *luabind.Runtime) func(name, dir string) channel.Transform {
	var cache atomic.Pointer[transformCache]
	return func(name, dir string) channel.Transform {
		g := rt.Current()
		if g == nil {
			return nil
		}
		c := cache.Load()
		if c == nil || c.g != g {
			c = &transformCache{g: g, m: map[transformKey]transformEntry{}}
			cache.Store(c)
		}
		key := transformKey{name, dir}
		c.mu.RLock()
		e, ok := c.m[key]
		c.mu.RUnlock()
		if ok {
			return e.t
		}
		if h, found := g.Handler(channelKind, name+":"+dir); found {
			e.t = luaTransform{g: g, h: h, ev: "channel.transform " + name + " " + dir}
		}
		c.mu.Lock()
		c.m[key] = e
		c.mu.Unlock()
		return e.t
	}
}

type transformKey struct{ name, dir string }

// transformEntry lets the cache hold "no transform" (a nil interface).
type transformEntry struct{ t channel.Transform }

type transformCache struct {
	g  *luabind.Generation
	mu sync.RWMutex
	m  map[transformKey]transformEntry
}

type luaTransform struct {
	g  *luabind.Generation
	h  *luabind.Handler
	ev string
}

func (t luaTransform) Apply(ctx context.Context, msg channel.Message) (channel.Message, bool, error) {
	var out any
	keep := false
	err := t.g.Run(ctx, t.h, t.ev, 0, func(L *lua.LState, f *lua.LFunction) error {
		L.Push(f)
		L.Push(luabind.ToLua(L, msg.Payload))
		L.Push(lua.LString(msg.Channel))
		if err := L.PCall(2, 1, nil); err != nil {
			return err
		}
		ret := L.Get(-1)
		if ret == lua.LNil {
			return nil
		}
		b := luabind.BudgetFor(L)
		v, err := luabind.FromLuaWithin(ret, &b)
		if err != nil {
			return err
		}
		out, keep = v, true
		return nil
	})
	if err != nil {
		return msg, false, err
	}
	msg.Payload = out
	return msg, keep, nil
}

// Events returns the OnEvent hook of the channel part (channel.Options.OnEvent): it runs the sb.on("channel.up" | "channel.down")
// listeners of the serving scripts with (channel, {addr=, error=}). Listener errors are logged.
func Events(rt *luabind.Runtime) func(channel.Event) {
	return func(ev channel.Event) {
		g := rt.Current()
		if g == nil {
			return
		}
		name := "channel.down"
		if ev.Up {
			name = "channel.up"
		}
		for _, h := range g.On(name) {
			err := g.Run(context.Background(), h, name+" "+ev.Channel, 0, func(L *lua.LState, f *lua.LFunction) error {
				info := L.NewTable()
				info.RawSetString("addr", lua.LString(ev.Addr))
				if ev.Err != nil {
					info.RawSetString("error", lua.LString(ev.Err.Error()))
				}
				if ev.Failed {
					info.RawSetString("failed", lua.LTrue)
				}
				L.Push(f)
				L.Push(lua.LString(ev.Channel))
				L.Push(info)
				return L.PCall(2, 0, nil)
			})
			if err != nil {
				rt.Log().WithField("script", h.Where).Error(err.Error())
			}
		}
	}
}
