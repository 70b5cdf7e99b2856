package socket

import (
	"math"
	"strings"
)

// paramKeysAlways are kept by paramAdd even when no action declares them (the reference's postVariables
// beyond action inputs).
var paramKeysAlways = map[string]bool{"file": true, "apiVersion": true, "callback": true, "action": true, "messageId": true}

// builtinVerb runs one of the reference's verbs. Its reply always carries its own request's id.
func (c *Conn) builtinVerb(l Line, id msgID, count int64) error {
	s := c.srv
	s.metrics.verb(l.Verb).Inc()
	args := l.Args()
	arg := func(i int) (string, bool) {
		if i < len(args) {
			return args[i], true
		}
		return "", false
	}
	ok := func(data any, has bool) error { _ = c.write(okReply(data, has, id, count)); return nil }
	fail := func(err error) error {
		s.metrics.errors.WithLabelValues("verb").Inc()
		_ = c.write(errorReply(err.Error(), id, count))
		return nil
	}

	switch l.Verb {
	case "quit", "exit":
		return errQuit
	case "paramAdd":
		var key, value string
		var hasKey, hasValue bool
		if k, has := arg(0); has && strings.Contains(k, "=") {
			parts := strings.Split(k, "=")
			key, hasKey = parts[0], true
			value, hasValue = parts[1], true
		} else {
			key, hasKey = arg(0)
			value, hasValue = arg(1)
		}
		if hasKey && c.keepsParam(key) {
			c.mu.Lock()
			if hasValue {
				c.params.Set(key, value)
			} else {
				c.params.Delete(key) // the reference sets undefined: the key disappears
			}
			c.mu.Unlock()
		}
		return ok(nil, false)
	case "paramView":
		key, _ := arg(0)
		c.mu.Lock()
		v, has := c.params.Get(key)
		c.mu.Unlock()
		return ok(v, has)
	case "paramDelete":
		key, _ := arg(0)
		c.mu.Lock()
		c.params.Delete(key)
		c.mu.Unlock()
		return ok(nil, false)
	case "paramsView":
		c.mu.Lock()
		obj := c.params.Object()
		c.mu.Unlock()
		return ok(obj, true)
	case "paramsDelete":
		c.mu.Lock()
		c.params.Reset()
		c.mu.Unlock()
		return ok(nil, false)
	case "detailsView":
		return ok(c.details(), true)
	case "roomAdd":
		room, _ := arg(0)
		if err := c.Join(c.ctx, room); err != nil {
			return fail(err)
		}
		return ok(true, true)
	case "roomLeave":
		room, _ := arg(0)
		if err := c.Leave(c.ctx, room); err != nil {
			return fail(err)
		}
		return ok(true, true)
	case "roomView":
		room, _ := arg(0)
		if !s.rooms.IsMember(room, c) {
			return fail(NotInRoom(room))
		}
		v, err := s.RoomStatus(c.ctx, room, 0, math.MaxInt)
		if err != nil {
			return fail(err)
		}
		return ok(v, true)
	case "say":
		room, text, _ := strings.Cut(l.Rest, " ")
		msg, keep, err := s.prepareSay(c.ctx, c, room, text)
		if err != nil {
			return fail(err)
		}
		_ = ok(nil, false)
		if keep {
			s.send(c.ctx, msg)
		}
		return nil
	case "documentation":
		return ok(s.documentation(), true)
	case "file":
		name, has := arg(0)
		if !has {
			c.mu.Lock()
			name = c.params.String("file")
			c.mu.Unlock()
		}
		c.sendFile(name, id, count)
		return nil
	}
	return nil
}

type verbError string

func (e verbError) Error() string { return string(e) }

const (
	errSayArgs = verbError("both room and message are required")
	errSayHook = verbError("the message could not be delivered")
)

// keepsParam is the reference's param scrubbing: only action inputs and a few protocol keys are kept.
func (c *Conn) keepsParam(key string) bool {
	s := c.srv
	if !s.cfg.ParamScrubbing || paramKeysAlways[key] {
		return true
	}
	for _, name := range s.opts.Actions.List() {
		a, ok := s.opts.Actions.Lookup(name)
		if !ok {
			continue
		}
		for _, in := range a.Info().Inputs {
			if in.Name == key {
				return true
			}
		}
	}
	return false
}

// details renders detailsView's data in the reference's field order.
func (c *Conn) details() Object {
	c.mu.Lock()
	defer c.mu.Unlock()
	rooms := make([]any, len(c.rooms))
	for i, r := range c.rooms {
		rooms[i] = r
	}
	return Object{
		{"id", c.id}, {"fingerprint", c.id}, {"remoteIP", c.remoteIP}, {"remotePort", c.remotePort},
		{"params", c.params.Object()}, {"connectedAt", c.connectedAt},
		{"rooms", rooms}, {"totalActions", c.totalActions}, {"pendingActions", c.pending},
	}
}

// documentation lists every action the way v20 did: name -> version -> description.
func (s *Server) documentation() Object {
	names := s.opts.Actions.List()
	out := make(Object, 0, len(names))
	for _, name := range names {
		a, ok := s.opts.Actions.Lookup(name)
		if !ok {
			continue
		}
		info := a.Info()
		inputs := make(Object, 0, len(info.Inputs))
		for _, in := range info.Inputs {
			desc := Object{{"required", in.Required}}
			if in.Default != nil {
				desc = append(desc, Field{"default", in.Default})
			}
			inputs = append(inputs, Field{in.Name, desc})
		}
		example := info.OutputExample
		if example == nil {
			example = Object{}
		}
		out = append(out, Field{name, Object{{"1", Object{
			{"name", name}, {"version", 1}, {"description", info.Description},
			{"inputs", inputs}, {"outputExample", example},
		}}}})
	}
	return out
}
