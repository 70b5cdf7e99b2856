package luabind

import (
	"context"
	"errors"
	"fmt"
	"net/url"
	"path"
	"sort"
	"strings"
	"time"

	"github.com/sirupsen/logrus"
	lua "github.com/yuin/gopher-lua"

	"github.com/switchboard/switchboard/engine/esl"
	"github.com/switchboard/switchboard/engine/esl/dbh"
)

// modLua is the mod_lua side of a generation: the scripts under lua.freeswitch_dir, compiled once with the
// rest and run per call, top to bottom, in a state of their own (mod_lua makes a new lua_State per run).
type modLua struct {
	dir     string             // "freeswitch/" (the folder, with its slash); "" = off
	display string             // "scripts/freeswitch"
	root    string             // where require looks, relative to the scripts folder, with its slash ("" = the folder itself)
	flows   map[string]*script // flow name (path below dir, without .lua) -> script
	files   map[string]*script // every compiled script by its path in the scripts folder (what require may load)
}

// splitModLua takes the mod_lua-style scripts out of the ones run at load, and refuses a top-level script
// that reads the global session only mod_lua provides (it would fail at load with a puzzling nil index).
func splitModLua(cfg Config, display string, scripts []*script) ([]*script, *modLua, []*ScriptError) {
	ml := &modLua{flows: map[string]*script{}, files: map[string]*script{}}
	if d := strings.Trim(path.Clean("/"+strings.ReplaceAll(cfg.FreeSWITCHDir, "\\", "/")), "/"); cfg.FreeSWITCHDir != "" && d != "" {
		ml.dir = d + "/"
		ml.display = path.Join(display, d)
	}
	root := cfg.FreeSWITCHRequireRoot
	if root == "" {
		root = cfg.FreeSWITCHDir
	}
	if r := strings.Trim(path.Clean("/"+strings.ReplaceAll(root, "\\", "/")), "/"); r != "" {
		ml.root = r + "/"
	}
	rest := scripts[:0:0]
	var errs []*ScriptError
	for _, s := range scripts {
		ml.files[s.rel] = s
		if ml.dir != "" && strings.HasPrefix(s.rel, ml.dir) {
			ml.flows[strings.TrimSuffix(strings.TrimPrefix(s.rel, ml.dir), ".lua")] = s
			continue
		}
		if !s.module && ml.dir != "" {
			if line, name := modLuaGlobal(s.proto); line > 0 {
				errs = append(errs, &ScriptError{File: s.name, Line: line,
					Message: fmt.Sprintf("uses the global %s: mod_lua-style flows belong in %s/", name, ml.display)})
				continue
			}
		}
		rest = append(rest, s)
	}
	return rest, ml, errs
}

// modLuaGlobal finds the first line reading the global session in a chunk or its functions (sb scripts get
// their session as an argument; a global one means a file written for mod_lua). The global freeswitch is
// left to run time, where indexing it says where the mod_lua table lives.
func modLuaGlobal(p *lua.FunctionProto) (int, string) {
	line, name := 0, ""
	var walk func(p *lua.FunctionProto)
	walk = func(p *lua.FunctionProto) {
		for pc, inst := range p.Code {
			if int(inst>>26) != lua.OP_GETGLOBAL {
				continue
			}
			k, ok := p.Constants[int(inst&0x3ffff)].(lua.LString)
			if !ok || k != "session" {
				continue
			}
			if pc < len(p.DbgSourcePositions) {
				if l := p.DbgSourcePositions[pc]; l > 0 && (line == 0 || l < line) {
					line, name = l, string(k)
				}
			}
		}
		for _, c := range p.FunctionPrototypes {
			walk(c)
		}
	}
	walk(p)
	return line, name
}

// clashes refuses a flow name that is both an sb.flow and a mod_lua-style file.
func (ml *modLua) clashes(g *Generation) []*ScriptError {
	var errs []*ScriptError
	for _, h := range g.byKind[kindFlow] {
		if s, ok := ml.flows[h.Name]; ok {
			errs = append(errs, &ScriptError{File: s.name, Message: fmt.Sprintf("flow %q is also registered with sb.flow at %s: rename one", h.Name, h.Where)})
		}
	}
	return errs
}

// resolve finds the mod_lua-style script for a flow name, splitting arguments off a socket path:
// "voicemail/check/default" runs voicemail.lua with argv {"check", "default"} when no longer name exists.
func (ml *modLua) resolve(name string) (*script, string, []string) {
	name = strings.TrimSuffix(name, ".lua")
	if s, ok := ml.flows[name]; ok {
		return s, name, nil
	}
	segs := strings.Split(name, "/")
	for i := len(segs) - 1; i > 0; i-- {
		n := strings.TrimSuffix(strings.Join(segs[:i], "/"), ".lua")
		if s, ok := ml.flows[n]; ok {
			args := make([]string, 0, len(segs)-i)
			for _, a := range segs[i:] {
				if u, err := url.PathUnescape(a); err == nil {
					a = u
				}
				args = append(args, a)
			}
			return s, n, args
		}
	}
	return nil, "", nil
}

