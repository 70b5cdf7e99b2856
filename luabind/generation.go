package luabind

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io/fs"
	"path"
	"sort"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	lua "github.com/yuin/gopher-lua"
	"github.com/yuin/gopher-lua/parse"
)

// Handler is something a script registered at its top level: an action, a verb, a flow, an event
// listener, a timer... Index finds the function in any VM of the generation.
type Handler struct {
	Kind  string
	Name  string
	Index int
	Meta  any    // what the registering function parsed (inputs of an action, interval of a timer, ...)
	Where string // "scripts/actions.lua:12"
	// Part is set for a function that belongs to another handler (an action's input validator): the status
	// page lists it with that handler, not on its own.
	Part bool
}

// Generation is one load of the scripts: compiled protos, what they registered, and a pool of VMs in which
// every script has run. A reload builds a new generation beside the current one; work started on a
// generation finishes on it.
type Generation struct {
	rt      *Runtime
	id      int64
	scripts []*Script // run at load (every VM runs their top levels)
	all     []*Script // every compiled script, claimed ones too
	claims  map[Claimer]any

	handlers []*Handler
	byKind   map[string][]*Handler
	byName   map[handlerKey]*Handler

	poolMu   sync.Mutex
	free     []*VM
	poolSize int

	ctx     context.Context // lifetime of timers and subscriptions; cancelled on retire
	cancel  context.CancelFunc
	retired atomic.Bool
	bgMu    sync.Mutex
	stops   []func()
	timers  map[*Handler]*time.Timer
	pinned  map[*pinnedTimer]struct{} // live timers created inside handlers (at most lua.max_timers)
}

type handlerKey struct{ kind, name string }

// Runtime is the runtime the generation belongs to.
func (g *Generation) Runtime() *Runtime { return g.rt }

// ID numbers generations from 1 in load order.
func (g *Generation) ID() int64 { return g.id }

// Handlers lists the handlers of a kind in registration order.
func (g *Generation) Handlers(kind string) []*Handler { return g.byKind[kind] }

// Handler finds a handler by kind and name.
func (g *Generation) Handler(kind, name string) (*Handler, bool) {
	h, ok := g.byName[handlerKey{kind, name}]
	return h, ok
}

// On lists the listeners registered with sb.on(event, fn), in registration order.
func (g *Generation) On(event string) []*Handler {
	var out []*Handler
	for _, h := range g.byKind["on"] {
		if h.Name == event {
			out = append(out, h)
		}
	}
	return out
}

// compileScripts reads every .lua file below root in fsys, sorted, and compiles each once.
func compileScripts(fsys fs.FS, display string) ([]*Script, []*ScriptError) {
	var paths []string
	err := fs.WalkDir(fsys, ".", func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if !d.IsDir() && strings.HasSuffix(p, ".lua") {
			paths = append(paths, p)
		}
		return nil
	})
	if err != nil {
		return nil, []*ScriptError{{File: display, Message: fmt.Sprintf("reading scripts: %v", err)}}
	}
	sort.Strings(paths)
	var out []*Script
	var errs []*ScriptError
	for _, p := range paths {
		name := path.Join(display, p)
		src, err := fs.ReadFile(fsys, p)
		if err != nil {
			errs = append(errs, &ScriptError{File: name, Message: err.Error()})
			continue
		}
		proto, err := compile(name, src)
		if err != nil {
			errs = append(errs, scriptError(err, ""))
			continue
		}
		out = append(out, &Script{Name: name, Path: p, Proto: proto, Module: strings.HasPrefix(p, "lib/")})
	}
	return out, errs
}

func compile(name string, src []byte) (*lua.FunctionProto, error) {
	chunk, err := parse.Parse(bytes.NewReader(src), name)
	if err != nil {
		var pe *parse.Error
		if errors.As(err, &pe) && pe.Pos.Line <= 0 {
			// At end of file: name the last line, where the unfinished statement is.
			pe.Pos.Line = bytes.Count(bytes.TrimRight(src, "\n"), []byte("\n")) + 1
			pe.Message = "unexpected end of file: " + pe.Message
		}
		return nil, err
	}
	return lua.Compile(chunk, name)
}

