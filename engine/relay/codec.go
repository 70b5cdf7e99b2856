package relay

import (
	"encoding/base64"
	"encoding/binary"
	"fmt"
	"math"
	"strconv"
	"unicode/utf8"
	"unsafe"
)

// Kind is the wire type of a parameter value, decided purely by its syntax.
type Kind uint8

// Value kinds, one per AMI value form.
const (
	KindNull   Kind = iota // null
	KindBool               // true / false
	KindInt                // 123
	KindLong               // 123L
	KindFloat              // 1.5, 12F, F<base64>
	KindDouble             // 1.5D, 1.0E10D, D<base64>
	KindString             // "text"
	KindEnum               // 'text'
	KindUTC                // 1422059533454T, or "20140503"T(yyyyMMdd) (Pattern set)
	KindJSON               // "{\"a\":1}"J
	KindBinary             // "aGVsbG8="U (S holds the decoded bytes)
)

var kindNames = [...]string{"null", "bool", "int", "long", "float", "double", "string", "enum", "utc", "json", "binary"}

func (k Kind) String() string {
	if int(k) < len(kindNames) {
		return kindNames[k]
	}
	return "kind(" + strconv.Itoa(int(k)) + ")"
}

// Value is one parameter value. Numbers live in I (int, long, utc, bool as
// 0/1) or F (float, double); text in S. Pattern is the date pattern of a
// quoted UTC value.
type Value struct {
	Kind    Kind
	I       int64
	F       float64
	S       string
	Pattern string
}

// Param is one key=value pair of an instruction.
type Param struct {
	Key string
	Val Value
}

// Message is one parsed AMI instruction.
type Message struct {
	Type   byte  // 'L', 'O', 'D', 'C', 'R', 'S', 'X', 'P', 'H', 'A', 'M', 'E'
	Seq    int64 // -1 when absent
	Now    int64 // -1 when absent
	Params []Param

	// strict holds the parsed line's `|key=value...` section when it is
	// byte for byte what AppendParams(Params) writes (see AppendParamsTo);
	// strictOK says whether it is set. ParseInto sets them, Set clears them.
	strict   string
	strictOK bool
}

// AppendParamsTo appends the strict wire form of m's params, like
// AppendParams(b, m.Params). When m was parsed from a line already in strict
// form it copies that line's bytes instead of encoding every value again.
// m.Params must not have been changed in place since ParseInto.
func (m *Message) AppendParamsTo(b []byte) []byte {
	if m.strictOK {
		return append(b, m.strict...)
	}
	return AppendParams(b, m.Params)
}

// lookup returns the value of key in place, or nil.
func (m *Message) lookup(key string) *Value {
	for i := range m.Params {
		if m.Params[i].Key == key {
			return &m.Params[i].Val
		}
	}
	return nil
}

// Get returns the value of key and whether it is present.
func (m *Message) Get(key string) (Value, bool) {
	for i := range m.Params {
		if m.Params[i].Key == key {
			return m.Params[i].Val, true
		}
	}
	return Value{}, false
}

// Text returns the value of key when it is a string or enum.
func (m *Message) Text(key string) (string, bool) {
	v := m.lookup(key)
	if v == nil || (v.Kind != KindString && v.Kind != KindEnum) {
		return "", false
	}
	return v.S, true
}

// Set replaces or appends key.
func (m *Message) Set(key string, v Value) {
	m.strictOK = false
	for i := range m.Params {
		if m.Params[i].Key == key {
			m.Params[i].Val = v
			return
		}
	}
	m.Params = append(m.Params, Param{Key: key, Val: v})
}

// SyntaxError is a malformed instruction; Col is the 1-based byte column.
type SyntaxError struct {
	Col int
	Msg string
}

func (e *SyntaxError) Error() string { return fmt.Sprintf("column %d: %s", e.Col, e.Msg) }

func synErr(col int, format string, args ...any) error {
	return &SyntaxError{Col: col + 1, Msg: fmt.Sprintf(format, args...)}
}

// knownTypes are the instruction letters of both directions.
const knownTypes = "LODCRSXPHAME"

