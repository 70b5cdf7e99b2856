package esl_test

import (
	"context"
	"errors"
	"net"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/sirupsen/logrus"
	"go.uber.org/goleak"

	"github.com/switchboard/switchboard/engine/esl"
	"github.com/switchboard/switchboard/engine/esl/esltest"
	"github.com/switchboard/switchboard/internal/testutil"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

// startServer serves flows (by name) on 127.0.0.1:0 and returns its address.
func startServer(t *testing.T, cfg esl.Config, flows map[string]esl.Flow) (*esl.Server, string) {
	t.Helper()
	return startServerWith(t, cfg, flows, nil, nil)
}

// startServerWith is startServer with a log and a metrics registry (either may be nil).
func startServerWith(t *testing.T, cfg esl.Config, flows map[string]esl.Flow, log *logrus.Entry, reg prometheus.Registerer) (*esl.Server, string) {
	t.Helper()
	if cfg.DefaultFlow == "" {
		cfg = esl.DefaultConfig()
	}
	cfg.Listen = "127.0.0.1:0"
	srv, err := esl.New(cfg, esl.Options{Log: log, Metrics: reg, Flows: func(c *esl.CallInfo) (esl.Flow, error) {
		f, ok := flows[c.Flow]
		if !ok {
			return nil, errors.New("unknown flow " + c.Flow)
		}
		return f, nil
	}})
	if err != nil {
		t.Fatal(err)
	}
	if err := srv.Start(context.Background()); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		if err := srv.Shutdown(ctx); err != nil {
			t.Errorf("shutdown: %v", err)
		}
	})
	return srv, srv.Addrs()["esl"].String()
}

func menu(got *string) esl.Flow {
	return esl.FlowFunc(func(ctx context.Context, s *esl.Session) error {
		if err := s.Answer(ctx); err != nil {
			return err
		}
		d, err := s.PlayAndGetDigits(ctx, 1, 1, 3, 2000, "#", "ivr/menu.wav", "ivr/invalid.wav", "[1-3]", "choice", 0, "")
		if err != nil {
			return err
		}
		*got = d
		if _, err := s.StreamFile(ctx, "ivr/option-"+d+".wav", nil); err != nil {
			return err
		}
		return s.Hangup(ctx, "")
	})
}

func run(t *testing.T, call esltest.Call) *esltest.Result {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	res, err := esltest.Run(ctx, call)
	if err != nil {
		t.Fatal(err)
	}
	return res
}

func wantTranscript(t *testing.T, res *esltest.Result, want []string) {
	t.Helper()
	got := res.Transcript()
	if strings.Join(got, "\n") != strings.Join(want, "\n") {
		t.Fatalf("transcript:\n%s\nwant:\n%s", strings.Join(got, "\n"), strings.Join(want, "\n"))
	}
}

func TestMenuAsyncFull(t *testing.T) {
	var choice string
	_, addr := startServer(t, esl.Config{}, map[string]esl.Flow{"main": menu(&choice)})
	res := run(t, esltest.Call{Addr: addr, UUID: "u1", Async: true, Full: true, DTMF: []esltest.DTMF{{Digit: "2", At: 100 * time.Millisecond}}, Media: 300 * time.Millisecond})
	if choice != "2" {
		t.Fatalf("choice %q", choice)
	}
	wantTranscript(t, res, []string{
		"call u1 from 1000 to 5000 (async full)",
		"> connect",
		"> myevents plain",
		"> event plain BACKGROUND_JOB",
		"> linger",
		"execute answer [event-lock]",
		"complete answer: _none_",
		"execute play_and_get_digits 1 1 3 2000 # ivr/menu.wav ivr/invalid.wav choice [1-3] [event-lock]",
		"caller presses 2",
		"complete play_and_get_digits: _none_ choice=2 (success)",
		"execute playback ivr/option-2.wav [event-lock]",
		"complete playback: FILE PLAYED",
		"engine hangs up NORMAL_CLEARING",
		"hangup NORMAL_CLEARING",
		"< linger notice",
		"> exit",
		"< disconnect notice",
	})
	if !res.Answered || res.HangupCause != "NORMAL_CLEARING" {
		t.Fatalf("answered %v cause %q", res.Answered, res.HangupCause)
	}
}

