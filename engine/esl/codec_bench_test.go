package esl

import (
	"bytes"
	"strconv"
	"testing"
)

// completeEvent is a CHANNEL_EXECUTE_COMPLETE about the size FreeSWITCH sends (prep headers, channel data,
// 120 variables).
func completeEvent() []byte {
	e := &Event{Headers: Headers{{"Event-Name", "CHANNEL_EXECUTE_COMPLETE"}, {"Core-UUID", "3f0c6b7e-0000-4000-8000-000000000001"},
		{"Event-Date-Local", "2026-11-22 03:38:27"}, {"Unique-ID", "6f1e8c5a-0000-4000-8000-000000000002"},
		{"Channel-Name", "sofia/internal/1000@127.0.0.1"}, {"Answer-State", "answered"},
		{"Application", "playback"}, {"Application-Data", "ivr/menu.wav"}, {"Application-UUID", "9b1d0000-0000-4000-8000-000000000003"},
		{"Application-Response", "FILE PLAYED"}}}
	for i := 0; i < 120; i++ {
		e.Headers = append(e.Headers, Header{"variable_var_" + strconv.Itoa(i), "value with spaces & symbols: " + strconv.Itoa(i)})
	}
	body := AppendPlainEvent(nil, e)
	return append([]byte("Content-Length: "+strconv.Itoa(len(body))+"\nContent-Type: text/event-plain\n\n"), body...)
}

// BenchmarkReadAndParseEvent reads and parses a 130-header event as the session's reader does (body
// buffer pooled).
func BenchmarkReadAndParseEvent(b *testing.B) {
	frame := completeEvent()
	stream := bytes.Repeat(frame, 64)
	b.SetBytes(int64(len(frame)))
	b.ReportAllocs()
	var r *Reader
	for i := 0; i < b.N; i++ {
		if i%64 == 0 {
			r = NewReader(bytes.NewReader(stream), Limits{})
			r.ReuseBody = true
		}
		f, err := r.ReadFrame()
		if err != nil {
			b.Fatal(err)
		}
		if _, err := ParseEvent(f); err != nil {
			b.Fatal(err)
		}
		r.Recycle(f)
	}
}

func BenchmarkReadReply(b *testing.B) {
	stream := bytes.Repeat([]byte("Content-Type: command/reply\nReply-Text: +OK\n\n"), 1024)
	b.ReportAllocs()
	var r *Reader
	for i := 0; i < b.N; i++ {
		if i%1024 == 0 {
			r = NewReader(bytes.NewReader(stream), Limits{})
		}
		if _, err := r.ReadFrame(); err != nil {
			b.Fatal(err)
		}
	}
}

func BenchmarkAppendExecute(b *testing.B) {
	c := &Command{Line: "sendmsg", Headers: Headers{{"call-command", "execute"}, {"execute-app-name", "playback"},
		{"execute-app-arg", "ivr/menu.wav"}, {"event-uuid", "9b1d0000-0000-4000-8000-000000000003"}, {"event-lock", "true"}}}
	b.ReportAllocs()
	var buf []byte
	for i := 0; i < b.N; i++ {
		buf = AppendCommand(buf[:0], c)
	}
}
