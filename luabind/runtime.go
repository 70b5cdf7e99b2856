package luabind

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"runtime"
	"runtime/metrics"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/sirupsen/logrus"
)

// Topics is what sb.publish and sb.subscribe need from the engine's bus.
type Topics interface {
	Publish(topic string, payload any) int
	Subscribe(topic string, deliver func(payload any)) (cancel func(), err error)
}

// NamedTopics is Topics that also says each message's topic, for subscriptions to a pattern ("orders.*"),
// where it differs from the subscription's; sb.subscribe's handler gets it as its second argument.
type NamedTopics interface {
	SubscribeNamed(topic string, deliver func(topic string, payload any)) (cancel func(), err error)
}

// Options builds a Runtime.
type Options struct {
	Config Config
	// FS holds the scripts; nil reads Config.ScriptsDir from disk at every load.
	FS fs.FS
	// Display prefixes script names in errors; defaults to Config.ScriptsDir.
	Display string
	Log     *logrus.Entry
	Topics  Topics // nil: sb.publish delivers nowhere and sb.subscribe fails
	// Cache backs sb.cache; nil: the in-process cache (Runtime.Cache), bounded by lua.cache_max_entries and
	// lua.cache_max_bytes.
	Cache CacheStore
	// Bindings add each part's functions to the switchboard module (Runtime.Bind adds more before the
	// first Load).
	Bindings []Binding
}

// Runtime owns the script generations, the shared cache, the watchdog and the bindings of the parts.
type Runtime struct {
	cfg      Config
	fsys     fs.FS
	display  string
	log      *logrus.Entry
	poolSize int
	cache    *Cache     // the in-process cache (what store is unless the engine is clustered)
	store    CacheStore // what sb.cache uses
	topics   Topics
	bindings []Binding // fixed at the first Load
	loaded   bool      // a Load ran (guarded by loadMu)

	loadMu  sync.Mutex
	current atomic.Pointer[Generation]
	nextID  int64

	vmMu sync.Mutex
	vms  map[*VM]struct{} // every live VM (the memory guard cancels the busy ones)
	// short are the VMs not owned by a call: only they carry deadlines, so the watchdog walks them alone
	// unless the heap is over its limit (a thousand parked calls cost its tick nothing).
	short map[*VM]struct{}

	stop     context.CancelFunc
	wg       sync.WaitGroup
	memTrips atomic.Int64
	shared   *shared
	closed   atomic.Bool
	stopping atomic.Bool // Abort was called: no new handler starts

	// The watchdog sleeps while no handler runs (idle means idle): it sets sleeping, checks once more, and
	// waits on wake; a handler that starts while sleeping is set swaps it off and sends the wake.
	sleeping atomic.Bool
	wake     chan struct{}
	ticks    atomic.Int64 // watchdog ticks so far (tests check that an idle runtime does not tick)
}

// New starts a runtime with no generation yet; call Load.
func New(opts Options) (*Runtime, error) {
	if err := opts.Config.Validate(); err != nil {
		return nil, err
	}
	if opts.Log == nil {
		l := logrus.New()
		l.SetOutput(os.Stderr)
		opts.Log = logrus.NewEntry(l)
	}
	rt := &Runtime{
		cfg:     opts.Config,
		fsys:    opts.FS,
		display: opts.Display,
		log:     opts.Log.WithField("part", "lua"),
		vms:     map[*VM]struct{}{},
		short:   map[*VM]struct{}{},
		wake:    make(chan struct{}, 1),
	}
	if rt.display == "" {
		rt.display = strings.TrimSuffix(opts.Config.ScriptsDir, "/")
	}
	rt.poolSize = opts.Config.PoolSize
	if rt.poolSize == 0 {
		rt.poolSize = 4 * runtime.GOMAXPROCS(0)
	}
	rt.cache = NewCache(opts.Config.CacheMaxEntries, opts.Config.CacheMaxBytes)
	rt.store = opts.Cache
	if rt.store == nil {
		rt.store = LocalStore{rt.cache}
	}
	rt.topics = opts.Topics
	rt.bindings = append([]Binding(nil), opts.Bindings...)
	rt.shared = newShared(rt)
	ctx, cancel := context.WithCancel(context.Background())
	rt.stop = cancel
	rt.wg.Add(1)
	go rt.watchdog(ctx)
	return rt, nil
}

