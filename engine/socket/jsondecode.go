package socket

import (
	"encoding/json"
	"errors"
	"fmt"
	"unicode/utf16"
	"unicode/utf8"
)

// decodeJSON parses one JSON text (RFC 8259, as encoding/json accepts it) into plain data: objects as
// Object in key order, arrays as []any, numbers as json.Number (exact), strings with invalid UTF-8 and
// lone surrogates as U+FFFD (as encoding/json and Node decode them). A duplicate key keeps the position of
// its first occurrence and the value of its last (JSON.parse). Values nest at most maxJSONDepth deep.
//
// The work is linear in len(data): one pass, one allocation per string and per container growth, and
// keys found through a map once an object is large (keyIndex).
func decodeJSON(data []byte) (any, error) {
	d := jsonDecoder{data: data, hint: len(data) / 5} // an object member takes at least 5 bytes: "":0,
	d.space()
	v, err := d.value(0)
	if err != nil {
		return nil, err
	}
	d.space()
	if d.pos != len(d.data) {
		return nil, d.errorf("trailing data after the JSON value")
	}
	return v, nil
}

// jsonDecoder is a cursor over one JSON text.
type jsonDecoder struct {
	data []byte
	pos  int
	// hint is how many object members grow may still reserve room for, in all; it keeps the
	// reservations of the whole decode within the input's size, however wrong the guesses are.
	hint int
}

var errJSONEnd = errors.New("socket: json: unexpected end of input")

func (d *jsonDecoder) errorf(format string, args ...any) error {
	return fmt.Errorf("socket: json: offset %d: %s", d.pos, fmt.Sprintf(format, args...))
}

// space skips JSON whitespace.
func (d *jsonDecoder) space() {
	for d.pos < len(d.data) {
		switch d.data[d.pos] {
		case ' ', '\t', '\n', '\r':
			d.pos++
		default:
			return
		}
	}
}

func (d *jsonDecoder) value(depth int) (any, error) {
	if depth > maxJSONDepth {
		return nil, errJSONDepth
	}
	if d.pos >= len(d.data) {
		return nil, errJSONEnd
	}
	switch c := d.data[d.pos]; {
	case c == '{':
		return d.object(depth)
	case c == '[':
		return d.array(depth)
	case c == '"':
		return d.string()
	case c == '-' || c >= '0' && c <= '9':
		return d.number()
	case c == 't':
		return true, d.literal("true")
	case c == 'f':
		return false, d.literal("false")
	case c == 'n':
		return nil, d.literal("null")
	default:
		return nil, d.errorf("unexpected %q", c)
	}
}

func (d *jsonDecoder) literal(word string) error {
	if len(d.data)-d.pos < len(word) || string(d.data[d.pos:d.pos+len(word)]) != word {
		return d.errorf("expected %s", word)
	}
	d.pos += len(word)
	return nil
}

// indexFrom is the size from which an object's keys are found through a map rather than by a scan: a
// scan per key makes an object of n keys cost n²/2 comparisons (40,000 keys took 16 s of CPU), while
// small objects, the common case, are faster to scan than to hash.
const indexFrom = 16

func (d *jsonDecoder) object(depth int) (any, error) {
	start := d.pos
	d.pos++ // '{'
	obj := Object{}
	var index map[string]int
	d.space()
	if d.pos < len(d.data) && d.data[d.pos] == '}' {
		d.pos++
		return obj, nil
	}
	for {
		if d.pos >= len(d.data) {
			return nil, errJSONEnd
		}
		if d.data[d.pos] != '"' {
			return nil, d.errorf("expected a string key")
		}
		key, err := d.string()
		if err != nil {
			return nil, err
		}
		d.space()
		if d.pos >= len(d.data) || d.data[d.pos] != ':' {
			return nil, d.errorf("expected ':' after an object key")
		}
		d.pos++
		d.space()
		val, err := d.value(depth + 1)
		if err != nil {
			return nil, err
		}
		switch i, dup := index[key]; {
		case dup:
			obj[i].Value = val
		case index != nil:
			index[key] = len(obj)
			obj = append(obj, Field{Key: key, Value: val})
		default:
			if i := obj.find(key); i >= 0 {
				obj[i].Value = val
				break
			}
			obj = append(obj, Field{Key: key, Value: val})
			if len(obj) == indexFrom {
				obj, index = d.grow(obj, start)
			}
		}
		d.space()
		if d.pos >= len(d.data) {
			return nil, errJSONEnd
		}
		switch d.data[d.pos] {
		case ',':
			d.pos++
			d.space()
		case '}':
			d.pos++
			return obj, nil
		default:
			return nil, d.errorf("expected ',' or '}' in an object")
		}
	}
}

// grow is called when an object reaches indexFrom keys: it builds the key index and sizes it, and the
// object, for the keys the rest of the input would hold at the rate seen so far, so a large object does
// not pay for repeated rehashing (which, measured, made 40,000 keys cost 1.5x per byte what 1,000 do).
// What all objects reserve together stays within d.hint, so a wrong guess (many objects of 16 keys)
// costs at most memory proportional to the input, once.
func (d *jsonDecoder) grow(obj Object, start int) (Object, map[string]int) {
	perKey := max((d.pos-start)/len(obj), 1)
	more := min((len(d.data)-d.pos)/perKey, d.hint)
	d.hint -= more
	index := make(map[string]int, len(obj)+more)
	for i := range obj {
		index[obj[i].Key] = i
	}
	return append(make(Object, 0, len(obj)+more), obj...), index
}

// find returns the position of key in o, or -1.
func (o Object) find(key string) int {
	for i := range o {
		if o[i].Key == key {
			return i
		}
	}
	return -1
}

