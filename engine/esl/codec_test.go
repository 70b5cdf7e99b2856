package esl

import (
	"bytes"
	"errors"
	"io"
	"strconv"
	"strings"
	"testing"
)

const connectReply = "Event-Name: CHANNEL_DATA\n" +
	"Core-UUID: 3f0c\n" +
	"FreeSWITCH-IPv6: %3A%3A1\n" +
	"Event-Date-Local: 2026-11-22%2003%3A38%3A27\n" +
	"Channel-Caller-ID-Name: Jane%20Doe\n" +
	"Channel-Name: sofia/internal/1000%40127.0.0.1\n" +
	"Unique-ID: 6f1e8c5a\n" +
	"variable_socket_path: sales\n" +
	"variable_current_application_data: 127.0.0.1%3A8084%20async%20full\n" +
	"Content-Type: command/reply\n" +
	"Reply-Text: %2BOK%0A\n" +
	"Socket-Mode: async\n" +
	"Control: full\n\n"

func TestReadFrameConnectReply(t *testing.T) {
	r := NewReader(strings.NewReader(connectReply), Limits{})
	f, err := r.ReadFrame()
	if err != nil {
		t.Fatal(err)
	}
	for name, want := range map[string]string{
		"content-type":                      "command/reply",
		"Reply-Text":                        "+OK\n",
		"Channel-Caller-ID-Name":            "Jane Doe",
		"Channel-Name":                      "sofia/internal/1000@127.0.0.1",
		"FreeSWITCH-IPv6":                   "::1",
		"variable_current_application_data": "127.0.0.1:8084 async full",
		"Socket-Mode":                       "async",
	} {
		if got := f.Headers.Get(name); got != want {
			t.Errorf("%s = %q, want %q", name, got, want)
		}
	}
	if f.ReplyText() != "+OK" {
		t.Errorf("ReplyText = %q", f.ReplyText())
	}
	if _, err := r.ReadFrame(); err != io.EOF {
		t.Fatalf("after last frame: %v, want io.EOF", err)
	}
}

func TestReadFrameStream(t *testing.T) {
	ev := "Event-Name: BACKGROUND_JOB\nJob-UUID: j1\nJob-Owner-UUID: u1\nContent-Length: 4\n\n+OK\n"
	evHang := "Event-Name: CHANNEL_HANGUP_COMPLETE\nHangup-Cause: NORMAL_CLEARING\nUnique-ID: u1\nHangup-Cause: USER_BUSY\nDTMF-Digit: %23\n\n"
	stream := "\n\r\nContent-Type: command/reply\r\nReply-Text: +OK Events Enabled\r\n\r\n" +
		"Content-Type: api/response\nContent-Length: 9\n\n+OK done\n" +
		"Content-Length: " + itoa(len(ev)) + "\nContent-Type: text/event-plain\n\n" + ev +
		"Content-Length: " + itoa(len(evHang)) + "\nContent-Type: text/event-plain\n\n" + evHang +
		"Content-Type: log/data\nContent-Length: 3\nLog-Level: 7\n\nabc" +
		"garbage line without colon\nContent-Type: text/unknown-thing\n\n" +
		"Content-Type: text/disconnect-notice\nControlled-Session-UUID: u1\nContent-Disposition: disconnect\nContent-Length: 67\n\nDisconnected, goodbye.\nSee you at ClueCon! http://www.cluecon.com/\n"
	r := NewReader(strings.NewReader(stream), Limits{})
	var types []string
	var frames []*Frame
	for {
		f, err := r.ReadFrame()
		if err == io.EOF {
			break
		}
		if err != nil {
			t.Fatal(err)
		}
		types = append(types, f.ContentType())
		frames = append(frames, f)
	}
	want := []string{TypeCommandReply, TypeAPIResponse, TypeEventPlain, TypeEventPlain, TypeLogData, "text/unknown-thing", TypeDisconnectNotice}
	if strings.Join(types, ",") != strings.Join(want, ",") {
		t.Fatalf("types %v, want %v", types, want)
	}
	if frames[0].ReplyText() != "+OK Events Enabled" || string(frames[1].Body) != "+OK done\n" {
		t.Fatalf("reply %q, api body %q", frames[0].ReplyText(), frames[1].Body)
	}
	e, err := ParseEvent(frames[2])
	if err != nil || e.Name() != "BACKGROUND_JOB" || e.Get("Job-UUID") != "j1" || e.Body != "+OK\n" {
		t.Fatalf("bg job %+v %v", e, err)
	}
	e, err = ParseEvent(frames[3])
	if err != nil || e.Get("Hangup-Cause") != "NORMAL_CLEARING" || e.Get("DTMF-Digit") != "#" {
		t.Fatalf("hangup complete %+v %v", e, err)
	}
	if r.Skipped != 1 {
		t.Fatalf("Skipped = %d, want 1", r.Skipped)
	}
	if len(frames[6].Body) != 67 {
		t.Fatalf("goodbye body %d bytes", len(frames[6].Body))
	}
}

