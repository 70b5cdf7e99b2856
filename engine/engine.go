package engine

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"net"
	"os"
	"reflect"
	"sort"
	"strings"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/sirupsen/logrus"

	"github.com/switchboard/switchboard/engine/bus"
	"github.com/switchboard/switchboard/engine/channel"
	"github.com/switchboard/switchboard/engine/channel/channellua"
	"github.com/switchboard/switchboard/engine/cluster"
	"github.com/switchboard/switchboard/engine/esl/esllua"
	"github.com/switchboard/switchboard/engine/socket"
	"github.com/switchboard/switchboard/engine/socket/socketlua"
	"github.com/switchboard/switchboard/luabind"
)

// Options builds an Engine.
type Options struct {
	Config Config
	Logger *logrus.Logger // nil: built from Config.Log, writing to stderr
	// Scripts replaces the scripts directory (the embedded defaults when scripts/ is absent).
	Scripts        fs.FS
	ScriptsDisplay string
}

// Engine is one running Switchboard.
type Engine struct {
	cfg      Config
	logger   *logrus.Logger
	log      *logrus.Entry
	registry *prometheus.Registry
	metrics  prometheus.Registerer
	bus      *bus.Bus
	node     *cluster.Node // nil unless cluster.nats_url is set (cluster.go)
	lua      *luabind.Runtime
	eslLua   *esllua.Binding // call control's binding: flows, and the API scripts of admin POST /lua
	parts    []namedPart
	admin    *admin
	started  time.Time

	reloads   *prometheus.CounterVec
	stateMu   sync.Mutex
	shutdowns int
	reloadLog reloadLog // the last load's outcome, for the status page (status.go)
}

// New builds the engine and loads the scripts; nothing listens until Start.
func New(opts Options) (*Engine, error) {
	cfg := opts.Config
	logger := opts.Logger
	if logger == nil {
		logger = NewLogger(cfg.Log, os.Stderr)
	}
	e := &Engine{cfg: cfg, logger: logger, log: logrus.NewEntry(logger), registry: prometheus.NewRegistry()}
	e.metrics = e.registry
	e.registry.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	e.registry.MustRegister(buildInfoGauge())
	backplane, store, err := e.newCluster()
	if err != nil {
		return nil, err
	}
	e.bus = bus.New(bus.Options{QueueSize: cfg.Bus.QueueSize, QueueBytes: cfg.Bus.QueueBytes, Log: e.log.WithField("part", "bus"), Metrics: e.metrics,
		Backplane: backplane})

	rt, err := luabind.New(luabind.Options{Config: cfg.Lua, FS: opts.Scripts, Display: opts.ScriptsDisplay,
		Log: e.log, Topics: busTopics{e.bus}, Cache: store})
	if err != nil {
		e.bus.Close()
		e.stopCluster(context.Background())
		return nil, err
	}
	e.lua = rt
	e.reloads = prometheus.NewCounterVec(prometheus.CounterOpts{Name: "switchboard_lua_reloads_total",
		Help: "Script loads by result (ok, failed)."}, []string{"result"})
	e.registry.MustRegister(e.reloads,
		prometheus.NewGaugeFunc(prometheus.GaugeOpts{Name: "switchboard_lua_generation", Help: "Serving script generation."},
			func() float64 {
				if g := rt.Current(); g != nil {
					return float64(g.ID())
				}
				return 0
			}),
		prometheus.NewGaugeFunc(prometheus.GaugeOpts{Name: "switchboard_lua_vms", Help: "Lua VMs alive (pooled, running or owned by a call)."},
			func() float64 { return float64(rt.LiveVMs()) }),
		prometheus.NewCounterFunc(prometheus.CounterOpts{Name: "switchboard_lua_memory_cancellations_total",
			Help: "Lua handlers the memory guard cancelled because the heap passed lua.memory_limit_mb."},
			func() float64 { return float64(rt.MemoryCancellations()) }))

	// Each part is built with what it asks of scripts (looked up in the serving generation at each use),
	// then each part's binding with the part's Go object, and only then the scripts load: every VM of every
	// generation opens the same bindings.
	e.eslLua = esllua.New(esllua.OptionsFrom(cfg.Lua))
	builders := []struct {
		name  string
		build func(*Engine) (Part, error)
	}{{"socket", newSocketPart}, {"relay", newRelayPart}, {"esl", newESLPart}, {"channels", newChannelPart}}
	for _, b := range builders {
		p, err := b.build(e)
		if err != nil {
			e.abandon()
			return nil, partError(b.name, err)
		}
		if p != nil {
			e.parts = append(e.parts, namedPart{b.name, p})
		}
	}
	if err := rt.Bind(bindings(e.socketServer(), e.eslLua, e.channelSet())...); err != nil {
		e.abandon()
		return nil, err
	}
	if err := rt.Load(); err != nil {
		e.reloads.WithLabelValues("failed").Inc()
		e.abandon()
		return nil, fmt.Errorf("scripts: %w", err)
	}
	e.reloads.WithLabelValues("ok").Inc()
	e.noteReload(nil, nil)
	return e, nil
}

