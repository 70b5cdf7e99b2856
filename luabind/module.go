package luabind

import (
	"context"
	"fmt"
	"strings"
	"time"

	"github.com/sirupsen/logrus"
	lua "github.com/yuin/gopher-lua"
)

// openModule builds the switchboard module of one VM: the registration functions (which record into this
// VM), proxies of sb.log, sb.cache and sb.json, and each binding's additions, in a table of the VM's own
// that reads through to the shared core functions; scripts get a read-only proxy of it.
func openModule(vm *VM) *lua.LTable {
	L := vm.L
	s := vm.rt.shared
	mod := L.CreateTable(0, 16)
	mod.Metatable = s.libMeta["switchboard"]
	for name, fn := range map[string]lua.LGFunction{
		"on":        vm.sbOn,
		"after":     func(L *lua.LState) int { return vm.sbTimer(L, false) },
		"every":     func(L *lua.LState) int { return vm.sbTimer(L, true) },
		"subscribe": vm.sbSubscribe,
	} {
		mod.RawSetString(name, L.NewFunction(fn))
	}
	for _, name := range []string{"log", "cache", "json"} {
		mod.RawSetString(name, s.proxy(L, name))
	}
	for _, b := range vm.rt.bindings {
		b.Open(vm, mod)
	}
	return s.readOnlyProxy(L, "switchboard", mod)
}

// sb.on(event, fn): listen to an engine event (socket.connect, channel.up, ...).
func (vm *VM) sbOn(L *lua.LState) int {
	event := L.CheckString(1)
	fn := L.CheckFunction(2)
	if _, err := vm.Register("on", event, fn, nil); err != nil {
		return Raise(L, "sb.on: %v", err)
	}
	return 0
}

// timerSpec is the Meta of a top-level timer registration.
type timerSpec struct {
	Interval time.Duration
	Repeat   bool
}

// sb.after(ms, fn) / sb.every(ms, fn). At a script's top level the timer belongs to the generation and runs
// on any of its VMs; from inside a handler it is pinned to the VM that created it (its closure lives there).
// Either way it stops when the generation is replaced or the engine shuts down. Returns a cancel function.
func (vm *VM) sbTimer(L *lua.LState, repeat bool) int {
	name := "sb.after"
	if repeat {
		name = "sb.every"
	}
	ms := L.CheckNumber(1)
	fn := L.CheckFunction(2)
	if ms < 1 && repeat || ms < 0 {
		return Raise(L, "%s: interval must be at least 1 ms, got %v", name, ms)
	}
	spec := timerSpec{Interval: time.Duration(float64(ms) * float64(time.Millisecond)), Repeat: repeat}
	if vm.loading {
		h, err := vm.Register("timer", name, fn, spec)
		if err != nil {
			return Raise(L, "%s: %v", name, err)
		}
		g := vm.gen
		L.Push(L.NewFunction(func(L *lua.LState) int {
			if cur := g.rt.Current(); cur != nil && cur.id == g.id {
				g.stopTimer(h)
			}
			return 0
		}))
		return 1
	}
	if vm.long {
		return Raise(L, "%s is not available inside a call flow; use session:sleep(ms)", name)
	}
	pt, err := vm.pinTimer(spec, fn, strings.TrimSuffix(L.Where(1), ":"))
	if err != nil {
		return Raise(L, "%s: %v", name, err)
	}
	L.Push(L.NewFunction(func(L *lua.LState) int { pt.stop(); return 0 }))
	return 1
}

// startTimer runs a top-level timer of the generation.
func (g *Generation) startTimer(h *Handler) {
	spec := h.Meta.(timerSpec)
	var t *time.Timer
	ev := fmt.Sprintf("%s %v (%s)", h.Name, spec.Interval, h.Where)
	fire := func() {
		if g.ctx.Err() != nil {
			return
		}
		if err := g.Call(g.ctx, h, ev, 0, nil); err != nil {
			g.rt.log.WithField("script", h.Where).Error(err.Error())
		}
		if spec.Repeat && g.ctx.Err() == nil {
			g.bgMu.Lock()
			t.Reset(spec.Interval)
			g.bgMu.Unlock()
		}
	}
	g.bgMu.Lock()
	t = time.AfterFunc(spec.Interval, fire)
	g.bgMu.Unlock()
	g.timerStops(h, t)
}

func (g *Generation) timerStops(h *Handler, t *time.Timer) {
	g.onRetire(func() { t.Stop() })
	g.bgMu.Lock()
	if g.timers == nil {
		g.timers = map[*Handler]*time.Timer{}
	}
	g.timers[h] = t
	g.bgMu.Unlock()
}

