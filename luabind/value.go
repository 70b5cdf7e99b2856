package luabind

import (
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"time"

	lua "github.com/yuin/gopher-lua"
	luar "layeh.com/gopher-luar"
)

// maxDepth bounds nesting when converting between Lua and Go, which also stops self-referencing tables.
const maxDepth = 64

// MaxValueNodes bounds the values (tables, strings, numbers...) one conversion from Lua to Go or JSON
// visits: enough for an array of MaxArrayLen numbers. A table reached twice is converted twice (JSON has no
// references), so a few shared subtables (t = {t, t} nested 20 deep) make millions of nodes out of a small
// table; the budget stops them within a few tens of milliseconds, as the byte budget
// (lua.max_string_bytes) stops large values. A conversion also stops when its handler is cancelled.
const MaxValueNodes = 1 << 20

// budget bounds one conversion: the nodes it may still visit and the bytes the value encodes to
// (approximately its JSON size: a string counts its length plus 2, a number 8, a key its length plus 3...).
type budget struct {
	nodes    int
	bytes    int
	maxBytes int
	done     <-chan struct{} // the handler's context: a conversion stops when the handler is cancelled
}

func newBudget(maxBytes int) budget { return budget{nodes: MaxValueNodes, maxBytes: maxBytes} }

// budgetFor is the budget of a conversion made by Lua code running in L.
func budgetFor(L *lua.LState) budget {
	b := newBudget(DefaultConfig().MaxStringBytes)
	if vm := VMOf(L); vm != nil {
		b.maxBytes = vm.rt.cfg.MaxStringBytes
	}
	if ctx := L.Context(); ctx != nil {
		b.done = ctx.Done()
	}
	return b
}

// budget is the budget of a conversion for the handler running on vm.
func (vm *VM) budget() budget {
	b := newBudget(vm.rt.cfg.MaxStringBytes)
	b.done = vm.L.Context().Done()
	return b
}

var (
	errTooManyNodes = fmt.Errorf("value has more than %d parts (a table reached through several references counts each time)", MaxValueNodes)
	errCancelled    = errors.New("conversion stopped: the handler was cancelled")
)

// checkEvery is how many nodes a conversion visits between two looks at its handler's context.
const checkEvery = 4096

func (b *budget) take(n int) error {
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
	if depth > maxDepth {
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

var errTooDeep = errors.New("table nested deeper than 64 levels (a table that contains itself?)")

func fromLua(v lua.LValue, depth int, b *budget) (any, error) {
	if depth > maxDepth {
		return nil, errTooDeep
	}
	switch x := v.(type) {
	case lua.LBool:
		return bool(x), b.take(5)
	case lua.LString:
		return string(x), b.take(len(x) + 2)
	case lua.LNumber:
		f := float64(x)
		if f == math.Trunc(f) && math.Abs(f) < 1<<53 {
			return int64(f), b.take(8)
		}
		return f, b.take(8)
	case *lua.LTable:
		if err := b.take(2); err != nil {
			return nil, err
		}
		return tableFromLua(x, depth, b)
	case *lua.LUserData:
		if _, null := x.Value.(jsonNull); null {
			return nil, b.take(4)
		}
		return x.Value, b.take(8)
	}
	return nil, b.take(4)
}

func tableFromLua(t *lua.LTable, depth int, b *budget) (any, error) {
	n := t.Len()
	if pastArrayLimit(t, n) {
		return nil, errArrayLimit
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
		if err = b.take(len(key) + 4); err != nil {
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

func encodeJSON(v lua.LValue, b *budget) ([]byte, error) {
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
	if depth > maxDepth {
		return nil // toLua cuts it here
	}
	switch x := v.(type) {
	case []any:
		if len(x) > MaxArrayLen {
			return errArrayLimit
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