// Bind adds bindings; it must be called before the first Load (every VM of every generation has the same
// module).
func (rt *Runtime) Bind(bs ...Binding) error {
	rt.loadMu.Lock()
	defer rt.loadMu.Unlock()
	if rt.loaded {
		return errors.New("lua: bindings are added before the first load")
	}
	rt.bindings = append(rt.bindings, bs...)
	return nil
}

// PoolSize is how many idle VMs each generation keeps (lua.pool_size, or sized from GOMAXPROCS).
func (rt *Runtime) PoolSize() int { return rt.poolSize }

// Cache is the in-process cache (sb.cache's store unless the engine is clustered: Store).
func (rt *Runtime) Cache() *Cache { return rt.cache }

// Store is what sb.cache uses: the in-process cache, or the cluster's shared bucket.
func (rt *Runtime) Store() CacheStore { return rt.store }

// Log is the runtime's logger (field part=lua).
func (rt *Runtime) Log() *logrus.Entry { return rt.log }

// Display is what script names in errors start with (the scripts directory as the operator knows it).
func (rt *Runtime) Display() string { return rt.display }

// Config returns the runtime's configuration.
func (rt *Runtime) Config() Config { return rt.cfg }

// Current returns the serving generation, or nil before the first successful Load.
func (rt *Runtime) Current() *Generation { return rt.current.Load() }

// LoadError lists every script problem of a failed load.
type LoadError struct{ Errors []*ScriptError }

func (e *LoadError) Error() string {
	lines := make([]string, len(e.Errors))
	for i, se := range e.Errors {
		lines[i] = se.Error()
	}
	return strings.Join(lines, "\n")
}

// Load builds a new generation beside the current one and swaps it in only if every script compiled and ran
// its top level. On failure the current generation keeps serving and the error is a *LoadError.
func (rt *Runtime) Load() error {
	rt.loadMu.Lock()
	defer rt.loadMu.Unlock()
	rt.loaded = true
	fsys := rt.fsys
	if fsys == nil {
		if _, err := os.Stat(rt.cfg.ScriptsDir); err != nil {
			return &LoadError{Errors: []*ScriptError{{File: rt.display, Message: fmt.Sprintf("scripts directory: %v", err)}}}
		}
		fsys = os.DirFS(rt.cfg.ScriptsDir)
	}
	start := time.Now()
	g, errs := buildGeneration(rt, fsys, rt.display)
	if len(errs) > 0 {
		for _, se := range errs {
			rt.log.WithField("script", se.Location()).Error(se.Error())
		}
		return &LoadError{Errors: errs}
	}
	rt.nextID++
	g.id = rt.nextID
	old := rt.current.Swap(g)
	g.start()
	if old != nil {
		old.retire()
	}
	rt.log.WithFields(logrus.Fields{"generation": g.id, "scripts": len(g.scripts), "handlers": len(g.handlers),
		"took": time.Since(start).Round(time.Microsecond)}).Info("scripts loaded")
	return nil
}

// Close retires the current generation (its timers and subscriptions stop), cancels every handler still
// running (they end with "the engine is shutting down"), refuses new ones, and stops the watchdog. It does
// not wait for running handlers: each ends at its next Lua instruction or blocking call. Closing twice is
// harmless.
func (rt *Runtime) Close() {
	if rt.closed.Swap(true) {
		return
	}
	rt.loadMu.Lock()
	if g := rt.current.Swap(nil); g != nil {
		g.retire()
	}
	rt.loadMu.Unlock()
	rt.Abort()
	rt.stop()
	rt.wg.Wait()
	rt.shared.close()
}

// Abort cancels every running handler, call flows included, with ErrShutdown, and refuses new ones (the
// disconnect hooks of connections closed after it, timers...). The engine calls it when its shutdown budget
// (shutdown_timeout) runs out, so that shutdown ends in time whatever scripts do.
func (rt *Runtime) Abort() {
	rt.stopping.Store(true)
	type running struct {
		vm *VM
		st uint64
	}
	rt.vmMu.Lock()
	busy := make([]running, 0, len(rt.vms))
	for vm := range rt.vms {
		if st, ok := vm.busy(); ok {
			busy = append(busy, running{vm, st})
		}
	}
	rt.vmMu.Unlock()
	for _, r := range busy {
		r.vm.cancel(r.st, ErrShutdown)
	}
}

func (rt *Runtime) track(vm *VM) {
	rt.vmMu.Lock()
	rt.vms[vm] = struct{}{}
	rt.short[vm] = struct{}{}
	rt.vmMu.Unlock()
}

