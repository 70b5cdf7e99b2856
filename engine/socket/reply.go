package socket

import (
	"errors"
	"sort"
	"strconv"

	"github.com/switchboard/switchboard/internal/jsonjs"
	"github.com/switchboard/switchboard/internal/uuid"
)

// Replies are built by hand so their field order matches the reference byte for byte:
// action fields first, then "context", then "messageId" and "messageCount".

const crlf = "\r\n"

// reserved keys an action result cannot set: the server writes them itself.
func reservedKey(k string) bool { return k == "context" || k == "messageId" || k == "messageCount" }

func appendTail(b []byte, id msgID, count int64) []byte {
	b = append(b, `"context":"response","messageId":`...)
	b = id.appendTo(b)
	b = append(b, `,"messageCount":`...)
	b = strconv.AppendInt(b, count, 10)
	return append(b, '}', '\r', '\n')
}

var errNotObject = errors.New("socket: EncodedObject is not a JSON object")

// actionReply renders a successful action: its result's fields, then the tail.
func actionReply(result any, id msgID, count int64) ([]byte, error) {
	if r, ok := result.(EncodedObject); ok { // the reply is built in the result's own buffer
		if len(r) < 2 || r[0] != '{' || r[len(r)-1] != '}' {
			return nil, errNotObject
		}
		b := []byte(r[:len(r)-1])
		if len(b) > 1 {
			b = append(b, ',')
		}
		return appendTail(b, id, count), nil
	}
	b := make([]byte, 0, 160)
	b = append(b, '{')
	var err error
	switch r := result.(type) {
	case nil:
	case Object:
		for _, f := range r {
			if reservedKey(f.Key) {
				continue
			}
			b = jsonjs.AppendString(b, f.Key)
			b = append(b, ':')
			if b, err = appendJSON(b, f.Value, 1); err != nil {
				return nil, err
			}
			b = append(b, ',')
		}
	case map[string]any:
		for _, k := range sortedKeys(r) {
			if reservedKey(k) {
				continue
			}
			b = jsonjs.AppendString(b, k)
			b = append(b, ':')
			if b, err = appendJSON(b, r[k], 1); err != nil {
				return nil, err
			}
			b = append(b, ',')
		}
	default:
		b = append(b, `"data":`...)
		if b, err = appendJSON(b, r, 1); err != nil {
			return nil, err
		}
		b = append(b, ',')
	}
	return appendTail(b, id, count), nil
}

// okReply renders a verb's success: {"status":"OK","context":"response"[,"data":...],"messageId":...}.
func okReply(data any, hasData bool, id msgID, count int64) []byte {
	b := make([]byte, 0, 128)
	b = append(b, `{"status":"OK","context":"response",`...)
	if hasData {
		var err error
		mark := len(b)
		b = append(b, `"data":`...)
		if b, err = appendJSON(b, data, 1); err != nil {
			b = b[:mark]
		} else {
			b = append(b, ',')
		}
	}
	b = append(b, `"messageId":`...)
	b = id.appendTo(b)
	b = append(b, `,"messageCount":`...)
	b = strconv.AppendInt(b, count, 10)
	return append(b, '}', '\r', '\n')
}

// errorReply renders {"error":msg,"context":"response","messageId":...,"messageCount":n}.
func errorReply(msg string, id msgID, count int64) []byte {
	b := make([]byte, 0, 96+len(msg))
	b = append(b, `{"error":`...)
	b = jsonjs.AppendString(b, msg)
	b = append(b, ',')
	return appendTail(b, id, count)
}

// statusErrorReply is the maxDataLength form, which also carries "status":"error".
func statusErrorReply(msg string, id msgID, count int64) []byte {
	b := make([]byte, 0, 112+len(msg))
	b = append(b, `{"status":"error","error":`...)
	b = jsonjs.AppendString(b, msg)
	b = append(b, ',')
	return appendTail(b, id, count)
}

// apiLine renders {"<key>":text,"context":"api"} (welcome, goodbye).
func apiLine(key, text string) []byte {
	b := make([]byte, 0, 32+len(text))
	b = append(b, '{')
	b = jsonjs.AppendString(b, key)
	b = append(b, ':')
	b = jsonjs.AppendString(b, text)
	b = append(b, `,"context":"api"}`...)
	return append(b, crlf...)
}

// chatTextLine renders the default chat line of a text said by a connection.
func chatTextLine(text, room, from string, sentAtMs int64) []byte {
	b := make([]byte, 0, 96+len(text)+len(room))
	b = append(b, `{"message":`...)
	b = jsonjs.AppendString(b, text)
	b = append(b, `,"room":`...)
	b = jsonjs.AppendString(b, room)
	b = append(b, `,"from":`...)
	b = jsonjs.AppendString(b, from)
	b = append(b, `,"context":"user","sentAt":`...)
	b = strconv.AppendInt(b, sentAtMs, 10)
	return append(b, '}', '\r', '\n')
}

func sortedKeys(m map[string]any) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	return keys
}

// msgID is a request's messageId: the client's (s), or else one the server makes up, rendered only when
// a reply is written: a UUID of the connection's random base plus the request's number (unique on the
// connection, random across connections; clients only compare ids, socket.md §2.6).
type msgID struct {
	s      string
	hi, lo uint64
}

func (id msgID) appendTo(b []byte) []byte {
	if id.s != "" {
		return jsonjs.AppendString(b, id.s)
	}
	b = append(b, '"')
	b = uuid.Append(b, id.hi, id.lo)
	return append(b, '"')
}

func (id msgID) String() string {
	if id.s != "" {
		return id.s
	}
	var s [36]byte
	return string(uuid.Append(s[:0], id.hi, id.lo))
}
