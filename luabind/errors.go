package luabind

import (
	"errors"
	"fmt"
	"regexp"
	"strconv"
	"strings"

	lua "github.com/yuin/gopher-lua"
	"github.com/yuin/gopher-lua/parse"
)

// ScriptError is a Lua error located in a script: `scripts/x.lua:12: message (event socket.action cacheTest)`.
type ScriptError struct {
	File    string // as the operator knows it, e.g. scripts/actions.lua; "" when unknown
	Line    int
	Message string
	Event   string // what ran the handler; empty at load time
	Cause   error  // ErrTimeout, ErrMemory, context errors, or nil
}

var (
	// ErrTimeout is the cause of a handler cancelled at its time limit.
	ErrTimeout = errors.New("handler exceeded its time limit")
	// ErrMemory is the cause of handlers cancelled because the process heap passed lua.memory_limit_mb.
	ErrMemory = errors.New("memory limit exceeded")
)

func (e *ScriptError) Error() string {
	var b strings.Builder
	if e.File != "" {
		b.WriteString(e.File)
		if e.Line > 0 {
			b.WriteString(":")
			b.WriteString(strconv.Itoa(e.Line))
		}
		b.WriteString(": ")
	}
	b.WriteString(e.Message)
	if e.Event != "" {
		b.WriteString(" (event ")
		b.WriteString(e.Event)
		b.WriteString(")")
	}
	return b.String()
}

func (e *ScriptError) Unwrap() error { return e.Cause }

// Location is "file:line", or the file alone when the line is unknown.
func (e *ScriptError) Location() string {
	if e.Line > 0 {
		return e.File + ":" + strconv.Itoa(e.Line)
	}
	return e.File
}

var (
	locPrefix  = regexp.MustCompile(`^([^\s:][^:]*\.lua):(\d+): `)
	locInTrace = regexp.MustCompile(`(?m)^\s*([^\s:][^:]*\.lua):(\d+):`)
)

// scriptError turns what gopher-lua returned into a ScriptError.
func scriptError(err error, event string) *ScriptError {
	if err == nil {
		return nil
	}
	var se *ScriptError
	if errors.As(err, &se) {
		c := *se
		if c.Event == "" {
			c.Event = event
		}
		return &c
	}
	var pe *parse.Error
	if errors.As(err, &pe) {
		return &ScriptError{File: pe.Pos.Source, Line: pe.Pos.Line, Event: event,
			Message: strings.TrimSpace(fmt.Sprintf("near '%s': %s", pe.Token, pe.Message))}
	}
	msg := err.Error()
	trace := ""
	var ae *lua.ApiError
	if errors.As(err, &ae) {
		if ae.Cause != nil {
			return scriptError(ae.Cause, event)
		}
		if ae.Object != nil {
			msg = ae.Object.String()
		}
		trace = ae.StackTrace
	}
	out := &ScriptError{Message: msg, Event: event}
	if m := locPrefix.FindStringSubmatch(msg); m != nil {
		out.File = m[1]
		out.Line, _ = strconv.Atoi(m[2])
		out.Message = msg[len(m[0]):]
	} else if m := locInTrace.FindStringSubmatch(trace); m != nil {
		// Errors raised by the interpreter itself ("lua callstack overflow") carry no position; the
		// innermost script frame of the traceback is where it happened.
		out.File = m[1]
		out.Line, _ = strconv.Atoi(m[2])
	}
	return out
}

// Raise reports an error located at the Lua caller of a Go function (scripts see "file:line: message");
// it does not return. Go functions of bindings use it for programming errors and return nil, message for
// expected failures.
func Raise(L *lua.LState, format string, args ...any) int {
	L.RaiseError(format, args...)
	return 0
}
