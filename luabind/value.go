package luabind

import (
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"strconv"
	"time"

	lua "github.com/yuin/gopher-lua"
	luar "layeh.com/gopher-luar"

	"github.com/switchboard/switchboard/internal/jsonjs"
)

// MaxDepth bounds nesting when converting between Lua and Go, which also stops self-referencing tables.
const MaxDepth = 64

// MaxValueNodes bounds the values (tables, strings, numbers...) one conversion from Lua to Go or JSON
// visits: enough for an array of MaxArrayLen numbers. A table reached twice is converted twice (JSON has no
// references), so a few shared subtables (t = {t, t} nested 20 deep) make millions of nodes out of a small
// table; the budget stops them within a few tens of milliseconds, as the byte budget
// (lua.max_string_bytes) stops large values. A conversion also stops when its handler is cancelled.
const MaxValueNodes = 1 << 20

// Budget bounds one conversion from Lua (to Go data or JSON): the nodes it may still visit and the bytes
// the value encodes to (approximately its JSON size: a string counts its length plus 2, a number 8, a key
// its length plus 3...), and it stops when the handler is cancelled. Bindings that convert values their
// own way (the socket binding's ordered objects) take from it as the converters here do.
type Budget struct {
	nodes    int
	bytes    int
	maxBytes int
	done     <-chan struct{} // the handler's context: a conversion stops when the handler is cancelled
}

func newBudget(maxBytes int) Budget { return Budget{nodes: MaxValueNodes, maxBytes: maxBytes} }

// BudgetFor is the budget of a conversion made by Lua code running in L: lua.max_string_bytes bytes,
// MaxValueNodes nodes, until the handler's context is done.
func BudgetFor(L *lua.LState) Budget {
	b := newBudget(DefaultConfig().MaxStringBytes)
	if vm := VMOf(L); vm != nil {
		b.maxBytes = vm.rt.cfg.MaxStringBytes
	}
	if ctx := L.Context(); ctx != nil {
		b.done = ctx.Done()
	}
	return b
}

var (
	errTooManyNodes = fmt.Errorf("value has more than %d parts (a table reached through several references counts each time)", MaxValueNodes)
	errCancelled    = errors.New("conversion stopped: the handler was cancelled")
)

// checkEvery is how many nodes a conversion visits between two looks at its handler's context.
const checkEvery = 4096

// Budget is the budget of a conversion for the handler running on vm (BudgetFor without the lookups).
func (vm *VM) Budget() Budget {
	b := newBudget(vm.rt.cfg.MaxStringBytes)
	b.done = vm.L.Context().Done()
	return b
}

// Add counts n more bytes without a node (a separator); the next Take checks them.
func (b *Budget) Add(n int) { b.bytes += n }

// Take counts one node of n bytes; its error says which bound the value went past, or that the handler was
// cancelled.
func (b *Budget) Take(n int) error {
	b.nodes--
	b.bytes += n
	if b.nodes < 0 {
		return errTooManyNodes
	}
	if b.bytes > b.maxBytes {
		return fmt.Errorf("value is larger than lua.max_string_bytes (%d bytes)", b.maxBytes)
	}
	if b.nodes%checkEvery == 0 && b.done != nil {
		select {
		case <-b.done:
			return errCancelled
		default:
		}
	}
	return nil
}

// ToLua converts plain Go data (what the bus, the cache and JSON carry) to a Lua value. Maps become tables,
// slices become arrays; anything else (a struct, a pointer) is wrapped with gopher-luar so scripts can read
// its exported fields and call its methods.
func ToLua(L *lua.LState, v any) lua.LValue {
	return toLua(L, v, 0)
}

func toLua(L *lua.LState, v any, depth int) lua.LValue {
	if depth > MaxDepth {
		return lua.LNil
	}
	switch x := v.(type) {
	case nil:
		return lua.LNil
	case lua.LValue:
		return x
	case bool:
		return lua.LBool(x)
	case string:
		return lua.LString(x)
	case []byte:
		return lua.LString(x)
	case int:
		return lua.LNumber(x)
	case int32:
		return lua.LNumber(x)
	case int64:
		return lua.LNumber(x)
	case uint32:
		return lua.LNumber(x)
	case uint64:
		return lua.LNumber(x)
	case float32:
		return lua.LNumber(x)
	case float64:
		return lua.LNumber(x)
	case json.Number:
		f, err := x.Float64()
		if err != nil {
			return lua.LString(x)
		}
		return lua.LNumber(f)
	case time.Time:
		return lua.LNumber(x.UnixMilli())
	case time.Duration:
		return lua.LNumber(x.Milliseconds())
	case map[string]any:
		t := L.CreateTable(0, len(x))
		for k, e := range x {
			t.RawSetString(k, toLua(L, e, depth+1))
		}
		return t
	case map[string]string:
		t := L.CreateTable(0, len(x))
		for k, e := range x {
			t.RawSetString(k, lua.LString(e))
		}
		return t
	case []any:
		t := L.CreateTable(min(len(x), MaxArrayLen), 0)
		for i, e := range x {
			t.RawSetInt(i+1, toLua(L, e, depth+1))
		}
		return t
	case []string:
		t := L.CreateTable(min(len(x), MaxArrayLen), 0)
		for i, e := range x {
			t.RawSetInt(i+1, lua.LString(e))
		}
		return t
	case error:
		return lua.LString(x.Error())
	}
	return luar.New(L, v)
}

