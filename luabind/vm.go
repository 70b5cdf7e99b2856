package luabind

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"sync/atomic"
	"time"

	lua "github.com/yuin/gopher-lua"
)

// VM is one tiny Lua state of a generation. Every script of the generation has run its top level in it, so
// it holds its own function value for every registered handler (fns[h.Index]). A VM runs one thing at a
// time: mu is held while it is checked out of the pool or runs a timer pinned to it.
type VM struct {
	L   *lua.LState
	gen *Generation
	rt  *Runtime
	mod *lua.LTable // the switchboard module table (a read-only proxy)

	mu sync.Mutex

	baseCtx    context.Context // cancelled only to kill the VM
	baseCancel context.CancelCauseFunc
	ctx        *vmContext // what L.Context() is between long uses

	// Watched by the runtime's watchdog without locks.
	deadline atomic.Int64 // unix nanos; 0 = no limit now
	started  atomic.Int64 // unix nanos when the running handler started (the memory guard cancels the oldest first)
	// state is seq<<2 | cancelling<<1 | busy: a handler sets it when it starts and clears busy with a
	// compare-and-swap when it ends; whoever cancels it (watchdog, memory guard, shutdown) first swaps
	// cancelling in for the same seq. So a cancellation meant for one invocation never lands on the next,
	// and an invocation that ends while being cancelled knows its VM is doubtful.
	state      atomic.Uint64
	seq        uint64      // invocations started (owner only)
	waiting    atomic.Bool // blocked in a Go call that holds no CPU (sb.sleep, a call flow's session method...)
	depth      atomic.Int32
	callerDone atomic.Value // <-chan struct{} of the caller's context
	cancelCur  atomic.Pointer[context.CancelCauseFunc]
	dead       atomic.Bool // state doubtful: close instead of reusing
	closed     atomic.Bool

	inherited bool // the running handler's deadline is its caller's

	long      bool   // checked out with Acquire
	longState uint64 // the state word of the long use
	private   bool   // one mod_lua-style call's own state, closed after it: its globals and library tables are its own

	loading bool   // running script top levels: registration allowed, library tables writable
	file    string // script whose top level runs now
	regs    []*Handler
	fns     []*lua.LFunction
	funcs   map[*lua.FunctionProto]*lua.LFunction
	modules map[string]lua.LValue

	// Globals (docs/lua-api.md, "Isolation"): _G itself stays empty; its metatable gmeta sends reads to top,
	// the globals the scripts' top levels defined. Inside handlers writes go to setGlobal, which makes the
	// invocation's scratch table on the first one and puts it in front of top (gmeta.__index = scratch,
	// scratch falls through to top through scratchMeta); when the invocation ends the scratch table is
	// dropped, so no handler sees another's globals.
	top         *lua.LTable
	gmeta       *lua.LTable
	scratch     *lua.LTable // nil while the running invocation has written no global
	scratchMeta *lua.LTable // made on the VM's first global write inside a handler

	timers atomic.Int32 // live timers pinned to this VM: the pool keeps it even when full
}

var neverDone = make(chan struct{})

// MaxHandlerDepth bounds handlers started from inside handlers (a socket.say hook calling conn:say, a
// transform sending on a channel...): a handler may run at most this many levels deep.
const MaxHandlerDepth = 8

// ErrDepth is the cause of a handler refused because it would run deeper than MaxHandlerDepth.
var ErrDepth = errors.New("handler depth limit reached")

// ErrShutdown is the cause of handlers cancelled because the engine is shutting down.
var ErrShutdown = errors.New("engine shutting down")

// invocationKey finds, in a context handed to Go by a Lua handler (L.Context()), the VM running it.
type invocationKey struct{}

// vmContext is the context a VM's Lua code hands to the Go functions it calls (L.Context()): it is done when
// the VM is cancelled, reports the running handler's deadline, and leads nested handlers to the VM (its
// depth and deadline) through invocationKey.
type vmContext struct {
	vm   *VM
	base context.Context
	done <-chan struct{}
}

func (c *vmContext) Deadline() (time.Time, bool) {
	if d := c.vm.deadline.Load(); d != 0 {
		return time.Unix(0, d), true
	}
	return time.Time{}, false
}
func (c *vmContext) Done() <-chan struct{} { return c.done }
func (c *vmContext) Err() error            { return c.base.Err() }
func (c *vmContext) Value(key any) any {
	if _, ok := key.(invocationKey); ok {
		return c.vm
	}
	return c.base.Value(key) // lets context.WithCancel find the cancelCtx below (no goroutine per child)
}