// ModLuaFlows lists the mod_lua-style flows of the generation, sorted.
func (g *Generation) ModLuaFlows() []string {
	var out []string
	for n := range g.modLua.flows {
		out = append(out, n)
	}
	sort.Strings(out)
	return out
}

// HasFlow reports whether name (possibly with arguments after it in a socket path) names a flow:
// sb.flow or a mod_lua-style script.
func (g *Generation) HasFlow(name string) bool {
	if _, ok := g.Handler(kindFlow, name); ok {
		return true
	}
	s, _, _ := g.modLua.resolve(name)
	return s != nil
}

// modLuaFlow runs one mod_lua-style script for a call.
type modLuaFlow struct {
	g    *Generation
	s    *script
	name string
	args []string
}

const modCallKey = "switchboard.modlua.call"

// modCall is what a mod_lua-style run knows: its call (nil for an API-style run), its objects and its
// confinement. It lives in the state's registry; the shared functions find it with callOf(L).
type modCall struct {
	vm     *VM
	g      *Generation
	name   string // script name below lua.freeswitch_dir
	cfg    esl.Config
	s      *esl.Session // nil in API mode
	ls     *luaSession  // the session global
	log    *logrus.Entry
	stream *luaStream // API mode
	db     *dbh.Pools
	ownDB  bool // db belongs to this run (API mode)
	loaded *lua.LTable
	files  *dataFiles

	globals map[string]*string // global_getvar answers (nil = unset)
	legs    []*luaSession
	dbhs    []*dbh.Handle
}

func callOf(L *lua.LState) *modCall {
	ud, ok := L.G.Registry.RawGetString(modCallKey).(*lua.LUserData)
	if !ok {
		return nil
	}
	c, _ := ud.Value.(*modCall)
	return c
}

// newCallVM makes a fresh sandboxed state for one run: no script of the generation has run in it, and it
// is closed when the run ends, so nothing one caller's script set is seen by the next.
func newCallVM(g *Generation) *VM {
	rt := g.rt
	L := lua.NewState(lua.Options{
		SkipOpenLibs:        true,
		CallStackSize:       200,
		RegistrySize:        256,
		RegistryMaxSize:     256 * 1024,
		MinimizeStackMemory: true,
	})
	vm := &VM{L: L, gen: g, rt: rt, private: true}
	vm.baseCtx, vm.baseCancel = context.WithCancelCause(context.Background())
	vm.ctx = &vmContext{vm: vm, base: vm.baseCtx, done: vm.baseCtx.Done()}
	L.SetContext(vm.ctx)
	vm.callerDone.Store((<-chan struct{})(neverDone))
	openSandbox(vm)
	rt.track(vm)
	return vm
}

// startLong binds a call VM to ctx for a run with no time limit (the call's context ends it).
func (vm *VM) startLong(ctx context.Context) {
	lctx, cancel := context.WithCancelCause(ctx)
	vm.rt.setLong(vm, true)
	vm.long = true
	vm.cancelCur.Store(&cancel)
	vm.depth.Store(1)
	vm.started.Store(time.Now().UnixNano())
	vm.longState = vm.begin()
	vm.rt.wakeWatchdog()
	// Handlers the script starts run one level deeper, as from a call flow.
	vm.L.SetContext(context.WithValue(lctx, invocationKey{}, vm))
}

// endLong closes a call VM after its run.
func (vm *VM) endLong() {
	if f := vm.cancelCur.Load(); f != nil {
		(*f)(context.Canceled)
	}
	vm.end(vm.longState)
	vm.waiting.Store(false)
	vm.close()
}

// setupModCall gives a fresh state mod_lua's globals: freeswitch, argv, require and package, the os and
// io subsets, and the call's session when there is one.
func setupModCall(vm *VM, c *modCall, argv0 string, args []string) {
	L := vm.L
	ud := L.NewUserData()
	ud.Value = c
	L.G.Registry.RawSetString(modCallKey, ud)
	G := L.G.Global
	G.RawSetString("freeswitch", modProxy(L, vm.rt, "freeswitch"))
	G.RawSetString("os", modProxy(L, vm.rt, "os"))
	G.RawSetString("io", modProxy(L, vm.rt, "io"))
	argv := L.CreateTable(len(args), 1)
	argv.RawSetInt(0, lua.LString(argv0))
	for _, a := range args {
		argv.Append(lua.LString(a))
	}
	G.RawSetString("argv", argv)
	c.loaded = L.CreateTable(0, 4)
	pkg := L.CreateTable(0, 3)
	pkg.RawSetString("loaded", c.loaded)
	pkg.RawSetString("path", lua.LString(c.g.modLua.root+"?.lua"))
	pkg.RawSetString("cpath", lua.LString(""))
	G.RawSetString("package", pkg)
	G.RawSetString("require", L.NewFunction(modRequire))
}