// Parse parses one instruction (without its line terminator; trailing CRs are
// ignored). It is lenient: the `TYPE|#SEQ|@NOW|...` form of the 3forge
// template, `#`/`@` in either order, empty fields (`||`, a trailing `|`) and
// lower-case number suffixes are accepted.
func Parse(line []byte) (Message, error) {
	var m Message
	err := ParseInto(&m, line)
	return m, err
}

// ParseInto is Parse reusing m's Params storage. All strings in m share one
// allocation copied from line, so line may be reused afterwards.
func ParseInto(m *Message, line []byte) error { return parseInto(m, line, nil) }

// lineArena hands out copies of lines carved from shared blocks, so that many
// lines cost one allocation. Bytes once handed out are never written again:
// strings over them stay valid for as long as they are referenced (and keep
// their block alive; clone the few that are kept long).
type lineArena struct{ buf []byte }

const arenaBlock = 16 << 10

func (a *lineArena) copy(line []byte) string {
	if len(line) > arenaBlock/8 {
		return string(line)
	}
	if cap(a.buf)-len(a.buf) < len(line) {
		a.buf = make([]byte, 0, arenaBlock)
	}
	start := len(a.buf)
	a.buf = append(a.buf, line...)
	return unsafe.String(&a.buf[start], len(line))
}

// parseInto is ParseInto taking the copy of line from arena (nil: its own).
func parseInto(m *Message, line []byte, arena *lineArena) error {
	m.Params = m.Params[:0]
	m.Seq, m.Now, m.Type = -1, -1, 0
	m.strict, m.strictOK = "", false
	for len(line) > 0 && line[len(line)-1] == '\r' {
		line = line[:len(line)-1]
	}
	if len(line) == 0 {
		return synErr(0, "empty instruction")
	}
	var s string
	if arena != nil {
		s = arena.copy(line)
	} else {
		s = string(line)
	}
	t := s[0]
	if t >= 'a' && t <= 'z' {
		return synErr(0, "instruction type %q must be upper case", t)
	}
	if !containsByte(knownTypes, t) {
		return synErr(0, "unknown instruction type %q", t)
	}
	m.Type = t
	p := 1
	for p < len(s) {
		switch s[p] {
		case '|':
			p++
			continue
		case '#', '@':
			mark := s[p]
			start := p + 1
			q := start
			for q < len(s) && s[q] >= '0' && s[q] <= '9' {
				q++
			}
			if q == start {
				if mark == '#' {
					return synErr(p, "expected digits after '#' (sequence number)")
				}
				return synErr(p, "expected digits after '@' (timestamp)")
			}
			var n int64
			if q-start <= 18 { // cannot overflow
				for i := start; i < q; i++ {
					n = n*10 + int64(s[i]-'0')
				}
			} else if v, err := strconv.ParseInt(s[start:q], 10, 64); err == nil {
				n = v
			} else {
				return synErr(start, "number after %q out of range", mark)
			}
			if mark == '#' {
				if m.Seq >= 0 {
					return synErr(p, "duplicate sequence number")
				}
				m.Seq = n
			} else {
				if m.Now >= 0 {
					return synErr(p, "duplicate timestamp")
				}
				m.Now = n
			}
			p = q
			if p < len(s) && s[p] != '|' && s[p] != '#' && s[p] != '@' {
				return synErr(p, "unexpected %q after number, expected '|'", s[p])
			}
			continue
		}
		if p == 1 {
			return synErr(p, "unexpected %q after instruction type, expected '|', '#' or '@'", s[p])
		}
		break
	}
	// the params section is kept as is when it is already strict: one '|'
	// before each key=value, none trailing, every value in its strict form
	strict, rawStart, seps := true, p, 0
	if p < len(s) {
		if s[p-1] == '|' && s[p-2] != '|' {
			rawStart = p - 1
		} else {
			strict = false
		}
	}
	for p < len(s) {
		if s[p] == '|' {
			seps++
			p++
			continue
		}
		if len(m.Params) > 0 && seps != 1 {
			strict = false
		}
		seps = 0
		kstart := p
		for p < len(s) && isKeyByte(s[p]) {
			p++
		}
		if p == kstart {
			return synErr(p, "expected a key (letters, digits, '_'), got %q", s[p])
		}
		if p == len(s) || s[p] != '=' {
			if p == len(s) {
				return synErr(p, "missing '=' after key %q", s[kstart:p])
			}
			return synErr(p, "unexpected %q in key %q, expected '='", s[p], s[kstart:p])
		}
		key := s[kstart:p]
		for i := range m.Params {
			if m.Params[i].Key == key {
				return synErr(kstart, "duplicate key %q", key)
			}
		}
		p++
		n := len(m.Params)
		if n < cap(m.Params) {
			m.Params = m.Params[:n+1] // the slot is overwritten field by field
		} else {
			m.Params = append(m.Params, Param{})
		}
		m.Params[n].Key = key
		np, vstrict, err := parseValue(s, p, &m.Params[n].Val)
		if err != nil {
			m.Params = m.Params[:len(m.Params)-1]
			return err
		}
		strict = strict && vstrict
		if np < len(s) && s[np] != '|' {
			m.Params = m.Params[:len(m.Params)-1]
			return synErr(np, "unexpected %q after value of %q, expected '|'", s[np], key)
		}
		p = np
	}
	if strict && seps == 0 {
		m.strict, m.strictOK = s[rawStart:], true
	}
	return nil
}

