package luabind

import (
	"context"
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
	mod *lua.LTable // the switchboard module table

	mu sync.Mutex

	baseCtx    context.Context // set on L between long uses; cancelled only to kill the VM
	baseCancel context.CancelCauseFunc

	// Watched by the runtime's watchdog without locks.
	deadline   atomic.Int64 // unix nanos; 0 = no limit now
	busy       atomic.Bool
	callerDone atomic.Value // <-chan struct{} of the caller's context
	cancelCur  atomic.Pointer[context.CancelCauseFunc]
	dead       atomic.Bool // state doubtful: close instead of reusing
	closed     atomic.Bool

	long bool // checked out with Acquire

	loading bool   // running script top levels: registration allowed
	file    string // script whose top level runs now
	regs    []*Handler
	fns     []*lua.LFunction
	funcs   map[*lua.FunctionProto]*lua.LFunction
	modules map[string]lua.LValue
}

var neverDone = make(chan struct{})

// newVM creates a sandboxed state, opens the switchboard module and runs every script's top level.
func newVM(g *Generation) (*VM, error) {
	rt := g.rt
	L := lua.NewState(lua.Options{
		SkipOpenLibs:        true,
		CallStackSize:       200,
		RegistrySize:        256,
		RegistryMaxSize:     256 * 1024,
		MinimizeStackMemory: true,
	})
	vm := &VM{L: L, gen: g, rt: rt, funcs: map[*lua.FunctionProto]*lua.LFunction{}, modules: map[string]lua.LValue{}}
	vm.baseCtx, vm.baseCancel = context.WithCancelCause(context.Background())
	L.SetContext(vm.baseCtx)
	vm.callerDone.Store((<-chan struct{})(neverDone))
	openSandbox(vm)
	vm.mod = openModule(vm)
	rt.track(vm)

	vm.loading = true
	for _, s := range g.scripts {
		if s.module {
			continue
		}
		vm.file = s.name
		fn := L.NewFunctionFromProto(s.proto)
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

// multiKinds are the kinds whose names may repeat: several scripts may listen to one event or topic.
var multiKinds = map[string]bool{"on": true, "subscribe": true, "timer": true}

// Func returns this VM's function for a handler of its generation.
func (vm *VM) Func(h *Handler) *lua.LFunction { return vm.fns[h.Index] }

// Generation is the generation whose scripts this VM ran.
func (vm *VM) Generation() *Generation { return vm.gen }

// Runtime is the runtime the VM belongs to (for its services).
func (vm *VM) Runtime() *Runtime { return vm.rt }

// Module is the switchboard module table of this VM.
func (vm *VM) Module() *lua.LTable { return vm.mod }

// Loading reports whether script top levels are running (registrations allowed).
func (vm *VM) Loading() bool { return vm.loading }

// runShort runs body under a time limit enforced by the watchdog through the VM's base context. A VM whose
// context was cancelled is marked dead and must not be reused.
func (vm *VM) runShort(ctx context.Context, ev string, timeout time.Duration, body func(L *lua.LState) error) (err error) {
	if timeout <= 0 {
		timeout = vm.rt.cfg.HandlerTimeout
	}
	if done := ctx.Done(); done != nil {
		vm.callerDone.Store(done)
	}
	vm.cancelCur.Store(&vm.baseCancel)
	vm.busy.Store(true)
	vm.deadline.Store(time.Now().Add(timeout).UnixNano())
	defer func() {
		vm.deadline.Store(0)
		vm.busy.Store(false)
		if ctx.Done() != nil {
			vm.callerDone.Store((<-chan struct{})(neverDone))
		}
		if r := recover(); r != nil {
			vm.dead.Store(true)
			err = &ScriptError{Message: fmt.Sprintf("internal error: %v", r), Event: ev}
		}
		vm.L.SetTop(0)
	}()
	err = body(vm.L)
	if err == nil {
		return nil
	}
	if cause := context.Cause(vm.baseCtx); cause != nil {
		vm.dead.Store(true)
		return vm.cancelled(err, cause, ev, timeout)
	}
	return scriptError(err, ev)
}

// cancelled builds the error of a handler stopped by the watchdog, keeping the script location.
func (vm *VM) cancelled(err, cause error, ev string, timeout time.Duration) error {
	se := scriptError(err, ev)
	se.Cause = cause
	switch cause {
	case ErrTimeout:
		se.Message = fmt.Sprintf("handler cancelled: exceeded its time limit of %v", timeout)
	case ErrMemory:
		se.Message = fmt.Sprintf("handler cancelled: process heap passed lua.memory_limit_mb (%d MiB)", vm.rt.cfg.MemoryLimitMB)
	default:
		se.Message = "handler cancelled: " + cause.Error()
	}
	return se
}

// cancel stops whatever runs on the VM now; the watchdog calls it.
func (vm *VM) cancel(cause error) {
	if f := vm.cancelCur.Load(); f != nil {
		(*f)(cause)
	}
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
