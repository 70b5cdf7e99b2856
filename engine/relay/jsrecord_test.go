package relay

import (
	"bytes"
	"strings"
	"testing"
)

func TestJSRecordRoundTrip(t *testing.T) {
	line := []byte(`O@1700000000000|T="Order"|I="o1"|qty=5`)
	b := appendJSRecord(nil, 0b1011, 7, 42, "algo-1", line)
	r, err := decodeJSRecord(b)
	if err != nil {
		t.Fatal(err)
	}
	if r.centers != 0b1011 || r.epoch != 7 || r.ticket != 42 || string(r.login) != "algo-1" || !bytes.Equal(r.line, line) {
		t.Fatalf("%+v", r)
	}
	for _, bad := range [][]byte{nil, []byte("J"), b[:jsRecHeader-1], append([]byte{'X'}, b[1:]...), b[:jsRecHeader+3]} {
		if _, err := decodeJSRecord(bad); err == nil {
			t.Fatalf("%q decoded", bad)
		}
	}
}

func TestIdxMsgRoundTrip(t *testing.T) {
	put := idxEntry{key: objectKVKey("algo-1", "Order", []byte("o1")), slots: 5, login: "algo-1", typ: "Order", idKey: []byte("o1")}
	gone := idxEntry{key: objectKVKey("algo-1", "Order", []byte("o2")), gone: true}
	b := appendIdxDeltaHeader(nil, 77)
	b = appendIdxEntry(b, &put)
	b = appendIdxEntry(b, &gone)
	m, err := decodeIdxMsg(b)
	if err != nil || m.kind != idxDelta || m.applied != 77 || len(m.entries) != 2 {
		t.Fatalf("%+v %v", m, err)
	}
	if e := m.entries[0]; e.key != put.key || e.slots != 5 || e.login != "algo-1" || e.typ != "Order" || string(e.idKey) != "o1" || e.gone {
		t.Fatalf("%+v", e)
	}
	if e := m.entries[1]; !e.gone || e.key != gone.key {
		t.Fatalf("%+v", e)
	}
	s := appendIdxSnapshotHeader(nil, 9, 1, 3, 42)
	s = appendIdxEntry(s, &put)
	m, err = decodeIdxMsg(s)
	if err != nil || m.kind != idxSnapshot || m.snap != 9 || m.chunk != 1 || m.chunks != 3 || m.applied != 42 || len(m.entries) != 1 {
		t.Fatalf("%+v %v", m, err)
	}
	for _, bad := range [][]byte{nil, {'Q'}, b[:5], b[:len(b)-1], appendIdxEntry(appendIdxSnapshotHeader(nil, 1, 0, 1, 1), &gone),
		appendIdxSnapshotHeader(nil, 1, 2, 2, 1)} {
		if _, err := decodeIdxMsg(bad); err == nil {
			t.Fatalf("%q decoded", bad)
		}
	}
}

func TestParseSlots(t *testing.T) {
	slots, err := parseSlots("0 a\n3 b.example:3270\n\n")
	if err != nil || len(slots) != 2 || slots["a"] != 0 || slots["b.example:3270"] != 3 {
		t.Fatalf("%v %v", slots, err)
	}
	if got := formatSlots(slots); got != "0 a\n3 b.example:3270\n" {
		t.Fatalf("%q", got)
	}
	for _, bad := range []string{"0 a\n0 b", "0 a\n1 a", "64 a", "-1 a", "x a", "0", "0 a b", "0 ../x"} {
		if _, err := parseSlots(bad); err == nil {
			t.Fatalf("%q parsed", bad)
		}
	}
}

func TestJSNames(t *testing.T) {
	n := newJSNames("prod", "relay1")
	if n.stream != "prod_relay_relay1" || n.subject != "prod.relay.relay1.journal" || n.lease != "prod_relay_relay1_lease" ||
		n.objects != "prod_relay_relay1_objects" {
		t.Fatalf("%+v", n)
	}
	// a relay id with dots, spaces or '_' stays one token and cannot be taken for another relay's names
	if a, b := newJSNames("c", "x_lease"), newJSNames("c", "x"); a.stream == b.lease || strings.ContainsAny(a.subject[len("c.relay."):len(a.subject)-len(".journal")], ". _") {
		t.Fatalf("%+v %+v", a, b)
	}
	if got := jsToken("a.b c_d-é"); got != "a-2eb-20c-5fd-2d-c3-a9" {
		t.Fatalf("%q", got)
	}
	if cursorKey("10.0.0.1:3270") != "cursor.10-2e0-2e0-2e1-3a3270" {
		t.Fatalf("%q", cursorKey("10.0.0.1:3270"))
	}
}

// FuzzJSRecord: any data decodes to a record or an error, never a panic; a record re-encodes to the same
// bytes.
func FuzzJSRecord(f *testing.F) {
	f.Add(appendJSRecord(nil, 3, 1, 1, "feed", []byte(`O@1|T="x"`)))
	f.Add(appendJSRecord(nil, 0, 0, 0, "", nil))
	f.Add([]byte("J"))
	f.Add([]byte{})
	f.Fuzz(func(t *testing.T, data []byte) {
		r, err := decodeJSRecord(data)
		if err != nil {
			return
		}
		if again := appendJSRecord(nil, r.centers, r.epoch, r.ticket, string(r.login), r.line); !bytes.Equal(again, data) {
			t.Fatalf("re-encoded %q, was %q", again, data)
		}
	})
}

// FuzzIdxMsg: an object index log message decodes or fails, never panics; what decodes re-encodes to the
// same bytes.
func FuzzIdxMsg(f *testing.F) {
	e := idxEntry{key: objectKVKey("a", "T", []byte("1")), slots: 1, login: "a", typ: "T", idKey: []byte("1")}
	f.Add(appendIdxEntry(appendIdxDeltaHeader(nil, 1), &e))
	f.Add(appendIdxEntry(appendIdxSnapshotHeader(nil, 1, 0, 1, 1), &e))
	f.Add([]byte("D"))
	f.Fuzz(func(t *testing.T, data []byte) {
		m, err := decodeIdxMsg(data)
		if err != nil {
			return
		}
		var b []byte
		if m.kind == idxSnapshot {
			b = appendIdxSnapshotHeader(nil, m.snap, m.chunk, m.chunks, m.applied)
		} else {
			b = appendIdxDeltaHeader(nil, m.applied)
		}
		for i := range m.entries {
			b = appendIdxEntry(b, &m.entries[i])
		}
		if !bytes.Equal(b, data) {
			t.Fatalf("re-encoded %q, was %q", b, data)
		}
	})
}

// FuzzParseSlots: the state bucket's "centers" text parses to valid slots or fails; what parses formats
// back to text that parses the same.
func FuzzParseSlots(f *testing.F) {
	f.Add("0 a\n1 b\n")
	f.Add("63 x:1\n")
	f.Add("0 a\n0 b")
	f.Fuzz(func(t *testing.T, text string) {
		slots, err := parseSlots(text)
		if err != nil {
			return
		}
		again, err := parseSlots(formatSlots(slots))
		if err != nil || len(again) != len(slots) {
			t.Fatalf("%q: %v", text, err)
		}
		for n, s := range slots {
			if again[n] != s || s < 0 || s >= MaxCenters {
				t.Fatalf("%q: %s %d/%d", text, n, s, again[n])
			}
		}
	})
}
