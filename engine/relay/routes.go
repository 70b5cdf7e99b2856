package relay

import (
	"encoding/binary"
	"errors"
	"fmt"
	"math"
	"math/bits"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"sync/atomic"
)

// ValueType is a PARAM_TYPES type name (AMIScript types).
type ValueType uint8

// The PARAM_TYPES types.
const (
	TypeString ValueType = iota + 1
	TypeInt
	TypeLong
	TypeShort
	TypeByte
	TypeDouble
	TypeFloat
	TypeBoolean
	TypeChar
	TypeUTC
	TypeUTCN
	TypeBigInteger
	TypeBigDecimal
	TypeNumber
)

var valueTypeNames = map[string]ValueType{
	"string": TypeString, "int": TypeInt, "integer": TypeInt, "long": TypeLong, "short": TypeShort,
	"byte": TypeByte, "double": TypeDouble, "float": TypeFloat, "boolean": TypeBoolean, "bool": TypeBoolean,
	"char": TypeChar, "utc": TypeUTC, "utcn": TypeUTCN, "biginteger": TypeBigInteger,
	"bigdecimal": TypeBigDecimal, "number": TypeNumber,
}

// ParamType is one declared entry of the PARAM_TYPES column: `Name Type [nonull]`.
type ParamType struct {
	Name    string
	Type    ValueType
	NonNull bool
}

// Predicate is a compiled EXPRESSION. args holds the declared params in
// declaration order, converted to their declared type (KindNull when absent).
type Predicate interface {
	Eval(args []Value) (bool, error)
}

// impure is implemented by predicates whose result may change for the same args (an expression that reads
// the clock, the cache or math.random); their results are never remembered (relay.expression_cache).
type impure interface {
	Pure() bool
}

// cheap is implemented by predicates that evaluate faster than the memo finds a remembered result (route
// expressions compiled to Go): the memo would only add its key encoding and lookups.
type cheap interface {
	Cheap() bool
}

// memoizable reports whether a predicate's results may be remembered per param values, and are worth it.
func memoizable(p Predicate) bool {
	if c, ok := p.(cheap); ok && c.Cheap() {
		return false
	}
	ip, ok := p.(impure)
	return !ok || ip.Pure()
}

// NotBooleanError is what a Predicate returns when its expression yielded
// something other than a boolean or null (a number, a string: in Lua 0 and ""
// would count as true). The rule counts as false.
type NotBooleanError struct {
	Yields string // "a number", "a string", "a table", ...
	Value  string // a short rendering of the result, when it has one
}

func (e *NotBooleanError) Error() string {
	if e.Value != "" {
		return fmt.Sprintf("the expression yielded %s (%s), not a boolean: counted as false", e.Yields, e.Value)
	}
	return fmt.Sprintf("the expression yielded %s, not a boolean: counted as false", e.Yields)
}

// PredicateFunc adapts a Go function to Predicate.
type PredicateFunc func(args []Value) (bool, error)

// Eval calls f.
func (f PredicateFunc) Eval(args []Value) (bool, error) { return f(args) }

// ExprCompiler compiles the EXPRESSION column once per routes load. The Lua
// implementation lives in luabind; tests use Go ones.
type ExprCompiler func(params []ParamType, source string) (Predicate, error)

// CenterSet is a set of centers by index (at most 64 centers).
type CenterSet uint64

// Has reports whether center i is in s.
func (s CenterSet) Has(i int) bool { return s&(1<<uint(i)) != 0 }

// Len is the number of centers in s.
func (s CenterSet) Len() int { return bits.OnesCount64(uint64(s)) }

// MaxCenters is the most centers a relay can have.
const MaxCenters = 64

// Rule is one line of relay.routes.
type Rule struct {
	Name     string
	Priority int
	Line     int
	msgTypes uint8 // bits of routableTypes; 0xff = all
	objAll   bool
	objTypes []string
	Params   []ParamType
	Expr     string
	pred     Predicate
	memo     bool // results may be remembered (the predicate is pure)
	Centers  CenterSet
	BreakOnTrue,
	BreakOnFalse bool

	notBoolSeen atomic.Bool // a non-boolean result was reported (logged once per rule)
}

// FirstNotBoolean reports true the first time it is called for the rule and false after: a rule whose
// expression yields something other than a boolean is logged once, not once per message.
func (r *Rule) FirstNotBoolean() bool { return r.notBoolSeen.CompareAndSwap(false, true) }

func typeBit(t byte) uint8 {
	switch t {
	case 'O':
		return 1
	case 'D':
		return 2
	case 'C':
		return 4
	case 'S':
		return 8
	case 'A':
		return 16
	}
	return 0
}

