// Package socketlua is the socket server's Lua binding: sb.action and sb.verb, the socket.connect,
// socket.disconnect and socket.say hooks, and the conn objects handlers receive (docs/lua-api.md,
// "Socket server"). Scripts implements the socket.Actions, socket.Verbs and socket.Hooks the server asks
// for, looking handlers up in the generation serving at each request.
package socketlua

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"strconv"
	"strings"
	"sync/atomic"
	"time"

	lua "github.com/yuin/gopher-lua"

	"github.com/switchboard/switchboard/engine/socket"
	"github.com/switchboard/switchboard/luabind"
)

// Handler kinds registered by the socket bindings.
const (
	kindAction    = "action"
	kindVerb      = "verb"
	kindValidator = "socket.validator" // name: action + "\x00" + input
)

// actionMeta is what sb.action{...} declared (from the first VM; every VM registers the same).
type actionMeta struct {
	event       string // "socket.action <name>", for errors and logs (the conn id is in the log fields)
	action      atomic.Pointer[luaAction]
	description string
	inputs      []socket.Input
	validators  []bool // per input: has a validator function
	timeout     time.Duration
	example     any
}

const connTypeName = "switchboard.socket.conn"

// Binding adds sb.action, sb.verb, sb.rooms, sb.connections and sb.server to every VM (luabind.Binding).
// The conn objects handlers receive are built per request (Scripts).
type Binding struct {
	srv *socket.Server // nil when the socket server is not running: sb.rooms... then raise
}

// New returns the socket server's binding; srv is the running server (nil when the part is disabled:
// actions and verbs still register, the functions that need the server say it is not running).
func New(srv *socket.Server) *Binding { return &Binding{srv: srv} }

// Open adds the socket functions to a VM's module.
func (b *Binding) Open(vm *luabind.VM, mod *lua.LTable) {
	L := vm.L
	mod.RawSetString("action", L.NewFunction(func(L *lua.LState) int { return sbAction(vm, L) }))
	mod.RawSetString("verb", L.NewFunction(func(L *lua.LState) int { return sbVerb(vm, L) }))
	b.openSurface(vm, mod)
}

// connMetatable is the metatable of conn objects, built once per runtime and shared by its VMs.
func connMetatable(rt *luabind.Runtime) lua.LValue {
	return rt.Shared(connTypeName, func(L *lua.LState) lua.LValue {
		mt := L.NewTable()
		methods := L.SetFuncs(L.NewTable(), connMethods)
		mt.RawSetString("__metatable", lua.LFalse)
		mt.RawSetString("__index", L.NewFunction(func(L *lua.LState) int {
			c := checkConn(L)
			switch key := L.CheckString(2); key {
			case "id":
				L.Push(lua.LString(c.ID()))
			case "remoteIP":
				L.Push(lua.LString(c.RemoteIP()))
			case "remotePort":
				L.Push(lua.LNumber(c.RemotePort()))
			case "connectedAt":
				L.Push(lua.LNumber(c.ConnectedAt().UnixMilli()))
			default:
				L.Push(methods.RawGetString(key))
			}
			return 1
		}))
		mt.RawSetString("__tostring", L.NewFunction(func(L *lua.LState) int {
			L.Push(lua.LString("socket connection " + checkConn(L).ID()))
			return 1
		}))
		return mt
	})
}

