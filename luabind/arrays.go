package luabind

import (
	"fmt"
	"math"

	lua "github.com/yuin/gopher-lua"
)

// MaxArrayLen is the longest array a table holds: integer keys 1..MaxArrayLen live in the table's array part,
// larger ones in its hash part, where the length operator, ipairs and the converters to JSON and Go do not
// count them. The bound exists because gopher-lua fills the array part with nils up to a sparse index
// (t[n] = 1 on an empty table allocates n slots): at 16 bytes a slot, one write costs at most 16 MiB, the
// default lua.max_string_bytes, and a few milliseconds. table.insert past it, and converting a table that
// goes past it (sb.json.encode, action results, sb.cache.save, sb.publish...), raise an error instead of
// losing elements.
const MaxArrayLen = 1<<20 - 1

func init() {
	lua.MaxArrayIndex = MaxArrayLen + 1
}

// ErrArrayLimit is the error of a conversion of an array that went past MaxArrayLen.
var ErrArrayLimit = fmt.Errorf("array longer than %d elements (the Lua array limit)", MaxArrayLen)

// pastArrayLimit reports whether t is an array that went past MaxArrayLen (its next element landed in the
// hash part, where the length operator does not see it).
func pastArrayLimit(t *lua.LTable, n int) bool {
	return n >= MaxArrayLen && t.RawGetH(lua.LNumber(MaxArrayLen+1)) != lua.LNil
}

// limitTables replaces table.insert in the builder state's table library with one that refuses to grow an
// array past MaxArrayLen (gopher-lua's appends past the array part's bound where reads cannot find them) and
// to write into a read-only library proxy (isolation.go).
func (s *shared) limitTables(L *lua.LState) {
	tbl := L.GetGlobal("table").(*lua.LTable)
	tbl.RawSetString("insert", L.NewFunction(func(L *lua.LState) int {
		t := L.CheckTable(1)
		if t.Metatable != lua.LNil {
			if lib := s.readOnlyName(t); lib != "" {
				return Raise(L, "table.insert: %s is read-only (assign %s fields at the top level of a script)", lib, lib)
			}
		}
		switch L.GetTop() {
		case 2:
			if t.Len() >= MaxArrayLen {
				return Raise(L, "table.insert: %v", ErrArrayLimit)
			}
			t.Append(L.Get(2))
		case 3:
			pos := L.CheckInt(2)
			if pos > MaxArrayLen || t.Len() >= MaxArrayLen && pos >= 1 {
				return Raise(L, "table.insert: %v", ErrArrayLimit)
			}
			t.Insert(pos, L.CheckAny(3))
		default:
			return Raise(L, "wrong number of arguments to 'insert'")
		}
		return 0
	}))
}

// jsonArrayField marks the metatable of the tables that are JSON arrays whatever their contents: the
// tables sb.json.array returns and every array the engine hands to Lua (sb.json.decode, sb.cache.load,
// topic messages, socket params). Without it an empty table is an object, `{}`, and a script could not
// answer `"problems": []`.
const jsonArrayField = "__jsonarray"

// newArrayMeta builds the marker metatable (once per runtime, in the builder state). It is protected
// (getmetatable gives false), so no script can reach the table every VM shares.
func newArrayMeta(L *lua.LState) *lua.LTable {
	mt := L.CreateTable(0, 2)
	mt.RawSetString(jsonArrayField, lua.LTrue)
	mt.RawSetString("__metatable", lua.LFalse)
	return mt
}

// IsJSONArray reports whether t is marked as a JSON array (sb.json.array, or an array the engine
// decoded): it converts to an array, [] when empty, never to an object.
func IsJSONArray(t *lua.LTable) bool {
	mt, ok := t.Metatable.(*lua.LTable)
	return ok && mt.RawGetString(jsonArrayField) == lua.LTrue
}

// MarkArray marks t as a JSON array in the runtime running L (nothing for a state the runtime did not make).
func MarkArray(L *lua.LState, t *lua.LTable) {
	if m := arrayMetaOf(L); m != nil {
		t.Metatable = m
	}
}

func arrayMetaOf(L *lua.LState) *lua.LTable {
	if vm := VMOf(L); vm != nil {
		return vm.rt.shared.arrayMeta
	}
	return nil
}

// JSONArrayLen is the length of a table marked as a JSON array: its largest index, elements missing
// below it being null. A key that is not an index from 1 to MaxArrayLen is an error (it would be lost).
func JSONArrayLen(t *lua.LTable) (int, error) {
	n := 0
	var bad lua.LValue
	for k, _ := t.Next(lua.LNil); k != lua.LNil; k, _ = t.Next(k) {
		num, ok := k.(lua.LNumber)
		f := float64(num)
		if !ok || f != math.Trunc(f) || f < 1 || f > MaxArrayLen {
			bad = k
			break
		}
		n = max(n, int(f))
	}
	if bad != nil {
		if s, ok := bad.(lua.LString); ok {
			return 0, fmt.Errorf("a JSON array (sb.json.array) has the key %q, which is not an index from 1 to %d", string(s), MaxArrayLen)
		}
		return 0, fmt.Errorf("a JSON array (sb.json.array) has the key %s, which is not an index from 1 to %d", bad.String(), MaxArrayLen)
	}
	return n, nil
}