// Table is an immutable, validated routes table.
type Table struct {
	rules     []*Rule
	centers   []string
	all       CenterSet
	maxArgs   int
	memoSize  int
	memoBytes int
	onError   func(r *Rule, err error)
}

// OnEvalError sets a function told of every failed expression evaluation (the rule counts as false):
// Lua errors, timeouts and *NotBooleanError results. Call it before the table is used.
func (t *Table) OnEvalError(f func(r *Rule, err error)) { t.onError = f }

// Rules returns the rules in evaluation order.
func (t *Table) Rules() []*Rule { return t.rules }

// Centers returns the center names the table was built for, by index.
func (t *Table) Centers() []string { return t.centers }

// ParseRoutes parses a relay.routes file. name is used in errors
// (`relay.routes:LINE: reason`); centers are the configured center names,
// whose index is their bit in a CenterSet (ROUTE_LIST matches them without
// regard to case). Every bad line is reported.
func ParseRoutes(name string, src []byte, centers []string, compile ExprCompiler) (*Table, error) {
	t, errs := parseRoutes(name, src, centers, compile)
	if len(errs) > 0 {
		return nil, errors.Join(errs...)
	}
	return t, nil
}

// parseRoutes is ParseRoutes returning every problem separately.
func parseRoutes(name string, src []byte, centers []string, compile ExprCompiler) (*Table, []error) {
	if len(centers) > MaxCenters {
		return nil, []error{fmt.Errorf("%s: %d centers, at most %d are supported", name, len(centers), MaxCenters)}
	}
	t := &Table{centers: centers}
	index := make(map[string]int, len(centers))
	for i, c := range centers {
		// center names come from YAML map keys, which viper lower-cases: match them case-insensitively
		index[strings.ToLower(c)] = i
		t.all |= 1 << uint(i)
	}
	var errs []error
	seen := map[string]int{}
	for n, line := range strings.Split(string(src), "\n") {
		lineNo := n + 1
		line = strings.TrimRight(line, "\r")
		trimmed := strings.TrimSpace(line)
		if trimmed == "" || strings.HasPrefix(trimmed, "#") {
			continue
		}
		r, err := parseRule(trimmed, index, t.all, compile)
		if err != nil {
			errs = append(errs, fmt.Errorf("%s:%d: %w", name, lineNo, err))
			continue
		}
		r.Line = lineNo
		if prev, dup := seen[r.Name]; dup {
			errs = append(errs, fmt.Errorf("%s:%d: duplicate route name %q (first on line %d)", name, lineNo, r.Name, prev))
			continue
		}
		seen[r.Name] = lineNo
		if len(r.Params) > t.maxArgs {
			t.maxArgs = len(r.Params)
		}
		t.rules = append(t.rules, r)
	}
	if len(errs) > 0 {
		return nil, errs
	}
	sort.SliceStable(t.rules, func(i, j int) bool {
		a, b := t.rules[i], t.rules[j]
		if a.Priority != b.Priority {
			return a.Priority < b.Priority
		}
		return a.Name < b.Name
	})
	return t, nil
}

// CheckConfig checks cfg's routes file offline (for `switchboard check`): it
// reads and parses the file with its expressions compiled by compile, and
// returns each problem as `relay.routes:LINE: reason` (the file's base name,
// as the running relay logs it). A disabled relay or a routes file that does
// not exist (the relay then sends everything to every center) is no problem.
func CheckConfig(cfg Config, compile ExprCompiler) []error {
	if !cfg.Enabled || cfg.RoutesFile == "" {
		return nil
	}
	src, err := os.ReadFile(cfg.RoutesFile)
	if errors.Is(err, os.ErrNotExist) {
		return nil
	}
	if err != nil {
		return []error{fmt.Errorf("relay.routes_file: %w", err)}
	}
	_, errs := parseRoutes(filepath.Base(cfg.RoutesFile), src, cfg.CenterNames(), compile)
	return errs
}