// sb.action{name=, description=, inputs={key={required=, default=, validator=fn}}, run=fn(conn, params), timeout=ms}
func sbAction(vm *luabind.VM, L *lua.LState) int {
	spec := L.CheckTable(1)
	name, ok := spec.RawGetString("name").(lua.LString)
	if !ok || name == "" {
		return luabind.Raise(L, "sb.action: name must be a non-empty string")
	}
	run, ok := spec.RawGetString("run").(*lua.LFunction)
	if !ok {
		return luabind.Raise(L, "sb.action %s: run must be a function(conn, params)", name)
	}
	meta := &actionMeta{event: "socket.action " + string(name)}
	switch d := spec.RawGetString("description").(type) {
	case lua.LString:
		meta.description = string(d)
	case *lua.LNilType:
	default:
		return luabind.Raise(L, "sb.action %s: description must be a string", name)
	}
	switch t := spec.RawGetString("timeout").(type) {
	case lua.LNumber:
		if t <= 0 {
			return luabind.Raise(L, "sb.action %s: timeout must be a positive number of milliseconds", name)
		}
		meta.timeout = time.Duration(float64(t) * float64(time.Millisecond))
	case *lua.LNilType:
	default:
		return luabind.Raise(L, "sb.action %s: timeout must be a number of milliseconds", name)
	}
	if ex := spec.RawGetString("outputExample"); ex != lua.LNil {
		b := luabind.BudgetFor(L)
		meta.example, _ = orderedFromLua(ex, 0, &b)
	}
	var validators []struct {
		key string
		fn  *lua.LFunction
	}
	switch inputs := spec.RawGetString("inputs").(type) {
	case *lua.LTable:
		var bad string
		for k, v := inputs.Next(lua.LNil); k != lua.LNil; k, v = inputs.Next(k) {
			key, ok := k.(lua.LString)
			if !ok {
				bad = fmt.Sprintf("input names must be strings, got %s", k.Type())
				break
			}
			in := socket.Input{Name: string(key)}
			hasValidator := false
			switch d := v.(type) {
			case *lua.LTable:
				in.Required = lua.LVAsBool(d.RawGetString("required"))
				if def := d.RawGetString("default"); def != lua.LNil {
					b := luabind.BudgetFor(L)
					in.Default, _ = orderedFromLua(def, 0, &b)
				}
				switch f := d.RawGetString("validator").(type) {
				case *lua.LFunction:
					hasValidator = true
					validators = append(validators, struct {
						key string
						fn  *lua.LFunction
					}{string(key), f})
				case *lua.LNilType:
				default:
					bad = fmt.Sprintf("input %s: validator must be a function", key)
				}
			case lua.LBool:
				in.Required = bool(d)
			default:
				bad = fmt.Sprintf("input %s: expected a table {required=, default=, validator=}", key)
			}
			meta.inputs = append(meta.inputs, in)
			meta.validators = append(meta.validators, hasValidator)
		}
		if bad != "" {
			return luabind.Raise(L, "sb.action %s: %s", name, bad)
		}
	case *lua.LNilType:
	default:
		return luabind.Raise(L, "sb.action %s: inputs must be a table", name)
	}
	if _, err := vm.Register(kindAction, string(name), run, meta); err != nil {
		return luabind.Raise(L, "sb.action: %v", err)
	}
	for _, v := range validators {
		if _, err := vm.RegisterPart(kindValidator, string(name)+"\x00"+v.key, v.fn, nil); err != nil {
			return luabind.Raise(L, "sb.action %s: %v", name, err)
		}
	}
	return 0
}

// sb.verb(name, fn(conn, args)): a custom verb; its return value is the reply's data.
func sbVerb(vm *luabind.VM, L *lua.LState) int {
	name := L.CheckString(1)
	fn := L.CheckFunction(2)
	if name == "" || socket.IsVerb(name) {
		return luabind.Raise(L, "sb.verb: %q is a built-in verb or empty", name)
	}
	for _, c := range name {
		if c == ' ' {
			return luabind.Raise(L, "sb.verb: %q: a verb is one word", name)
		}
	}
	if _, err := vm.Register(kindVerb, name, fn, nil); err != nil {
		return luabind.Raise(L, "sb.verb: %v", err)
	}
	return 0
}

// Scripts gives the socket server the actions, verbs and hooks of rt's scripts. Each request looks them
// up in the generation serving at that moment, so a reload applies to the next request.
type Scripts struct {
	rt   *luabind.Runtime
	plan atomic.Pointer[chatPlan] // the chat middleware of the serving generation, in running order
}

// NewScripts wires a runtime to the socket server (socket.Options Actions, Verbs and Hooks).
func NewScripts(rt *luabind.Runtime) *Scripts { return &Scripts{rt: rt} }

var (
	_ socket.Actions = (*Scripts)(nil)
	_ socket.Verbs   = (*Scripts)(nil)
	_ socket.Hooks   = (*Scripts)(nil)
)

