package esl

import (
	"bufio"
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"sort"
	"strconv"
	"strings"
)

// Event is one FreeSWITCH event: its headers (url-decoded) and an optional body (BACKGROUND_JOB result).
type Event struct {
	Headers Headers
	Body    string
}

// Name is the Event-Name header.
func (e *Event) Name() string { return e.Headers.Get("Event-Name") }

// Get returns the first header called name, or "".
func (e *Event) Get(name string) string { return e.Headers.Get(name) }

// Variable returns channel variable name as carried by the event (variable_<name>).
func (e *Event) Variable(name string) (string, bool) { return e.Headers.Lookup("variable_" + name) }

// ParseEvent decodes the body of a text/event-plain or text/event-json frame.
func ParseEvent(f *Frame) (*Event, error) {
	switch ct := f.ContentType(); ct {
	case TypeEventPlain:
		return ParsePlainEvent(f.Body)
	case TypeEventJSON:
		return ParseJSONEvent(f.Body)
	default:
		return nil, fmt.Errorf("esl: event of content type %q not supported", ct)
	}
}

// MaxEventHeaders bounds the headers of one event (a real one has a few hundred): a body of tiny header
// lines would otherwise cost many times its size in header structures.
const MaxEventHeaders = 4096

// ParsePlainEvent decodes a plain event body: url-encoded "Name: value" lines, then either the end or a
// Content-Length line, a blank line and that many bytes of body. More than MaxEventHeaders headers is an
// error.
func ParsePlainEvent(b []byte) (*Event, error) {
	// Names and decoded values go into one buffer that becomes one string (strings.Builder: no copy); the
	// headers are substrings of it. An event is then three allocations (buffer, header list, event).
	var buf strings.Builder
	buf.Grow(len(b))
	var small [3 * 64]int
	offs := small[:0] // name start, value start, value end in buf, per header
	var body []byte
	rest := b
	for len(rest) > 0 {
		var line []byte
		if i := bytes.IndexByte(rest, '\n'); i < 0 {
			line, rest = rest, nil
		} else {
			line, rest = rest[:i], rest[i+1:]
		}
		line = bytes.TrimRight(line, "\r")
		if len(line) == 0 {
			break
		}
		c := bytes.IndexByte(line, ':')
		if c <= 0 {
			continue
		}
		name := bytes.TrimSpace(line[:c])
		raw := bytes.TrimLeft(line[c+1:], " ")
		if bytes.EqualFold(name, []byte("Content-Length")) {
			val := URLDecode(string(raw))
			n, err := strconv.Atoi(val)
			if err != nil || n < 0 {
				return nil, fmt.Errorf("%w: event body Content-Length %q", ErrFrame, val)
			}
			// The body follows the blank line ending the header block.
			if bytes.HasPrefix(rest, []byte("\n")) {
				rest = rest[1:]
			} else if bytes.HasPrefix(rest, []byte("\r\n")) {
				rest = rest[2:]
			}
			if n > len(rest) {
				return nil, fmt.Errorf("%w: event body of %d bytes, %d present", ErrFrame, n, len(rest))
			}
			body = rest[:n]
			break
		}
		if len(offs) == 3*MaxEventHeaders {
			return nil, fmt.Errorf("%w: event with more than %d headers", ErrFrame, MaxEventHeaders)
		}
		ns := buf.Len()
		buf.Write(name)
		vs := buf.Len()
		writeURLDecode(&buf, raw)
		offs = append(offs, ns, vs, buf.Len())
	}
	if len(offs) == 0 {
		return nil, fmt.Errorf("%w: event without headers", ErrFrame)
	}
	buf.Write(body)
	all := buf.String()
	e := &Event{Headers: make(Headers, len(offs)/3)}
	for i := range e.Headers {
		ns, vs, ve := offs[3*i], offs[3*i+1], offs[3*i+2]
		e.Headers[i] = Header{Name: all[ns:vs], Value: all[vs:ve]}
	}
	if body != nil {
		e.Body = all[len(all)-len(body):]
	}
	return e, nil
}