// abandon releases what a New that failed had built: parts may hold files (the relay's journal), which
// their Shutdown releases, then the scripts and the bus.
func (e *Engine) abandon() {
	sctx, cancel := context.WithTimeout(context.Background(), e.cfg.ShutdownTimeout)
	_ = e.stopParts(sctx)
	cancel()
	e.close()
}

// bindings are every part's Lua binding: scripts see the same switchboard module whichever parts run (a
// disabled part's functions are there; what needs the part says it is not running). srv is nil without
// the socket server, set without channels.
func bindings(srv *socket.Server, esl *esllua.Binding, set *channel.Set) []luabind.Binding {
	return []luabind.Binding{socketlua.New(srv), esl, channellua.New(set)}
}

// ScriptRuntime builds a Lua runtime for cfg's scripts with every part's binding and no part running (the
// channels binding has no channels): what `switchboard check`, `flow test` and `run-script` load scripts
// into. The caller loads it and closes it; esl is call control's binding (its flows, RunAPIScript).
func ScriptRuntime(cfg Config, scripts fs.FS, display string, log *logrus.Entry) (rt *luabind.Runtime, esl *esllua.Binding, err error) {
	esl = esllua.New(esllua.OptionsFrom(cfg.Lua))
	rt, err = luabind.New(luabind.Options{Config: cfg.Lua, FS: scripts, Display: display, Log: log, Bindings: bindings(nil, esl, nil)})
	return rt, esl, err
}

// Start starts every part, then the admin listener. If one fails, everything started so far is shut down
// (the failing part too: a part's Shutdown is safe on a part that did not start) and the error is a
// *StartError naming the part, its address and the cause. Shutdown may still be called after a failed
// Start; it then releases the scripts and the bus.
func (e *Engine) Start(ctx context.Context) error {
	e.started = time.Now()
	var failed *StartError
	for _, np := range e.parts {
		if err := np.p.Start(ctx); err != nil {
			failed = startError(np.name, e.cfg.listenAddr(np.name), err)
			break
		}
	}
	if failed == nil {
		if err := e.startAdmin(); err != nil {
			failed = startError("admin", e.cfg.Admin.Listen, err)
		}
	}
	if failed == nil && e.node != nil {
		e.node.SetStatus((&statusAPI{e: e, maxBytes: e.cfg.Admin.StatusMaxBytes}).statusBody)
	}
	if failed != nil {
		cause := failed.Err
		if failed.Addr != "" {
			cause = ListenCause(cause)
		}
		e.log.WithFields(logrus.Fields{"part": failed.Part, "addr": failed.Addr}).WithError(cause).Error("start failed: stopping what started")
		sctx, cancel := context.WithTimeout(context.Background(), e.cfg.ShutdownTimeout)
		defer cancel()
		_ = e.stopParts(sctx)
		return failed
	}
	e.log.WithField("parts", len(e.parts)).Info("switchboard started")
	return nil
}