func containsByte(s string, b byte) bool {
	for i := 0; i < len(s); i++ {
		if s[i] == b {
			return true
		}
	}
	return false
}

func isKeyByte(c byte) bool { return keyBytes[c] }

// keyBytes marks the bytes of keys: letters, digits, '_'.
var keyBytes = func() (t [256]bool) {
	for c := 0; c < 256; c++ {
		t[c] = c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '_'
	}
	return t
}()

func isDigit(c byte) bool { return c >= '0' && c <= '9' }

// setNum and setText fill a reused Value field by field: only the pointer
// fields that change are written (each such write has a GC barrier).
func (v *Value) setNum(k Kind, i int64, f float64) {
	v.Kind, v.I, v.F = k, i, f
	if v.S != "" {
		v.S = ""
	}
	if v.Pattern != "" {
		v.Pattern = ""
	}
}

func (v *Value) setText(k Kind, s string) {
	v.Kind, v.I, v.F, v.S = k, 0, 0, s
	if v.Pattern != "" {
		v.Pattern = ""
	}
}

// parseValue parses the value starting at s[p] and returns where it ends and
// whether its text is exactly its strict form (what AppendValue writes).
func parseValue(s string, p int, v *Value) (np int, strict bool, err error) {
	if p >= len(s) || s[p] == '|' {
		return p, false, synErr(p, "missing value")
	}
	c := s[p]
	switch {
	case c == '"' || c == '\'':
		text, np, plain, err := parseQuoted(s, p)
		if err != nil {
			return np, false, err
		}
		if c == '\'' {
			v.setText(KindEnum, text)
			return np, plain, nil
		}
		if np < len(s) {
			switch s[np] {
			case 'J':
				v.setText(KindJSON, text)
				return np + 1, plain, nil
			case 'U':
				b, err := base64.StdEncoding.DecodeString(text)
				if err != nil {
					return np, false, synErr(p, "binary value is not valid base64")
				}
				v.setText(KindBinary, string(b))
				return np + 1, false, nil
			case 'T':
				if np+1 < len(s) && s[np+1] == '(' {
					end := np + 2
					for end < len(s) && s[end] != ')' {
						end++
					}
					if end == len(s) {
						return end, false, synErr(np+1, "unterminated date pattern, expected ')'")
					}
					if end == np+2 {
						return end, false, synErr(np+1, "empty date pattern")
					}
					*v = Value{Kind: KindUTC, S: text, Pattern: s[np+2 : end]}
					return end + 1, plain, nil
				}
				return np, false, synErr(np+1, "expected '(' and a date pattern after T")
			}
		}
		v.setText(KindString, text)
		return np, plain, nil
	case isDigit(c) || c == '-':
		return parseNumber(s, p, v)
	case c == 'D' || c == 'F':
		end := p + 1
		for end < len(s) && s[end] != '|' {
			end++
		}
		raw, err := base64.StdEncoding.DecodeString(s[p+1 : end])
		if c == 'D' {
			if err != nil || len(raw) != 8 {
				return end, false, synErr(p, "encoded double must be base64 of 8 bytes")
			}
			v.setNum(KindDouble, 0, math.Float64frombits(binary.BigEndian.Uint64(raw)))
			return end, false, nil
		}
		if err != nil || len(raw) != 4 {
			return end, false, synErr(p, "encoded float must be base64 of 4 bytes")
		}
		v.setNum(KindFloat, 0, float64(math.Float32frombits(binary.BigEndian.Uint32(raw))))
		return end, false, nil
	}
	end := p
	for end < len(s) && s[end] != '|' {
		end++
	}
	switch s[p:end] {
	case "true":
		v.setNum(KindBool, 1, 0)
		return end, true, nil
	case "false":
		v.setNum(KindBool, 0, 0)
		return end, true, nil
	case "null":
		v.setNum(KindNull, 0, 0)
		return end, true, nil
	}
	return end, false, synErr(p, "bare word %q: text values must be quoted", s[p:end])
}