// tooDeep refuses, before a VM is checked out for it, a handler that would run deeper than MaxHandlerDepth.
// It returns the parent handler's VM for runNested.
func tooDeep(ctx context.Context, ev string) (*VM, error) {
	p := parentVM(ctx)
	if p != nil && p.depth.Load() >= MaxHandlerDepth {
		return nil, depthError(ev, p.depth.Load()+1)
	}
	return p, nil
}

func depthError(ev string, depth int32) error {
	return &ScriptError{Event: ev, Cause: ErrDepth, Message: fmt.Sprintf(
		"handler not run: it would be the %dth handler started from inside another (the limit is %d); a handler that triggers itself, such as a socket.say hook calling conn:say, stops here",
		depth, MaxHandlerDepth)}
}

// parentVM returns the VM whose handler started this one, if ctx came from a handler.
func parentVM(ctx context.Context) *VM {
	vm, _ := ctx.Value(invocationKey{}).(*VM)
	return vm
}

// newState makes the gopher-lua state of a VM, as small as a parked call flow needs it (a call holds one VM
// for its whole life, 10 000 calls hold 10 000):
//   - lua.NewState gives every state a globals table sized for 64 entries and a registry table sized for
//     32: 7.5 KB of empty Go maps. A VM's _G stays empty once its scripts have loaded (isolation.go) and its
//     registry table holds one or two entries (vmRegistryKey, a binding's own), so both are replaced, before
//     anything refers to them, by tables sized for one map group; they grow like any table if a binding puts
//     more in them.
//   - The value stack (gopher-lua's "registry": every running function's registers) starts at 128 slots,
//     gopher-lua's smallest, 2 KB (256 was 4 KB); a flow parked in a session method uses a few dozen. It
//     grows when a deeper call needs more, by 128 slots at a time so that a VM reaches the old size in one
//     step, and keeps what it grew to; the 256 Ki-slot ceiling and its "registry overflow" error are
//     unchanged.
func newState() *lua.LState {
	L := lua.NewState(lua.Options{
		SkipOpenLibs:        true,
		CallStackSize:       200,
		RegistrySize:        128,
		RegistryGrowStep:    128,
		RegistryMaxSize:     256 * 1024,
		MinimizeStackMemory: true,
	})
	L.G.Registry = L.CreateTable(0, stateTableHint)
	L.G.Global = L.CreateTable(0, stateTableHint)
	L.Env = L.G.Global // functions made from now on take their environment from here
	return L
}

// stateTableHint sizes a state's globals and registry tables: up to 8 string keys fit the one group Go
// allocates for a small map.
const stateTableHint = 8

// newVM creates a sandboxed state, opens the switchboard module and runs every script's top level.
func newVM(g *Generation) (*VM, error) {
	rt := g.rt
	L := newState()
	vm := &VM{L: L, gen: g, rt: rt, funcs: map[*lua.FunctionProto]*lua.LFunction{}, modules: map[string]lua.LValue{}}
	vm.baseCtx, vm.baseCancel = context.WithCancelCause(context.Background())
	vm.ctx = &vmContext{vm: vm, base: vm.baseCtx, done: vm.baseCtx.Done()}
	L.SetContext(vm.ctx)
	vm.callerDone.Store((<-chan struct{})(neverDone))
	openSandbox(vm)
	vm.mod = openModule(vm)
	rt.track(vm)

	vm.loading = true
	for _, s := range g.scripts {
		if s.Module {
			continue
		}
		vm.file = s.Name
		fn := L.NewFunctionFromProto(s.Proto)
		err := vm.runShort(context.Background(), "load", 0, func(L *lua.LState) error {
			L.Push(fn)
			return L.PCall(0, 0, nil)
		})
		if err != nil {
			vm.close()
			return nil, err
		}
	}
	vm.loading, vm.file = false, ""
	vm.endLoading()
	return vm, nil
}

// Register records a handler while a script's top level runs (sb.action, sb.on, sb.flow, ...). Kinds in
// multiKinds may repeat a name; any other repeated kind/name pair is an error naming the first place.
func (vm *VM) Register(kind, name string, fn *lua.LFunction, meta any) (*Handler, error) {
	if !vm.loading {
		return nil, fmt.Errorf("%s handlers can only be registered at the top level of a script, not from inside a handler", kind)
	}
	if !multiKinds[kind] {
		for _, h := range vm.regs {
			if h.Kind == kind && h.Name == name {
				return nil, fmt.Errorf("%s %q is already registered at %s", kind, name, h.Where)
			}
		}
	}
	where := vm.L.Where(1)
	if len(where) > 0 && where[len(where)-1] == ':' {
		where = where[:len(where)-1]
	}
	if where == "" {
		where = vm.file
	}
	h := &Handler{Kind: kind, Name: name, Index: len(vm.fns), Meta: meta, Where: where}
	vm.regs = append(vm.regs, h)
	vm.fns = append(vm.fns, fn)
	return h, nil
}