// buildGeneration compiles the scripts, lets the Claimer bindings take theirs, and runs the others in a
// first VM, which also fixes the registrations.
func buildGeneration(rt *Runtime, fsys fs.FS, display string) (*Generation, []*ScriptError) {
	all, errs := compileScripts(fsys, display)
	if len(errs) > 0 {
		return nil, errs
	}
	g := &Generation{rt: rt, all: all, poolSize: rt.poolSize, byKind: map[string][]*Handler{}, byName: map[handlerKey]*Handler{}}
	run := all
	for _, b := range rt.bindings {
		c, ok := b.(Claimer)
		if !ok {
			continue
		}
		taken, state, cerrs := c.Claim(display, run)
		errs = append(errs, cerrs...)
		if g.claims == nil {
			g.claims = map[Claimer]any{}
		}
		g.claims[c] = state
		if len(taken) > 0 {
			isTaken := make(map[*Script]bool, len(taken))
			for _, s := range taken {
				isTaken[s] = true
			}
			rest := make([]*Script, 0, len(run))
			for _, s := range run {
				if !isTaken[s] {
					rest = append(rest, s)
				}
			}
			run = rest
		}
	}
	if len(errs) > 0 {
		return nil, errs
	}
	g.scripts = run
	g.ctx, g.cancel = context.WithCancel(context.Background())
	vm, err := newVM(g)
	if err != nil {
		g.cancel()
		return nil, []*ScriptError{scriptError(err, "")}
	}
	g.handlers = vm.regs
	for _, h := range g.handlers {
		g.byKind[h.Kind] = append(g.byKind[h.Kind], h)
		g.byName[handlerKey{h.Kind, h.Name}] = h
	}
	for _, b := range rt.bindings {
		if c, ok := b.(Claimer); ok {
			errs = append(errs, c.Check(g, g.claims[c])...)
		}
	}
	if len(errs) > 0 {
		vm.close()
		g.cancel()
		return nil, errs
	}
	g.free = append(g.free, vm)
	return g, nil
}

var errClosed = errors.New("lua: the runtime is closed (engine shutting down)")

// get checks a VM out of the pool, or makes one. The VM is locked until put.
func (g *Generation) get() (*VM, error) {
	if g.rt.closed.Load() || g.rt.stopping.Load() {
		return nil, errClosed
	}
	for {
		g.poolMu.Lock()
		n := len(g.free)
		if n == 0 {
			g.poolMu.Unlock()
			break
		}
		vm := g.free[n-1]
		g.free = g.free[:n-1]
		g.poolMu.Unlock()
		vm.mu.Lock()
		if !vm.closed.Load() {
			return vm, nil
		}
		// A timer pinned to it ran while we waited, and killed it (pinTimer closes it, not the pool).
		vm.mu.Unlock()
	}
	vm, err := newVM(g)
	if err != nil {
		return nil, fmt.Errorf("lua: new VM for generation %d: %w", g.id, err)
	}
	if len(vm.regs) != len(g.handlers) {
		vm.close()
		return nil, fmt.Errorf("lua: generation %d: scripts registered %d handlers in a new VM but %d at load; registrations must not depend on chance or time", g.id, len(vm.regs), len(g.handlers))
	}
	vm.mu.Lock()
	return vm, nil
}

// put returns a VM to the pool, or closes it when it is doubtful, the pool is full, or the generation retired.
// The caller holds vm.mu; a VM is closed before it is unlocked, so no one waiting for it can run on it.
func (g *Generation) put(vm *VM) {
	if vm.dead.Load() || g.retired.Load() {
		g.closeOwned(vm)
		return
	}
	g.poolMu.Lock()
	if (len(g.free) < g.poolSize || vm.timers.Load() > 0) && !g.retired.Load() {
		g.free = append(g.free, vm)
		g.poolMu.Unlock()
		vm.mu.Unlock()
		return
	}
	g.poolMu.Unlock()
	g.closeOwned(vm)
}

