package esltest

import (
	"context"
	"net"
	"strings"
	"sync"
	"testing"
	"time"

	"go.uber.org/goleak"

	"github.com/switchboard/switchboard/engine/esl"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

// engineSide accepts the simulator's connection and lets the test speak for the engine.
type engineSide struct {
	t *testing.T
	c net.Conn
	r *esl.Reader
}

func (e *engineSide) send(line string, headers ...string) {
	e.t.Helper()
	b := line + "\n"
	for _, h := range headers {
		b += h + "\n"
	}
	if _, err := e.c.Write([]byte(b + "\n")); err != nil {
		e.t.Fatal(err)
	}
}

// next reads frames until one of content type ct (or any when ct is "") arrives.
func (e *engineSide) next(ct string) *esl.Frame {
	e.t.Helper()
	e.c.SetReadDeadline(time.Now().Add(5 * time.Second))
	for {
		f, err := e.r.ReadFrame()
		if err != nil {
			e.t.Fatalf("waiting for %s: %v", ct, err)
		}
		if ct == "" || f.ContentType() == ct {
			return f
		}
	}
}

func (e *engineSide) event(name string) *esl.Event {
	e.t.Helper()
	for {
		f := e.next(esl.TypeEventPlain)
		ev, err := esl.ParseEvent(f)
		if err != nil {
			e.t.Fatal(err)
		}
		if ev.Name() == name {
			return ev
		}
	}
}

func play(t *testing.T, call Call, engine func(e *engineSide)) *Result {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	call.Addr = l.Addr().String()
	done := make(chan *Result, 1)
	go func() {
		r, err := Run(context.Background(), call)
		if err != nil {
			t.Error(err)
		}
		done <- r
	}()
	c, err := l.Accept()
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	engine(&engineSide{t: t, c: c, r: esl.NewReader(c, esl.Limits{})})
	c.Close()
	return <-done
}

func TestNothingBeforeConnectAndEncodedReply(t *testing.T) {
	play(t, Call{Async: true, Full: true, UUID: "u1", Vars: map[string]string{"caller_id_name": "Jane Doe"}}, func(e *engineSide) {
		e.c.SetReadDeadline(time.Now().Add(200 * time.Millisecond))
		if n, err := e.c.Read(make([]byte, 1)); n != 0 || err == nil {
			t.Fatalf("simulator spoke first (%d bytes, %v)", n, err)
		}
		e.send("connect")
		e.c.SetReadDeadline(time.Now().Add(5 * time.Second))
		raw := make([]byte, 64<<10)
		n, _ := e.c.Read(raw)
		text := string(raw[:n])
		if strings.HasPrefix(text, "Content-Type") || !strings.Contains(text, "Reply-Text: %2BOK%0A\nSocket-Mode: async\nControl: full\n\n") ||
			!strings.Contains(text, "Caller-Caller-ID-Name: Jane%20Doe") {
			t.Fatalf("connect reply:\n%s", text)
		}
		e.send("exit")
	})
}

func TestFirstCommandReplyDroppedAndFullOnly(t *testing.T) {
	play(t, Call{Async: true, UUID: "u2"}, func(e *engineSide) {
		e.send("myevents") // first packet: takes effect, reply dropped
		e.send("connect")
		if f := e.next(""); f.Headers.Get("Unique-ID") != "u2" {
			t.Fatalf("first frame is not the connect reply: %+v", f.Headers)
		}
		e.send("myevents")
		if f := e.next(esl.TypeCommandReply); f.ReplyText() != "-ERR aready enabled." {
			t.Fatalf("second myevents: %q", f.ReplyText())
		}
		for _, cmd := range []string{"linger", "api status", "event plain ALL"} {
			e.send(cmd)
			if f := e.next(esl.TypeCommandReply); f.ReplyText() != "-ERR command not found" {
				t.Fatalf("%s without full: %q", cmd, f.ReplyText())
			}
		}
		e.send("exit")
	})
}

func TestUnknownAppHangsUp(t *testing.T) {
	res := play(t, Call{Async: true, Full: true}, func(e *engineSide) {
		e.send("connect")
		e.next("")
		e.send("myevents")
		e.next(esl.TypeCommandReply)
		e.send("sendmsg", "call-command: execute", "execute-app-name: no_such_app", "event-uuid: a1")
		if f := e.next(esl.TypeCommandReply); f.ReplyText() != "+OK" {
			t.Fatalf("reply %q", f.ReplyText())
		}
		if ev := e.event("CHANNEL_HANGUP"); ev.Get("Hangup-Cause") != "DESTINATION_OUT_OF_ORDER" {
			t.Fatalf("cause %q", ev.Get("Hangup-Cause"))
		}
		e.next(esl.TypeDisconnectNotice)
	})
	if res.HangupCause != "DESTINATION_OUT_OF_ORDER" {
		t.Fatalf("cause %q", res.HangupCause)
	}
}

// Without event-lock, a message sent while an app runs executes nested inside it; with it, after.
func TestEventLockOrdering(t *testing.T) {
	for _, lock := range []bool{false, true} {
		res := play(t, Call{Async: true, Full: true, Media: 300 * time.Millisecond}, func(e *engineSide) {
			e.send("connect")
			e.next("")
			e.send("myevents")
			e.next(esl.TypeCommandReply)
			h := []string{"call-command: execute", "execute-app-name: playback", "execute-app-arg: a.wav", "event-uuid: p1"}
			if lock {
				h = append(h, "event-lock: true")
			}
			e.send("sendmsg", h...)
			e.next(esl.TypeCommandReply)
			e.event("CHANNEL_EXECUTE")
			e.send("sendmsg", "call-command: execute", "execute-app-name: set", "execute-app-arg: x=1", "event-uuid: s1")
			e.next(esl.TypeCommandReply)
			first := e.event("CHANNEL_EXECUTE_COMPLETE")
			want := "s1"
			if lock {
				want = "p1"
			}
			if first.Get("Application-UUID") != want {
				t.Fatalf("lock=%v: first completion %s, want %s", lock, first.Get("Application-UUID"), want)
			}
			e.send("exit")
		})
		nested := strings.Contains(strings.Join(res.Transcript(), "\n"), "execute set x=1 (nested in playback)")
		if nested == lock {
			t.Fatalf("lock=%v nested=%v\n%s", lock, nested, res)
		}
	}
}

// In static mode DTMF is not dequeued while idle; the next read gets it.
func TestStaticDTMFOnlyWhileReading(t *testing.T) {
	play(t, Call{UUID: "u5", DTMF: []DTMF{{Digit: "7", At: 10 * time.Millisecond}}}, func(e *engineSide) {
		e.send("connect")
		e.next("")
		e.send("myevents")
		e.next(esl.TypeCommandReply)
		time.Sleep(150 * time.Millisecond) // the digit is pressed while idle: no DTMF event
		e.send("sendmsg", "call-command: execute", "execute-app-name: read", "execute-app-arg: 1 1 silence_stream://250 v 1000 #", "event-uuid: r1")
		if f := e.next(""); f.ContentType() != esl.TypeCommandReply {
			t.Fatalf("static: expected the reply before any event, got %s", f.ContentType())
		}
		if ev := e.event("DTMF"); ev.Get("DTMF-Digit") != "7" {
			t.Fatalf("digit %q", ev.Get("DTMF-Digit"))
		}
		ev := e.event("CHANNEL_EXECUTE_COMPLETE")
		if v, _ := ev.Variable("v"); v != "7" || ev.Get("Application-UUID") != "r1" {
			t.Fatalf("read result %q", v)
		}
		e.send("exit")
	})
}

func TestLingerAndHangupComplete(t *testing.T) {
	play(t, Call{Async: true, Full: true, HangupAfter: 100 * time.Millisecond}, func(e *engineSide) {
		e.send("connect")
		e.next("")
		e.send("myevents")
		e.next(esl.TypeCommandReply)
		e.send("linger")
		if f := e.next(esl.TypeCommandReply); f.ReplyText() != "+OK will linger" {
			t.Fatalf("linger: %q", f.ReplyText())
		}
		e.event("CHANNEL_HANGUP")
		if f := e.next(esl.TypeDisconnectNotice); f.Headers.Get("Content-Disposition") != "linger" || f.Headers.Get("Linger-Time") != "-1" {
			t.Fatalf("linger notice %+v", f.Headers)
		}
		e.event("CHANNEL_HANGUP_COMPLETE")
		e.send("exit")
		if f := e.next(esl.TypeCommandReply); f.ReplyText() != "+OK bye" {
			t.Fatalf("exit: %q", f.ReplyText())
		}
		if f := e.next(esl.TypeDisconnectNotice); f.Headers.Get("Content-Disposition") != "disconnect" || len(f.Body) != 67 {
			t.Fatalf("goodbye %+v %q", f.Headers, f.Body)
		}
	})
}

func TestParseDTMF(t *testing.T) {
	d, err := ParseDTMF("12#@500ms")
	if err != nil || len(d) != 3 || d[2].Digit != "#" || d[2].At != 700*time.Millisecond {
		t.Fatalf("%v %v", d, err)
	}
	for _, bad := range []string{"1", "@1s", "x@1s", "1@soon"} {
		if _, err := ParseDTMF(bad); err == nil {
			t.Errorf("ParseDTMF(%q) accepted", bad)
		}
	}
}

func TestLatency(t *testing.T) {
	var l Latency
	if l.Quantile(0.5) != 0 {
		t.Fatal("empty histogram has a quantile")
	}
	for i := 1; i <= 100; i++ {
		l.Add(time.Duration(i) * time.Millisecond)
	}
	if l.Count() != 100 {
		t.Fatalf("count %d", l.Count())
	}
	// Buckets are 5% wide: each quantile is within 5% above the exact value.
	for _, c := range []struct {
		q    float64
		want time.Duration
	}{{0.5, 50 * time.Millisecond}, {0.99, 99 * time.Millisecond}, {1, 100 * time.Millisecond}} {
		got := l.Quantile(c.q)
		if got < c.want || float64(got) > float64(c.want)*1.051 {
			t.Errorf("Quantile(%v) = %s, want %s to +5%%", c.q, got, c.want)
		}
	}
	l.Add(time.Hour) // beyond the last bucket: counted there
	if l.Count() != 101 {
		t.Fatal("overflow not counted")
	}
}

// RunLoad tells Failed about each call that fails, as it fails: here every call, since nothing listens.
func TestLoadReportsEachFailure(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	ln.Close() // connections to addr are refused from now on
	var mu sync.Mutex
	var errs []error
	r := RunLoad(context.Background(), Load{Call: Call{Addr: addr, Path: "park"}, Concurrency: 3, Total: 5,
		Failed: func(res *Result, err error) {
			mu.Lock()
			defer mu.Unlock()
			if res != nil {
				t.Errorf("a call that never connected has a result: %v", res)
			}
			errs = append(errs, err)
		}})
	if r.Calls != 5 || r.Failed != 5 || len(errs) != 5 {
		t.Fatalf("calls %d, failed %d, reported %d", r.Calls, r.Failed, len(errs))
	}
	for _, err := range errs {
		if err == nil || !strings.Contains(err.Error(), "esltest: dial "+addr) {
			t.Fatalf("reported error %v", err)
		}
	}
}