// parseNumber reads -?digits[.digits][(e|E)[+-]digits][suffix]. strict is
// set for integers already in their strict form (decimal numbers are checked
// by parseValue).
func parseNumber(s string, p int, v *Value) (np int, strict bool, err error) {
	start := p
	if s[p] == '-' {
		p++
	}
	ds := p
	for p < len(s) && isDigit(s[p]) {
		p++
	}
	if p == ds {
		return p, false, synErr(start, "expected digits in number")
	}
	de := p
	frac, exp := false, false
	fs, fe := p, p // fraction digits
	if p < len(s) && s[p] == '.' {
		frac = true
		p++
		fs = p
		for p < len(s) && isDigit(s[p]) {
			p++
		}
		fe = p
		if p == fs {
			return p, false, synErr(p, "expected digits after decimal point")
		}
	}
	if p < len(s) && (s[p] == 'e' || s[p] == 'E') {
		exp = true
		p++
		if p < len(s) && (s[p] == '+' || s[p] == '-') {
			p++
		}
		es := p
		for p < len(s) && isDigit(s[p]) {
			p++
		}
		if p == es {
			return p, false, synErr(p, "expected digits in exponent")
		}
	}
	num := s[start:p]
	var suffix byte
	if p < len(s) && s[p] != '|' {
		suffix = s[p]
		if suffix == 0 {
			return p, false, synErr(p, "unknown number suffix %q (expected L, F, D or T)", suffix)
		}
		p++
		if p < len(s) && s[p] != '|' {
			return p, false, synErr(p-1, "bad number %q", s[start:p+1])
		}
	}
	switch suffix {
	case 0, 'L', 'l', 'T':
		if frac || exp {
			if suffix == 0 {
				f, err := strconv.ParseFloat(num, 32)
				if err != nil && !isRangeErr(err) {
					return p, false, synErr(start, "bad float %q", num)
				}
				v.setNum(KindFloat, 0, f)
				return p, false, nil
			}
			return p, false, synErr(p-1, "suffix %q needs an integer, got %q", suffix, num)
		}
		var n int64
		if de-ds <= 18 { // cannot overflow
			for i := ds; i < de; i++ {
				n = n*10 + int64(s[i]-'0')
			}
			if start < ds {
				n = -n
			}
		} else if n, err = strconv.ParseInt(num, 10, 64); err != nil {
			return p, false, synErr(start, "integer %q out of range", num)
		}
		// strict integers have no leading zeros and no "-0"
		canonical := (de-ds == 1 || s[ds] != '0') && (start == ds || n != 0)
		switch suffix {
		case 'L':
			v.setNum(KindLong, n, 0)
			return p, canonical, nil
		case 'l':
			v.setNum(KindLong, n, 0)
			return p, false, nil
		case 'T':
			v.setNum(KindUTC, n, 0)
			return p, canonical, nil
		}
		if n < math.MinInt32 || n > math.MaxInt32 {
			v.setNum(KindLong, n, 0)
			return p, false, nil // lenient: an int too big for 32 bits is a long
		}
		v.setNum(KindInt, n, 0)
		return p, canonical, nil
	case 'F', 'f':
		f, err := strconv.ParseFloat(num, 32)
		if err != nil && !isRangeErr(err) {
			return p, false, synErr(start, "bad float %q", num)
		}
		v.setNum(KindFloat, 0, f)
		return p, suffix == 'F' && !exp && shortestDecimal(s[ds:de], s[fs:fe], 6, 2), nil
	case 'D', 'd':
		f, ok := exactDouble(s[ds:de], s[fs:fe], exp)
		if !ok {
			var err error
			if f, err = strconv.ParseFloat(num, 64); err != nil && !isRangeErr(err) {
				return p, false, synErr(start, "bad double %q", num)
			}
		} else if start < ds {
			f = -f
		}
		v.setNum(KindDouble, 0, f)
		return p, suffix == 'D' && !exp && shortestDecimal(s[ds:de], s[fs:fe], 15, 3), nil
	}
	return p, false, synErr(p-1, "unknown number suffix %q (expected L, F, D or T)", suffix)
}

