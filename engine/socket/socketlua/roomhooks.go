package socketlua

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"slices"
	"time"

	lua "github.com/yuin/gopher-lua"

	"github.com/switchboard/switchboard/engine/socket"
	"github.com/switchboard/switchboard/luabind"
)

// Handler kinds of actionhero's chat middleware (sb.rooms.middleware) and of the member and message shaping
// functions (sb.rooms.generateMemberDetails, sanitizeMemberDetails, generateMessagePayload).
const (
	kindJoin     = "socket.rooms.join"
	kindLeave    = "socket.rooms.leave"
	kindReceive  = "socket.rooms.onSayReceive"
	kindSayTo    = "socket.rooms.say"
	kindDetails  = "socket.rooms.generateMemberDetails"
	kindSanitize = "socket.rooms.sanitizeMemberDetails"
	kindPayload  = "socket.rooms.generateMessagePayload"
)

// middlewareKinds are the hooks a middleware may set, by their field in sb.rooms.middleware{...}.
var middlewareKinds = map[string]string{"join": kindJoin, "leave": kindLeave, "onSayReceive": kindReceive, "say": kindSayTo}

// defaultPriority is actionhero's defaultMiddlewarePriority.
const defaultPriority = 100

// middlewareMeta is a middleware hook's priority: lower runs first; equal priorities keep the order of
// registration (actionhero leaves their order undefined).
type middlewareMeta struct{ priority float64 }

// chatPlan is the middleware of one generation in the order they run, per kind (sorted once per generation).
type chatPlan struct {
	g      *luabind.Generation
	byKind map[string][]*luabind.Handler
}

var _ socket.RoomHooks = (*Scripts)(nil)

// hooks returns the serving generation and its hooks of a kind in running order (nil when none: the
// server's paths then cost one atomic load and a map lookup more than without scripts).
func (s *Scripts) hooks(kind string) (*luabind.Generation, []*luabind.Handler) {
	g := s.rt.Current()
	if g == nil {
		return nil, nil
	}
	p := s.plan.Load()
	if p == nil || p.g != g {
		p = &chatPlan{g: g, byKind: map[string][]*luabind.Handler{}}
		for _, kind := range []string{kindJoin, kindLeave, kindReceive, kindSayTo} {
			hs := slices.Clone(g.Handlers(kind))
			slices.SortStableFunc(hs, func(a, b *luabind.Handler) int {
				return cmp.Compare(a.Meta.(middlewareMeta).priority, b.Meta.(middlewareMeta).priority)
			})
			if len(hs) > 0 {
				p.byKind[kind] = hs
			}
		}
		for _, kind := range []string{kindDetails, kindSanitize, kindPayload} {
			if hs := g.Handlers(kind); len(hs) > 0 {
				p.byKind[kind] = hs
			}
		}
		s.plan.Store(p)
	}
	return g, p.byKind[kind]
}

// Refusal is a hook's refusal: its text is what the client reads in {"error":...}.
type Refusal string

func (r Refusal) Error() string { return string(r) }

// refusal turns a hook's failure into what the client reads: the script's message without its file:line
// (logged with them).
func refusal(c *socket.Conn, h *luabind.Handler, err error) error {
	log := c.Log().WithField("script", h.Where)
	var se *luabind.ScriptError
	if errors.As(err, &se) {
		log.WithField("hook", h.Kind+" "+h.Name).Warn(err.Error())
		return Refusal(se.Message)
	}
	log.WithError(err).Warn("hook failed")
	return err
}

// Join runs the join hooks of the middleware in order; the first to refuse stops the join.
func (s *Scripts) Join(ctx context.Context, c *socket.Conn, room string) error {
	return s.gate(ctx, kindJoin, c, room)
}

// Leave runs the leave hooks of the middleware in order; the first to refuse keeps the connection in.
func (s *Scripts) Leave(ctx context.Context, c *socket.Conn, room string) error {
	return s.gate(ctx, kindLeave, c, room)
}

// gate runs hooks fn(conn, room) that may refuse: false or nil with a message, or a raised error.
func (s *Scripts) gate(ctx context.Context, kind string, c *socket.Conn, room string) error {
	g, hs := s.hooks(kind)
	for _, h := range hs {
		var refused error
		err := g.Run(ctx, h, kind+" "+h.Name+", conn "+c.ID(), 0, func(L *lua.LState, f *lua.LFunction) error {
			base := L.GetTop()
			L.Push(f)
			L.Push(connValue(L, c))
			L.Push(lua.LString(room))
			if err := L.PCall(2, 2, nil); err != nil {
				return err
			}
			r, msg := L.Get(base+1), L.Get(base+2)
			if r == lua.LFalse || r == lua.LNil && msg != lua.LNil {
				refused = Refusal(refusalText(msg, kind, h.Name))
			}
			return nil
		})
		if err != nil {
			return refusal(c, h, err)
		}
		if refused != nil {
			return refused
		}
	}
	return nil
}

