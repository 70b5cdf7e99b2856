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
	lua "github.com/yuin/gopher-lua"
)

func init() {
	// A sparse write such as t[2^25] would otherwise allocate the whole array part up to that index.
	// Keys past this bound go to the hash part, which grows with what is actually stored.
	lua.MaxArrayIndex = 1 << 16
}

// Topics is what sb.publish and sb.subscribe need from the engine's bus.
type Topics interface {
	Publish(topic string, payload any) int
	Subscribe(topic string, deliver func(payload any)) (cancel func(), err error)
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
}

// Runtime owns the script generations, the shared cache, the watchdog and the services that bindings use.
type Runtime struct {
	cfg      Config
	fsys     fs.FS
	display  string
	log      *logrus.Entry
	poolSize int
	services *Services

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
}

// Services are the Go objects bindings reach from Lua: the cache and topics for the core, and whatever each
// part provides under its own name (the channel directory, the socket server...).
type Services struct {
	Cache  *Cache
	Topics Topics
	Log    *logrus.Entry

	mu    sync.RWMutex
	parts map[string]any
}

// Provide makes v available to bindings under name; parts call it when they are built.
func (s *Services) Provide(name string, v any) {
	s.mu.Lock()
	s.parts[name] = v
	s.mu.Unlock()
}

// Lookup returns what was provided under name, or nil.
func (s *Services) Lookup(name string) any {
	s.mu.RLock()
	defer s.mu.RUnlock()
	return s.parts[name]
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
	}
	if rt.display == "" {
		rt.display = strings.TrimSuffix(opts.Config.ScriptsDir, "/")
	}
	rt.poolSize = opts.Config.PoolSize
	if rt.poolSize == 0 {
		rt.poolSize = 4 * runtime.GOMAXPROCS(0)
	}
	rt.services = &Services{Cache: NewCache(opts.Config.CacheMaxEntries), Topics: opts.Topics, Log: rt.log, parts: map[string]any{}}
	rt.shared = newShared(rt)
	ctx, cancel := context.WithCancel(context.Background())
	rt.stop = cancel
	rt.wg.Add(1)
	go rt.watchdog(ctx)
	return rt, nil
}

// Services returns the services bindings use.
func (rt *Runtime) Services() *Services { return rt.services }

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

// Check compiles and loads every script without serving them: the offline validation of `switchboard check`.
func Check(cfg Config, fsys fs.FS, display string) []*ScriptError {
	l := logrus.New()
	l.SetOutput(discard{})
	rt, err := New(Options{Config: cfg, FS: fsys, Display: display, Log: logrus.NewEntry(l)})
	if err != nil {
		return []*ScriptError{{Message: err.Error()}}
	}
	defer rt.Close()
	err = rt.Load()
	var le *LoadError
	if errors.As(err, &le) {
		return le.Errors
	}
	if err != nil {
		return []*ScriptError{{Message: err.Error()}}
	}
	return nil
}

type discard struct{}

func (discard) Write(p []byte) (int, error) { return len(p), nil }

// Close retires the current generation (its timers and subscriptions stop) and stops the watchdog.
func (rt *Runtime) Close() {
	rt.loadMu.Lock()
	if g := rt.current.Swap(nil); g != nil {
		g.retire()
	}
	rt.loadMu.Unlock()
	rt.stop()
	rt.wg.Wait()
	rt.shared.close()
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

// MemoryCancellations counts the times the heap passed lua.memory_limit_mb with Lua handlers running.
func (rt *Runtime) MemoryCancellations() int64 { return rt.memTrips.Load() }

// LiveVMs counts the VMs that exist now (pooled, running, or owned by a call).
func (rt *Runtime) LiveVMs() int {
	rt.vmMu.Lock()
	defer rt.vmMu.Unlock()
	return len(rt.vms)
}

const watchdogTick = 5 * time.Millisecond

// watchdog cancels handlers past their deadline or whose caller went away, and every running handler when the
// heap passes lua.memory_limit_mb. It reads atomics only, so handlers pay two stores for being watched.
func (rt *Runtime) watchdog(ctx context.Context) {
	defer rt.wg.Done()
	t := time.NewTicker(watchdogTick)
	defer t.Stop()
	sample := []metrics.Sample{{Name: "/memory/classes/heap/objects:bytes"}}
	limit := uint64(rt.cfg.MemoryLimitMB) << 20
	var batch []*VM
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		now := time.Now().UnixNano()
		overMemory := false
		if limit > 0 {
			metrics.Read(sample)
			if sample[0].Value.Kind() == metrics.KindUint64 && sample[0].Value.Uint64() > limit {
				overMemory = true
			}
		}
		batch = batch[:0]
		rt.vmMu.Lock()
		set := rt.short
		if overMemory {
			set = rt.vms
		}
		for vm := range set {
			if vm.busy.Load() {
				batch = append(batch, vm)
			}
		}
		rt.vmMu.Unlock()
		cancelled := 0
		for _, vm := range batch {
			switch d := vm.deadline.Load(); {
			case overMemory:
				vm.cancel(ErrMemory)
				cancelled++
			case d != 0 && now > d:
				vm.cancel(ErrTimeout)
			case d != 0:
				if done, _ := vm.callerDone.Load().(<-chan struct{}); done != nil {
					select {
					case <-done:
						vm.cancel(context.Canceled)
					default:
					}
				}
			}
		}
		if overMemory && cancelled > 0 {
			rt.memTrips.Add(1)
			rt.log.WithFields(logrus.Fields{"heap_bytes": sample[0].Value.Uint64(), "limit_mb": rt.cfg.MemoryLimitMB,
				"cancelled": cancelled}).Error("heap over lua.memory_limit_mb: cancelled every running Lua handler")
			runtime.GC()
		}
	}
}