func itoa(n int) string { return strconv.Itoa(n) }

func TestReadFrameErrors(t *testing.T) {
	for name, in := range map[string]string{
		"negative length": "Content-Type: api/response\nContent-Length: -1\n\n",
		"huge length":     "Content-Type: api/response\nContent-Length: 99999999999\n\n",
		"text length":     "Content-Type: api/response\nContent-Length: ten\n\n",
	} {
		_, err := NewReader(strings.NewReader(in), Limits{}).ReadFrame()
		if !errors.Is(err, ErrFrame) {
			t.Errorf("%s: err %v, want ErrFrame", name, err)
		}
	}
	_, err := NewReader(strings.NewReader("Content-Type: api/response\nContent-Length: 10\n\nabc"), Limits{}).ReadFrame()
	if err != io.ErrUnexpectedEOF {
		t.Errorf("short body: %v", err)
	}
	_, err = NewReader(strings.NewReader("Content-Type: api/resp"), Limits{}).ReadFrame()
	if err != io.ErrUnexpectedEOF {
		t.Errorf("cut block: %v", err)
	}
	big := "X: " + strings.Repeat("a", 10000) + "\n\n"
	_, err = NewReader(strings.NewReader(big), Limits{MaxHeaderBytes: 5000}).ReadFrame()
	if !errors.Is(err, ErrFrame) {
		t.Errorf("over header cap: %v", err)
	}
	many := strings.Repeat("A: b\n", 20) + "\n"
	_, err = NewReader(strings.NewReader(many), Limits{MaxHeaders: 10}).ReadFrame()
	if !errors.Is(err, ErrFrame) {
		t.Errorf("over header count: %v", err)
	}
}

func TestCommandRoundTrip(t *testing.T) {
	c := &Command{Line: "sendmsg", Headers: Headers{{"call-command", "execute"}, {"execute-app-name", "playback"}, {"event-uuid", "a1"}, {"event-lock", "true"}}, Body: []byte("line1\nline2")}
	b := AppendCommand(nil, c)
	want := "sendmsg\ncall-command: execute\nexecute-app-name: playback\nevent-uuid: a1\nevent-lock: true\nContent-Length: 11\n\nline1\nline2"
	if string(b) != want {
		t.Fatalf("encoded %q", b)
	}
	r := NewReader(bytes.NewReader(append(b, "connect\n\n"...)), Limits{})
	got, err := r.ReadCommand()
	if err != nil || got.Line != "sendmsg" || got.Headers.Get("EXECUTE-APP-NAME") != "playback" || string(got.Body) != "line1\nline2" {
		t.Fatalf("decoded %+v %v", got, err)
	}
	got, err = r.ReadCommand()
	if err != nil || got.Line != "connect" || len(got.Headers) != 0 {
		t.Fatalf("decoded %+v %v", got, err)
	}
}