// FromLua converts a Lua value to plain Go data: nil, bool, string, int64 (integral numbers), float64,
// []any (a table whose keys are exactly 1..n), map[string]any (any other table). Functions and threads
// become nil; values too deeply nested, too large or with too many parts become nil (fromLua reports why).
func FromLua(v lua.LValue) any {
	b := newBudget(DefaultConfig().MaxStringBytes)
	out, err := fromLua(v, 0, &b)
	if err != nil {
		return nil
	}
	return out
}

// ErrTooDeep is the error of a conversion that went past MaxDepth.
var ErrTooDeep = errors.New("table nested deeper than 64 levels (a table that contains itself?)")

// FromLuaWithin is FromLua within b (BudgetFor), with the error that says why a value cannot be converted.
func FromLuaWithin(v lua.LValue, b *Budget) (any, error) { return fromLua(v, 0, b) }

// ArrayLen is #t, or ErrArrayLimit when t is an array that went past MaxArrayLen (the elements beyond it
// would be lost).
func ArrayLen(t *lua.LTable) (int, error) {
	n := t.Len()
	if pastArrayLimit(t, n) {
		return n, ErrArrayLimit
	}
	return n, nil
}

func fromLua(v lua.LValue, depth int, b *Budget) (any, error) {
	if depth > MaxDepth {
		return nil, ErrTooDeep
	}
	switch x := v.(type) {
	case lua.LBool:
		return bool(x), b.Take(5)
	case lua.LString:
		return string(x), b.Take(len(x) + 2)
	case lua.LNumber:
		f := float64(x)
		if f == math.Trunc(f) && math.Abs(f) < 1<<53 {
			return int64(f), b.Take(8)
		}
		return f, b.Take(8)
	case *lua.LTable:
		if err := b.Take(2); err != nil {
			return nil, err
		}
		return tableFromLua(x, depth, b)
	case *lua.LUserData:
		if _, null := x.Value.(jsonNull); null {
			return nil, b.Take(4)
		}
		return x.Value, b.Take(8)
	}
	return nil, b.Take(4)
}

func tableFromLua(t *lua.LTable, depth int, b *Budget) (any, error) {
	n := t.Len()
	if pastArrayLimit(t, n) {
		return nil, ErrArrayLimit
	}
	count := 0
	array := true
	t.ForEach(func(k, _ lua.LValue) {
		count++
		if num, ok := k.(lua.LNumber); !ok || float64(num) != math.Trunc(float64(num)) || num < 1 || int(num) > n {
			array = false
		}
	})
	if array && count == n && n > 0 {
		out := make([]any, n)
		for i := 1; i <= n; i++ {
			e, err := fromLua(t.RawGetInt(i), depth+1, b)
			if err != nil {
				return nil, err
			}
			b.bytes++ // the comma
			out[i-1] = e
		}
		return out, nil
	}
	out := make(map[string]any, count)
	var err error
	t.ForEach(func(k, v lua.LValue) {
		if err != nil {
			return
		}
		var val any
		key := k.String()
		if err = b.Take(len(key) + 4); err != nil {
			return
		}
		val, err = fromLua(v, depth+1, b)
		out[key] = val
	})
	if err != nil {
		return nil, err
	}
	return out, nil
}

// EncodeJSON renders a Lua value as JSON (object keys sorted). An empty table is `{}`.
func EncodeJSON(v lua.LValue) ([]byte, error) {
	b := newBudget(DefaultConfig().MaxStringBytes)
	return encodeJSON(v, &b)
}

func encodeJSON(v lua.LValue, b *Budget) ([]byte, error) {
	g, err := fromLua(v, 0, b)
	if err != nil {
		return nil, err
	}
	if f, ok := g.(float64); ok && (math.IsInf(f, 0) || math.IsNaN(f)) {
		return nil, fmt.Errorf("cannot encode %v as JSON", f)
	}
	return json.Marshal(g)
}