// shortestDecimal reports whether the decimal intPart.fracPart (no exponent)
// is exactly how AppendValue writes its value: Go's shortest round-trip
// digits in 'f' form, with ".0" for whole numbers. That holds when the digits
// have no leading or trailing zeros to drop, there are at most sigDigits of
// them (15 for doubles, 6 for floats: every such decimal survives the round
// trip, so no shorter one maps to the same value), and the value is 0 or not
// so small that AppendValue switches to the exponent form (below 1e-4; at
// most zeroRun zeros after the point).
func shortestDecimal(intPart, fracPart string, sigDigits, zeroRun int) bool {
	if fracPart == "" || len(intPart) > 1 && intPart[0] == '0' {
		return false
	}
	if fracPart == "0" {
		return len(intPart) <= sigDigits
	}
	if fracPart[len(fracPart)-1] == '0' {
		return false
	}
	if intPart != "0" {
		return len(intPart)+len(fracPart) <= sigDigits
	}
	lz := 0
	for lz < len(fracPart) && fracPart[lz] == '0' {
		lz++
	}
	return lz <= zeroRun && len(fracPart)-lz <= sigDigits
}

// pow10 are the powers of ten that are exact doubles.
var pow10 = [...]float64{1, 1e1, 1e2, 1e3, 1e4, 1e5, 1e6, 1e7, 1e8, 1e9, 1e10, 1e11, 1e12, 1e13, 1e14, 1e15}

// exactDouble converts intPart.fracPart without strconv when the result is
// exact: at most 15 digits in all (an integer below 2⁵³) divided by an exact
// power of ten is correctly rounded. ok is false otherwise (and for exponents).
func exactDouble(intPart, fracPart string, exp bool) (float64, bool) {
	if exp || len(intPart)+len(fracPart) > 15 {
		return 0, false
	}
	var n int64
	for i := 0; i < len(intPart); i++ {
		n = n*10 + int64(intPart[i]-'0')
	}
	for i := 0; i < len(fracPart); i++ {
		n = n*10 + int64(fracPart[i]-'0')
	}
	return float64(n) / pow10[len(fracPart)], true
}

func isRangeErr(err error) bool {
	ne, ok := err.(*strconv.NumError)
	return ok && ne.Err == strconv.ErrRange
}

// parseQuoted reads a quoted text starting at the quote s[p] and returns the
// unescaped text and the index after the closing quote.
func parseQuoted(s string, p int) (text string, np int, plain bool, err error) {
	q := s[p]
	i := p + 1
	// fast path: no escapes; plain when nothing needs escaping either (the
	// text between the quotes is then exactly its strict form)
	ctl := false
	for i < len(s) && s[i] != q && s[i] != '\\' {
		ctl = ctl || s[i] < 0x20 || s[i] == 0x7f
		i++
	}
	if i < len(s) && s[i] == q {
		return s[p+1 : i], i + 1, !ctl, nil
	}
	buf := make([]byte, 0, i-p+16)
	buf = append(buf, s[p+1:i]...)
	for i < len(s) {
		c := s[i]
		switch c {
		case q:
			return string(buf), i + 1, false, nil
		case '\\':
			if i+1 >= len(s) {
				return "", i, false, synErr(i, "unterminated escape")
			}
			e := s[i+1]
			switch e {
			case '\\', '"', '\'':
				buf = append(buf, e)
			case 'n':
				buf = append(buf, '\n')
			case 'r':
				buf = append(buf, '\r')
			case 't':
				buf = append(buf, '\t')
			case 'f':
				buf = append(buf, '\f')
			case 'b':
				buf = append(buf, '\b')
			case 'u':
				if i+6 > len(s) {
					return "", i, false, synErr(i, "\\u needs 4 hex digits")
				}
				r, n, err := parseUnicodeEscape(s, i)
				if err != nil {
					return "", i, false, err
				}
				buf = utf8.AppendRune(buf, r)
				i += n
				continue
			default:
				return "", i, false, synErr(i, "unknown escape \\%c", e)
			}
			i += 2
		default:
			buf = append(buf, c)
			i++
		}
	}
	if q == '"' {
		return "", i, false, synErr(p, "unterminated string, expected closing '\"'")
	}
	return "", i, false, synErr(p, "unterminated enum, expected closing \"'\"")
}