func TestMenuStatic(t *testing.T) {
	var choice string
	_, addr := startServer(t, esl.Config{}, map[string]esl.Flow{"main": menu(&choice)})
	res := run(t, esltest.Call{Addr: addr, UUID: "u2", DTMF: []esltest.DTMF{{Digit: "3", At: 100 * time.Millisecond}}, Media: 300 * time.Millisecond})
	if choice != "3" {
		t.Fatalf("choice %q", choice)
	}
	wantTranscript(t, res, []string{
		"call u2 from 1000 to 5000 (static)",
		"> connect",
		"> myevents plain",
		"execute answer [event-lock]",
		"complete answer: _none_",
		"execute play_and_get_digits 1 1 3 2000 # ivr/menu.wav ivr/invalid.wav choice [1-3] [event-lock]",
		"caller presses 3",
		"complete play_and_get_digits: _none_ choice=3 (success)",
		"execute playback ivr/option-3.wav [event-lock]",
		"complete playback: FILE PLAYED",
		"engine hangs up NORMAL_CLEARING",
		"hangup NORMAL_CLEARING",
		"< disconnect notice",
	})
}

func TestInputCallbackBreaksStreamFile(t *testing.T) {
	var digits []string
	var resp string
	flow := esl.FlowFunc(func(ctx context.Context, s *esl.Session) error {
		var err error
		resp, err = s.StreamFile(ctx, "long.wav", func(d esl.DTMF) bool { digits = append(digits, d.Digit); return d.Digit == "5" })
		return err
	})
	_, addr := startServer(t, esl.Config{}, map[string]esl.Flow{"main": flow})
	start := time.Now()
	res := run(t, esltest.Call{Addr: addr, UUID: "u3", Async: true, Full: true, Media: 5 * time.Second,
		DTMF: []esltest.DTMF{{Digit: "5", At: 100 * time.Millisecond}}})
	if took := time.Since(start); took > 3*time.Second {
		t.Fatalf("playback not interrupted: call took %s", took)
	}
	if strings.Join(digits, "") != "5" || resp != "FILE PLAYED" {
		t.Fatalf("digits %v resp %q", digits, resp)
	}
	got := strings.Join(res.Transcript(), "\n")
	if !strings.Contains(got, "execute playback long.wav\ncaller presses 5\nexecute break (nested in playback)\ncomplete break: _none_\ncomplete playback: FILE PLAYED") {
		t.Fatalf("transcript:\n%s", got)
	}
}

func TestHangupMidPrompt(t *testing.T) {
	var mu sync.Mutex
	var gotErr error
	var took time.Duration
	flow := esl.FlowFunc(func(ctx context.Context, s *esl.Session) error {
		start := time.Now()
		_, err := s.StreamFile(ctx, "long.wav", nil)
		mu.Lock()
		gotErr, took = err, time.Since(start)
		mu.Unlock()
		return err
	})
	for _, async := range []bool{true, false} {
		_, addr := startServer(t, esl.Config{}, map[string]esl.Flow{"main": flow})
		res := run(t, esltest.Call{Addr: addr, Async: async, Full: async, Media: 10 * time.Second, HangupAfter: 200 * time.Millisecond})
		mu.Lock()
		if !errors.Is(gotErr, esl.ErrHungUp) || took > 2*time.Second {
			t.Fatalf("async=%v: err %v after %s", async, gotErr, took)
		}
		mu.Unlock()
		if res.HangupCause != "NORMAL_CLEARING" {
			t.Fatalf("cause %q", res.HangupCause)
		}
	}
}

func TestBridgeWithEventLock(t *testing.T) {
	flow := esl.FlowFunc(func(ctx context.Context, s *esl.Session) error {
		if _, err := s.Execute(ctx, "bridge", "{ignore_early_media=true}sofia/gateway/gw/177808", esl.ExecOptions{}); err != nil {
			return err
		}
		v, _ := s.Variable("bridge_hangup_cause")
		return s.SetVariable(ctx, "after_bridge", v)
	})
	_, addr := startServer(t, esl.Config{}, map[string]esl.Flow{"main": flow})
	res := run(t, esltest.Call{Addr: addr, UUID: "u5", Async: true, Full: true, BridgeFor: 200 * time.Millisecond})
	wantTranscript(t, res, []string{
		"call u5 from 1000 to 5000 (async full)",
		"> connect",
		"> myevents plain",
		"> event plain BACKGROUND_JOB",
		"> linger",
		"execute bridge {ignore_early_media=true}sofia/gateway/gw/177808 [event-lock]",
		"complete bridge: _none_",
		"execute set after_bridge=NORMAL_CLEARING [event-lock]",
		"complete set: _none_",
		"engine hangs up NORMAL_CLEARING",
		"hangup NORMAL_CLEARING",
		"< linger notice",
		"> exit",
		"< disconnect notice",
	})
}