// Lookup finds an action of the current generation.
func (s *Scripts) Lookup(name string) (socket.Action, bool) {
	g := s.rt.Current()
	if g == nil {
		return nil, false
	}
	h, ok := g.Handler(kindAction, name)
	if !ok {
		return nil, false
	}
	m := h.Meta.(*actionMeta)
	if a := m.action.Load(); a != nil {
		return a, true
	}
	a := &luaAction{g: g, h: h}
	m.action.Store(a)
	return a, true
}

// List names the actions of the current generation in registration order.
func (s *Scripts) List() []string {
	g := s.rt.Current()
	if g == nil {
		return nil
	}
	hs := g.Handlers(kindAction)
	out := make([]string, len(hs))
	for i, h := range hs {
		out[i] = h.Name
	}
	return out
}

// LookupVerb finds a custom verb of the current generation.
func (s *Scripts) LookupVerb(name string) (socket.Verb, bool) {
	g := s.rt.Current()
	if g == nil {
		return nil, false
	}
	h, ok := g.Handler(kindVerb, name)
	if !ok {
		return nil, false
	}
	return &luaVerb{g: g, h: h}, true
}

// Connect runs the socket.connect listeners.
func (s *Scripts) Connect(ctx context.Context, c *socket.Conn) {
	s.event(ctx, "socket.connect", c)
}

// Disconnect runs the socket.disconnect listeners.
func (s *Scripts) Disconnect(ctx context.Context, c *socket.Conn) {
	s.event(ctx, "socket.disconnect", c)
}

func (s *Scripts) event(ctx context.Context, ev string, c *socket.Conn) {
	g := s.rt.Current()
	if g == nil {
		return
	}
	for _, h := range g.On(ev) {
		err := g.Run(ctx, h, ev+" conn "+c.ID(), 0, func(L *lua.LState, f *lua.LFunction) error {
			L.Push(f)
			L.Push(connValue(L, c))
			return L.PCall(1, 0, nil)
		})
		if err != nil {
			c.Log().WithField("script", h.Where).Error(err.Error())
		}
	}
}

// Say runs the socket.say listeners in order: each may return a new text (string), false to drop the
// message, or nothing to keep it as is.
func (s *Scripts) Say(ctx context.Context, c *socket.Conn, room, text string) (string, bool, error) {
	g := s.rt.Current()
	if g == nil {
		return text, true, nil
	}
	for _, h := range g.On("socket.say") {
		keep := true
		err := g.Run(ctx, h, "socket.say conn "+c.ID(), 0, func(L *lua.LState, f *lua.LFunction) error {
			L.Push(f)
			L.Push(connValue(L, c))
			L.Push(lua.LString(room))
			L.Push(lua.LString(text))
			if err := L.PCall(3, 1, nil); err != nil {
				return err
			}
			switch r := L.Get(-1).(type) {
			case lua.LString:
				text = string(r)
			case lua.LBool:
				keep = bool(r)
			case *lua.LNilType:
			default:
				return fmt.Errorf("socket.say listener returned a %s; expected a string, false or nothing", r.Type())
			}
			return nil
		})
		if err != nil {
			return "", false, err
		}
		if !keep {
			return "", false, nil
		}
	}
	return text, true, nil
}

type luaAction struct {
	g *luabind.Generation
	h *luabind.Handler
}

func (a *luaAction) Info() socket.ActionInfo {
	m := a.h.Meta.(*actionMeta)
	return socket.ActionInfo{Name: a.h.Name, Description: m.description, Inputs: m.inputs, Timeout: m.timeout,
		OutputExample: m.example, ValidatesInputs: true, EnforcesTimeout: true}
}