// closeOwned closes a VM whose mu the caller holds: out of the pool first (a timer may have put it back),
// then closed, then unlocked (whoever popped it meanwhile sees it closed and takes another).
func (g *Generation) closeOwned(vm *VM) {
	g.poolMu.Lock()
	for i, f := range g.free {
		if f == vm {
			g.free = append(g.free[:i], g.free[i+1:]...)
			break
		}
	}
	g.poolMu.Unlock()
	vm.close()
	vm.mu.Unlock()
}

// Run runs a short handler: checks out a VM, calls fn with the handler's function under the time limit
// (timeout 0 = lua.handler_timeout), and returns the VM. Errors are *ScriptError naming the script line and
// ev, the event that ran the handler. fn must copy out of Lua whatever it needs before it returns.
func (g *Generation) Run(ctx context.Context, h *Handler, ev string, timeout time.Duration, fn func(L *lua.LState, f *lua.LFunction) error) error {
	parent, err := tooDeep(ctx, ev)
	if err != nil {
		return err
	}
	vm, err := g.get()
	if err != nil {
		return err
	}
	defer g.put(vm)
	f := vm.fns[h.Index]
	return vm.runNested(ctx, parent, ev, timeout, func(L *lua.LState) error { return fn(L, f) })
}

// RunVM is Run for a handler that needs its VM besides its function: another handler's function on the
// same VM (an action's validators, VM.Func) or the VM's conversion budget (VM.Budget), without looking
// the VM up from its state.
func (g *Generation) RunVM(ctx context.Context, h *Handler, ev string, timeout time.Duration, fn func(vm *VM, f *lua.LFunction) error) error {
	parent, err := tooDeep(ctx, ev)
	if err != nil {
		return err
	}
	vm, err := g.get()
	if err != nil {
		return err
	}
	defer g.put(vm)
	f := vm.fns[h.Index]
	return vm.runNested(ctx, parent, ev, timeout, func(*lua.LState) error { return fn(vm, f) })
}

// Call is Run for the common case: call the handler with args and hand its results to read.
func (g *Generation) Call(ctx context.Context, h *Handler, ev string, timeout time.Duration, read func(L *lua.LState, results []lua.LValue) error, args ...lua.LValue) error {
	return g.Run(ctx, h, ev, timeout, func(L *lua.LState, f *lua.LFunction) error {
		nret := 0
		if read != nil {
			nret = lua.MultRet
		}
		base := L.GetTop()
		L.Push(f)
		for _, a := range args {
			L.Push(a)
		}
		if err := L.PCall(len(args), nret, nil); err != nil {
			return err
		}
		if read == nil {
			return nil
		}
		n := L.GetTop() - base
		results := make([]lua.LValue, n)
		for i := 0; i < n; i++ {
			results[i] = L.Get(base + 1 + i)
		}
		return read(L, results)
	})
}

// Func is a snippet compiled once outside the scripts (a route expression), runnable on any VM.
type Func struct {
	name  string
	proto *lua.FunctionProto
}

// CompileFunc compiles src once; chunkName appears in its errors (e.g. "relay.routes:12").
func CompileFunc(chunkName, src string) (*Func, error) {
	proto, err := compile(chunkName, []byte(src))
	if err != nil {
		return nil, scriptError(err, "")
	}
	return &Func{name: chunkName, proto: proto}, nil
}

// RunFunc runs a compiled snippet as a short handler; lf is the snippet's chunk function in the VM (call it to
// get whatever the chunk returns).
func (g *Generation) RunFunc(ctx context.Context, f *Func, ev string, timeout time.Duration, fn func(L *lua.LState, lf *lua.LFunction) error) error {
	parent, err := tooDeep(ctx, ev)
	if err != nil {
		return err
	}
	vm, err := g.get()
	if err != nil {
		return err
	}
	defer g.put(vm)
	lf := vm.funcFor(f)
	return vm.runNested(ctx, parent, ev, timeout, func(L *lua.LState) error { return fn(L, lf) })
}

