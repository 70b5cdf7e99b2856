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

// The object index log (relay.journal = jetstream) is a stream of snapshots and deltas:
//
//	'S' | snapshot id u64 | chunk u32 | chunks u32 | applied u64 | entries   (one chunk of a snapshot)
//	'D' | applied u64 | entries                                             (changes since the last message)
//
// An entry is 'P' (the object is known) or 'X' (forgotten), its key (16 bytes), and for 'P' its centers
// (slots, u64) and its application, type and id key (appendIDKey), each as a uvarint length and bytes.
// applied is the journal sequence whose effects on the index the log holds up to that message.
const (
	idxSnapshot = 'S'
	idxDelta    = 'D'
	idxPut      = 'P'
	idxGone     = 'X'
)

// idxEntry is one entry of an index log message; strings and idKey alias the message when decoded.
type idxEntry struct {
	key   [16]byte
	gone  bool
	slots CenterSet
	login string
	typ   string
	idKey []byte
}

// idxMsg is a decoded index log message.
type idxMsg struct {
	kind          byte
	snap          uint64
	chunk, chunks uint32
	applied       uint64
	entries       []idxEntry
}

func appendIdxSnapshotHeader(b []byte, snap uint64, chunk, chunks uint32, applied uint64) []byte {
	b = append(b, idxSnapshot)
	b = binary.BigEndian.AppendUint64(b, snap)
	b = binary.BigEndian.AppendUint32(b, chunk)
	b = binary.BigEndian.AppendUint32(b, chunks)
	return binary.BigEndian.AppendUint64(b, applied)
}

func appendIdxDeltaHeader(b []byte, applied uint64) []byte {
	b = append(b, idxDelta)
	return binary.BigEndian.AppendUint64(b, applied)
}

func appendIdxEntry(b []byte, e *idxEntry) []byte {
	if e.gone {
		b = append(b, idxGone)
		return append(b, e.key[:]...)
	}
	b = append(b, idxPut)
	b = append(b, e.key[:]...)
	b = binary.BigEndian.AppendUint64(b, uint64(e.slots))
	b = binary.AppendUvarint(b, uint64(len(e.login)))
	b = append(b, e.login...)
	b = binary.AppendUvarint(b, uint64(len(e.typ)))
	b = append(b, e.typ...)
	b = binary.AppendUvarint(b, uint64(len(e.idKey)))
	return append(b, e.idKey...)
}

// decodeIdxMsg reads an index log message.
func decodeIdxMsg(data []byte) (idxMsg, error) {
	var m idxMsg
	bad := func(why string) (idxMsg, error) {
		return idxMsg{}, fmt.Errorf("relay: object index log: %s (%d bytes)", why, len(data))
	}
	if len(data) == 0 {
		return bad("empty message")
	}
	m.kind = data[0]
	rest := data[1:]
	switch m.kind {
	case idxSnapshot:
		if len(rest) < 24 {
			return bad("snapshot header cut short")
		}
		m.snap = binary.BigEndian.Uint64(rest)
		m.chunk = binary.BigEndian.Uint32(rest[8:])
		m.chunks = binary.BigEndian.Uint32(rest[12:])
		m.applied = binary.BigEndian.Uint64(rest[16:])
		rest = rest[24:]
		if m.chunk >= m.chunks {
			return bad("chunk past the snapshot's chunks")
		}
	case idxDelta:
		if len(rest) < 8 {
			return bad("delta header cut short")
		}
		m.applied = binary.BigEndian.Uint64(rest)
		rest = rest[8:]
	default:
		return bad("unknown kind")
	}
	field := func() ([]byte, bool) {
		n, k := binary.Uvarint(rest)
		if k <= 0 || n > uint64(len(rest)-k) || k != len(binary.AppendUvarint(nil, n)) { // lengths are written shortest
			return nil, false
		}
		f := rest[k : k+int(n)]
		rest = rest[k+int(n):]
		return f, true
	}
	for len(rest) > 0 {
		var e idxEntry
		op := rest[0]
		if (op != idxPut && op != idxGone) || len(rest) < 17 {
			return bad("bad entry")
		}
		copy(e.key[:], rest[1:17])
		rest = rest[17:]
		if op == idxGone {
			if m.kind == idxSnapshot {
				return bad("a forgotten entry in a snapshot")
			}
			e.gone = true
			m.entries = append(m.entries, e)
			continue
		}
		if len(rest) < 8 {
			return bad("entry cut short")
		}
		e.slots = CenterSet(binary.BigEndian.Uint64(rest))
		rest = rest[8:]
		login, ok1 := field()
		typ, ok2 := field()
		idKey, ok3 := field()
		if !ok1 || !ok2 || !ok3 {
			return bad("entry cut short")
		}
		e.login, e.typ, e.idKey = string(login), string(typ), idKey
		m.entries = append(m.entries, e)
	}
	return m, nil
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
	objects string // stream: the object index log
	objSubj string // its subject
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
		objSubj: cluster + ".relay." + jsToken(relayID) + ".objects",
	}
}

// cursorKey is a center's cursor key in the state bucket.
func cursorKey(center string) string { return "cursor." + jsToken(center) }
