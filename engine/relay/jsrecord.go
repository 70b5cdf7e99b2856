package relay

import (
	"encoding/binary"
	"errors"
	"fmt"
	"strconv"
	"strings"
)

// A JetStream journal record (the data of one stream message) is
//
//	'J' | centers u64 (slots) | epoch u64 | ticket u64 | login length u16 | login | line
//
// epoch is the lease revision of the relay node that wrote it and ticket its append order on that node:
// together they tell a node, after a publish whose acknowledgement was lost, which records of the stream
// are its own.
const (
	jsRecMagic  = 'J'
	jsRecHeader = 1 + 8 + 8 + 8 + 2
)

// jsRecord is a decoded journal record; login and line alias the message data.
type jsRecord struct {
	centers CenterSet
	epoch   uint64
	ticket  uint64
	login   []byte
	line    []byte
}

var errJSRecord = errors.New("not a journal record")

// appendJSRecord encodes a record.
func appendJSRecord(b []byte, centers CenterSet, epoch, ticket uint64, login string, line []byte) []byte {
	b = append(b, jsRecMagic)
	b = binary.BigEndian.AppendUint64(b, uint64(centers))
	b = binary.BigEndian.AppendUint64(b, epoch)
	b = binary.BigEndian.AppendUint64(b, ticket)
	if len(login) > 0xffff {
		login = login[:0xffff] // relay.max_login_bytes keeps logins far shorter
	}
	b = binary.BigEndian.AppendUint16(b, uint16(len(login)))
	b = append(b, login...)
	return append(b, line...)
}

// decodeJSRecord reads a record written by appendJSRecord.
func decodeJSRecord(data []byte) (jsRecord, error) {
	if len(data) < jsRecHeader || data[0] != jsRecMagic {
		return jsRecord{}, fmt.Errorf("relay: journal: %w (%d bytes)", errJSRecord, len(data))
	}
	r := jsRecord{
		centers: CenterSet(binary.BigEndian.Uint64(data[1:9])),
		epoch:   binary.BigEndian.Uint64(data[9:17]),
		ticket:  binary.BigEndian.Uint64(data[17:25]),
	}
	n := int(binary.BigEndian.Uint16(data[25:27]))
	if len(data) < jsRecHeader+n {
		return jsRecord{}, fmt.Errorf("relay: journal: %w: login of %d bytes in %d", errJSRecord, n, len(data))
	}
	r.login = data[jsRecHeader : jsRecHeader+n]
	r.line = data[jsRecHeader+n:]
	return r, nil
}

// An object index entry kept in KV (relay.journal = jetstream) is
//
//	'O' | centers u64 (slots) | login length u16 | login | type length u16 | type | id key
//
// where the id key is the object id as the index compares it (appendIDKey).
const jsObjMagic = 'O'

func appendJSObject(b []byte, centers CenterSet, login, typ string, idKey []byte) []byte {
	b = append(b, jsObjMagic)
	b = binary.BigEndian.AppendUint64(b, uint64(centers))
	b = binary.BigEndian.AppendUint16(b, uint16(min(len(login), 0xffff)))
	b = append(b, login[:min(len(login), 0xffff)]...)
	b = binary.BigEndian.AppendUint16(b, uint16(min(len(typ), 0xffff)))
	b = append(b, typ[:min(len(typ), 0xffff)]...)
	return append(b, idKey...)
}

type jsObject struct {
	centers CenterSet
	login   string
	typ     string
	idKey   []byte
}

func decodeJSObject(data []byte) (jsObject, error) {
	bad := func(why string) (jsObject, error) {
		return jsObject{}, fmt.Errorf("relay: object index entry: %s (%d bytes)", why, len(data))
	}
	if len(data) < 1+8+2 || data[0] != jsObjMagic {
		return bad("not an entry")
	}
	o := jsObject{centers: CenterSet(binary.BigEndian.Uint64(data[1:9]))}
	rest := data[9:]
	n := int(binary.BigEndian.Uint16(rest))
	rest = rest[2:]
	if len(rest) < n+2 {
		return bad("login cut short")
	}
	o.login, rest = string(rest[:n]), rest[n:]
	n = int(binary.BigEndian.Uint16(rest))
	rest = rest[2:]
	if len(rest) < n {
		return bad("type cut short")
	}
	o.typ, o.idKey = string(rest[:n]), rest[n:]
	return o, nil
}

// jsToken makes s one NATS subject token and a valid stream or bucket name part: letters and digits
// stay, every other byte becomes '-' and two hex digits (so '_' can separate parts).
func jsToken(s string) string {
	var b strings.Builder
	for i := 0; i < len(s); i++ {
		c := s[i]
		if c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' {
			b.WriteByte(c)
			continue
		}
		b.WriteByte('-')
		b.WriteString(strconv.FormatUint(uint64(c)>>4, 16))
		b.WriteString(strconv.FormatUint(uint64(c)&15, 16))
	}
	if b.Len() == 0 {
		return "-"
	}
	return b.String()
}

// jsNames are the JetStream names of one relay (relay.id) in one cluster (cluster.name).
type jsNames struct {
	stream  string // the journal stream
	subject string // its subject
	state   string // KV: centers (slots), cursors
	lease   string // KV: the active node's lease
	objects string // KV: the object index
}

// newJSNames follows the cluster's naming (cluster.name prefixes every subject and bucket: subjects
// "<name>.<kind>...", buckets "<name>_<kind>"); cluster is a valid name (letters, digits, _ and -).
func newJSNames(cluster, relayID string) jsNames {
	base := cluster + "_relay_" + jsToken(relayID)
	return jsNames{
		stream:  base,
		subject: cluster + ".relay." + jsToken(relayID) + ".journal",
		state:   base,
		lease:   base + "_lease",
		objects: base + "_objects",
	}
}

// cursorKey is a center's cursor key in the state bucket.
func cursorKey(center string) string { return "cursor." + jsToken(center) }