func parseRule(line string, centers map[string]int, all CenterSet, compile ExprCompiler) (*Rule, error) {
	f := strings.Split(line, ";")
	// a trailing ';' is tolerated, and the guide's 10th SKIP_ACTION field may be present but blank
	for len(f) > 9 && strings.TrimSpace(f[len(f)-1]) == "" {
		f = f[:len(f)-1]
	}
	if len(f) != 9 {
		return nil, fmt.Errorf("expected 9 ';'-separated fields (ROUTE_NAME;PRIORITY;MESSAGE_TYPES;OBJECT_TYPES;PARAM_TYPES;EXPRESSION;ROUTE_LIST;ON_TRUE;ON_FALSE), got %d", len(f))
	}
	for i := range f {
		f[i] = strings.TrimSpace(f[i])
	}
	r := &Rule{Name: f[0], Expr: f[5]}
	if r.Name == "" {
		return nil, errors.New("ROUTE_NAME is empty")
	}
	p, err := strconv.Atoi(f[1])
	if err != nil {
		return nil, fmt.Errorf("route %s: PRIORITY: expected an integer, got %q", r.Name, f[1])
	}
	r.Priority = p
	// MESSAGE_TYPES
	if f[2] == "*" {
		r.msgTypes = 0xff
	} else {
		for _, t := range strings.Split(f[2], ",") {
			t = strings.TrimSpace(t)
			if len(t) != 1 || typeBit(t[0]) == 0 {
				return nil, fmt.Errorf("route %s: MESSAGE_TYPES: expected a comma list of O, D, C, S, A or *, got %q", r.Name, t)
			}
			r.msgTypes |= typeBit(t[0])
		}
	}
	// OBJECT_TYPES: blank = rule skipped (kept, never applies)
	switch f[3] {
	case "":
	case "*":
		r.objAll = true
	default:
		for _, o := range strings.Split(f[3], ",") {
			o = strings.TrimSpace(o)
			if o == "" {
				return nil, fmt.Errorf("route %s: OBJECT_TYPES: empty entry in %q", r.Name, f[3])
			}
			r.objTypes = append(r.objTypes, o)
		}
	}
	// PARAM_TYPES
	if f[4] != "" {
		names := map[string]bool{}
		for _, d := range strings.Split(f[4], ",") {
			words := strings.Fields(d)
			if len(words) < 2 || len(words) > 3 || (len(words) == 3 && !strings.EqualFold(words[2], "nonull")) {
				return nil, fmt.Errorf("route %s: PARAM_TYPES: expected \"Name Type [nonull]\", got %q", r.Name, strings.TrimSpace(d))
			}
			vt, ok := valueTypeNames[strings.ToLower(words[1])]
			if !ok {
				return nil, fmt.Errorf("route %s: PARAM_TYPES: unknown type %q for %s", r.Name, words[1], words[0])
			}
			for i := 0; i < len(words[0]); i++ {
				if !isKeyByte(words[0][i]) {
					return nil, fmt.Errorf("route %s: PARAM_TYPES: bad param name %q", r.Name, words[0])
				}
			}
			if names[words[0]] {
				return nil, fmt.Errorf("route %s: PARAM_TYPES: %s declared twice", r.Name, words[0])
			}
			names[words[0]] = true
			r.Params = append(r.Params, ParamType{Name: words[0], Type: vt, NonNull: len(words) == 3})
		}
	}
	// ROUTE_LIST
	switch f[6] {
	case "":
	case "*":
		r.Centers = all
	default:
		for _, c := range strings.Split(f[6], ",") {
			c = strings.TrimSpace(c)
			i, ok := centers[strings.ToLower(c)]
			if !ok {
				return nil, fmt.Errorf("route %s: ROUTE_LIST: unknown center %q", r.Name, c)
			}
			r.Centers |= 1 << uint(i)
		}
	}
	if r.BreakOnTrue, err = parseAction(f[7]); err != nil {
		return nil, fmt.Errorf("route %s: ON_TRUE: %w", r.Name, err)
	}
	if r.BreakOnFalse, err = parseAction(f[8]); err != nil {
		return nil, fmt.Errorf("route %s: ON_FALSE: %w", r.Name, err)
	}
	if r.Expr != "" && r.Expr != "true" {
		if compile == nil {
			return nil, fmt.Errorf("route %s: EXPRESSION: no expression compiler configured", r.Name)
		}
		pred, err := compile(r.Params, r.Expr)
		if err != nil {
			return nil, fmt.Errorf("route %s: EXPRESSION: %w", r.Name, err)
		}
		r.pred = pred
		r.memo = memoizable(pred)
	}
	return r, nil
}

func parseAction(s string) (bool, error) {
	switch strings.ToUpper(s) {
	case "", "CONTINUE":
		return false, nil
	case "BREAK":
		return true, nil
	}
	return false, fmt.Errorf("expected BREAK, CONTINUE or blank, got %q", s)
}