// parseUnicodeEscape reads the `\uXXXX` escape at s[i] (the 4 hex digits are there) and returns its code
// point and the bytes it took. A UTF-16 surrogate pair (`\ud83d\ude00`, how Java writes a code point above
// U+FFFF) is one code point; a lone surrogate is an error, since it is no character and UTF-8 cannot carry it.
func parseUnicodeEscape(s string, i int) (rune, int, error) {
	hex4 := func(at int) (rune, error) {
		n, err := strconv.ParseUint(s[at+2:at+6], 16, 16)
		if err != nil {
			return 0, synErr(at, "\\u needs 4 hex digits, got %q", s[at+2:at+6])
		}
		return rune(n), nil
	}
	r, err := hex4(i)
	if err != nil {
		return 0, 0, err
	}
	switch {
	case r >= 0xdc00 && r <= 0xdfff:
		return 0, 0, synErr(i, "lone low surrogate %s: a \\uDC00-\\uDFFF escape must follow a \\uD800-\\uDBFF one", s[i:i+6])
	case r < 0xd800 || r > 0xdbff:
		return r, 6, nil
	}
	if i+12 > len(s) || s[i+6] != '\\' || s[i+7] != 'u' {
		return 0, 0, synErr(i, "lone high surrogate %s: expected a low surrogate escape (\\uDC00-\\uDFFF) after it", s[i:i+6])
	}
	lo, err := hex4(i + 6)
	if err != nil {
		return 0, 0, err
	}
	if lo < 0xdc00 || lo > 0xdfff {
		return 0, 0, synErr(i, "lone high surrogate %s: %s after it is not a low surrogate (\\uDC00-\\uDFFF)", s[i:i+6], s[i+6:i+12])
	}
	return 0x10000 + (r-0xd800)<<10 + (lo - 0xdc00), 12, nil
}

// AppendValue appends the strict wire form of v.
func AppendValue(b []byte, v Value) []byte {
	switch v.Kind {
	case KindNull:
		return append(b, "null"...)
	case KindBool:
		if v.I != 0 {
			return append(b, "true"...)
		}
		return append(b, "false"...)
	case KindInt:
		return strconv.AppendInt(b, v.I, 10)
	case KindLong:
		return append(strconv.AppendInt(b, v.I, 10), 'L')
	case KindUTC:
		if v.Pattern != "" {
			b = appendQuoted(b, v.S, '"')
			b = append(b, "T("...)
			b = append(b, v.Pattern...)
			return append(b, ')')
		}
		return append(strconv.AppendInt(b, v.I, 10), 'T')
	case KindFloat:
		if math.IsNaN(v.F) || math.IsInf(v.F, 0) {
			var raw [4]byte
			binary.BigEndian.PutUint32(raw[:], math.Float32bits(float32(v.F)))
			return base64.StdEncoding.AppendEncode(append(b, 'F'), raw[:])
		}
		return append(appendDecimal(b, v.F, 32), 'F')
	case KindDouble:
		if math.IsNaN(v.F) || math.IsInf(v.F, 0) {
			var raw [8]byte
			binary.BigEndian.PutUint64(raw[:], math.Float64bits(v.F))
			return base64.StdEncoding.AppendEncode(append(b, 'D'), raw[:])
		}
		return append(appendDecimal(b, v.F, 64), 'D')
	case KindString:
		return appendQuoted(b, v.S, '"')
	case KindEnum:
		return appendQuoted(b, v.S, '\'')
	case KindJSON:
		return append(appendQuoted(b, v.S, '"'), 'J')
	case KindBinary:
		b = append(b, '"')
		b = base64.StdEncoding.AppendEncode(b, []byte(v.S))
		return append(b, '"', 'U')
	}
	return append(b, "null"...)
}