func (g *Generation) stopTimer(h *Handler) {
	g.bgMu.Lock()
	t := g.timers[h]
	g.bgMu.Unlock()
	if t != nil {
		t.Stop()
	}
}

// pinnedTimer is a timer created inside a handler: it runs fn on the VM that created it (fn's upvalues live
// there). The generation holds it only while it is live: a fired sb.after, a stopped timer, or one whose VM
// is gone is forgotten, with its closure.
type pinnedTimer struct {
	vm      *VM
	fn      *lua.LFunction
	spec    timerSpec
	ev      string
	where   string
	t       *time.Timer
	stopped bool // guarded by the generation's bgMu
}

// pinTimer runs fn on this VM after spec.Interval (and every interval after that if it repeats), waiting
// for the VM to be free. At most lua.max_timers live at once per generation.
func (vm *VM) pinTimer(spec timerSpec, fn *lua.LFunction, where string) (*pinnedTimer, error) {
	g := vm.gen
	ev := fmt.Sprintf("sb.after %v (%s)", spec.Interval, where)
	if spec.Repeat {
		ev = fmt.Sprintf("sb.every %v (%s)", spec.Interval, where)
	}
	pt := &pinnedTimer{vm: vm, fn: fn, spec: spec, ev: ev, where: where}
	g.bgMu.Lock()
	defer g.bgMu.Unlock()
	if g.retired.Load() {
		pt.stopped = true // the generation is being replaced: the timer would never run
		return pt, nil
	}
	if max := vm.rt.cfg.MaxTimers; len(g.pinned) >= max {
		return nil, fmt.Errorf("%d timers are live, the limit (lua.max_timers); stop some or let them fire", max)
	}
	if g.pinned == nil {
		g.pinned = map[*pinnedTimer]struct{}{}
	}
	g.pinned[pt] = struct{}{}
	vm.timers.Add(1)
	pt.t = time.AfterFunc(spec.Interval, pt.fire)
	return pt, nil
}

func (pt *pinnedTimer) stop() {
	g := pt.vm.gen
	g.bgMu.Lock()
	pt.stopLocked()
	delete(g.pinned, pt)
	g.bgMu.Unlock()
}

func (pt *pinnedTimer) stopLocked() {
	if pt.stopped {
		return
	}
	pt.stopped = true
	pt.vm.timers.Add(-1)
	if pt.t != nil {
		pt.t.Stop()
	}
}

func (pt *pinnedTimer) fire() {
	vm, g := pt.vm, pt.vm.gen
	g.bgMu.Lock()
	if pt.stopped {
		g.bgMu.Unlock()
		return
	}
	if !pt.spec.Repeat {
		pt.stopLocked()
		delete(g.pinned, pt)
	}
	g.bgMu.Unlock()
	if g.ctx.Err() != nil {
		return
	}
	// Own the VM: wait for whoever uses it, then take it out of the pool so no request checks it out
	// while the timer runs (a request that popped it meanwhile waits for mu, then sees it closed or not).
	vm.mu.Lock()
	if vm.closed.Load() || g.ctx.Err() != nil {
		vm.mu.Unlock()
		if vm.closed.Load() && g.ctx.Err() == nil {
			vm.rt.log.WithField("script", pt.where).Warn(pt.ev + ": timer dropped: the VM it was created in was discarded (its handler failed or was cancelled)")
		}
		pt.stop()
		return
	}
	took := g.take(vm)
	err := vm.runShort(g.ctx, pt.ev, 0, func(L *lua.LState) error {
		L.Push(pt.fn)
		return L.PCall(0, 0, nil)
	})
	if err != nil {
		vm.rt.log.WithField("script", pt.where).Error(err.Error())
	}
	alive := !vm.dead.Load() && !g.retired.Load()
	switch {
	case !alive:
		g.closeOwned(vm)
	case took:
		g.put(vm)
	default:
		vm.mu.Unlock() // a request popped it from the pool and waits for it
	}
	if !pt.spec.Repeat {
		return
	}
	if !alive {
		pt.stop()
		return
	}
	g.bgMu.Lock()
	if !pt.stopped {
		pt.t.Reset(pt.spec.Interval)
	}
	g.bgMu.Unlock()
}