func TestURLCoding(t *testing.T) {
	for in, want := range map[string]string{
		"Jane Doe":          "Jane%20Doe",
		"+OK\n":             "%2BOK%0A",
		"1000@127.0.0.1":    "1000%40127.0.0.1",
		"#":                 "%23",
		"*":                 "*",
		"already %41 coded": "already%20%41%20coded",
		"50%":               "50%25",
	} {
		if got := URLEncode(in); got != want {
			t.Errorf("URLEncode(%q) = %q, want %q", in, got, want)
		}
	}
	for in, want := range map[string]string{"a%2bb": "a+b", "a+b": "a+b", "%zz%": "%zz%", "%4": "%4", "%41%42": "AB"} {
		if got := URLDecode(in); got != want {
			t.Errorf("URLDecode(%q) = %q, want %q", in, got, want)
		}
	}
}

func TestEventPlainAndJSON(t *testing.T) {
	e := &Event{Headers: Headers{{"Event-Name", "BACKGROUND_JOB"}, {"Job-UUID", "j 1"}, {"Job-Command", "status"}}, Body: "+OK up\n"}
	p, err := ParsePlainEvent(AppendPlainEvent(nil, e))
	if err != nil || p.Get("Job-UUID") != "j 1" || p.Body != "+OK up\n" || p.Name() != "BACKGROUND_JOB" {
		t.Fatalf("plain round trip %+v %v", p, err)
	}
	j, err := ParseJSONEvent(AppendJSONEvent(nil, e))
	if err != nil || j.Get("Job-UUID") != "j 1" || j.Body != "+OK up\n" || j.Headers[0].Name != "Event-Name" {
		t.Fatalf("json round trip %+v %v", j, err)
	}
	if _, err := ParseJSONEvent([]byte(`{"Event-Name": 5, "X": ["a"]}`)); err != nil {
		t.Fatalf("non-string json values: %v", err)
	}
	for _, bad := range []string{"", "{", "[]", "{}"} {
		if _, err := ParseJSONEvent([]byte(bad)); err == nil {
			t.Errorf("ParseJSONEvent(%q) accepted", bad)
		}
	}
	if _, err := ParsePlainEvent([]byte("Event-Name: X\nContent-Length: 50\n\nshort")); err == nil {
		t.Error("short plain body accepted")
	}
}

func FuzzReadFrame(f *testing.F) {
	f.Add([]byte(connectReply))
	f.Add([]byte("Content-Length: 30\nContent-Type: text/event-plain\n\nEvent-Name: DTMF\nDTMF-Digit: 1\n\n"))
	f.Add([]byte("Content-Type: api/response\nContent-Length: 4\n\n+OK\n"))
	f.Add([]byte("Content-Length: 20\nContent-Type: text/event-json\n\n{\"Event-Name\":\"X\"}  "))
	f.Add([]byte("\x00\xff\n\n:::\nContent-Length: 2\n\n"))
	// announced bodies that do not (all) arrive, bodies that grow as they arrive, bodies past the budget
	f.Add([]byte("Content-Type: api/response\nContent-Length: 4000\n\nshort"))
	f.Add([]byte("Content-Type: api/response\nContent-Length: 300\n\n" + strings.Repeat("z", 300) +
		"Content-Type: api/response\nContent-Length: 40\n\n" + strings.Repeat("w", 40)))
	f.Add([]byte("Content-Type: api/response\nContent-Length: 3000\n\n" + strings.Repeat("q", 3000)))
	f.Fuzz(func(t *testing.T, b []byte) {
		budget := NewBodyBudget(2048)
		r := NewReader(bytes.NewReader(b), Limits{MaxHeaderBytes: 4096, MaxBody: 4096, Bodies: budget})
		r.ReuseBody = len(b)%2 == 0 // both ways, as the session reads (pooled bodies) and as tools do
		r.step = 16 + len(b)%64     // bodies over this grow as they arrive and take from the budget
		defer func() {
			if n := budget.InUse(); n != 0 {
				t.Fatalf("%d bytes of the body budget not given back", n)
			}
		}()
		for i := 0; i < 100; i++ {
			fr, err := r.ReadFrame()
			if err != nil {
				return
			}
			if len(fr.Body) > 4096 {
				t.Fatalf("body over limit: %d", len(fr.Body))
			}
			if n, err := strconv.Atoi(fr.Headers.Get("Content-Length")); err == nil && len(fr.Body) != n {
				t.Fatalf("body of %d bytes for Content-Length %d", len(fr.Body), n)
			}
			if budget.InUse() > budget.Max() {
				t.Fatalf("budget overdrawn: %d", budget.InUse())
			}
			if e, err := ParseEvent(fr); err == nil && len(e.Headers) == 0 {
				t.Fatal("event without headers accepted")
			}
			r.Recycle(fr)
		}
	})
}