// modRequire is require for mod_lua-style scripts: "a.b.c" loads a/b/c.lua (or a/b/c/init.lua) under
// lua.freeswitch_require_root, compiled at load; nothing outside the scripts folder.
func modRequire(L *lua.LState) int {
	name := L.CheckString(1)
	c := callOf(L)
	if v := c.loaded.RawGetString(name); v != lua.LNil {
		L.Push(v)
		return 1
	}
	ml := c.g.modLua
	base := ml.root + strings.ReplaceAll(name, ".", "/")
	var s *script
	for _, rel := range []string{base + ".lua", base + "/init.lua"} {
		if found, ok := ml.files[rel]; ok {
			s = found
			break
		}
	}
	if s == nil {
		return raise(L, "module %q not found: require looks for %s.lua under %s (compiled when scripts load; nothing outside lua.scripts_dir)",
			name, strings.ReplaceAll(name, ".", "/"), path.Join(c.g.rt.display, strings.TrimSuffix(ml.root, "/")))
	}
	c.loaded.RawSetString(name, lua.LTrue) // a module that requires itself sees true, as in Lua
	L.Push(L.NewFunctionFromProto(s.proto))
	L.Push(lua.LString(name))
	L.Call(1, 1)
	v := L.Get(-1)
	L.Pop(1)
	if v == lua.LNil {
		v = c.loaded.RawGetString(name) // the module may have set package.loaded[name] itself
	}
	c.loaded.RawSetString(name, v)
	L.Push(v)
	return 1
}

// Run runs the script for the call, top to bottom, as mod_lua's lua application does.
func (f *modLuaFlow) Run(ctx context.Context, s *esl.Session) error {
	s.SetModLua()
	vm := newCallVM(f.g)
	vm.startLong(ctx)
	defer vm.endLong()
	L := vm.L
	c := &modCall{vm: vm, g: f.g, name: f.name, cfg: s.Config(), s: s, log: s.Log(), db: s.DB()}
	c.files = &dataFiles{dir: c.cfg.DataDir}
	setupModCall(vm, c, f.name+".lua", f.args)
	ls := newLuaSession(L, vm, s, true)
	c.ls = ls
	L.G.Global.RawSetString("session", ls.ud)
	L.G.Global.RawSetString(s.UUID(), ls.ud)
	L.Push(L.NewFunctionFromProto(f.s.proto))
	err := L.PCall(0, 0, nil)
	c.end()
	if err == nil || isExit(err) {
		return nil
	}
	return graceError(vm.LongError(err, "esl.flow "+f.name+" uuid "+s.UUID()))
}

// graceError words a flow cancelled by esl.flow_grace as such (not "context canceled").
func graceError(err error) error {
	var se *ScriptError
	if errors.As(err, &se) && errors.Is(se.Cause, esl.ErrFlowGrace) {
		se.Message = "cancelled: " + esl.ErrFlowGrace.Error()
	}
	return err
}

// end is mod_lua's end of a run: the session drops its hook and input callback (neither runs now),
// originated legs still up with auto-hangup are hung up, database handles and files are released.
func (c *modCall) end() {
	ctx, cancel := context.WithTimeout(context.Background(), c.cfg.CommandTimeout)
	defer cancel()
	if c.ls != nil {
		c.ls.inputFn, c.ls.hookFn, c.ls.inputName, c.ls.hookName = nil, nil, "", ""
	}
	for _, leg := range c.legs {
		if leg.leg != nil && leg.legAutoHangup && !leg.transferred {
			_ = leg.leg.Hangup(ctx, "NORMAL_CLEARING")
		}
	}
	for _, h := range c.dbhs {
		h.Release()
	}
	c.files.close()
	if c.ownDB && c.db != nil {
		c.db.Close()
	}
}

// flowFor resolves a call to a mod_lua-style script of g, or nil.
func (g *Generation) modLuaFlowFor(call *esl.CallInfo) esl.Flow {
	s, name, args := g.modLua.resolve(call.Flow)
	if s == nil {
		return nil
	}
	call.Flow = name
	if len(args) > 0 {
		call.Args = append(args, call.Args...)
	}
	return &modLuaFlow{g: g, s: s, name: name, args: call.Args}
}