// sb.publish(topic, value): hand a copy of value to every subscriber of topic; returns how many.
func sbPublish(L *lua.LState, rt *Runtime) int {
	topic := L.CheckString(1)
	b := BudgetFor(L)
	payload, err := fromLua(L.Get(2), 0, &b)
	if err != nil {
		return Raise(L, "sb.publish: %v", err)
	}
	topics := rt.topics
	if topics == nil {
		L.Push(lua.LNumber(0))
		return 1
	}
	L.Push(lua.LNumber(topics.Publish(topic, payload)))
	return 1
}

// sb.subscribe(topic, fn): top level only; fn(value, topic) runs for every message while this generation serves.
func (vm *VM) sbSubscribe(L *lua.LState) int {
	topic := L.CheckString(1)
	fn := L.CheckFunction(2)
	if _, err := vm.Register("subscribe", topic, fn, nil); err != nil {
		return Raise(L, "sb.subscribe: %v", err)
	}
	return 0
}

func (g *Generation) startSubscription(h *Handler) {
	topics := g.rt.topics
	if topics == nil {
		g.rt.log.WithField("script", h.Where).Warnf("sb.subscribe(%q): no bus in this engine", h.Name)
		return
	}
	ev := "subscribe " + h.Name
	deliver := func(topic string, payload any) {
		if g.ctx.Err() != nil {
			return
		}
		err := g.Run(g.ctx, h, ev, 0, func(L *lua.LState, f *lua.LFunction) error {
			L.Push(f)
			L.Push(ToLua(L, payload))
			L.Push(lua.LString(topic))
			return L.PCall(2, 0, nil)
		})
		if err != nil {
			g.rt.log.WithField("script", h.Where).Error(err.Error())
		}
	}
	var cancel func()
	var err error
	if named, ok := topics.(NamedTopics); ok {
		cancel, err = named.SubscribeNamed(h.Name, deliver)
	} else {
		cancel, err = topics.Subscribe(h.Name, func(payload any) { deliver(h.Name, payload) })
	}
	if err != nil {
		g.rt.log.WithField("script", h.Where).Errorf("sb.subscribe(%q): %v", h.Name, err)
		return
	}
	g.onRetire(cancel)
}

// sb.sleep(ms): wait without holding a CPU; ends early (with an error) when the handler is cancelled.
func sbSleep(L *lua.LState) int {
	ms := L.CheckNumber(1)
	d := time.Duration(float64(ms) * float64(time.Millisecond))
	if d <= 0 {
		return 0
	}
	t := time.NewTimer(d)
	defer t.Stop()
	ctx := L.Context()
	if ctx == nil {
		ctx = context.Background()
	}
	if vm := VMOf(L); vm != nil {
		defer vm.Blocking()()
	}
	select {
	case <-t.C:
		return 0
	case <-ctx.Done():
		return Raise(L, "sb.sleep interrupted: %v", context.Cause(ctx))
	}
}

func logTable(L *lua.LState, rt *Runtime) *lua.LTable {
	t := L.NewTable()
	for _, lvl := range []logrus.Level{logrus.DebugLevel, logrus.InfoLevel, logrus.WarnLevel, logrus.ErrorLevel} {
		lvl := lvl
		name := lvl.String()
		if lvl == logrus.WarnLevel {
			name = "warn"
		}
		t.RawSetString(name, L.NewFunction(func(L *lua.LState) int {
			msg := L.CheckString(1)
			e := rt.log.WithField("script", strings.TrimSuffix(L.Where(1), ":"))
			if f, ok := L.Get(2).(*lua.LTable); ok {
				fields := logrus.Fields{}
				f.ForEach(func(k, v lua.LValue) { fields[k.String()] = FromLua(v) })
				e = e.WithFields(fields)
			}
			e.Log(lvl, msg)
			return 0
		}))
	}
	return t
}