func TestFlowSelection(t *testing.T) {
	ran := make(chan string, 3)
	named := func(n string) esl.Flow {
		return esl.FlowFunc(func(ctx context.Context, s *esl.Session) error { ran <- n; return nil })
	}
	_, addr := startServer(t, esl.Config{}, map[string]esl.Flow{"main": named("main"), "sales": named("sales"), "support": named("support")})
	run(t, esltest.Call{Addr: addr, Async: true, Full: true, Path: "sales"})
	run(t, esltest.Call{Addr: addr, Async: true, Full: true, Vars: map[string]string{"switchboard_flow": "support"}})
	run(t, esltest.Call{Addr: addr, Async: true, Full: true})
	if got := []string{<-ran, <-ran, <-ran}; strings.Join(got, ",") != "sales,support,main" {
		t.Fatalf("flows %v", got)
	}
	res := run(t, esltest.Call{Addr: addr, Async: true, Full: true, Path: "nosuch"})
	if res.HangupCause != "NO_ROUTE_DESTINATION" {
		t.Fatalf("unknown flow: cause %q\n%s", res.HangupCause, res)
	}
}

func TestAPIAndBgAPI(t *testing.T) {
	var api, bg, static string
	var staticErr error
	flow := esl.FlowFunc(func(ctx context.Context, s *esl.Session) error {
		if !s.Info().Full {
			_, staticErr = s.API(ctx, "status")
			static = "done"
			return nil
		}
		var err error
		if api, err = s.API(ctx, "uuid_getvar "+s.UUID()+" sip_from_user"); err != nil {
			return err
		}
		bg, err = s.BgAPI(ctx, "echo hello there")
		return err
	})
	_, addr := startServer(t, esl.Config{}, map[string]esl.Flow{"main": flow})
	run(t, esltest.Call{Addr: addr, Async: true, Full: true, Caller: "1234"})
	if api != "1234" || bg != "hello there" {
		t.Fatalf("api %q bgapi %q", api, bg)
	}
	run(t, esltest.Call{Addr: addr, Async: true})
	if static != "done" || staticErr == nil {
		t.Fatalf("api without full: %v", staticErr)
	}
}

func TestGarbageAndUnknownFrames(t *testing.T) {
	calls := make(chan struct{}, 1)
	flow := esl.FlowFunc(func(ctx context.Context, s *esl.Session) error {
		calls <- struct{}{}
		return s.Sleep(ctx, 10, nil)
	})
	srv, addr := startServer(t, esl.Config{}, map[string]esl.Flow{"main": flow})
	for _, junk := range []string{
		"\x00\xff\xfe garbage\n\n",
		"Content-Type: text/rude-rejection\n\n",
		"Content-Type: api/response\nContent-Length: -5\n\n",
		"Content-Length: 99999999999\n\n",
		strings.Repeat("X", 300<<10),
	} {
		c, err := net.Dial("tcp", addr)
		if err != nil {
			t.Fatal(err)
		}
		buf := make([]byte, 64)
		c.SetReadDeadline(time.Now().Add(2 * time.Second))
		if n, err := c.Read(buf); err != nil || string(buf[:n]) != "connect\n\n" {
			t.Fatalf("first bytes %q %v", buf[:n], err)
		}
		c.Write([]byte(junk))
		c.Close()
	}
	// The server still takes calls.
	res := run(t, esltest.Call{Addr: addr, Async: true, Full: true})
	<-calls
	if res.HangupCause != "NORMAL_CLEARING" {
		t.Fatalf("after garbage: %s", res)
	}
	testutil.Poll(testutil.Wait, func() bool { return srv.Active() == 0 })
	if n := srv.Active(); n != 0 {
		t.Fatalf("%d calls still active", n)
	}
}

func TestFlowErrorHangsUp(t *testing.T) {
	flow := esl.FlowFunc(func(ctx context.Context, s *esl.Session) error {
		_ = s.Answer(ctx)
		return errors.New("script.lua:3: boom")
	})
	_, addr := startServer(t, esl.Config{}, map[string]esl.Flow{"main": flow})
	res := run(t, esltest.Call{Addr: addr, Async: true, Full: true})
	if res.HangupCause != "NORMAL_TEMPORARY_FAILURE" {
		t.Fatalf("cause %q", res.HangupCause)
	}
}

