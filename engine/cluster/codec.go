package cluster

import (
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"time"
)

// The value codec carries the plain data of topics and sb.cache between nodes: nil, booleans, integers,
// floats, strings and byte strings (any bytes: Lua strings need not be UTF-8, which JSON would mangle),
// arrays and string-keyed maps. It is compact, exact for every value a script can make, and decodes
// untrusted input within bounds: no allocation larger than the input, at most maxCodecDepth levels.
//
//	value  = version(1) item
//	item   = 0 nil | 1 false | 2 true | 3 zigzag-varint int64 | 4 float64 (8 bytes, big endian)
//	       | 5 uvarint-len string | 6 uvarint-len bytes | 7 uvarint-n item* | 8 uvarint-n (uvarint-len key, item)*
const codecVersion = 1

const (
	tagNil byte = iota
	tagFalse
	tagTrue
	tagInt
	tagFloat
	tagString
	tagBytes
	tagArray
	tagMap
)

// maxCodecDepth bounds nesting in both directions (Lua values are cut at 64 levels anyway).
const maxCodecDepth = 64

// ErrNotEncodable is returned for a value with a part that is not plain data (a Go object handed to a
// script, a function).
var ErrNotEncodable = errors.New("cluster: value is not plain data")

// EncodeValue appends v's encoding to dst.
func EncodeValue(dst []byte, v any) ([]byte, error) {
	dst = append(dst, codecVersion)
	return encodeItem(dst, v, 0)
}

func encodeItem(b []byte, v any, depth int) ([]byte, error) {
	if depth > maxCodecDepth {
		return nil, fmt.Errorf("%w: nested deeper than %d levels", ErrNotEncodable, maxCodecDepth)
	}
	switch x := v.(type) {
	case nil:
		return append(b, tagNil), nil
	case bool:
		if x {
			return append(b, tagTrue), nil
		}
		return append(b, tagFalse), nil
	case int:
		return appendInt(b, int64(x)), nil
	case int32:
		return appendInt(b, int64(x)), nil
	case int64:
		return appendInt(b, x), nil
	case uint32:
		return appendInt(b, int64(x)), nil
	case uint64:
		if x > math.MaxInt64 {
			return appendFloat(b, float64(x)), nil
		}
		return appendInt(b, int64(x)), nil
	case float32:
		return appendFloat(b, float64(x)), nil
	case float64:
		return appendFloat(b, x), nil
	case string:
		return appendString(append(b, tagString), x), nil
	case []byte:
		b = binary.AppendUvarint(append(b, tagBytes), uint64(len(x)))
		return append(b, x...), nil
	case json.Number:
		return appendString(append(b, tagString), string(x)), nil
	case time.Time:
		return appendInt(b, x.UnixMilli()), nil
	case time.Duration:
		return appendInt(b, x.Milliseconds()), nil
	case []any:
		b = binary.AppendUvarint(append(b, tagArray), uint64(len(x)))
		var err error
		for _, e := range x {
			if b, err = encodeItem(b, e, depth+1); err != nil {
				return nil, err
			}
		}
		return b, nil
	case []string:
		b = binary.AppendUvarint(append(b, tagArray), uint64(len(x)))
		for _, e := range x {
			b = appendString(append(b, tagString), e)
		}
		return b, nil
	case map[string]any:
		b = binary.AppendUvarint(append(b, tagMap), uint64(len(x)))
		var err error
		for k, e := range x {
			b = appendString(b, k)
			if b, err = encodeItem(b, e, depth+1); err != nil {
				return nil, err
			}
		}
		return b, nil
	case map[string]string:
		b = binary.AppendUvarint(append(b, tagMap), uint64(len(x)))
		for k, e := range x {
			b = appendString(append(appendString(b, k), tagString), e)
		}
		return b, nil
	}
	return nil, fmt.Errorf("%w: %T", ErrNotEncodable, v)
}

func appendInt(b []byte, v int64) []byte { return binary.AppendVarint(append(b, tagInt), v) }

func appendFloat(b []byte, v float64) []byte {
	return binary.BigEndian.AppendUint64(append(b, tagFloat), math.Float64bits(v))
}

func appendString(b []byte, s string) []byte {
	return append(binary.AppendUvarint(b, uint64(len(s))), s...)
}

// ErrBadEncoding is returned by DecodeValue for bytes that EncodeValue did not make.
var ErrBadEncoding = errors.New("cluster: bad value encoding")

// DecodeValue decodes what EncodeValue made: integers come back as int64, floats as float64, byte
// strings as []byte, arrays as []any and maps as map[string]any.
func DecodeValue(data []byte) (any, error) {
	var d decoder
	return d.value(data)
}

