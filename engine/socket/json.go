package socket

import (
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"sort"
	"strconv"
	"time"
	"unicode/utf8"
)

// Field is one key/value pair of an Object.
type Field struct {
	Key   string
	Value any
}

// Object is a JSON object that keeps its keys in insertion order, so replies can match the reference's
// field order (actionhero writes JavaScript objects, whose string keys keep insertion order). Values are
// plain data: nil, bool, string, json.Number, float64, int, int64, []any, Object, map[string]any (keys
// sorted), []byte (as a string), time.Time (unix milliseconds).
type Object []Field

// Get returns the value of key.
func (o Object) Get(key string) (any, bool) {
	for _, f := range o {
		if f.Key == key {
			return f.Value, true
		}
	}
	return nil, false
}

// MarshalJSON lets encoding/json render an Object in order.
func (o Object) MarshalJSON() ([]byte, error) { return appendJSON(nil, o, 0) }

const maxJSONDepth = 64

var errJSONDepth = errors.New("value nested deeper than 64 levels")

// appendJSON appends v encoded the way JSON.stringify would: no HTML escaping, NaN/Inf as null, invalid
// UTF-8 replaced by U+FFFD (as Node decodes it).
func appendJSON(b []byte, v any, depth int) ([]byte, error) {
	if depth > maxJSONDepth {
		return b, errJSONDepth
	}
	var err error
	switch x := v.(type) {
	case nil:
		return append(b, "null"...), nil
	case bool:
		if x {
			return append(b, "true"...), nil
		}
		return append(b, "false"...), nil
	case string:
		return appendString(b, x), nil
	case []byte:
		return appendString(b, string(x)), nil
	case json.Number:
		if x == "" {
			return append(b, '0'), nil
		}
		return append(b, x...), nil
	case json.RawMessage:
		return append(b, x...), nil
	case int:
		return strconv.AppendInt(b, int64(x), 10), nil
	case int64:
		return strconv.AppendInt(b, x, 10), nil
	case int32:
		return strconv.AppendInt(b, int64(x), 10), nil
	case uint64:
		return strconv.AppendUint(b, x, 10), nil
	case float64:
		return appendFloat(b, x), nil
	case float32:
		return appendFloat(b, float64(x)), nil
	case time.Time:
		return strconv.AppendInt(b, x.UnixMilli(), 10), nil
	case Object:
		b = append(b, '{')
		for i, f := range x {
			if i > 0 {
				b = append(b, ',')
			}
			b = appendString(b, f.Key)
			b = append(b, ':')
			if b, err = appendJSON(b, f.Value, depth+1); err != nil {
				return b, err
			}
		}
		return append(b, '}'), nil
	case map[string]any:
		keys := make([]string, 0, len(x))
		for k := range x {
			keys = append(keys, k)
		}
		sort.Strings(keys)
		b = append(b, '{')
		for i, k := range keys {
			if i > 0 {
				b = append(b, ',')
			}
			b = appendString(b, k)
			b = append(b, ':')
			if b, err = appendJSON(b, x[k], depth+1); err != nil {
				return b, err
			}
		}
		return append(b, '}'), nil
	case []any:
		b = append(b, '[')
		for i, e := range x {
			if i > 0 {
				b = append(b, ',')
			}
			if b, err = appendJSON(b, e, depth+1); err != nil {
				return b, err
			}
		}
		return append(b, ']'), nil
	case []string:
		b = append(b, '[')
		for i, e := range x {
			if i > 0 {
				b = append(b, ',')
			}
			b = appendString(b, e)
		}
		return append(b, ']'), nil
	case error:
		return appendString(b, x.Error()), nil
	}
	// Anything else (a Go action's struct) goes through encoding/json.
	raw, err := json.Marshal(v)
	if err != nil {
		return b, fmt.Errorf("socket: encode %T: %w", v, err)
	}
	return append(b, raw...), nil
}

// appendFloat formats like JavaScript's Number.prototype.toString (the same rule encoding/json uses).
func appendFloat(b []byte, f float64) []byte {
	if math.IsNaN(f) || math.IsInf(f, 0) {
		return append(b, "null"...)
	}
	if f == math.Trunc(f) && math.Abs(f) < 1e21 {
		return strconv.AppendFloat(b, f, 'f', -1, 64)
	}
	abs := math.Abs(f)
	format := byte('f')
	if abs != 0 && (abs < 1e-6 || abs >= 1e21) {
		format = 'e'
	}
	b = strconv.AppendFloat(b, f, format, -1, 64)
	if format == 'e' {
		// clean up e-09 to e-9
		n := len(b)
		if n >= 4 && b[n-4] == 'e' && b[n-3] == '-' && b[n-2] == '0' {
			b[n-2] = b[n-1]
			b = b[:n-1]
		}
	}
	return b
}

const hexDigits = "0123456789abcdef"

// appendString writes s as a JSON string the way JSON.stringify does.
func appendString(b []byte, s string) []byte {
	b = append(b, '"')
	start := 0
	for i := 0; i < len(s); {
		c := s[i]
		if c < utf8.RuneSelf {
			if c >= 0x20 && c != '"' && c != '\\' {
				i++
				continue
			}
			b = append(b, s[start:i]...)
			switch c {
			case '"', '\\':
				b = append(b, '\\', c)
			case '\n':
				b = append(b, '\\', 'n')
			case '\r':
				b = append(b, '\\', 'r')
			case '\t':
				b = append(b, '\\', 't')
			case '\b':
				b = append(b, '\\', 'b')
			case '\f':
				b = append(b, '\\', 'f')
			default:
				b = append(b, '\\', 'u', '0', '0', hexDigits[c>>4], hexDigits[c&0xf])
			}
			i++
			start = i
			continue
		}
		r, size := utf8.DecodeRuneInString(s[i:])
		if r == utf8.RuneError && size == 1 {
			b = append(b, s[start:i]...)
			b = append(b, "\ufffd"...)
			i++
			start = i
			continue
		}
		i += size
	}
	b = append(b, s[start:]...)
	return append(b, '"')
}

// EncodedObject is an action result already encoded as one JSON object ({"k":v,...}); its members go
// into the reply as they are. Script bindings build it straight from their own values (see
// AppendJSONString), sparing the Object in between. It must not have the keys context, messageId or
// messageCount (ReservedKey), which the server writes. The server builds the reply in its buffer (spare
// capacity of about 100 bytes saves a copy), so it must not be used after it was returned.
type EncodedObject []byte

// AppendJSONString appends s as a JSON string, encoded as every reply is (no HTML escaping, invalid UTF-8
// as U+FFFD).
func AppendJSONString(b []byte, s string) []byte { return appendString(b, s) }

// AppendJSONNumber appends f as JSON.stringify would (NaN and infinities as null).
func AppendJSONNumber(b []byte, f float64) []byte { return appendFloat(b, f) }

// ReservedKey says a reply field is written by the server, not by an action's result.
func ReservedKey(k string) bool { return reservedKey(k) }