// Run validates the inputs and runs the action on one VM under the action's time limit (not the short
// handler limit: actions may sleep or wait).
func (a *luaAction) Run(ctx context.Context, c *socket.Conn, p socket.Params) (any, error) {
	g, h := a.g, a.h
	m := h.Meta.(*actionMeta)
	timeout := c.TimeLimit(socket.ActionInfo{Timeout: m.timeout})
	if dl, ok := ctx.Deadline(); ok && time.Until(dl) < timeout {
		timeout = time.Until(dl)
	}
	var result any
	var failure error
	err := g.RunVM(ctx, h, m.event, timeout, func(vm *luabind.VM, fn *lua.LFunction) error {
		L := vm.L
		err := socket.ApplyInputs(&p, m.inputs, func(i int, v any) error {
			if !m.validators[i] {
				return nil
			}
			vh, _ := g.Handler(kindValidator, h.Name+"\x00"+m.inputs[i].Name)
			L.Push(vm.Func(vh))
			L.Push(goToLua(L, v, 0))
			if err := L.PCall(1, 1, nil); err != nil {
				return err
			}
			r := L.Get(-1)
			L.Pop(1)
			switch r := r.(type) {
			case lua.LString:
				return publicError(string(r))
			case lua.LBool:
				if !r {
					return publicError(fmt.Sprintf("%s is not a valid value", m.inputs[i].Name))
				}
			}
			return nil
		})
		if err != nil {
			var pe publicError
			if errors.As(err, &pe) {
				failure = pe
				return nil
			}
			return err
		}
		base := L.GetTop()
		L.Push(fn)
		// Only build what run declares: function(conn) or function() skips the params table, the
		// costliest part of a call (docs/benchmarks.md).
		nargs := 2
		if fn.Proto != nil && fn.Proto.IsVarArg == 0 && int(fn.Proto.NumParameters) < 2 {
			nargs = int(fn.Proto.NumParameters)
		}
		if nargs >= 1 {
			L.Push(connValue(L, c))
		}
		if nargs >= 2 {
			L.Push(paramsTable(L, p))
		}
		if err := L.PCall(nargs, 2, nil); err != nil {
			return err
		}
		res, msg := L.Get(base+1), L.Get(base+2)
		if res == lua.LNil && msg != lua.LNil {
			failure = publicError(msg.String())
			return nil
		}
		b := vm.Budget()
		if t, ok := res.(*lua.LTable); ok {
			enc, ok, err := encodeResult(c.ReplyBuffer(), t, &b)
			if err != nil {
				return resultError(h, err)
			}
			if ok {
				result = enc
				return nil
			}
			b = vm.Budget()
		}
		if result, err = orderedFromLua(res, 0, &b); err != nil {
			return resultError(h, err)
		}
		return nil
	})
	if err != nil {
		return nil, actionFailure(err)
	}
	if failure != nil {
		return nil, failure
	}
	return result, nil
}

// resultError is the error of a handler whose result cannot be converted; it names the handler.
func resultError(h *luabind.Handler, err error) error {
	se := &luabind.ScriptError{Message: "cannot convert the result: " + err.Error()}
	if i := strings.LastIndexByte(h.Where, ':'); i > 0 {
		if line, aerr := strconv.Atoi(h.Where[i+1:]); aerr == nil {
			se.File, se.Line = h.Where[:i], line
		}
	}
	if se.File == "" {
		se.File = h.Where
	}
	return se
}

// encodeResult writes an action's result table (an object, not an array) straight to JSON, in the order
// and form orderedFromLua and the socket encoder would give it (luabind.AppendJSONObject). ok=false for
// anything that path treats specially: the caller then converts as usual. The reply's tail goes in the
// room left after it. buf is where to write (the connection's spare reply buffer, Conn.ReplyBuffer), nil
// for a new one.
func encodeResult(buf []byte, t *lua.LTable, bud *luabind.Budget) (socket.EncodedObject, bool, error) {
	if cap(buf) == 0 {
		buf = make([]byte, 0, 256)
	}
	b, ok, err := luabind.AppendJSONObject(buf[:0], t, socket.ReservedKey, bud)
	if !ok || err != nil {
		return nil, false, err
	}
	return b, true, nil
}

type luaVerb struct {
	g *luabind.Generation
	h *luabind.Handler
}