// Acquire checks out a VM for a long handler (a call flow) bound to ctx: no time limit, and every blocking Go
// function must select on L.Context().Done(). Release it when done.
func (g *Generation) Acquire(ctx context.Context) (*VM, error) {
	vm, err := g.get()
	if err != nil {
		return nil, err
	}
	lctx, cancel := context.WithCancelCause(ctx)
	vm.rt.setLong(vm, true)
	vm.long = true
	vm.cancelCur.Store(&cancel)
	vm.depth.Store(1)
	vm.started.Store(time.Now().UnixNano())
	vm.longState = vm.begin()
	vm.rt.wakeWatchdog()
	// Handlers the flow starts (a transform of a channel it sends on...) run one level deeper.
	vm.L.SetContext(context.WithValue(lctx, invocationKey{}, vm))
	return vm, nil
}

// Release ends a long use: the VM returns to its pool unless its context was cancelled.
func (vm *VM) Release() {
	if !vm.long {
		return
	}
	if f := vm.cancelCur.Load(); f != nil {
		if vm.L.Context().Err() != nil {
			vm.dead.Store(true)
		}
		(*f)(context.Canceled)
	}
	vm.long = false
	vm.rt.setLong(vm, false)
	vm.end(vm.longState)
	vm.waiting.Store(false)
	vm.cancelCur.Store(&vm.baseCancel)
	vm.L.SetContext(vm.ctx)
	vm.L.SetTop(0)
	vm.endInvocation()
	vm.gen.put(vm)
}

// LongError converts an error raised by a long handler into a *ScriptError, naming the cancellation
// cause (memory guard, hangup...) when the VM's context was cancelled.
func (vm *VM) LongError(err error, ev string) error {
	if err == nil {
		return nil
	}
	if cause := context.Cause(vm.L.Context()); cause != nil {
		se := scriptError(err, ev)
		se.Cause = cause
		if cause == ErrMemory || cause == ErrShutdown {
			return vm.cancelled(err, cause, ev, 0)
		}
		return se
	}
	return vm.describe(err, ev)
}

// start begins the generation's background work (top-level timers and subscriptions).
func (g *Generation) start() {
	for _, h := range g.byKind["timer"] {
		g.startTimer(h)
	}
	for _, h := range g.byKind["subscribe"] {
		g.startSubscription(h)
	}
}

// retire stops timers and subscriptions and closes idle VMs; handlers still running finish and their VMs
// close when returned.
func (g *Generation) retire() {
	if g.retired.Swap(true) {
		return
	}
	g.cancel()
	g.bgMu.Lock()
	stops := g.stops
	g.stops = nil
	for pt := range g.pinned {
		pt.stopLocked()
	}
	g.pinned = nil
	g.bgMu.Unlock()
	for _, stop := range stops {
		stop()
	}
	g.poolMu.Lock()
	free := g.free
	g.free = nil
	g.poolMu.Unlock()
	for _, vm := range free {
		vm.mu.Lock() // a timer may be about to run on it (it then sees the generation retired)
		vm.close()
		vm.mu.Unlock()
	}
}

// take removes vm from the pool if it is there: the caller, who holds vm.mu, then owns it.
func (g *Generation) take(vm *VM) bool {
	g.poolMu.Lock()
	defer g.poolMu.Unlock()
	for i, f := range g.free {
		if f == vm {
			g.free = append(g.free[:i], g.free[i+1:]...)
			return true
		}
	}
	return false
}

// onRetire registers cleanup; it runs at once when the generation is already retired.
func (g *Generation) onRetire(stop func()) {
	g.bgMu.Lock()
	if g.retired.Load() {
		g.bgMu.Unlock()
		stop()
		return
	}
	g.stops = append(g.stops, stop)
	g.bgMu.Unlock()
}