func refusalText(msg lua.LValue, kind, name string) string {
	if s, ok := msg.(lua.LString); ok && s != "" {
		return string(s)
	}
	if kind == kindJoin {
		return "joining the room was refused (" + name + ")"
	}
	return "leaving the room was refused (" + name + ")"
}

// MemberDetails runs sb.rooms.generateMemberDetails(conn, room, record) with the default record
// {id, joinedAt, host}; a table returned is the record kept, nothing keeps the default.
func (s *Scripts) MemberDetails(ctx context.Context, c *socket.Conn, room string, joinedAt time.Time) (socket.Object, error) {
	g, hs := s.hooks(kindDetails)
	if len(hs) == 0 {
		return nil, nil
	}
	h := hs[0]
	def := socket.Member{ID: c.ID(), JoinedAt: joinedAt}.Record(c.Server().ID())
	var out socket.Object
	err := g.RunVM(ctx, h, kindDetails+", conn "+c.ID(), 0, func(vm *luabind.VM, f *lua.LFunction) error {
		L := vm.L
		base := L.GetTop()
		L.Push(f)
		L.Push(connValue(L, c))
		L.Push(lua.LString(room))
		L.Push(goToLua(L, def, 0))
		if err := L.PCall(3, 1, nil); err != nil {
			return err
		}
		var err error
		out, err = objectResult(vm, h, L.Get(base+1), "generateMemberDetails")
		return err
	})
	if err != nil {
		return nil, refusal(c, h, err)
	}
	return out, nil
}

// SanitizeMembers runs sb.rooms.sanitizeMemberDetails(record, room) on each record, on one VM; a table
// returned is what roomView shows, nothing shows the default {id, joinedAt}.
func (s *Scripts) SanitizeMembers(ctx context.Context, room string, records []socket.Object) ([]socket.Object, error) {
	g, hs := s.hooks(kindSanitize)
	if len(hs) == 0 {
		return nil, nil
	}
	h := hs[0]
	out := make([]socket.Object, len(records))
	err := g.RunVM(ctx, h, kindSanitize+", room "+room, 0, func(vm *luabind.VM, f *lua.LFunction) error {
		L := vm.L
		for i, rec := range records {
			base := L.GetTop()
			L.Push(f)
			L.Push(goToLua(L, rec, 0))
			L.Push(lua.LString(room))
			if err := L.PCall(2, 1, nil); err != nil {
				return err
			}
			o, err := objectResult(vm, h, L.Get(base+1), "sanitizeMemberDetails")
			L.SetTop(base)
			if err != nil {
				return err
			}
			out[i] = o
		}
		return nil
	})
	if err != nil {
		return nil, publicScriptError(err)
	}
	return out, nil
}

// ReceiveSay runs the onSayReceive hooks in order on the message's payload (as generateMessagePayload makes
// it): each may return a new payload (a table), nothing to keep it (changes made in place included), false
// to drop the message, or refuse it with nil and a message or a raised error. Only the payload's message
// travels on, as in actionhero (a payload without a message field keeps the message as it was).
func (s *Scripts) ReceiveSay(ctx context.Context, from *socket.Conn, msg *socket.Chat) (bool, error) {
	g, hs := s.hooks(kindReceive)
	if len(hs) == 0 {
		return true, nil
	}
	payload, err := s.Payload(ctx, *msg)
	if err != nil {
		if from != nil {
			from.Log().WithError(err).WithField("room", msg.Room).Warn("generateMessagePayload failed: message refused")
		}
		return false, publicScriptError(err)
	}
	if payload == nil {
		payload = msg.Payload()
	}
	for _, h := range hs {
		var keep bool
		var refused error
		ev := kindReceive + " " + h.Name + ", room " + msg.Room
		err := g.RunVM(ctx, h, ev, 0, func(vm *luabind.VM, f *lua.LFunction) error {
			var err error
			payload, keep, refused, err = runPayloadHook(vm, h, f, from, msg.Room, payload)
			return err
		})
		if err != nil {
			if from != nil {
				return false, refusal(from, h, err)
			}
			return false, publicScriptError(err)
		}
		if refused != nil || !keep {
			return false, refused
		}
	}
	if m, ok := payload.Get("message"); ok {
		msg.Message = m
	}
	return true, nil
}

