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
		t := L.CreateTable(len(x), 0)
		for i, e := range x {
			t.RawSetInt(i+1, toLua(L, e, depth+1))
		}
		return t
	case []string:
		t := L.CreateTable(len(x), 0)
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
// become nil; values too deeply nested are cut at 64 levels.
func FromLua(v lua.LValue) any {
	out, _ := fromLua(v, 0)
	return out
}

var errTooDeep = errors.New("table nested deeper than 64 levels (a table that contains itself?)")

func fromLua(v lua.LValue, depth int) (any, error) {
	if depth > maxDepth {
		return nil, errTooDeep
	}
	switch x := v.(type) {
	case lua.LBool:
		return bool(x), nil
	case lua.LString:
		return string(x), nil
	case lua.LNumber:
		f := float64(x)
		if f == math.Trunc(f) && math.Abs(f) < 1<<53 {
			return int64(f), nil
		}
		return f, nil
	case *lua.LTable:
		return tableFromLua(x, depth)
	case *lua.LUserData:
		if _, null := x.Value.(jsonNull); null {
			return nil, nil
		}
		return x.Value, nil
	}
	return nil, nil
}

func tableFromLua(t *lua.LTable, depth int) (any, error) {
	n := t.Len()
	count := 0
	array := true
	var err error
	t.ForEach(func(k, _ lua.LValue) {
		count++
		if num, ok := k.(lua.LNumber); !ok || float64(num) != math.Trunc(float64(num)) || num < 1 || int(num) > n {
			array = false
		}
	})
	if array && count == n && n > 0 {
		out := make([]any, n)
		for i := 1; i <= n && err == nil; i++ {
			out[i-1], err = fromLua(t.RawGetInt(i), depth+1)
		}
		return out, err
	}
	out := make(map[string]any, count)
	t.ForEach(func(k, v lua.LValue) {
		if err != nil {
			return
		}
		var val any
		val, err = fromLua(v, depth+1)
		out[k.String()] = val
	})
	return out, err
}

// EncodeJSON renders a Lua value as JSON (object keys sorted). An empty table is `{}`.
func EncodeJSON(v lua.LValue) ([]byte, error) {
	g, err := fromLua(v, 0)
	if err != nil {
		return nil, err
	}
	if f, ok := g.(float64); ok && (math.IsInf(f, 0) || math.IsNaN(f)) {
		return nil, fmt.Errorf("cannot encode %v as JSON", f)
	}
	return json.Marshal(g)
}

// DecodeJSON parses JSON into a Lua value; JSON null becomes nil.
func DecodeJSON(L *lua.LState, data []byte) (lua.LValue, error) {
	var g any
	if err := json.Unmarshal(data, &g); err != nil {
		return lua.LNil, err
	}
	return ToLua(L, g), nil
}