func FuzzURLCoding(f *testing.F) {
	f.Add("Jane Doe")
	f.Add("%2BOK%0A")
	f.Add("%%4%zz\xff")
	f.Fuzz(func(t *testing.T, s string) {
		enc := URLEncode(s)
		for i := 0; i < len(enc); i++ {
			if c := enc[i]; c < 0x20 || c > 0x7e || c == '\n' || c == ' ' {
				t.Fatalf("URLEncode(%q) left byte %#x", s, c)
			}
		}
		if !strings.Contains(s, "%") && URLDecode(enc) != s {
			t.Fatalf("round trip %q -> %q -> %q", s, enc, URLDecode(enc))
		}
		_ = URLDecode(s)
	})
}

func FuzzReadCommand(f *testing.F) {
	f.Add([]byte("sendmsg\ncall-command: execute\nexecute-app-name: answer\n\n"))
	f.Add([]byte("connect\n\n"))
	f.Add([]byte("api status\nContent-Length: 3\n\nabc"))
	f.Fuzz(func(t *testing.T, b []byte) {
		r := NewReader(bytes.NewReader(b), Limits{MaxHeaderBytes: 4096, MaxBody: 4096})
		for i := 0; i < 100; i++ {
			c, err := r.ReadCommand()
			if err != nil {
				return
			}
			if strings.ContainsAny(c.Line, "\n") {
				t.Fatalf("command line with newline %q", c.Line)
			}
		}
	})
}

// referencePlainEvent is the plain event parser written the obvious way (one string per value); the
// one-buffer ParsePlainEvent must agree with it on every input.
func referencePlainEvent(b []byte) (*Event, error) {
	s := string(b)
	e := &Event{}
	for len(s) > 0 {
		var line string
		if i := strings.IndexByte(s, '\n'); i < 0 {
			line, s = s, ""
		} else {
			line, s = s[:i], s[i+1:]
		}
		line = strings.TrimRight(line, "\r")
		if line == "" {
			break
		}
		c := strings.IndexByte(line, ':')
		if c <= 0 {
			continue
		}
		name := strings.TrimSpace(line[:c])
		val := URLDecode(strings.TrimLeft(line[c+1:], " "))
		if strings.EqualFold(name, "Content-Length") {
			n, err := strconv.Atoi(val)
			if err != nil || n < 0 {
				return nil, ErrFrame
			}
			if strings.HasPrefix(s, "\n") {
				s = s[1:]
			} else if strings.HasPrefix(s, "\r\n") {
				s = s[2:]
			}
			if n > len(s) {
				return nil, ErrFrame
			}
			e.Body = s[:n]
			break
		}
		if len(e.Headers) == MaxEventHeaders {
			return nil, ErrFrame
		}
		e.Headers = append(e.Headers, Header{Name: name, Value: val})
	}
	if len(e.Headers) == 0 {
		return nil, ErrFrame
	}
	return e, nil
}