// RouteScratch is per-connection routing state: argument storage and a
// bounded memo of expression results (expressions must be pure functions of
// their declared params; see Table.SetMemo). The zero value is ready.
type RouteScratch struct {
	args      []Value
	table     *Table
	memo      []map[string]bool
	memoBytes int                        // what memo holds, counted as memoEntryBytes per result
	ruleBytes []int                      // the same per rule
	recent    [][memoRecent]recentResult // per rule: the last results, checked before the map
	next      []uint8
	key       []byte
}

// maxMemoKey is the longest key (encoded param values) whose result is
// remembered: a message with longer params is evaluated every time, so that
// the memo and the recent results stay small whatever the params hold.
const maxMemoKey = 1 << 10

// memoEntryBytes is what one remembered result costs against
// relay.expression_cache_bytes: its key, its value and the map's overhead.
func memoEntryBytes(key []byte) int { return len(key) + 1 + entryOverhead }

// MemoBytes is what the remembered expression results of this connection
// hold, as counted against relay.expression_cache_bytes.
func (st *RouteScratch) MemoBytes() int { return st.memoBytes }

// memoRecent is how many of a rule's latest results are kept in front of the
// memo map (a few compares instead of hashing the key).
const memoRecent = 4

type recentResult struct {
	key  []byte
	ok   bool
	used bool
}

// remember puts the result for st.key first in rule ri's recent results.
func (st *RouteScratch) remember(ri int, ok bool) {
	slot := st.next[ri]
	st.next[ri] = (slot + 1) % memoRecent
	e := &st.recent[ri][slot]
	e.key = append(e.key[:0], st.key...)
	e.ok, e.used = ok, true
}

// SetMemo sets how many expression results each connection remembers per
// rule and the bytes they may hold per connection, all rules together (either
// 0 disables). Past the bytes the connection's memo starts over. Call it
// before the table is used.
func (t *Table) SetMemo(n, bytes int) {
	if n <= 0 || bytes <= 0 {
		n, bytes = 0, 0
	}
	t.memoSize, t.memoBytes = n, bytes
}

// Route returns the centers m goes to. An expression error makes that rule
// false (ON_FALSE applies); the first such error is returned alongside the
// result so the caller can log and count it.
func (t *Table) Route(m *Message, st *RouteScratch) (CenterSet, error) {
	if len(t.rules) == 0 {
		return t.all, nil
	}
	bit := typeBit(m.Type)
	if bit == 0 {
		return 0, nil
	}
	objType, hasObj := m.Text("T")
	if cap(st.args) < t.maxArgs {
		st.args = make([]Value, t.maxArgs)
	}
	if st.table != t {
		st.table = t
		st.memo, st.recent, st.next, st.memoBytes, st.ruleBytes = nil, nil, nil, 0, nil
		if t.memoSize > 0 {
			st.memo = make([]map[string]bool, len(t.rules))
			st.ruleBytes = make([]int, len(t.rules))
			st.recent = make([][memoRecent]recentResult, len(t.rules))
			st.next = make([]uint8, len(t.rules))
		}
	}
	var (
		set      CenterSet
		firstErr error
	)
	for ri, r := range t.rules {
		if r.msgTypes&bit == 0 {
			continue
		}
		if !r.objAll {
			if !hasObj || !containsString(r.objTypes, objType) {
				continue
			}
		}
		args := st.args[:len(r.Params)]
		if !extractArgs(m, r.Params, args) {
			continue
		}
		ok := true
		if r.pred != nil {
			ok = false
			cached := false
			memo := st.memo != nil && r.memo
			if memo {
				st.key = appendArgsKey(st.key[:0], args)
				memo = len(st.key) <= maxMemoKey
			}
			if memo {
				for k := range st.recent[ri] {
					if e := &st.recent[ri][k]; e.used && string(e.key) == string(st.key) {
						ok, cached = e.ok, true
						break
					}
				}
				if !cached {
					if ok, cached = st.memo[ri][string(st.key)]; cached {
						st.remember(ri, ok)
					}
				}
			}
			if !cached {
				var err error
				ok, err = r.pred.Eval(args)
				if err != nil {
					ok = false
					if t.onError != nil {
						t.onError(r, err)
					}
					if firstErr == nil {
						firstErr = fmt.Errorf("route %s (line %d): %w", r.Name, r.Line, err)
					}
				} else if memo {
					st.memorize(ri, ok)
				}
			}
		}
		if ok {
			set |= r.Centers
			if r.BreakOnTrue {
				break
			}
		} else if r.BreakOnFalse {
			break
		}
	}
	return set, firstErr
}