func (rt *Runtime) untrack(vm *VM) {
	rt.vmMu.Lock()
	delete(rt.vms, vm)
	delete(rt.short, vm)
	rt.vmMu.Unlock()
}

// setLong moves a VM between the short set (watched for deadlines) and call ownership.
func (rt *Runtime) setLong(vm *VM, long bool) {
	rt.vmMu.Lock()
	if _, live := rt.vms[vm]; live {
		if long {
			delete(rt.short, vm)
		} else {
			rt.short[vm] = struct{}{}
		}
	}
	rt.vmMu.Unlock()
}

// MemoryCancellations counts the Lua handlers the memory guard cancelled because the heap passed
// lua.memory_limit_mb.
func (rt *Runtime) MemoryCancellations() int64 { return rt.memTrips.Load() }

// LiveVMs counts the VMs that exist now (pooled, running, or owned by a call).
func (rt *Runtime) LiveVMs() int {
	rt.vmMu.Lock()
	defer rt.vmMu.Unlock()
	return len(rt.vms)
}

// WatchdogTicks counts the watchdog's wake-ups so far; it does not grow while no handler runs.
func (rt *Runtime) WatchdogTicks() int64 { return rt.ticks.Load() }

const watchdogTick = 5 * time.Millisecond

// wakeWatchdog is called by every handler that starts; it costs one atomic load unless the watchdog sleeps.
func (rt *Runtime) wakeWatchdog() {
	if rt.sleeping.Load() && rt.sleeping.CompareAndSwap(true, false) {
		select {
		case rt.wake <- struct{}{}:
		default:
		}
	}
}

// watchdog cancels handlers past their deadline or whose caller went away, and runs the memory guard. It
// ticks only while handlers run: with none, it sleeps until one starts (no wake-ups on an idle engine). It
// reads atomics only, so handlers pay a few stores for being watched.
func (rt *Runtime) watchdog(ctx context.Context) {
	defer rt.wg.Done()
	t := time.NewTicker(watchdogTick)
	defer t.Stop()
	guard := memoryGuard{rt: rt, limit: uint64(rt.cfg.MemoryLimitMB) << 20,
		sample: []metrics.Sample{{Name: "/memory/classes/heap/objects:bytes"}}}
	var batch []*VM
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		rt.ticks.Add(1)
		var busy int
		batch, busy = rt.checkDeadlines(batch[:0])
		clear(batch) // keep no closed VM alive until the next tick
		if guard.limit > 0 {
			guard.check()
		}
		if busy > 0 {
			continue
		}
		// Nothing runs: sleep until a handler starts. The store of sleeping comes before the second look,
		// and a handler sets busy before it loads sleeping, so one of the two always sees the other.
		rt.sleeping.Store(true)
		if rt.anyBusy() && rt.sleeping.CompareAndSwap(true, false) {
			continue
		}
		t.Stop()
		guard.reset()
		select {
		case <-ctx.Done():
			return
		case <-rt.wake:
		}
		t.Reset(watchdogTick)
	}
}

// checkDeadlines cancels the handlers past their deadline or whose caller's context is done, and returns
// how many handlers run (call flows included).
func (rt *Runtime) checkDeadlines(batch []*VM) ([]*VM, int) {
	now := time.Now().UnixNano()
	rt.vmMu.Lock()
	busy := len(rt.vms) - len(rt.short) // VMs owned by call flows
	for vm := range rt.short {
		if _, ok := vm.busy(); ok {
			batch = append(batch, vm)
		}
	}
	rt.vmMu.Unlock()
	busy += len(batch)
	for _, vm := range batch {
		st, ok := vm.busy()
		if !ok {
			continue
		}
		switch d := vm.deadline.Load(); {
		case d != 0 && now > d:
			vm.cancel(st, ErrTimeout)
		case d != 0:
			if done, _ := vm.callerDone.Load().(<-chan struct{}); done != nil {
				select {
				case <-done:
					vm.cancel(st, context.Canceled)
				default:
				}
			}
		}
	}
	return batch, busy
}

func (rt *Runtime) anyBusy() bool {
	rt.vmMu.Lock()
	defer rt.vmMu.Unlock()
	if len(rt.vms) > len(rt.short) {
		return true
	}
	for vm := range rt.short {
		if vm.state.Load()&stateBusy != 0 {
			return true
		}
	}
	return false
}