func TestShutdownHangsUpLiveCalls(t *testing.T) {
	started := make(chan struct{}, 1)
	flow := esl.FlowFunc(func(ctx context.Context, s *esl.Session) error {
		started <- struct{}{}
		_, err := s.StreamFile(ctx, "long.wav", nil)
		return err
	})
	srv, err := esl.New(esl.DefaultConfig(), esl.Options{Flows: func(*esl.CallInfo) (esl.Flow, error) { return flow, nil }})
	if err != nil {
		t.Fatal(err)
	}
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	served := make(chan error, 1)
	go func() { served <- srv.Serve(l) }()
	resc := make(chan *esltest.Result, 1)
	go func() {
		r, _ := esltest.Run(context.Background(), esltest.Call{Addr: l.Addr().String(), Async: true, Full: true, Media: 30 * time.Second})
		resc <- r
	}()
	<-started
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	start := time.Now()
	if err := srv.Shutdown(ctx); err != nil {
		t.Fatalf("shutdown: %v", err)
	}
	if took := time.Since(start); took > 2*time.Second {
		t.Fatalf("shutdown took %s", took)
	}
	if err := <-served; !errors.Is(err, esl.ErrServerClosed) {
		t.Fatalf("serve: %v", err)
	}
	res := <-resc
	if res.HangupCause != "SYSTEM_SHUTDOWN" {
		t.Fatalf("cause %q\n%s", res.HangupCause, res)
	}
}

// TestLateReplyIsNotTakenByTheNextCommand: a command that gave up on its reply must not leave that reply
// for the next command. FreeSWITCH is played by hand here to delay one reply.
func TestLateReplyIsNotTakenByTheNextCommand(t *testing.T) {
	got := make(chan string, 2)
	flow := esl.FlowFunc(func(ctx context.Context, s *esl.Session) error {
		_, err := s.Command(ctx, &esl.Command{Line: "api slow"}, 100*time.Millisecond)
		got <- "slow: " + errString(err)
		f, err := s.Command(ctx, &esl.Command{Line: "api fast"}, time.Second)
		if err != nil {
			got <- "fast: " + err.Error()
			return err
		}
		got <- "fast: " + string(f.Body)
		return nil
	})
	cfg := esl.DefaultConfig()
	cfg.AutoHangup = false
	_, addr := startServer(t, cfg, map[string]esl.Flow{"main": flow})
	c, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	r := esl.NewReader(c, esl.Limits{})
	api := func(body string) string {
		return "Content-Type: api/response\nContent-Length: " + strconv.Itoa(len(body)) + "\n\n" + body
	}
	for {
		cmd, err := r.ReadCommand()
		if err != nil {
			break
		}
		switch cmd.Line {
		case "connect":
			c.Write([]byte("Unique-ID: x1\nContent-Type: command/reply\nReply-Text: %2BOK%0A\nSocket-Mode: async\nControl: full\n\n"))
		case "api slow":
			time.Sleep(300 * time.Millisecond)
			c.Write([]byte(api("slow reply")))
		case "api fast":
			c.Write([]byte(api("fast reply")))
		case "exit":
			c.Write([]byte("Content-Type: command/reply\nReply-Text: +OK bye\n\n"))
			c.Close()
		default:
			c.Write([]byte("Content-Type: command/reply\nReply-Text: +OK\n\n"))
		}
	}
	if a, b := <-got, <-got; a != "slow: esl: api: no reply within 100ms" || b != "fast: fast reply" {
		t.Fatalf("got %q, %q", a, b)
	}
}

func errString(err error) string {
	if err == nil {
		return "<nil>"
	}
	return err.Error()
}

func TestJSONEvents(t *testing.T) {
	var choice string
	cfg := esl.DefaultConfig()
	cfg.EventFormat = "json"
	_, addr := startServer(t, cfg, map[string]esl.Flow{"main": menu(&choice)})
	res := run(t, esltest.Call{Addr: addr, Async: true, Full: true, PressOnRead: "1"})
	if choice != "1" || res.HangupCause != "NORMAL_CLEARING" {
		t.Fatalf("choice %q\n%s", choice, res)
	}
	if tr := strings.Join(res.Transcript(), "\n"); !strings.Contains(tr, "> myevents json\n> event json BACKGROUND_JOB") {
		t.Fatalf("transcript:\n%s", tr)
	}
}