func FuzzParsePlainEvent(f *testing.F) {
	f.Add([]byte("Event-Name: DTMF\nDTMF-Digit: %23\n\n"))
	f.Add([]byte("Event-Name: BACKGROUND_JOB\nJob-UUID: j%201\nContent-Length: 7\n\n+OK up\n"))
	f.Add([]byte("Event-Name: X\r\nA: %zz%4%41\r\n\r\n"))
	f.Add([]byte(":\nno colon\nB:  two spaces\nContent-Length: 3\r\n\r\nabcdef"))
	f.Fuzz(func(t *testing.T, b []byte) {
		got, err := ParsePlainEvent(b)
		want, werr := referencePlainEvent(b)
		if (err == nil) != (werr == nil) {
			t.Fatalf("ParsePlainEvent(%q) error %v, reference %v", b, err, werr)
		}
		if err != nil {
			return
		}
		if len(got.Headers) != len(want.Headers) || got.Body != want.Body {
			t.Fatalf("ParsePlainEvent(%q) = %+v, reference %+v", b, got, want)
		}
		for i := range got.Headers {
			if got.Headers[i] != want.Headers[i] {
				t.Fatalf("header %d: %+v, reference %+v", i, got.Headers[i], want.Headers[i])
			}
		}
	})
}

// A body over 64 KiB is read into a buffer that grows with what arrived, taking its capacity past 64 KiB
// from the shared budget, given back when the frame is done with (or the read fails); past the budget the frame is
// refused.
func TestBodyGrowsAsItArrivesWithinABudget(t *testing.T) {
	budget := NewBodyBudget(1 << 20)
	pr, pw := io.Pipe()
	r := NewReader(pr, Limits{Bodies: budget})
	type result struct {
		f   *Frame
		err error
	}
	res := make(chan result, 1)
	go func() { f, err := r.ReadFrame(); res <- result{f, err} }()
	io.WriteString(pw, "Content-Type: api/response\nContent-Length: 16777216\n\n")
	pw.Write(make([]byte, 100<<10))           // returns once the reader took it all
	if got := budget.InUse(); got != 64<<10 { // a 128 KiB buffer, whose first 64 KiB are the connection's own
		t.Fatalf("after 100 KiB of a 16 MiB body: %d bytes taken, want 64 KiB", got)
	}
	wrote := make(chan struct{})
	go func() {
		defer close(wrote)
		pw.Write(make([]byte, 1000<<10)) // past 1 MiB the buffer must double to 2 MiB, past the budget
	}()
	got := <-res
	pr.Close() // the rest is never read
	<-wrote
	if !errors.Is(got.err, ErrFrame) || !strings.Contains(got.err.Error(), "esl.bodies_in_flight_bytes") {
		t.Fatalf("body past the budget: %v", got.err)
	}
	if budget.InUse() != 0 {
		t.Fatalf("%d bytes not given back after the refusal", budget.InUse())
	}

	// within the budget: read, held until Recycle, given back
	stream := "Content-Type: api/response\nContent-Length: 200000\n\n" + strings.Repeat("b", 200000)
	r = NewReader(strings.NewReader(stream+stream), Limits{Bodies: budget})
	f, err := r.ReadFrame()
	if err != nil || len(f.Body) != 200000 {
		t.Fatalf("%d bytes, %v", len(f.Body), err)
	}
	if budget.InUse() != 200000-64<<10 { // the last step stops at the body's length
		t.Fatalf("a 200000-byte body holds %d bytes of the budget", budget.InUse())
	}
	r.Recycle(f)
	if budget.InUse() != 0 || len(f.Body) != 200000 {
		t.Fatalf("after Recycle: %d taken, body %d bytes", budget.InUse(), len(f.Body))
	}
	if _, err := r.ReadFrame(); err != nil {
		t.Fatal(err)
	}
	if _, err := r.ReadFrame(); err != io.EOF || budget.InUse() != 0 {
		t.Fatalf("at the end: %v, %d taken", err, budget.InUse())
	}
	// a body that stops early gives its bytes back
	r = NewReader(strings.NewReader("Content-Length: 300000\n\n"+strings.Repeat("c", 100000)), Limits{Bodies: budget})
	if _, err := r.ReadFrame(); err != io.ErrUnexpectedEOF || budget.InUse() != 0 {
		t.Fatalf("short body: %v, %d taken", err, budget.InUse())
	}
}

