package esl_test

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"net"
	"runtime"
	"runtime/metrics"
	"strings"
	"sync"
	"testing"
	"time"
	"unicode/utf8"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/sirupsen/logrus/hooks/test"

	"github.com/switchboard/switchboard/engine/esl"
	"github.com/switchboard/switchboard/engine/esl/esltest"
	"github.com/switchboard/switchboard/internal/testutil"
)

// Tests of issue 10 (items 13 and 14 and the other peer-controlled allocations of call control): each
// attack runs over real sockets against a server that keeps serving a bystander call.

// fakeFS plays FreeSWITCH by hand on one connection to addr: answer is called with each command the
// engine sends and the connection to write the reply (and anything else) to. The connection is closed and
// its reader awaited when the test ends.
func fakeFS(t *testing.T, addr string, answer func(c *esl.Command, w net.Conn)) net.Conn {
	t.Helper()
	conn, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	done := make(chan struct{})
	go func() {
		defer close(done)
		r := esl.NewReader(conn, esl.Limits{})
		for {
			c, err := r.ReadCommand()
			if err != nil {
				return
			}
			answer(c, conn)
		}
	}()
	t.Cleanup(func() { conn.Close(); <-done })
	return conn
}

// connectReply is a small connect reply for uuid, naming flow by the socket path.
func connectReply(uuid, flow string) string {
	return "Content-Type: command/reply\nReply-Text: +OK\nSocket-Mode: async\nControl: full\nUnique-ID: " + uuid +
		"\nChannel-State: CS_EXECUTE\nAnswer-State: ringing\nvariable_socket_path: /" + flow + "\n\n"
}

const okReply = "Content-Type: command/reply\nReply-Text: +OK\n\n"

// plainEvent frames an event given as "Name: value" lines (values url-encoded by the caller).
func plainEvent(lines ...string) string {
	body := strings.Join(lines, "\n") + "\n\n"
	return fmt.Sprintf("Content-Length: %d\nContent-Type: text/event-plain\n\n%s", len(body), body)
}

// bystanderCall runs one ordinary call on addr through the simulator and checks it completed.
func bystanderCall(t *testing.T, addr string) {
	t.Helper()
	res := run(t, esltest.Call{Addr: addr, Async: true, Full: true, Path: "main"})
	if !res.Answered || res.HangupCause != "NORMAL_CLEARING" {
		t.Fatalf("bystander call: answered %v cause %q\n%s", res.Answered, res.HangupCause, res)
	}
}

// answerFlow answers and returns (the engine then hangs up).
var answerFlow = esl.FlowFunc(func(ctx context.Context, s *esl.Session) error { return s.Answer(ctx) })

func liveHeap() uint64 {
	runtime.GC()
	s := []metrics.Sample{{Name: "/gc/heap/live:bytes"}}
	metrics.Read(s)
	return s[0].Value.Uint64()
}

func gatherESL(t *testing.T, reg *prometheus.Registry) map[string]float64 {
	t.Helper()
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	out := map[string]float64{}
	for _, mf := range mfs {
		for _, m := range mf.GetMetric() {
			var ls []string
			for _, l := range m.GetLabel() {
				ls = append(ls, fmt.Sprintf("%s=%q", l.GetName(), l.GetValue()))
			}
			key := mf.GetName() + "{" + strings.Join(ls, ",") + "}"
			switch {
			case m.Counter != nil:
				out[key] = m.GetCounter().GetValue()
			case m.Gauge != nil:
				out[key] = m.GetGauge().GetValue()
			}
		}
	}
	return out
}

// Item 14: 140 dial-ins each announce a 16 MiB connect reply and trickle its bytes. The reader no longer
// allocates a body before it arrives: the heap stays where it was (before: 140 x 16 MiB), and a bystander
// call completes meanwhile.
func TestAnnouncedBodiesCostOnlyWhatArrives(t *testing.T) {
	cfg := esl.DefaultConfig()
	cfg.ConnectTimeout = time.Minute // the dial-ins stay stuck in their connect reply while we measure
	_, addr := startServer(t, cfg, map[string]esl.Flow{"main": answerFlow})
	bystanderCall(t, addr)
	before := liveHeap()

	const dialIns = 140
	chunk := bytes.Repeat([]byte("x"), 1000)
	var conns []net.Conn
	for i := 0; i < dialIns; i++ {
		started := make(chan struct{})
		conns = append(conns, fakeFS(t, addr, func(c *esl.Command, w net.Conn) {
			if c.Line == "connect" {
				io.WriteString(w, "Content-Type: command/reply\nContent-Length: 16777216\n\n")
				w.Write(chunk)
				close(started)
			}
		}))
		<-started
	}
	for round := 0; round < 5; round++ { // the trickle
		for _, c := range conns {
			c.Write(chunk)
		}
		time.Sleep(10 * time.Millisecond)
	}
	bystanderCall(t, addr)
	after := liveHeap()
	if grew := int64(after) - int64(before); grew > 48<<20 {
		t.Fatalf("heap grew by %d MiB for %d dial-ins that sent 6 KB each", grew>>20, dialIns)
	}
}

