package socket

import (
	"encoding/json"
	"errors"
	"fmt"
	"sort"
	"strconv"
	"time"

	"github.com/switchboard/switchboard/internal/jsonjs"
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
		return jsonjs.AppendString(b, x), nil
	case []byte:
		return jsonjs.AppendString(b, string(x)), nil
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
		return jsonjs.AppendNumber(b, x), nil
	case float32:
		return jsonjs.AppendNumber(b, float64(x)), nil
	case time.Time:
		return strconv.AppendInt(b, x.UnixMilli(), 10), nil
	case Object:
		b = append(b, '{')
		for i, f := range x {
			if i > 0 {
				b = append(b, ',')
			}
			b = jsonjs.AppendString(b, f.Key)
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
			b = jsonjs.AppendString(b, k)
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
			b = jsonjs.AppendString(b, e)
		}
		return append(b, ']'), nil
	case error:
		return jsonjs.AppendString(b, x.Error()), nil
	}
	// Anything else (a Go action's struct) goes through encoding/json.
	raw, err := json.Marshal(v)
	if err != nil {
		return b, fmt.Errorf("socket: encode %T: %w", v, err)
	}
	return append(b, raw...), nil
}

// EncodedObject is an action result already encoded as one JSON object ({"k":v,...}); its members go
// into the reply as they are. Script bindings build it straight from their own values (see
// AppendJSONString), sparing the Object in between. It must not have the keys context, messageId or
// messageCount (ReservedKey), which the server writes. The server builds the reply in its buffer (spare
// capacity of about 100 bytes saves a copy), so it must not be used after it was returned; building it in
// the connection's Conn.ReplyBuffer reuses the buffer of the connection's previous reply.
type EncodedObject []byte

// ReservedKey says a reply field is written by the server, not by an action's result.
func ReservedKey(k string) bool { return reservedKey(k) }