// RegisterPart is Register for a function that belongs to a handler registered just before (an action's
// input validator): it is found by kind and name as any handler, and not listed on its own.
func (vm *VM) RegisterPart(kind, name string, fn *lua.LFunction, meta any) (*Handler, error) {
	h, err := vm.Register(kind, name, fn, meta)
	if err == nil {
		h.Part = true
	}
	return h, err
}

// multiKinds are the kinds whose names may repeat: several scripts may listen to one event or topic.
var multiKinds = map[string]bool{"on": true, "subscribe": true, "timer": true}

// Func returns this VM's function for a handler of its generation.
func (vm *VM) Func(h *Handler) *lua.LFunction { return vm.fns[h.Index] }

// Generation is the generation whose scripts this VM ran.
func (vm *VM) Generation() *Generation { return vm.gen }

// Runtime is the runtime the VM belongs to (its configuration, cache, log and shared values).
func (vm *VM) Runtime() *Runtime { return vm.rt }

// Module is the switchboard module table of this VM.
func (vm *VM) Module() *lua.LTable { return vm.mod }

// Loading reports whether script top levels are running (registrations allowed).
func (vm *VM) Loading() bool { return vm.loading }

// blocking marks the VM as blocked in a Go call that holds no CPU until the returned function is called;
// the memory guard cancels such handlers after the ones that compute.
func (vm *VM) Blocking() (done func()) {
	vm.waiting.Store(true)
	return vm.endWait
}

func (vm *VM) endWait() { vm.waiting.Store(false) }

// runShort runs body under a time limit enforced by the watchdog through the VM's base context. The limit
// is timeout (0 = lua.handler_timeout) or what is left of the caller's, whichever ends first; a handler
// started from inside another (ctx from L.Context()) runs one level deeper, at most MaxHandlerDepth. A VM
// whose context was cancelled is marked dead and must not be reused.
func (vm *VM) runShort(ctx context.Context, ev string, timeout time.Duration, body func(L *lua.LState) error) error {
	return vm.runNested(ctx, parentVM(ctx), ev, timeout, body)
}

// runNested is runShort for a caller that already looked up the parent handler's VM (nil: none).
func (vm *VM) runNested(ctx context.Context, parent *VM, ev string, timeout time.Duration, body func(L *lua.LState) error) (err error) {
	if timeout <= 0 {
		timeout = vm.rt.cfg.HandlerTimeout
	}
	now := time.Now().UnixNano()
	deadline := now + int64(timeout)
	depth := int32(1)
	vm.inherited = false
	if parent != nil {
		depth = parent.depth.Load() + 1
		if depth > MaxHandlerDepth {
			return depthError(ev, depth)
		}
	}
	if dl, ok := ctx.Deadline(); ok && dl.UnixNano() < deadline {
		deadline = dl.UnixNano()
		vm.inherited = true
	}
	if done := ctx.Done(); done != nil {
		vm.callerDone.Store(done)
	}
	if vm.depth.Load() != depth { // almost always 1: spare the store
		vm.depth.Store(depth)
	}
	if vm.cancelCur.Load() != &vm.baseCancel { // Release restores it; only a new VM lacks it
		vm.cancelCur.Store(&vm.baseCancel)
	}
	vm.started.Store(now)
	vm.deadline.Store(deadline)
	st := vm.begin()
	vm.rt.wakeWatchdog()
	defer func() {
		vm.deadline.Store(0)
		vm.end(st)
		if vm.waiting.Load() {
			vm.waiting.Store(false)
		}
		if ctx.Done() != nil {
			vm.callerDone.Store((<-chan struct{})(neverDone))
		}
		if r := recover(); r != nil {
			vm.dead.Store(true)
			err = &ScriptError{Message: fmt.Sprintf("internal error: %v", r), Event: ev}
		}
		vm.L.SetTop(0)
		if !vm.loading {
			vm.endInvocation()
		}
	}()
	if deadline <= now {
		return &ScriptError{Event: ev, Cause: ErrTimeout, Message: "handler not run: the handler that started it has no time left"}
	}
	err = body(vm.L)
	if err == nil {
		return nil
	}
	if cause := context.Cause(vm.baseCtx); cause != nil {
		vm.dead.Store(true)
		return vm.cancelled(err, cause, ev, timeout)
	}
	return vm.describe(err, ev)
}