// Item 14: bodies that do arrive, fast, take their bytes from esl.bodies_in_flight_bytes: of eight
// dial-ins sending 11 MiB of a 12 MiB body at once under a 16 MiB budget, at most one is read on; the
// others' sockets are closed (counted, logged). The bystander's small frames never wait for the budget,
// and every byte is given back.
func TestBodiesInFlightShareABudget(t *testing.T) {
	cfg := esl.DefaultConfig()
	cfg.ConnectTimeout = time.Minute
	cfg.BodiesInFlightBytes = 16 << 20
	reg := prometheus.NewRegistry()
	logger, hook := test.NewNullLogger()
	_, addr := startServerWith(t, cfg, map[string]esl.Flow{"main": answerFlow}, logger.WithField("test", t.Name()), reg)

	const dialIns = 8
	body := bytes.Repeat([]byte("y"), 11<<20)
	var wg sync.WaitGroup
	for i := 0; i < dialIns; i++ {
		wg.Add(1)
		fakeFS(t, addr, func(c *esl.Command, w net.Conn) {
			if c.Line == "connect" {
				go func() {
					defer wg.Done()
					io.WriteString(w, "Content-Type: command/reply\nContent-Length: 12582912\n\n")
					w.Write(body) // fails once the engine closed this one
				}()
			}
		})
	}
	testutil.WaitWithin(t, 30*time.Second, fmt.Sprintf("at least %d bad frames", dialIns-1), func() bool {
		return gatherESL(t, reg)["switchboard_esl_bad_frames_total{}"] >= dialIns-1
	})
	if inFlight := gatherESL(t, reg)["switchboard_esl_body_bytes_in_flight{}"]; inFlight > 16<<20 {
		t.Fatalf("%v bytes of bodies in flight, budget 16 MiB", inFlight)
	}
	bystanderCall(t, addr)
	found := false
	for _, e := range hook.AllEntries() {
		if e.Message == "bad frame from FreeSWITCH: closing the call's socket" &&
			strings.Contains(fmt.Sprint(e.Data["error"]), "esl.bodies_in_flight_bytes") {
			found = true
		}
	}
	if !found {
		t.Fatal("refused bodies were not logged")
	}
	wg.Wait()
}

// Item 13: a hangup cause that is not FreeSWITCH's, or not UTF-8, counts under cause="other" (a cause
// that is not valid UTF-8 made the Prometheus client panic and ended the process); a flow the caller
// names and no script registered counts under flow=""; past esl.max_flow_series flows share "other".
func TestESLLabelsAreBounded(t *testing.T) {
	cfg := esl.DefaultConfig()
	cfg.MaxFlowSeries = 2
	reg := prometheus.NewRegistry()
	hungUp := esl.FlowFunc(func(ctx context.Context, s *esl.Session) error {
		select {
		case <-s.HungUp():
		case <-ctx.Done():
		}
		return nil
	})
	_, addr := startServerWith(t, cfg, map[string]esl.Flow{"main": answerFlow, "sales": answerFlow, "support": answerFlow,
		"hungup": hungUp}, nil, reg)
	for i, cause := range []string{"%FF%FE", "MADE_UP_" + strings.Repeat("X", 5000), "USER_BUSY"} {
		done := make(chan struct{})
		fakeFS(t, addr, func(c *esl.Command, w net.Conn) {
			switch c.Line {
			case "connect":
				io.WriteString(w, connectReply(fmt.Sprintf("cause-%d", i), "hungup"))
			case "exit":
				io.WriteString(w, okReply)
				io.WriteString(w, "Content-Type: text/disconnect-notice\n\n")
				w.Close() // as FreeSWITCH does after the notice
				close(done)
			default:
				io.WriteString(w, okReply)
				if strings.HasPrefix(c.Line, "linger") {
					io.WriteString(w, plainEvent("Event-Name: CHANNEL_HANGUP", "Hangup-Cause: "+cause))
				}
			}
		})
		<-done
	}
	for _, path := range []string{"main", "sales", "support", "no-such-" + strings.Repeat("f", 3000), "\xff"} {
		run(t, esltest.Call{Addr: addr, Async: true, Full: true, Path: path})
	}
	bystanderCall(t, addr)
	// a call's cause is counted as its connection ends, after the simulator saw the goodbye
	var got map[string]float64
	testutil.Poll(testutil.Wait, func() bool {
		got = gatherESL(t, reg)
		return got[`switchboard_esl_hangup_causes_total{cause="other"}`]+got[`switchboard_esl_hangup_causes_total{cause="USER_BUSY"}`] >= 3
	})
	for _, want := range []string{
		`switchboard_esl_hangup_causes_total{cause="other"}`,
		`switchboard_esl_hangup_causes_total{cause="USER_BUSY"}`,
		`switchboard_esl_calls_total{flow="",outcome="no_flow"}`,
		`switchboard_esl_calls_total{flow="other",outcome="completed"}`,
	} {
		if got[want] == 0 {
			t.Errorf("no %s", want)
		}
	}
	if got[`switchboard_esl_hangup_causes_total{cause="other"}`] != 2 || got[`switchboard_esl_calls_total{flow="",outcome="no_flow"}`] != 2 {
		t.Errorf("other causes %v, unknown flows %v", got[`switchboard_esl_hangup_causes_total{cause="other"}`],
			got[`switchboard_esl_calls_total{flow="",outcome="no_flow"}`])
	}
	flows := map[string]bool{}
	for k := range got {
		if !utf8.ValidString(k) {
			t.Errorf("series %q", k)
		}
		if rest, ok := strings.CutPrefix(k, `switchboard_esl_calls_total{flow="`); ok {
			flows[rest[:strings.IndexByte(rest, '"')]] = true
		}
	}
	if len(flows) != 4 { // hungup and main (the first two), "" and other
		t.Errorf("flow label values %v", flows)
	}
}