// DecodeJSON parses JSON into a Lua value; JSON null becomes nil. An array longer than MaxArrayLen is an
// error (Lua could not see its tail).
func DecodeJSON(L *lua.LState, data []byte) (lua.LValue, error) {
	var g any
	if err := json.Unmarshal(data, &g); err != nil {
		return lua.LNil, err
	}
	if err := checkArrays(g, 0); err != nil {
		return lua.LNil, err
	}
	return ToLua(L, g), nil
}

func checkArrays(v any, depth int) error {
	if depth > MaxDepth {
		return nil // toLua cuts it here
	}
	switch x := v.(type) {
	case []any:
		if len(x) > MaxArrayLen {
			return ErrArrayLimit
		}
		for _, e := range x {
			if err := checkArrays(e, depth+1); err != nil {
				return err
			}
		}
	case map[string]any:
		for _, e := range x {
			if err := checkArrays(e, depth+1); err != nil {
				return err
			}
		}
	}
	return nil
}

// AppendJSONObject writes the table t, an object (not an array), straight to JSON text in the order of its
// keys, without the Go values in between (docs/benchmarks.md): strings and numbers as JavaScript writes
// them (internal/jsonjs), sb.json.null as null, and keys for which skip says true left out. ok is false
// for anything that path does not render (an array, a key that is not a string, a function or userdata,
// deep nesting): the caller then converts as usual. err is a value past its budget.
func AppendJSONObject(dst []byte, t *lua.LTable, skip func(key string) bool, bud *Budget) (out []byte, ok bool, err error) {
	if n, count := tableShape(t); n > 0 && count == n || pastArrayLimit(t, n) {
		return dst, false, nil // an array
	}
	b := append(dst, '{')
	first := true
	for k, v := t.Next(lua.LNil); k != lua.LNil; k, v = t.Next(k) {
		key, isStr := k.(lua.LString)
		if !isStr {
			return dst, false, nil
		}
		if skip != nil && skip(string(key)) {
			continue
		}
		if !first {
			b = append(b, ',')
		}
		first = false
		b = jsonjs.AppendString(b, string(key))
		b = append(b, ':')
		if b, ok, err = appendJSON(b, v, 1, bud); !ok || err != nil {
			return dst, false, err
		}
	}
	return append(b, '}'), true, nil
}

// tableShape returns the border (#t) and the number of keys of t; the keys are counted only when the
// border is not 0 (then count is 0 too), as only a non-empty array needs the count, and Next is slow.
func tableShape(t *lua.LTable) (n, count int) {
	if n = t.Len(); n == 0 {
		return 0, 0
	}
	for k, _ := t.Next(lua.LNil); k != lua.LNil; k, _ = t.Next(k) {
		count++
	}
	return n, count
}

// appendJSON appends a Lua value as JSON (see AppendJSONObject), within bud.
func appendJSON(b []byte, v lua.LValue, depth int, bud *Budget) ([]byte, bool, error) {
	if depth > MaxDepth {
		return b, false, nil
	}
	bud.bytes = len(b)
	if err := bud.Take(0); err != nil {
		return b, false, err
	}
	switch x := v.(type) {
	case lua.LString:
		return jsonjs.AppendString(b, string(x)), true, nil
	case lua.LNumber:
		f := float64(x)
		if f == math.Trunc(f) && math.Abs(f) < 1<<53 {
			return strconv.AppendInt(b, int64(f), 10), true, nil
		}
		return jsonjs.AppendNumber(b, f), true, nil
	case lua.LBool:
		return strconv.AppendBool(b, bool(x)), true, nil
	case *lua.LUserData:
		if _, null := x.Value.(jsonNull); null {
			return append(b, "null"...), true, nil
		}
		return b, false, nil
	case *lua.LTable:
		ok := true
		var err error
		n, count := tableShape(x)
		if pastArrayLimit(x, n) {
			return b, false, ErrArrayLimit
		}
		if n > 0 && count == n {
			b = append(b, '[')
			for i := 1; i <= n; i++ {
				if i > 1 {
					b = append(b, ',')
				}
				if b, ok, err = appendJSON(b, x.RawGetInt(i), depth+1, bud); !ok || err != nil {
					return b, false, err
				}
			}
			return append(b, ']'), true, nil
		}
		b = append(b, '{')
		first := true
		for k, e := x.Next(lua.LNil); k != lua.LNil; k, e = x.Next(k) {
			key, isStr := k.(lua.LString)
			if !isStr {
				return b, false, nil
			}
			if !first {
				b = append(b, ',')
			}
			first = false
			b = jsonjs.AppendString(b, string(key))
			b = append(b, ':')
			if b, ok, err = appendJSON(b, e, depth+1, bud); !ok || err != nil {
				return b, false, err
			}
		}
		return append(b, '}'), true, nil
	}
	return b, false, nil
}