// cancelled builds the error of a handler stopped by the watchdog, keeping the script location.
func (vm *VM) cancelled(err, cause error, ev string, timeout time.Duration) error {
	se := scriptError(err, ev)
	se.Cause = cause
	switch {
	case cause == ErrTimeout && vm.inherited:
		se.Message = "handler cancelled: the handler that started it reached its time limit"
	case cause == ErrTimeout:
		se.Message = fmt.Sprintf("handler cancelled: exceeded its time limit of %v", timeout)
	case cause == ErrMemory:
		se.Message = fmt.Sprintf("handler cancelled: process heap passed lua.memory_limit_mb (%d MiB)", vm.rt.cfg.MemoryLimitMB)
	case cause == ErrShutdown:
		se.Message = "handler cancelled: the engine is shutting down"
	default:
		se.Message = "handler cancelled: " + cause.Error()
	}
	return se
}

// describe converts a Lua error into a *ScriptError. An error value that is not a string (error({...}),
// error(obj)) is shown through its __tostring, called under the handler's time limit, or as a fixed text:
// never as "table: 0xc000…", a heap address.
func (vm *VM) describe(err error, ev string) *ScriptError {
	se := scriptError(err, ev)
	var ae *lua.ApiError
	if !errors.As(err, &ae) || ae.Cause != nil || ae.Object == nil {
		return se
	}
	switch obj := ae.Object.(type) {
	case lua.LString, lua.LNumber:
		return se
	case *lua.LTable, *lua.LUserData:
		se.Message = vm.errorText(obj)
	default:
		se.Message = fmt.Sprintf("error object is a %s", obj.Type())
	}
	return se
}

func (vm *VM) errorText(obj lua.LValue) string {
	fallback := fmt.Sprintf("error object is a %s without __tostring", obj.Type())
	L := vm.L
	if L.GetMetaField(obj, "__tostring") == lua.LNil || vm.baseCtx.Err() != nil {
		return fallback
	}
	tostring := L.GetGlobal("tostring")
	if tostring.Type() != lua.LTFunction {
		return fallback
	}
	top := L.GetTop()
	defer L.SetTop(top)
	L.Push(tostring)
	L.Push(obj)
	if L.PCall(1, 1, nil) != nil {
		return fmt.Sprintf("error object is a %s whose __tostring failed", obj.Type())
	}
	s, ok := L.Get(-1).(lua.LString)
	if !ok {
		return fallback
	}
	if len(s) > maxErrorText {
		s = s[:maxErrorText] + "…"
	}
	return string(s)
}

// maxErrorText bounds an error message built by a script's __tostring (it reaches logs and clients).
const maxErrorText = 4096

const (
	stateBusy       = 1
	stateCancelling = 2
)

// begin marks the start of an invocation and returns its state word.
func (vm *VM) begin() uint64 {
	vm.seq++
	st := vm.seq<<2 | stateBusy
	vm.state.Store(st)
	return st
}

// end marks the end of the invocation begun with st; if someone started cancelling it meanwhile, the VM is
// doubtful (its context may be cancelled any moment now) and will be closed instead of reused.
func (vm *VM) end(st uint64) {
	if !vm.state.CompareAndSwap(st, st&^stateBusy) {
		vm.dead.Store(true)
		vm.state.Store(st &^ (stateBusy | stateCancelling))
	}
}

// busy reports whether a handler runs on the VM, and the state word to cancel it with.
func (vm *VM) busy() (uint64, bool) {
	st := vm.state.Load()
	return st, st&stateBusy != 0 && st&stateCancelling == 0
}

// cancel stops the invocation whose state word is st, if it still runs.
func (vm *VM) cancel(st uint64, cause error) bool {
	if !vm.state.CompareAndSwap(st, st|stateCancelling) {
		return false
	}
	if f := vm.cancelCur.Load(); f != nil {
		(*f)(cause)
	}
	return true
}

// funcFor instantiates a compiled snippet in this VM once.
func (vm *VM) funcFor(f *Func) *lua.LFunction {
	if lf, ok := vm.funcs[f.proto]; ok {
		return lf
	}
	lf := vm.L.NewFunctionFromProto(f.proto)
	vm.funcs[f.proto] = lf
	return lf
}

// close ends the VM. Only its owner may close it: the holder of mu, or the pool when no one holds it.
func (vm *VM) close() {
	if vm.closed.Swap(true) {
		return
	}
	vm.dead.Store(true)
	vm.baseCancel(errVMClosed)
	vm.rt.untrack(vm)
	vm.L.Close()
}

var errVMClosed = fmt.Errorf("vm closed")
