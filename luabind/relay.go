package luabind

import (
	"context"
	"errors"
	"fmt"
	"strings"

	lua "github.com/yuin/gopher-lua"

	"github.com/switchboard/switchboard/engine/relay"
)

var luaKeywords = map[string]bool{"and": true, "break": true, "do": true, "else": true, "elseif": true, "end": true,
	"false": true, "for": true, "function": true, "if": true, "in": true, "local": true, "nil": true, "not": true,
	"or": true, "repeat": true, "return": true, "then": true, "true": true, "until": true, "while": true}

// RelayParamName is the Lua name under which a declared route param is
// visible: the param name itself, or "_" + name when it starts with a digit
// (FIX tags such as 55 become _55).
func RelayParamName(name string) string {
	if name != "" && name[0] >= '0' && name[0] <= '9' {
		return "_" + name
	}
	return name
}

// translateAMIScript rewrites the AMIScript/Java operators that have no Lua
// meaning (&&, ||, !=, !) to Lua's (and, or, ~=, not), outside string
// literals, so 3forge routes files work unchanged. Lua source is untouched.
func translateAMIScript(src string) string {
	var b strings.Builder
	b.Grow(len(src) + 8)
	var quote byte
	for i := 0; i < len(src); i++ {
		c := src[i]
		if quote != 0 {
			b.WriteByte(c)
			if c == '\\' && i+1 < len(src) {
				i++
				b.WriteByte(src[i])
			} else if c == quote {
				quote = 0
			}
			continue
		}
		switch {
		case c == '"' || c == '\'':
			quote = c
			b.WriteByte(c)
		case c == '&' && i+1 < len(src) && src[i+1] == '&':
			b.WriteString(" and ")
			i++
		case c == '|' && i+1 < len(src) && src[i+1] == '|':
			b.WriteString(" or ")
			i++
		case c == '!' && i+1 < len(src) && src[i+1] == '=':
			b.WriteString("~=")
			i++
		case c == '!':
			b.WriteString(" not ")
		default:
			b.WriteByte(c)
		}
	}
	return b.String()
}

// RelayExprCompiler returns the relay's ExprCompiler: each expression is
// compiled once as `local <params> = ...; return (<expr>)` and evaluated with
// positional arguments on the serving generation's VMs (so the sandbox, the
// VM pool and the handler time limit apply). A Lua error or a timeout makes
// the rule false; nil and false are false, anything else is true.
func RelayExprCompiler(rt *Runtime) relay.ExprCompiler {
	return func(params []relay.ParamType, source string) (relay.Predicate, error) {
		names := make([]string, len(params))
		for i, p := range params {
			n := RelayParamName(p.Name)
			if luaKeywords[n] {
				return nil, fmt.Errorf("param %q is a Lua keyword; rename it", p.Name)
			}
			names[i] = n
		}
		var src strings.Builder
		if len(names) > 0 {
			src.WriteString("local ")
			src.WriteString(strings.Join(names, ", "))
			src.WriteString(" = ...; ")
		}
		src.WriteString("return (")
		src.WriteString(translateAMIScript(source))
		src.WriteString("\n)")
		f, err := CompileFunc("relay.routes", src.String())
		if err != nil {
			return nil, fmt.Errorf("%q: %w", source, err)
		}
		return &relayPredicate{rt: rt, f: f, ev: "relay.route " + source, pure: pureExpression(translateAMIScript(source), names)}, nil
	}
}

type relayPredicate struct {
	rt   *Runtime
	f    *Func
	ev   string
	pure bool
}

// Pure reports whether the expression reads only its params and pure library functions, so the relay may
// remember its results per param values.
func (p *relayPredicate) Pure() bool { return p.pure }

var errNoGeneration = errors.New("luabind: no scripts loaded")

func (p *relayPredicate) Eval(args []relay.Value) (bool, error) {
	g := p.rt.Current()
	if g == nil {
		return false, errNoGeneration
	}
	var result bool
	err := g.RunFunc(context.Background(), p.f, p.ev, 0, func(L *lua.LState, lf *lua.LFunction) error {
		L.Push(lf)
		for i := range args {
			L.Push(relayValue(&args[i]))
		}
		if err := L.PCall(len(args), 1, nil); err != nil {
			return err
		}
		result = lua.LVAsBool(L.Get(-1))
		L.Pop(1)
		return nil
	})
	return result, err
}

func relayValue(v *relay.Value) lua.LValue {
	switch v.Kind {
	case relay.KindNull:
		return lua.LNil
	case relay.KindBool:
		return lua.LBool(v.I != 0)
	case relay.KindInt, relay.KindLong, relay.KindUTC:
		if v.Pattern != "" {
			return lua.LString(v.S)
		}
		return lua.LNumber(v.I)
	case relay.KindFloat, relay.KindDouble:
		return lua.LNumber(v.F)
	}
	return lua.LString(v.S)
}