// Run runs a custom verb under the same limit as an action without a timeout of its own
// (socket.action_timeout), as the server's error text says; the caller's deadline still applies.
func (v *luaVerb) Run(ctx context.Context, c *socket.Conn, args string) (any, error) {
	var result any
	var failure error
	timeout := c.TimeLimit(socket.ActionInfo{})
	err := v.g.Run(ctx, v.h, "socket.verb "+v.h.Name+", conn "+c.ID(), timeout, func(L *lua.LState, f *lua.LFunction) error {
		base := L.GetTop()
		L.Push(f)
		L.Push(connValue(L, c))
		L.Push(lua.LString(args))
		if err := L.PCall(2, 2, nil); err != nil {
			return err
		}
		res, msg := L.Get(base+1), L.Get(base+2)
		if res == lua.LNil && msg != lua.LNil {
			failure = publicError(msg.String())
			return nil
		}
		b := luabind.BudgetFor(L)
		var err error
		if result, err = orderedFromLua(res, 0, &b); err != nil {
			return resultError(v.h, err)
		}
		return nil
	})
	if err != nil {
		return nil, actionFailure(err)
	}
	return result, failure
}

// publicError is an expected failure (nil, "message" or a validator's message): sent to the client as is.
type publicError string

func (e publicError) Error() string         { return string(e) }
func (e publicError) PublicMessage() string { return string(e) }

// scriptFailure is a Lua error raised by an action: the log gets file:line and the event, the client
// only the message.
type scriptFailure struct{ se *luabind.ScriptError }

func (e scriptFailure) Error() string         { return e.se.Error() }
func (e scriptFailure) Unwrap() error         { return e.se }
func (e scriptFailure) PublicMessage() string { return e.se.Message }

func actionFailure(err error) error {
	var se *luabind.ScriptError
	if !errors.As(err, &se) {
		return err
	}
	if errors.Is(se.Cause, luabind.ErrTimeout) || errors.Is(se.Cause, context.DeadlineExceeded) {
		return fmt.Errorf("%w: %w", socket.ErrTimeout, se)
	}
	return scriptFailure{se: se}
}

// connValue wraps a connection for Lua.
func connValue(L *lua.LState, c *socket.Conn) lua.LValue {
	ud := L.NewUserData()
	ud.Value = c
	ud.Metatable = connMetatable(luabind.VMOf(L).Runtime())
	return ud
}

func checkConn(L *lua.LState) *socket.Conn {
	ud := L.CheckUserData(1)
	c, ok := ud.Value.(*socket.Conn)
	if !ok {
		L.ArgError(1, "socket connection expected")
	}
	return c
}

// Methods of conn (conn:send{...}, conn:roomAdd("r"), ...). Expected failures return nil, message.
var connMethods = map[string]lua.LGFunction{
	"send": func(L *lua.LState) int {
		c := checkConn(L)
		b := luabind.BudgetFor(L)
		v, err := orderedFromLua(L.CheckAny(2), 0, &b)
		if err == nil {
			err = c.Send(v)
		}
		return okOrErr(L, err)
	},
	"rooms": func(L *lua.LState) int {
		rooms := checkConn(L).Rooms()
		t := L.CreateTable(len(rooms), 0)
		for i, r := range rooms {
			t.RawSetInt(i+1, lua.LString(r))
		}
		luabind.MarkArray(L, t)
		L.Push(t)
		return 1
	},
	"details": func(L *lua.LState) int {
		L.Push(goToLua(L, checkConn(L).Details(), 0))
		return 1
	},
	"roomAdd":   func(L *lua.LState) int { return okOrErr(L, checkConn(L).Join(L.Context(), L.CheckString(2))) },
	"roomLeave": func(L *lua.LState) int { return okOrErr(L, checkConn(L).Leave(L.Context(), L.CheckString(2))) },
	"say": func(L *lua.LState) int {
		c := checkConn(L)
		return okOrErr(L, c.Say(L.Context(), L.CheckString(2), L.CheckString(3)))
	},
	"param": func(L *lua.LState) int {
		p := checkConn(L).Params()
		v, _ := p.Get(L.CheckString(2))
		L.Push(goToLua(L, v, 0))
		return 1
	},
	"setParam": func(L *lua.LState) int {
		c := checkConn(L)
		b := luabind.BudgetFor(L)
		v, err := orderedFromLua(L.Get(3), 0, &b)
		if err != nil {
			return okOrErr(L, err)
		}
		c.SetParam(L.CheckString(2), v)
		return okOrErr(L, nil)
	},
	"params": func(L *lua.LState) int {
		L.Push(paramsTable(L, checkConn(L).Params()))
		return 1
	},
	"close": func(L *lua.LState) int {
		checkConn(L).Close()
		return 0
	},
}