// Reload builds a new script generation and swaps it in only if it is valid, then lets parts reload their
// own files. On failure everything keeps serving as it was; the error lists each problem.
func (e *Engine) Reload(ctx context.Context) error {
	err := e.lua.Load()
	if err != nil {
		e.reloads.WithLabelValues("failed").Inc()
		e.log.WithError(err).Error("reload failed: the previous scripts keep serving")
	} else {
		e.reloads.WithLabelValues("ok").Inc()
	}
	var errs, partErrs []error
	if err != nil {
		errs = append(errs, err)
	}
	for _, np := range e.parts {
		if r, ok := np.p.(Reloader); ok {
			if rerr := r.Reload(ctx); rerr != nil {
				e.log.WithField("part", np.name).WithError(rerr).Error("reload failed: the previous state keeps serving")
				errs = append(errs, partError(np.name, rerr))
				partErrs = append(partErrs, errs[len(errs)-1])
			}
		}
	}
	e.noteReload(err, partErrs)
	return errors.Join(errs...)
}

// Shutdown stops accepting, lets each part answer what is pending and say goodbye, then stops the admin
// listener, the scripts' timers and the bus, all within ctx.
func (e *Engine) Shutdown(ctx context.Context) error {
	e.stateMu.Lock()
	e.shutdowns++
	first := e.shutdowns == 1
	e.stateMu.Unlock()
	if !first {
		return nil
	}
	// Past the budget, every Lua handler still running is cancelled, so that shutdown ends in time whatever
	// scripts do (parts waiting for their handlers then see them end).
	stopAbort := context.AfterFunc(ctx, e.lua.Abort)
	defer stopAbort()
	err := e.stopParts(ctx)
	if e.admin != nil {
		if aerr := e.admin.shutdown(ctx); aerr != nil {
			err = errors.Join(err, fmt.Errorf("admin: %w", aerr))
		}
	}
	e.close()
	e.log.Info("switchboard stopped")
	return err
}

func (e *Engine) stopParts(ctx context.Context) error {
	var errs []error
	var wg sync.WaitGroup
	var mu sync.Mutex
	for _, np := range e.parts {
		wg.Add(1)
		go func(np namedPart) {
			defer wg.Done()
			if err := np.p.Shutdown(ctx); err != nil {
				mu.Lock()
				errs = append(errs, partError(np.name, err))
				mu.Unlock()
			}
		}(np)
	}
	wg.Wait()
	return errors.Join(errs...)
}

func (e *Engine) close() {
	if e.lua != nil {
		e.lua.Close()
	}
	e.bus.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	e.stopCluster(ctx)
}

// Addrs lists what the engine listens on, by name: "admin" and whatever each part reports.
func (e *Engine) Addrs() map[string]net.Addr {
	out := map[string]net.Addr{}
	for _, np := range e.parts {
		for k, v := range np.p.Addrs() {
			out[k] = v
		}
	}
	if e.admin != nil {
		out["admin"] = e.admin.ln.Addr()
	}
	return out
}

// Config is the configuration the engine was built from.
func (e *Engine) Config() Config { return e.cfg }

// Runtime is the Lua runtime (for tests and tools).
func (e *Engine) Runtime() *luabind.Runtime { return e.lua }

// Reconfigure applies what can change while running (log.level, log.format) from a freshly loaded
// configuration, and names the sections whose changes wait for the next start.
func (e *Engine) Reconfigure(cfg Config) (restartNeeded []string) {
	fresh := NewLogger(cfg.Log, e.logger.Out)
	e.logger.SetLevel(fresh.GetLevel())
	e.logger.SetFormatter(fresh.Formatter)
	old, now := map[string]any{}, map[string]any{}
	flattenValue(e.cfg, old)
	flattenValue(cfg, now)
	seen := map[string]bool{}
	for k, v := range now {
		if strings.HasPrefix(k, "log.") || reflect.DeepEqual(old[k], v) {
			continue
		}
		if !seen[k] {
			seen[k] = true
			restartNeeded = append(restartNeeded, k)
		}
	}
	if !reflect.DeepEqual(e.cfg.Channels, cfg.Channels) {
		restartNeeded = append(restartNeeded, "channels")
	}
	sort.Strings(restartNeeded)
	e.cfg.Log = cfg.Log
	return restartNeeded
}