// runPayloadHook calls a payload hook fn(conn or nil, room, payload) on vm and reads its answer.
func runPayloadHook(vm *luabind.VM, h *luabind.Handler, f *lua.LFunction, c *socket.Conn, room string, payload socket.Object) (out socket.Object, keep bool, refused, err error) {
	L := vm.L
	base := L.GetTop()
	arg := goToLua(L, payload, 0)
	L.Push(f)
	if c != nil {
		L.Push(connValue(L, c))
	} else {
		L.Push(lua.LNil)
	}
	L.Push(lua.LString(room))
	L.Push(arg)
	if err := L.PCall(3, 2, nil); err != nil {
		return nil, false, nil, err
	}
	r, msg := L.Get(base+1), L.Get(base+2)
	switch {
	case r == lua.LFalse:
		return nil, false, nil, nil
	case r == lua.LNil && msg != lua.LNil:
		return nil, false, Refusal(lua.LVAsString(msg)), nil
	case r == lua.LNil:
		r = arg // changed in place, or not at all
	}
	out, err = objectResult(vm, h, r, h.Kind)
	return out, true, nil, err
}

// Payload runs sb.rooms.generateMessagePayload(msg), msg being {message, room, from, sentAt}; nil when no
// script set it.
func (s *Scripts) Payload(ctx context.Context, msg socket.Chat) (socket.Object, error) {
	g, hs := s.hooks(kindPayload)
	if len(hs) == 0 {
		return nil, nil
	}
	h := hs[0]
	var out socket.Object
	err := g.RunVM(ctx, h, kindPayload+", room "+msg.Room, 0, func(vm *luabind.VM, f *lua.LFunction) error {
		L := vm.L
		base := L.GetTop()
		L.Push(f)
		L.Push(goToLua(L, socket.Object{{Key: "message", Value: msg.Message}, {Key: "room", Value: msg.Room},
			{Key: "from", Value: msg.FromValue()}, {Key: "sentAt", Value: msg.SentAt.UnixMilli()}}, 0))
		if err := L.PCall(1, 1, nil); err != nil {
			return err
		}
		var err error
		out, err = objectResult(vm, h, L.Get(base+1), "generateMessagePayload")
		if err == nil && out == nil {
			err = fmt.Errorf("%s: generateMessagePayload returned nothing; it must return the payload (a table)", h.Where)
		}
		return err
	})
	if err != nil {
		return nil, err
	}
	return out, nil
}

// SayTo runs the say hooks for each recipient, each on its own copy of the payload: a recipient whose
// hooks drop the message, or fail (logged), gets nothing.
func (s *Scripts) SayTo(ctx context.Context, to []*socket.Conn, msg socket.Chat, payload socket.Object) ([]socket.Object, error) {
	g, hs := s.hooks(kindSayTo)
	if len(hs) == 0 {
		return nil, nil
	}
	if payload == nil {
		payload = msg.Payload()
	}
	out := make([]socket.Object, len(to))
	for i, c := range to {
		p := payload
		for _, h := range hs {
			var keep bool
			err := g.RunVM(ctx, h, kindSayTo+" "+h.Name+", conn "+c.ID(), 0, func(vm *luabind.VM, f *lua.LFunction) error {
				var err error
				var refused error
				p, keep, refused, err = runPayloadHook(vm, h, f, c, msg.Room, p)
				if refused != nil {
					err = refused
				}
				return err
			})
			if err != nil {
				c.Log().WithField("script", h.Where).WithField("room", msg.Room).WithError(err).Warn("say hook failed: this member does not get the message")
				keep = false
			}
			if !keep {
				p = nil
				break
			}
		}
		out[i] = p
	}
	return out, nil
}

// objectResult converts a hook's table result to an ordered object (nil for nil).
func objectResult(vm *luabind.VM, h *luabind.Handler, v lua.LValue, what string) (socket.Object, error) {
	switch v.(type) {
	case *lua.LNilType:
		return nil, nil
	case *lua.LTable:
	default:
		return nil, fmt.Errorf("%s: %s returned a %s; expected a table or nothing", h.Where, what, v.Type())
	}
	b := vm.Budget()
	g, err := orderedFromLua(v, 0, &b)
	if err != nil {
		return nil, resultError(h, err)
	}
	o, ok := g.(socket.Object)
	if !ok {
		if arr, isArr := g.([]any); isArr && len(arr) == 0 {
			return socket.Object{}, nil
		}
		return nil, fmt.Errorf("%s: %s returned an array; expected an object", h.Where, what)
	}
	return o, nil
}

// publicScriptError is a script's failure as a client reads it: the message without file:line.
func publicScriptError(err error) error {
	var se *luabind.ScriptError
	if errors.As(err, &se) {
		return Refusal(se.Message)
	}
	return err
}