// Events hold at most MaxEventHeaders headers: a 16 MiB body of tiny lines is refused instead of costing
// hundreds of MB of header structures.
func TestEventHeadersAreBounded(t *testing.T) {
	plain := "Event-Name: X\n" + strings.Repeat("a: b\n", MaxEventHeaders) + "\n"
	if _, err := ParsePlainEvent([]byte(plain)); !errors.Is(err, ErrFrame) {
		t.Fatalf("plain event of %d headers: %v", MaxEventHeaders+1, err)
	}
	if e, err := ParsePlainEvent([]byte(strings.Repeat("a: b\n", MaxEventHeaders) + "\n")); err != nil || len(e.Headers) != MaxEventHeaders {
		t.Fatalf("plain event of %d headers: %v", MaxEventHeaders, err)
	}
	var js strings.Builder
	js.WriteString(`{"Event-Name":"X"`)
	for i := 0; i < MaxEventHeaders; i++ {
		js.WriteString(`,"h` + strconv.Itoa(i) + `":""`)
	}
	js.WriteString("}")
	if _, err := ParseJSONEvent([]byte(js.String())); !errors.Is(err, ErrFrame) {
		t.Fatalf("json event of %d members: %v", MaxEventHeaders+1, err)
	}
	for _, bad := range []string{`{"a":"b"} x`, `[1]`, `"s"`, `{"a":}`} {
		if _, err := ParseJSONEvent([]byte(bad)); !errors.Is(err, ErrFrame) {
			t.Errorf("json event %q: %v", bad, err)
		}
	}
	if e, err := ParseJSONEvent([]byte(`{"Event-Name":"X","a":"1","a":"2","n":3}`)); err != nil || e.Get("a") != "2" || e.Get("n") != "3" {
		t.Fatalf("json event: %+v %v", e, err)
	}
}

func TestReuseBody(t *testing.T) {
	stream := "Content-Type: api/response\nContent-Length: 3\n\nabc" + "Content-Type: api/response\nContent-Length: 3\n\nxyz"
	r := NewReader(strings.NewReader(stream+stream), Limits{})
	a, _ := r.ReadFrame()
	b, _ := r.ReadFrame()
	if string(a.Body) != "abc" || string(b.Body) != "xyz" {
		t.Fatalf("without ReuseBody bodies are the frames' own: %q %q", a.Body, b.Body)
	}
	r.Recycle(a) // not pooled: nothing happens
	if string(a.Body) != "abc" {
		t.Fatalf("Recycle of an unpooled body changed it: %q", a.Body)
	}
	r.ReuseBody = true
	c, _ := r.ReadFrame()
	if string(c.Body) != "abc" {
		t.Fatalf("pooled body %q", c.Body)
	}
	r.Recycle(c)
	if c.Body != nil {
		t.Fatal("Recycle left the body in the frame")
	}
	d, err := r.ReadFrame()
	if err != nil || string(d.Body) != "xyz" {
		t.Fatalf("after Recycle: %q %v", d.Body, err)
	}
	r.Recycle(d)
}

func FuzzAppendURLEncode(f *testing.F) {
	f.Add("a b", "Jane Doe")
	f.Add("", "%41%zz\xff\n")
	f.Fuzz(func(t *testing.T, prefix, s string) {
		if got := string(AppendURLEncode([]byte(prefix), s)); got != prefix+URLEncode(s) {
			t.Fatalf("AppendURLEncode(%q, %q) = %q, want %q", prefix, s, got, prefix+URLEncode(s))
		}
	})
}

// Pooled tells a pooled body from the frame's own (a large one, or one read without ReuseBody).
func TestPooled(t *testing.T) {
	stream := "Content-Type: api/response\nContent-Length: 3\n\nabc" +
		"Content-Type: api/response\nContent-Length: 70000\n\n" + strings.Repeat("L", 70000)
	r := NewReader(strings.NewReader(stream), Limits{})
	r.ReuseBody = true
	small, _ := r.ReadFrame()
	if !r.Pooled(small) {
		t.Fatal("a small body read with ReuseBody is not pooled")
	}
	r.Recycle(small)
	large, err := r.ReadFrame()
	if err != nil || len(large.Body) != 70000 || r.Pooled(large) {
		t.Fatalf("a 70000-byte body: %d bytes, pooled %v, %v", len(large.Body), r.Pooled(large), err)
	}
}
