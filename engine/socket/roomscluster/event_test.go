package roomscluster

import (
	"testing"
	"time"

	"github.com/switchboard/switchboard/engine/socket"
)

func TestEventRoundTrip(t *testing.T) {
	at := time.Unix(1700000000, 123456789)
	for _, ev := range []event{
		{kind: kindChat, room: "defaultRoom", from: "c-1", at: at, message: "hello"},
		{kind: kindChat, room: "r é", at: at, message: obj("alert", "x", "n", 5, "list", []any{1, "two", nil})},
		{kind: kindDestroy, room: "gone"},
	} {
		data, err := appendEvent(nil, "node-1", ev)
		if err != nil {
			t.Fatal(err)
		}
		node, got, raw, err := decodeEvent(data)
		if err != nil || node != "node-1" || got.kind != ev.kind || got.room != ev.room || got.from != ev.from || !got.at.Equal(ev.at) {
			t.Fatalf("%+v: decoded %q %+v %v", ev, node, got, err)
		}
		if ev.kind == kindChat {
			want, _ := socket.AppendJSON(nil, ev.message)
			if string(raw) != string(want) {
				t.Fatalf("message %s, want %s", raw, want)
			}
		}
	}
	for _, bad := range [][]byte{nil, {'x'}, {kindChat}, {kindChat, 0, 0, 0, 0}, {kindDestroy, 0, 0, 0, 0, 'x'}, {kindChat, 200, 200, 200, 200, 1}} {
		if _, _, _, err := decodeEvent(bad); err == nil {
			t.Fatalf("decoded %v", bad)
		}
	}
}

// FuzzDecodeEvent: any bytes from NATS decode or fail without panicking, within bounds; what decodes
// encodes back to an event that decodes the same.
func FuzzDecodeEvent(f *testing.F) {
	seed := func(node string, ev event) {
		b, err := appendEvent(nil, node, ev)
		if err != nil {
			f.Fatal(err)
		}
		f.Add(b)
	}
	seed("node-0", event{kind: kindChat, room: "defaultRoom", from: "abc", at: time.Unix(0, 42), message: "hi"})
	seed("n", event{kind: kindChat, room: "r", at: time.Unix(5, 0), message: obj("a", []any{1.5, true})})
	seed("n", event{kind: kindDestroy, room: "r"})
	f.Add([]byte{kindChat, 1, 'n', 0, 0, 2, '"', '"'})
	f.Fuzz(func(t *testing.T, data []byte) {
		node, ev, raw, err := decodeEvent(data)
		if err != nil {
			return
		}
		if len(node) > maxEventNameBytes || len(ev.room) > maxEventNameBytes || len(ev.from) > maxEventNameBytes {
			t.Fatal("a field past its bound")
		}
		if ev.kind == kindChat {
			msg, err := socket.DecodeJSON(raw)
			if err != nil {
				return
			}
			ev.message = msg
		}
		again, err := appendEvent(nil, node, ev)
		if err != nil {
			t.Fatal(err)
		}
		node2, ev2, _, err := decodeEvent(again)
		if err != nil || node2 != node || ev2.room != ev.room || ev2.from != ev.from || ev2.kind != ev.kind || !ev2.at.Equal(ev.at) {
			t.Fatalf("round trip: %v %q %+v", err, node2, ev2)
		}
	})
}