// ParseJSONEvent decodes a json event: one flat object of string values, "_body" holding the body.
// Non-string values are kept in their JSON text; a repeated name keeps its last value. More than
// MaxEventHeaders members is an error.
func ParseJSONEvent(b []byte) (*Event, error) {
	m, err := jsonMembers(b)
	if err != nil {
		return nil, fmt.Errorf("%w: json event: %v", ErrFrame, err)
	}
	if len(m) == 0 {
		return nil, fmt.Errorf("%w: event without headers", ErrFrame)
	}
	// Keep a stable order: Event-Name first, the rest sorted.
	names := make([]string, 0, len(m))
	for k := range m {
		names = append(names, k)
	}
	sort.Strings(names)
	e := &Event{Headers: make(Headers, 0, len(m))}
	if raw, ok := m["Event-Name"]; ok {
		e.Headers = append(e.Headers, Header{Name: "Event-Name", Value: jsonString(raw)})
	}
	for _, k := range names {
		switch k {
		case "Event-Name", "Content-Length":
			continue
		case "_body":
			e.Body = jsonString(m[k])
			continue
		}
		e.Headers = append(e.Headers, Header{Name: k, Value: jsonString(m[k])})
	}
	return e, nil
}

// jsonMembers decodes one JSON object into its members, member by member, so that the count is checked
// before an object of a million tiny members is built.
func jsonMembers(b []byte) (map[string]json.RawMessage, error) {
	if !json.Valid(b) {
		return nil, errors.New("invalid JSON")
	}
	dec := json.NewDecoder(bytes.NewReader(b))
	tok, err := dec.Token()
	if err != nil {
		return nil, err
	}
	if tok == nil {
		return nil, nil // null: no members, as json.Unmarshal into a map
	}
	if d, ok := tok.(json.Delim); !ok || d != '{' {
		return nil, fmt.Errorf("expected an object, got %v", tok)
	}
	m := map[string]json.RawMessage{}
	for dec.More() {
		tok, err := dec.Token()
		if err != nil {
			return nil, err
		}
		var raw json.RawMessage
		if err := dec.Decode(&raw); err != nil {
			return nil, err
		}
		m[tok.(string)] = raw
		if len(m) > MaxEventHeaders {
			return nil, fmt.Errorf("more than %d members", MaxEventHeaders)
		}
	}
	return m, nil
}

func jsonString(raw json.RawMessage) string {
	var s string
	if err := json.Unmarshal(raw, &s); err == nil {
		return s
	}
	return string(raw)
}

// AppendPlainEvent serializes e as FreeSWITCH's switch_event_serialize: url-encoded headers, then a blank
// line, or Content-Length, blank line and body.
func AppendPlainEvent(dst []byte, e *Event) []byte {
	for _, h := range e.Headers {
		dst = append(dst, h.Name...)
		dst = append(dst, ": "...)
		dst = AppendURLEncode(dst, h.Value)
		dst = append(dst, '\n')
	}
	if e.Body != "" {
		dst = append(dst, "Content-Length: "...)
		dst = strconv.AppendInt(dst, int64(len(e.Body)), 10)
		dst = append(dst, "\n\n"...)
		return append(dst, e.Body...)
	}
	return append(dst, '\n')
}

// AppendJSONEvent serializes e as one flat JSON object of strings, with "Content-Length" and "_body"
// when there is a body. Duplicate names keep the first value.
func AppendJSONEvent(dst []byte, e *Event) []byte {
	buf := bytes.NewBuffer(dst)
	w := bufio.NewWriter(buf)
	w.WriteByte('{')
	seen := make(map[string]bool, len(e.Headers))
	first := true
	put := func(k, v string) {
		if seen[k] {
			return
		}
		seen[k] = true
		if !first {
			w.WriteByte(',')
		}
		first = false
		kb, _ := json.Marshal(k)
		vb, _ := json.Marshal(v)
		w.Write(kb)
		w.WriteByte(':')
		w.Write(vb)
	}
	for _, h := range e.Headers {
		put(h.Name, h.Value)
	}
	if e.Body != "" {
		put("Content-Length", strconv.Itoa(len(e.Body)))
		put("_body", e.Body)
	}
	w.WriteByte('}')
	w.Flush()
	return buf.Bytes()
}
