package luabind

import (
	"fmt"

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