// value decodes one value (version byte, item) that takes all of data.
func (d *decoder) value(data []byte) (any, error) {
	if len(data) == 0 || data[0] != codecVersion {
		return nil, fmt.Errorf("%w: unknown version", ErrBadEncoding)
	}
	d.b = data[1:]
	v, err := d.item(0)
	if err != nil {
		return nil, err
	}
	if len(d.b) != 0 {
		return nil, fmt.Errorf("%w: %d bytes after the value", ErrBadEncoding, len(d.b))
	}
	return v, nil
}

// decoder reads items from b. With an arena (arena true, base the bytes b is read from, end the offset in
// base where b ends), short strings are cut from windows of base copied into strings of at most arenaBytes
// (see arenaString) instead of being copied one by one.
type decoder struct {
	b []byte

	arena  bool
	base   []byte
	end    int
	win    string // base[winOff:winOff+len(win)]
	winOff int
}

// A batch's strings of at most arenaMaxString bytes share allocations of at most arenaBytes: decoding a
// batch of short strings allocates once per window instead of once per string, and a string kept
// afterwards keeps at most arenaBytes alive.
const (
	arenaBytes     = 1024
	arenaMaxString = 256
)

// bytesString returns the next n bytes (n <= len(d.b)) as a string.
func (d *decoder) bytesString(n int) string {
	if !d.arena || n == 0 || n > arenaMaxString {
		return string(d.b[:n])
	}
	off := d.end - len(d.b)
	if off < d.winOff || off+n > d.winOff+len(d.win) {
		d.win, d.winOff = string(d.base[off:min(off+arenaBytes, len(d.base))]), off
	}
	return d.win[off-d.winOff : off-d.winOff+n]
}

func (d *decoder) uvarint() (uint64, error) {
	v, n := binary.Uvarint(d.b)
	if n <= 0 {
		return 0, fmt.Errorf("%w: bad length", ErrBadEncoding)
	}
	d.b = d.b[n:]
	return v, nil
}

// count reads a length that must fit in what is left, each element taking at least min bytes.
func (d *decoder) count(min int) (int, error) {
	n, err := d.uvarint()
	if err != nil {
		return 0, err
	}
	if n > uint64(len(d.b)/min) {
		return 0, fmt.Errorf("%w: length %d past the end", ErrBadEncoding, n)
	}
	return int(n), nil
}

func (d *decoder) str() (string, error) {
	n, err := d.count(1)
	if err != nil {
		return "", err
	}
	s := d.bytesString(n)
	d.b = d.b[n:]
	return s, nil
}

func (d *decoder) item(depth int) (any, error) {
	if depth > maxCodecDepth {
		return nil, fmt.Errorf("%w: nested deeper than %d levels", ErrBadEncoding, maxCodecDepth)
	}
	if len(d.b) == 0 {
		return nil, fmt.Errorf("%w: truncated", ErrBadEncoding)
	}
	tag := d.b[0]
	d.b = d.b[1:]
	switch tag {
	case tagNil:
		return nil, nil
	case tagFalse:
		return false, nil
	case tagTrue:
		return true, nil
	case tagInt:
		v, n := binary.Varint(d.b)
		if n <= 0 {
			return nil, fmt.Errorf("%w: bad integer", ErrBadEncoding)
		}
		d.b = d.b[n:]
		return v, nil
	case tagFloat:
		if len(d.b) < 8 {
			return nil, fmt.Errorf("%w: truncated float", ErrBadEncoding)
		}
		v := math.Float64frombits(binary.BigEndian.Uint64(d.b))
		d.b = d.b[8:]
		return v, nil
	case tagString:
		return d.str()
	case tagBytes:
		n, err := d.count(1)
		if err != nil {
			return nil, err
		}
		v := append([]byte(nil), d.b[:n]...)
		d.b = d.b[n:]
		return v, nil
	case tagArray:
		n, err := d.count(1)
		if err != nil {
			return nil, err
		}
		out := make([]any, n)
		for i := range out {
			if out[i], err = d.item(depth + 1); err != nil {
				return nil, err
			}
		}
		return out, nil
	case tagMap:
		n, err := d.count(2)
		if err != nil {
			return nil, err
		}
		out := make(map[string]any, n)
		for range n {
			k, err := d.str()
			if err != nil {
				return nil, err
			}
			if out[k], err = d.item(depth + 1); err != nil {
				return nil, err
			}
		}
		return out, nil
	}
	return nil, fmt.Errorf("%w: unknown tag %d", ErrBadEncoding, tag)
}
