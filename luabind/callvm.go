package luabind

import (
	"context"
	"time"
)

// NewCallVM makes a fresh sandboxed state for one run of a script a binding claimed (Claimer): no script
// of the generation ran in it and it is closed after the run, so its globals and its library tables are
// its own (mod_lua makes a new lua_State per run). It is bound to ctx with no time limit, as a call flow
// is (Acquire): ctx ends it, and so do shutdown and the memory guard, which track it like any VM; its Lua
// code hands L.Context() to the Go functions it calls, and handlers they start run one level deeper.
// The binding sets its globals (vm.L.G.Global) and runs its script; CloseCall ends it.
func (g *Generation) NewCallVM(ctx context.Context) *VM {
	rt := g.rt
	L := newState()
	vm := &VM{L: L, gen: g, rt: rt, private: true}
	vm.baseCtx, vm.baseCancel = context.WithCancelCause(context.Background())
	vm.ctx = &vmContext{vm: vm, base: vm.baseCtx, done: vm.baseCtx.Done()}
	L.SetContext(vm.ctx)
	vm.callerDone.Store((<-chan struct{})(neverDone))
	openSandbox(vm)
	rt.track(vm)

	lctx, cancel := context.WithCancelCause(ctx)
	rt.setLong(vm, true)
	vm.long = true
	vm.cancelCur.Store(&cancel)
	vm.depth.Store(1)
	vm.started.Store(time.Now().UnixNano())
	vm.longState = vm.begin()
	rt.wakeWatchdog()
	vm.L.SetContext(context.WithValue(lctx, invocationKey{}, vm))
	return vm
}

// CloseCall ends a state made by NewCallVM.
func (vm *VM) CloseCall() {
	if f := vm.cancelCur.Load(); f != nil {
		(*f)(context.Canceled)
	}
	vm.end(vm.longState)
	vm.waiting.Store(false)
	vm.close()
}