// memorize remembers ok for st.key under rule ri. A rule's map starts over at
// relay.expression_cache results; the connection's memo starts over (every
// rule) when it would pass relay.expression_cache_bytes.
func (st *RouteScratch) memorize(ri int, ok bool) {
	t := st.table
	cost := memoEntryBytes(st.key)
	mm := st.memo[ri]
	if mm != nil && len(mm) >= t.memoSize {
		st.memoBytes -= st.ruleBytes[ri]
		st.ruleBytes[ri], mm = 0, nil
	}
	if st.memoBytes+cost > t.memoBytes {
		clear(st.memo)
		clear(st.ruleBytes)
		st.memoBytes, mm = 0, nil
	}
	if mm == nil {
		mm = make(map[string]bool, min(t.memoSize, 256))
		st.memo[ri] = mm
	}
	mm[string(st.key)] = ok
	st.memoBytes += cost
	st.ruleBytes[ri] += cost
	st.remember(ri, ok)
}

// appendArgsKey encodes typed args unambiguously for the memo.
func appendArgsKey(b []byte, args []Value) []byte {
	for i := range args {
		v := &args[i]
		b = append(b, byte(v.Kind))
		switch v.Kind {
		case KindString, KindEnum, KindJSON, KindBinary:
			b = binary.AppendUvarint(b, uint64(len(v.S)))
			b = append(b, v.S...)
		case KindFloat, KindDouble:
			b = binary.BigEndian.AppendUint64(b, math.Float64bits(v.F))
		default:
			b = binary.BigEndian.AppendUint64(b, uint64(v.I))
		}
	}
	return b
}

func containsString(list []string, s string) bool {
	for _, x := range list {
		if x == s {
			return true
		}
	}
	return false
}

// extractArgs converts the declared params of m; false = the rule does not
// apply (a nonull param is missing or null, or a value has the wrong type).
func extractArgs(m *Message, decl []ParamType, args []Value) bool {
	for i := range decl {
		d := &decl[i]
		v := m.lookup(d.Name)
		if v == nil || v.Kind == KindNull {
			if d.NonNull {
				return false
			}
			args[i] = Value{}
			continue
		}
		if !convertInto(&args[i], v, d.Type) {
			return false
		}
	}
	return true
}

// convertInto stores v converted to t in dst; false when v does not convert.
func convertInto(dst, v *Value, t ValueType) bool {
	if (t == TypeString && v.Kind == KindString) || (t == TypeDouble && v.Kind == KindDouble) ||
		(t == TypeLong && v.Kind == KindLong) || (t == TypeInt && v.Kind == KindInt && v.I == int64(int32(v.I))) {
		// already the declared type (the common case): a field-wise copy
		if dst.Kind != v.Kind || dst.I != v.I || dst.F != v.F || dst.S != v.S || dst.Pattern != "" {
			*dst = *v
		}
		return true
	}
	cv, ok := convert(*v, t)
	if ok {
		*dst = cv
	}
	return ok
}

func convert(v Value, t ValueType) (Value, bool) {
	isInt := v.Kind == KindInt || v.Kind == KindLong
	isNum := isInt || v.Kind == KindFloat || v.Kind == KindDouble
	switch t {
	case TypeString:
		if v.Kind == KindString || v.Kind == KindEnum {
			return Value{Kind: KindString, S: v.S}, true
		}
	case TypeChar:
		if (v.Kind == KindString || v.Kind == KindEnum) && len([]rune(v.S)) == 1 {
			return Value{Kind: KindString, S: v.S}, true
		}
	case TypeInt, TypeShort, TypeByte:
		lo, hi := int64(math.MinInt32), int64(math.MaxInt32)
		if t == TypeShort {
			lo, hi = math.MinInt16, math.MaxInt16
		} else if t == TypeByte {
			lo, hi = math.MinInt8, math.MaxInt8
		}
		if isInt && v.I >= lo && v.I <= hi {
			return Value{Kind: KindInt, I: v.I}, true
		}
	case TypeLong, TypeBigInteger:
		if isInt || v.Kind == KindUTC && v.Pattern == "" {
			return Value{Kind: KindLong, I: v.I}, true
		}
	case TypeUTC, TypeUTCN:
		if isInt || v.Kind == KindUTC && v.Pattern == "" {
			return Value{Kind: KindUTC, I: v.I}, true
		}
	case TypeDouble, TypeFloat, TypeBigDecimal, TypeNumber:
		if isInt {
			return Value{Kind: KindDouble, F: float64(v.I)}, true
		}
		if isNum {
			return Value{Kind: KindDouble, F: v.F}, true
		}
	case TypeBoolean:
		if v.Kind == KindBool {
			return v, true
		}
	}
	return Value{}, false
}