// appendDecimal writes a finite number with a decimal point, so that readers
// that decide float-vs-int by the '.' (the Java client) get it right.
func appendDecimal(b []byte, f float64, bits int) []byte {
	start := len(b)
	a := math.Abs(f)
	if a != 0 && (a < 1e-4 || a >= 1e21) {
		b = strconv.AppendFloat(b, f, 'E', -1, bits)
	} else {
		b = strconv.AppendFloat(b, f, 'f', -1, bits)
	}
	for _, c := range b[start:] {
		if c == '.' {
			return b
		}
	}
	// insert ".0" before the exponent, if any
	for i := start; i < len(b); i++ {
		if b[i] == 'E' {
			b = append(b, 0, 0)
			copy(b[i+2:], b[i:])
			b[i], b[i+1] = '.', '0'
			return b
		}
	}
	return append(b, '.', '0')
}

func appendQuoted(b []byte, s string, q byte) []byte {
	b = append(b, q)
	for i := 0; i < len(s); i++ {
		c := s[i]
		switch c {
		case '\\':
			b = append(b, '\\', '\\')
		case q:
			b = append(b, '\\', q)
		case '\n':
			b = append(b, '\\', 'n')
		case '\r':
			b = append(b, '\\', 'r')
		case '\t':
			b = append(b, '\\', 't')
		case '\f':
			b = append(b, '\\', 'f')
		case '\b':
			b = append(b, '\\', 'b')
		default:
			if c < 0x20 || c == 0x7f {
				b = append(b, '\\', 'u', '0', '0', hexDigit[c>>4], hexDigit[c&15])
				continue
			}
			b = append(b, c)
		}
	}
	return append(b, q)
}

const hexDigit = "0123456789abcdef"

// AppendHeader appends `TYPE[#seq][@now]`; negative seq or now are omitted.
func AppendHeader(b []byte, typ byte, seq, now int64) []byte {
	b = append(b, typ)
	if seq >= 0 {
		b = strconv.AppendInt(append(b, '#'), seq, 10)
	}
	if now >= 0 {
		b = strconv.AppendInt(append(b, '@'), now, 10)
	}
	return b
}

// AppendParams appends `|key=value` for every param.
func AppendParams(b []byte, params []Param) []byte {
	for i := range params {
		b = append(b, '|')
		b = append(b, params[i].Key...)
		b = append(b, '=')
		b = AppendValue(b, params[i].Val)
	}
	return b
}

// Append appends the strict wire form of m (without a line terminator).
func (m *Message) Append(b []byte) []byte {
	return AppendParams(AppendHeader(b, m.Type, m.Seq, m.Now), m.Params)
}

// String returns the strict wire form of m.
func (m *Message) String() string { return string(m.Append(nil)) }

// AppendStatus appends the status (ack) line in the exact form the 3forge
// Java client requires: M@<now>|Q=<seq>|S=<code>|M="<text>".
func AppendStatus(b []byte, now, seq int64, code int, text string) []byte {
	b = append(b, "M@"...)
	b = strconv.AppendInt(b, now, 10)
	b = append(b, "|Q="...)
	b = strconv.AppendInt(b, seq, 10)
	b = append(b, "|S="...)
	b = strconv.AppendInt(b, int64(code), 10)
	b = append(b, "|M="...)
	return appendQuoted(b, text, '"')
}

// appendStatusDigits is AppendStatus with now already formatted.
func appendStatusDigits(b, now []byte, seq int64, code int, text string) []byte {
	b = append(b, "M@"...)
	b = append(b, now...)
	b = append(b, "|Q="...)
	b = strconv.AppendInt(b, seq, 10)
	if code == 0 && text == "OK" {
		return append(b, `|S=0|M="OK"`...)
	}
	b = append(b, "|S="...)
	b = strconv.AppendInt(b, int64(code), 10)
	b = append(b, "|M="...)
	return appendQuoted(b, text, '"')
}
