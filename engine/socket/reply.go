package socket

import (
	"math/rand/v2"
	"sort"
	"strconv"
)

// Replies are built by hand so their field order matches the reference byte for byte:
// action fields first, then "context", then "messageId" and "messageCount".

const crlf = "\r\n"

// reserved keys an action result cannot set: the server writes them itself.
func reservedKey(k string) bool { return k == "context" || k == "messageId" || k == "messageCount" }

func appendTail(b []byte, id string, count int64) []byte {
	b = append(b, `"context":"response","messageId":`...)
	b = appendString(b, id)
	b = append(b, `,"messageCount":`...)
	b = strconv.AppendInt(b, count, 10)
	return append(b, '}', '\r', '\n')
}

// actionReply renders a successful action: its result's fields, then the tail.
func actionReply(result any, id string, count int64) ([]byte, error) {
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
			b = appendString(b, f.Key)
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
			b = appendString(b, k)
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
func okReply(data any, hasData bool, id string, count int64) []byte {
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
	b = appendString(b, id)
	b = append(b, `,"messageCount":`...)
	b = strconv.AppendInt(b, count, 10)
	return append(b, '}', '\r', '\n')
}

// errorReply renders {"error":msg,"context":"response","messageId":...,"messageCount":n}.
func errorReply(msg, id string, count int64) []byte {
	b := make([]byte, 0, 96+len(msg))
	b = append(b, `{"error":`...)
	b = appendString(b, msg)
	b = append(b, ',')
	return appendTail(b, id, count)
}

// statusErrorReply is the maxDataLength form, which also carries "status":"error".
func statusErrorReply(msg, id string, count int64) []byte {
	b := make([]byte, 0, 112+len(msg))
	b = append(b, `{"status":"error","error":`...)
	b = appendString(b, msg)
	b = append(b, ',')
	return appendTail(b, id, count)
}

// apiLine renders {"<key>":text,"context":"api"} (welcome, goodbye).
func apiLine(key, text string) []byte {
	b := make([]byte, 0, 32+len(text))
	b = append(b, '{')
	b = appendString(b, key)
	b = append(b, ':')
	b = appendString(b, text)
	b = append(b, `,"context":"api"}`...)
	return append(b, crlf...)
}

// chatLine renders a say broadcast.
func chatLine(text, room, from string, sentAtMs int64) []byte {
	b := make([]byte, 0, 96+len(text)+len(room))
	b = append(b, `{"message":`...)
	b = appendString(b, text)
	b = append(b, `,"room":`...)
	b = appendString(b, room)
	b = append(b, `,"from":`...)
	b = appendString(b, from)
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

// newID returns a random RFC 4122 version 4 UUID. Ids only need to be unique, not secret.
func newID() string {
	var u [16]byte
	a, b := rand.Uint64(), rand.Uint64()
	for i := 0; i < 8; i++ {
		u[i] = byte(a >> (8 * i))
		u[8+i] = byte(b >> (8 * i))
	}
	u[6] = u[6]&0x0f | 0x40
	u[8] = u[8]&0x3f | 0x80
	var s [36]byte
	j := 0
	for i, x := range u {
		if i == 4 || i == 6 || i == 8 || i == 10 {
			s[j] = '-'
			j++
		}
		s[j] = hexDigits[x>>4]
		s[j+1] = hexDigits[x&0xf]
		j += 2
	}
	return string(s[:])
}