func cacheTable(L *lua.LState, rt *Runtime) *lua.LTable {
	store := rt.store
	t := L.NewTable()
	fail := func(L *lua.LState, err error) int {
		L.Push(lua.LNil)
		L.Push(lua.LString(err.Error()))
		return 2
	}
	t.RawSetString("save", L.NewFunction(func(L *lua.LState) int {
		key := L.CheckString(1)
		b := BudgetFor(L)
		val, err := fromLua(L.CheckAny(2), 0, &b)
		if err != nil {
			return Raise(L, "sb.cache.save: %v", err)
		}
		ttl := time.Duration(float64(L.OptNumber(3, 0)) * float64(time.Millisecond))
		ctx, done := cacheCall(L)
		defer done()
		if err := store.Save(ctx, key, val, len(key)+b.bytes, ttl); err != nil {
			return fail(L, err)
		}
		L.Push(lua.LTrue)
		return 1
	}))
	t.RawSetString("load", L.NewFunction(func(L *lua.LState) int {
		key := L.CheckString(1)
		ctx, done := cacheCall(L)
		e, err := store.Load(ctx, key)
		done()
		if err != nil {
			return fail(L, err)
		}
		info := L.CreateTable(0, 5)
		info.RawSetString("key", lua.LString(e.Key))
		info.RawSetString("value", ToLua(L, e.Value))
		info.RawSetString("createdAt", lua.LNumber(e.CreatedAt.UnixMilli()))
		if !e.ExpiresAt.IsZero() {
			info.RawSetString("expireTimestamp", lua.LNumber(e.ExpiresAt.UnixMilli()))
		}
		if !e.LastReadAt.IsZero() {
			info.RawSetString("lastReadAt", lua.LNumber(e.LastReadAt.UnixMilli()))
		}
		L.Push(ToLua(L, e.Value))
		L.Push(info)
		return 2
	}))
	boolOp := func(op func(ctx context.Context, key string) (bool, error)) *lua.LFunction {
		return L.NewFunction(func(L *lua.LState) int {
			key := L.CheckString(1)
			ctx, done := cacheCall(L)
			ok, err := op(ctx, key)
			done()
			if err != nil {
				return fail(L, err)
			}
			L.Push(lua.LBool(ok))
			return 1
		})
	}
	t.RawSetString("destroy", boolOp(store.Destroy))
	t.RawSetString("unlock", boolOp(store.Unlock))
	t.RawSetString("checkLock", boolOp(store.CheckLock))
	t.RawSetString("lock", L.NewFunction(func(L *lua.LState) int {
		key := L.CheckString(1)
		ttl := DefaultLockTTL
		if L.GetTop() >= 2 && L.Get(2) != lua.LNil {
			ttl = time.Duration(float64(L.CheckNumber(2)) * float64(time.Millisecond))
			if ttl <= 0 {
				return Raise(L, "sb.cache.lock: expireTimeMS must be positive, got %v", L.Get(2))
			}
		}
		ctx, done := cacheCall(L)
		ok, err := store.Lock(ctx, key, ttl)
		done()
		if err != nil {
			return fail(L, err)
		}
		L.Push(lua.LBool(ok))
		return 1
	}))
	t.RawSetString("size", L.NewFunction(func(L *lua.LState) int {
		ctx, done := cacheCall(L)
		n, err := store.Size(ctx)
		done()
		if err != nil {
			return fail(L, err)
		}
		L.Push(lua.LNumber(n))
		return 1
	}))
	return t
}

// cacheCall is the context of a sb.cache operation (the handler's, so that a cancelled handler stops
// waiting on the cluster) and marks the VM as waiting, not running, meanwhile.
func cacheCall(L *lua.LState) (context.Context, func()) {
	ctx := L.Context()
	if ctx == nil {
		ctx = context.Background()
	}
	if vm := VMOf(L); vm != nil {
		return ctx, vm.Blocking()
	}
	return ctx, func() {}
}

// jsonNull is the Go value behind sb.json.null: every converter to Go turns it into nil, which JSON
// encodes as null (a Lua nil would drop the key instead).
type jsonNull struct{}

func jsonTable(L *lua.LState) *lua.LTable {
	t := L.NewTable()
	null := L.NewUserData()
	null.Value = jsonNull{}
	nullMeta := L.NewTable()
	nullMeta.RawSetString("__metatable", lua.LFalse)
	nullMeta.RawSetString("__tostring", L.NewFunction(func(L *lua.LState) int {
		L.Push(lua.LString("null"))
		return 1
	}))
	null.Metatable = nullMeta
	t.RawSetString("null", null)
	t.RawSetString("encode", L.NewFunction(func(L *lua.LState) int {
		bud := BudgetFor(L)
		b, err := encodeJSON(L.CheckAny(1), &bud)
		if err != nil {
			L.Push(lua.LNil)
			L.Push(lua.LString("sb.json.encode: " + err.Error()))
			return 2
		}
		L.Push(lua.LString(b))
		return 1
	}))
	t.RawSetString("decode", L.NewFunction(func(L *lua.LState) int {
		v, err := DecodeJSON(L, []byte(L.CheckString(1)))
		if err != nil {
			L.Push(lua.LNil)
			L.Push(lua.LString("sb.json.decode: " + err.Error()))
			return 2
		}
		L.Push(v)
		return 1
	}))
	return t
}