func (d *jsonDecoder) array(depth int) (any, error) {
	d.pos++ // '['
	arr := []any{}
	d.space()
	if d.pos < len(d.data) && d.data[d.pos] == ']' {
		d.pos++
		return arr, nil
	}
	for {
		val, err := d.value(depth + 1)
		if err != nil {
			return nil, err
		}
		arr = append(arr, val)
		d.space()
		if d.pos >= len(d.data) {
			return nil, errJSONEnd
		}
		switch d.data[d.pos] {
		case ',':
			d.pos++
			d.space()
		case ']':
			d.pos++
			return arr, nil
		default:
			return nil, d.errorf("expected ',' or ']' in an array")
		}
	}
}

// number checks the JSON number grammar and returns the text as a json.Number.
func (d *jsonDecoder) number() (any, error) {
	start := d.pos
	digits := func() int {
		n := 0
		for d.pos < len(d.data) && d.data[d.pos] >= '0' && d.data[d.pos] <= '9' {
			d.pos++
			n++
		}
		return n
	}
	if d.data[d.pos] == '-' {
		d.pos++
	}
	switch {
	case d.pos < len(d.data) && d.data[d.pos] == '0':
		d.pos++
	case digits() == 0:
		return nil, d.errorf("expected a digit")
	}
	if d.pos < len(d.data) && d.data[d.pos] == '.' {
		d.pos++
		if digits() == 0 {
			return nil, d.errorf("expected a digit after the decimal point")
		}
	}
	if d.pos < len(d.data) && (d.data[d.pos] == 'e' || d.data[d.pos] == 'E') {
		d.pos++
		if d.pos < len(d.data) && (d.data[d.pos] == '+' || d.data[d.pos] == '-') {
			d.pos++
		}
		if digits() == 0 {
			return nil, d.errorf("expected a digit in the exponent")
		}
	}
	return json.Number(d.data[start:d.pos]), nil
}

// string decodes the string at d.pos (its opening quote).
func (d *jsonDecoder) string() (string, error) {
	d.pos++ // '"'
	start := d.pos
	// Fast path: no escapes, valid UTF-8.
	for d.pos < len(d.data) {
		c := d.data[d.pos]
		switch {
		case c == '"':
			s := d.data[start:d.pos]
			d.pos++
			if !utf8.Valid(s) {
				return string(appendValidUTF8(nil, s)), nil
			}
			return string(s), nil
		case c == '\\':
			return d.slowString(start)
		case c < 0x20:
			return "", d.errorf("control character %#x in a string", c)
		}
		d.pos++
	}
	return "", errJSONEnd
}

// slowString decodes a string with escapes; d.pos is at the first backslash, start after the quote.
func (d *jsonDecoder) slowString(start int) (string, error) {
	b := appendValidUTF8(make([]byte, 0, d.pos-start+16), d.data[start:d.pos])
	for d.pos < len(d.data) {
		c := d.data[d.pos]
		switch {
		case c == '"':
			d.pos++
			return string(b), nil
		case c < 0x20:
			return "", d.errorf("control character %#x in a string", c)
		case c != '\\':
			run := d.pos
			for d.pos < len(d.data) && d.data[d.pos] != '"' && d.data[d.pos] != '\\' && d.data[d.pos] >= 0x20 {
				d.pos++
			}
			b = appendValidUTF8(b, d.data[run:d.pos])
			continue
		}
		// an escape
		if d.pos+1 >= len(d.data) {
			return "", errJSONEnd
		}
		e := d.data[d.pos+1]
		d.pos += 2
		switch e {
		case '"', '\\', '/':
			b = append(b, e)
		case 'b':
			b = append(b, '\b')
		case 'f':
			b = append(b, '\f')
		case 'n':
			b = append(b, '\n')
		case 'r':
			b = append(b, '\r')
		case 't':
			b = append(b, '\t')
		case 'u':
			r, ok := d.hex4(d.pos)
			if !ok {
				return "", d.errorf("bad \\u escape")
			}
			d.pos += 4
			if utf16.IsSurrogate(r) {
				// A pair combines; anything else is a lone surrogate, which becomes U+FFFD (the next
				// escape, if any, is decoded on its own).
				r2, ok := d.hex4(d.pos + 2)
				if ok && d.data[d.pos] == '\\' && d.data[d.pos+1] == 'u' {
					if dec := utf16.DecodeRune(r, r2); dec != utf8.RuneError {
						d.pos += 6
						b = utf8.AppendRune(b, dec)
						break
					}
				}
				r = utf8.RuneError
			}
			b = utf8.AppendRune(b, r)
		default:
			return "", d.errorf("bad escape \\%c", e)
		}
	}
	return "", errJSONEnd
}

// hex4 reads four hex digits at i.
func (d *jsonDecoder) hex4(i int) (rune, bool) {
	if i < 0 || i+4 > len(d.data) {
		return 0, false
	}
	var r rune
	for _, c := range d.data[i : i+4] {
		switch {
		case c >= '0' && c <= '9':
			c -= '0'
		case c >= 'a' && c <= 'f':
			c = c - 'a' + 10
		case c >= 'A' && c <= 'F':
			c = c - 'A' + 10
		default:
			return 0, false
		}
		r = r<<4 | rune(c)
	}
	return r, true
}

// appendValidUTF8 appends s with each invalid byte replaced by U+FFFD (as encoding/json does).
func appendValidUTF8(b, s []byte) []byte {
	for len(s) > 0 {
		r, size := utf8.DecodeRune(s)
		if r == utf8.RuneError && size == 1 {
			b = append(b, "\ufffd"...)
		} else {
			b = append(b, s[:size]...)
		}
		s = s[size:]
	}
	return b
}
