package channel

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"io"
	"math"
	"strconv"
	"strings"
)

// RESP2 (the Redis serialization protocol, version 2): every reply is one value, however many lines it takes,
// so a redis-style server's replies pair with their commands.
//
// Values decode as Redis's own Lua scripting converts them: a simple string is a string, an error is
// map{"err": message}, an integer is an int64, a bulk string is a string, an array is []any, and a null
// bulk string or null array is false.

// maxRESPDepth bounds nested arrays.
const maxRESPDepth = 32

// RESPDecoder reads RESP2 replies. A whole reply (all its lines) may take at most max bytes on the wire.
type RESPDecoder struct {
	br   *bufio.Reader
	max  int
	left int // wire bytes the current reply may still use
}

// NewRESPDecoder returns a decoder of replies of at most max bytes.
func NewRESPDecoder(r io.Reader, max int) *RESPDecoder {
	return &RESPDecoder{br: bufio.NewReaderSize(r, 4096), max: max}
}

// Decode returns the next reply.
func (d *RESPDecoder) Decode() (any, error) {
	d.left = d.max
	if _, err := d.br.Peek(1); err != nil {
		return nil, err // io.EOF between replies is a clean close
	}
	v, err := d.value(0)
	if err == io.EOF {
		err = io.ErrUnexpectedEOF
	}
	return v, err
}

func (d *RESPDecoder) tooLong() error {
	return fmt.Errorf("resp: reply over %d bytes: %w", d.max, ErrTooLong)
}

// line reads through the next CRLF and returns the line without it.
func (d *RESPDecoder) line() ([]byte, error) {
	var out []byte
	for {
		frag, err := d.br.ReadSlice('\n')
		if len(frag) > d.left {
			return nil, d.tooLong()
		}
		d.left -= len(frag)
		if err == nil {
			if out == nil {
				out = frag
			} else {
				out = append(out, frag...)
			}
			break
		}
		if err != bufio.ErrBufferFull {
			return nil, err
		}
		out = append(out, frag...)
	}
	if len(out) < 2 || out[len(out)-2] != '\r' {
		return nil, errors.New("resp: line not ended by CRLF")
	}
	return out[:len(out)-2], nil
}

func (d *RESPDecoder) value(depth int) (any, error) {
	line, err := d.line()
	if err != nil {
		return nil, err
	}
	if len(line) == 0 {
		return nil, errors.New("resp: empty line where a value was expected")
	}
	switch line[0] {
	case '+':
		return string(line[1:]), nil
	case '-':
		return map[string]any{"err": string(line[1:])}, nil
	case ':':
		n, err := strconv.ParseInt(string(line[1:]), 10, 64)
		if err != nil {
			return nil, fmt.Errorf("resp: bad integer %q", line[1:])
		}
		return n, nil
	case '$':
		n, err := respLength(line)
		if err != nil || n < 0 {
			return false, err // null bulk string
		}
		if n+2 > d.left {
			return nil, d.tooLong()
		}
		d.left -= n + 2
		b := make([]byte, n+2)
		if _, err := io.ReadFull(d.br, b); err != nil {
			return nil, err
		}
		if b[n] != '\r' || b[n+1] != '\n' {
			return nil, errors.New("resp: bulk string not followed by CRLF")
		}
		return string(b[:n]), nil
	case '*':
		n, err := respLength(line)
		if err != nil || n < 0 {
			return false, err // null array
		}
		if depth >= maxRESPDepth {
			return nil, fmt.Errorf("resp: arrays nested deeper than %d", maxRESPDepth)
		}
		if n*3 > d.left { // every element takes at least 3 bytes ("+\r\n")
			return nil, d.tooLong()
		}
		out := make([]any, 0, min(n, 1024))
		for i := 0; i < n; i++ {
			v, err := d.value(depth + 1)
			if err != nil {
				return nil, err
			}
			out = append(out, v)
		}
		return out, nil
	}
	return nil, fmt.Errorf("resp: unexpected type byte %q", line[0])
}

// respLength parses the length of a bulk string or array: -1 is null (returned as -1), other negatives are
// errors.
func respLength(line []byte) (int, error) {
	n, err := strconv.ParseInt(string(line[1:]), 10, 64)
	switch {
	case err != nil:
		return 0, fmt.Errorf("resp: bad length %q", line[1:])
	case n == -1:
		return -1, nil
	case n < 0 || n > math.MaxInt32:
		return 0, fmt.Errorf("resp: bad length %d", n)
	}
	return int(n), nil
}

// encodeRESP writes a command as an array of bulk strings, as redis-cli does: a string is split on spaces
// ("SET k v"), a table {"SET", "k", "a value with spaces"} gives the arguments as they are (numbers in
// decimal, booleans as 1 or 0).
func encodeRESP(payload any) ([]byte, error) {
	var args []string
	switch p := payload.(type) {
	case string:
		args = strings.Fields(p)
	case []byte:
		args = strings.Fields(string(p))
	case []any:
		args = make([]string, 0, len(p))
		for i, a := range p {
			switch v := a.(type) {
			case string:
				args = append(args, v)
			case []byte:
				args = append(args, string(v))
			case int64:
				args = append(args, strconv.FormatInt(v, 10))
			case int:
				args = append(args, strconv.Itoa(v))
			case float64:
				args = append(args, strconv.FormatFloat(v, 'g', -1, 64))
			case bool:
				if v {
					args = append(args, "1")
				} else {
					args = append(args, "0")
				}
			default:
				return nil, fmt.Errorf("resp: argument %d: expected a string or a number, got %T", i+1, a)
			}
		}
	default:
		return nil, fmt.Errorf("resp: expected a command string or an array of arguments, got %T", payload)
	}
	if len(args) == 0 {
		return nil, errors.New("resp: empty command")
	}
	var b bytes.Buffer
	b.Grow(16 + 16*len(args))
	b.WriteByte('*')
	b.WriteString(strconv.Itoa(len(args)))
	b.WriteString("\r\n")
	for _, a := range args {
		b.WriteByte('$')
		b.WriteString(strconv.Itoa(len(a)))
		b.WriteString("\r\n")
		b.WriteString(a)
		b.WriteString("\r\n")
	}
	return b.Bytes(), nil
}
