package socket

import (
	"context"
	"errors"
	"fmt"
	"sort"
	"time"
)

// Actions is what the server asks of scripts to answer action calls. Lookup is called for every request,
// so an implementation backed by reloadable scripts sees a reload on the next request.
type Actions interface {
	Lookup(name string) (Action, bool)
	// List names every action (for documentation and for deciding which params paramAdd keeps).
	List() []string
}

// Action answers one action call.
type Action interface {
	Info() ActionInfo
	// Run answers with a result (an Object or map renders its fields beside context/messageId; any other
	// non-nil value renders as "data") or an error (its message is the reply's "error"). It must return
	// soon after ctx is done: ctx carries the action's time limit and the connection's life.
	Run(ctx context.Context, c *Conn, p Params) (any, error)
}

// ActionInfo describes an action for validation and the documentation verb.
type ActionInfo struct {
	Name        string
	Description string
	Inputs      []Input // in declaration order: the first failing input names the error
	// Timeout limits Run; 0 = the server's action timeout.
	Timeout time.Duration
	// OutputExample is shown by documentation (nil = {}).
	OutputExample any
	// ValidatesInputs says Run applies the inputs itself (with ApplyInputs); the server then only
	// uses Inputs for documentation and param scrubbing. Scripts do this to validate on the VM they run on.
	ValidatesInputs bool
	// EnforcesTimeout says Run stops itself at Conn.TimeLimit (the Lua runtime's watchdog does), so the
	// server does not arm a timer per request; ctx is still cancelled when the connection goes away.
	EnforcesTimeout bool
}

// Input declares one parameter of an action.
type Input struct {
	Name     string
	Required bool
	// Default is used when the param is missing (nil = no default).
	Default any
	// Validate, when set, checks a present value; its error message is sent to the client as is.
	// Scripts may instead validate inside Run (the Lua binding does, to stay on one VM).
	Validate func(v any) error
}

// ErrTimeout is what an Action returns (wrapped) when it was stopped at its time limit; the server also
// treats context.DeadlineExceeded this way.
var ErrTimeout = errors.New("socket: action timed out")

// Verbs are custom verbs added by scripts; built-in verbs always take precedence.
type Verbs interface {
	LookupVerb(name string) (Verb, bool)
}

// Verb runs a custom verb. args is the rest of the line after "name " exactly as sent. Its result is
// the reply's "data" (nil: no data); an error becomes {"error":...}.
type Verb interface {
	Run(ctx context.Context, c *Conn, args string) (any, error)
}

// Hooks are told about connections and may rewrite or drop chat messages. Any may be nil in Server.
type Hooks interface {
	// Connect runs after the welcome line, before the first request is read.
	Connect(ctx context.Context, c *Conn)
	// Disconnect runs once the connection has left its rooms.
	Disconnect(ctx context.Context, c *Conn)
	// Say may rewrite the text (keep=true, out=new text) or drop it (keep=false: the sender still gets OK,
	// nobody gets the broadcast).
	Say(ctx context.Context, c *Conn, room, text string) (out string, keep bool, err error)
}

// ActionMap is a fixed set of Go actions, useful in tests and for built-ins.
type ActionMap map[string]Action

// Lookup finds an action by name.
func (m ActionMap) Lookup(name string) (Action, bool) { a, ok := m[name]; return a, ok }

// List names the actions, sorted.
func (m ActionMap) List() []string {
	out := make([]string, 0, len(m))
	for k := range m {
		out = append(out, k)
	}
	sort.Strings(out)
	return out
}

// ActionFunc adapts a function to an Action.
type ActionFunc struct {
	ActionInfo
	Func func(ctx context.Context, c *Conn, p Params) (any, error)
}

// Info describes the action.
func (a *ActionFunc) Info() ActionInfo { return a.ActionInfo }

// Run calls Func.
func (a *ActionFunc) Run(ctx context.Context, c *Conn, p Params) (any, error) {
	return a.Func(ctx, c, p)
}

// VerbMap is a fixed set of custom verbs.
type VerbMap map[string]Verb

// LookupVerb finds a verb by name.
func (m VerbMap) LookupVerb(name string) (Verb, bool) { v, ok := m[name]; return v, ok }

// VerbFunc adapts a function to a Verb.
type VerbFunc func(ctx context.Context, c *Conn, args string) (any, error)

// Run calls f.
func (f VerbFunc) Run(ctx context.Context, c *Conn, args string) (any, error) { return f(ctx, c, args) }

// ApplyInputs fills defaults and checks required inputs and validators in declaration order, as the
// reference does; the first failure is returned. validate(i, v) checks a present value of inputs[i]
// (nil: use Input.Validate).
func ApplyInputs(p *Params, inputs []Input, validate func(i int, v any) error) error {
	for i, in := range inputs {
		v, ok := p.Get(in.Name)
		if !ok && in.Default != nil {
			p.Set(in.Name, in.Default)
			v, ok = in.Default, true
		}
		if !ok {
			if in.Required {
				return fmt.Errorf("%s is a required parameter for this action", in.Name)
			}
			continue
		}
		if validate != nil {
			if err := validate(i, v); err != nil {
				return err
			}
		} else if in.Validate != nil {
			if err := in.Validate(v); err != nil {
				return err
			}
		}
	}
	return nil
}