func okOrErr(L *lua.LState, err error) int {
	if err != nil {
		L.Push(lua.LNil)
		L.Push(lua.LString(err.Error()))
		return 2
	}
	L.Push(lua.LTrue)
	return 1
}

// paramsTable converts params to a Lua table (JSON numbers become numbers, objects tables).
func paramsTable(L *lua.LState, p socket.Params) *lua.LTable {
	fields := p.Fields()
	t := L.CreateTable(0, len(fields))
	for _, f := range fields {
		t.RawSetString(f.Key, goToLua(L, f.Value, 0))
	}
	return t
}

// goToLua converts socket data (ordered objects, JSON numbers) to Lua, keeping object key order.
func goToLua(L *lua.LState, v any, depth int) lua.LValue {
	if depth > luabind.MaxDepth {
		return lua.LNil
	}
	switch x := v.(type) {
	case socket.Object:
		t := L.CreateTable(0, len(x))
		for _, f := range x {
			t.RawSetString(f.Key, goToLua(L, f.Value, depth+1))
		}
		return t
	case []any:
		t := L.CreateTable(len(x), 0)
		for i, e := range x {
			t.RawSetInt(i+1, goToLua(L, e, depth+1))
		}
		luabind.MarkArray(L, t)
		return t
	case time.Time:
		return lua.LNumber(x.UnixMilli())
	case json.Number:
		f, err := x.Float64()
		if err != nil {
			return lua.LString(x)
		}
		return lua.LNumber(f)
	}
	return luabind.ToLua(L, v)
}

// orderedFromLua converts a Lua value to socket data, keeping the insertion order of table keys (so a
// reply's fields come out in the order the script wrote them). Arrays (keys exactly 1..n) become []any,
// integral numbers int64. bud bounds the work (value.go).
func orderedFromLua(v lua.LValue, depth int, bud *luabind.Budget) (any, error) {
	if depth > luabind.MaxDepth {
		return nil, luabind.ErrTooDeep
	}
	switch x := v.(type) {
	case *lua.LTable:
		if err := bud.Take(2); err != nil {
			return nil, err
		}
		if x.Metatable != lua.LNil && luabind.IsJSONArray(x) {
			n, err := luabind.JSONArrayLen(x)
			if err != nil {
				return nil, err
			}
			return orderedArray(x, n, depth, bud)
		}
		n, err := luabind.ArrayLen(x)
		if err != nil {
			return nil, err
		}
		count := 0
		for k, _ := x.Next(lua.LNil); k != lua.LNil; k, _ = x.Next(k) {
			count++
		}
		if n > 0 && count == n {
			return orderedArray(x, n, depth, bud)
		}
		out := make(socket.Object, 0, count)
		for k, e := x.Next(lua.LNil); k != lua.LNil; k, e = x.Next(k) {
			key := k.String()
			if err := bud.Take(len(key) + 4); err != nil {
				return nil, err
			}
			val, err := orderedFromLua(e, depth+1, bud)
			if err != nil {
				return nil, err
			}
			out = append(out, socket.Field{Key: key, Value: val})
		}
		return out, nil
	case lua.LNumber:
		f := float64(x)
		if f == math.Trunc(f) && math.Abs(f) < 1<<53 {
			return int64(f), bud.Take(8)
		}
		return f, bud.Take(8)
	}
	return luabind.FromLuaWithin(v, bud)
}

// orderedArray converts entries 1..n of x (an array) as orderedFromLua does.
func orderedArray(x *lua.LTable, n, depth int, bud *luabind.Budget) ([]any, error) {
	out := make([]any, n)
	for i := 1; i <= n; i++ {
		e, err := orderedFromLua(x.RawGetInt(i), depth+1, bud)
		if err != nil {
			return nil, err
		}
		bud.Add(1) // the comma
		out[i-1] = e
	}
	return out, nil
}