// A call remembers at most esl.max_variables_bytes of channel variables: FreeSWITCH (or whoever dials in)
// cannot grow a call without bound by sending ever new variables; the first dropped one is logged.
func TestChannelVariablesAreBounded(t *testing.T) {
	cfg := esl.DefaultConfig()
	cfg.MaxVariablesBytes = 64 << 10
	logger, hook := test.NewNullLogger()
	got := make(chan [3]bool, 1)
	flow := esl.FlowFunc(func(ctx context.Context, s *esl.Session) error {
		if err := s.Answer(ctx); err != nil {
			return err
		}
		_, first := s.Variable("v0")
		_, last := s.Variable("v199")
		_, mine := s.Variable("caller_id_name")
		got <- [3]bool{first, last, mine}
		return nil
	})
	_, addr := startServerWith(t, cfg, map[string]esl.Flow{"main": flow}, logger.WithField("test", t.Name()), nil)
	vars := map[string]string{}
	for i := 0; i < 200; i++ {
		vars[fmt.Sprintf("v%d", i)] = strings.Repeat("v", 1000) // 200 KB of variables, past the 64 KiB bound
	}
	// the variables come in the connect reply, whose header block is bounded by esl.max_frame_bytes
	res := run(t, esltest.Call{Addr: addr, Async: true, Full: true, Vars: vars})
	seen := <-got
	if !seen[0] || seen[1] {
		t.Fatalf("v0 remembered %v, v199 remembered %v: want only the first 64 KiB", seen[0], seen[1])
	}
	if res.HangupCause != "NORMAL_CLEARING" {
		t.Fatalf("call: %s", res)
	}
	logged := 0
	for _, e := range hook.AllEntries() {
		if strings.Contains(e.Message, "esl.max_variables_bytes") {
			logged++
		}
	}
	if logged != 1 {
		t.Fatalf("%d log lines about dropped variables, want 1", logged)
	}
	bystanderCall(t, addr)
}

// Digits the flow does not take wait in a queue of at most esl.dtmf_queue_bytes (FreeSWITCH's own queue
// drops too); a DTMF-Digit that is not one character is no digit.
func TestQueuedDigitsAreBounded(t *testing.T) {
	got := make(chan []esl.DTMF, 1)
	flow := esl.FlowFunc(func(ctx context.Context, s *esl.Session) error {
		if err := s.Answer(ctx); err != nil {
			return err
		}
		time.Sleep(300 * time.Millisecond) // the caller types ahead
		got <- s.TakeDigits()
		return nil
	})
	_, addr := startServer(t, esl.Config{}, map[string]esl.Flow{"main": flow})
	var dtmf []esltest.DTMF
	for i := 0; i < 300; i++ {
		dtmf = append(dtmf, esltest.DTMF{Digit: string("0123456789"[i%10]), At: time.Duration(i) * 100 * time.Microsecond})
	}
	run(t, esltest.Call{Addr: addr, Async: true, Full: true, DTMF: dtmf})
	// each digit costs its text, its duration ("2000" from the simulator) and 40 bytes
	if d, want := <-got, esl.DefaultConfig().DTMFQueueBytes/(1+len("2000")+40); len(d) != want {
		t.Fatalf("%d digits queued, want %d", len(d), want)
	}

	// by hand: a digit of 64 KB is not queued
	one := make(chan []esl.DTMF, 1)
	_, addr = startServer(t, esl.Config{}, map[string]esl.Flow{"main": esl.FlowFunc(func(ctx context.Context, s *esl.Session) error {
		time.Sleep(100 * time.Millisecond)
		one <- s.TakeDigits()
		return nil
	})})
	fakeFS(t, addr, func(c *esl.Command, w net.Conn) {
		switch c.Line {
		case "connect":
			io.WriteString(w, connectReply("digits", "main"))
		default:
			io.WriteString(w, okReply)
			if c.Line == "linger" {
				io.WriteString(w, plainEvent("Event-Name: DTMF", "DTMF-Digit: "+strings.Repeat("9", 64<<10)))
				io.WriteString(w, plainEvent("Event-Name: DTMF", "DTMF-Digit: 5", "DTMF-Duration: 2000"))
			}
		}
	})
	if d := <-one; len(d) != 1 || d[0].Digit != "5" {
		t.Fatalf("digits %v", d)
	}
}
