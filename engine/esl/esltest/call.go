// Package esltest is a FreeSWITCH simulator for the outbound event socket: it dials the engine as
// FreeSWITCH's `socket` application does and plays one scripted call, faithful to what mod_event_socket does
// on the wire (see docs/lua-api.md and the esl part's doc.go for the list). It backs the esl tests,
// `switchboard flow test` and `sbbench esl`.
//
// What it simulates: nothing is sent until the engine's first command; a first command other than connect
// takes effect silently (its reply is dropped); the connect reply is the url-encoded channel data with
// Content-Type near its end; async mode (sendmsg queued, +OK at once, channel parked and DTMF dequeued
// continuously) and static mode (sendmsg runs inline, +OK after the app, socket not read meanwhile, DTMF
// dequeued only while an app reads digits); event-lock (without it, a message queued while an app runs is
// executed nested inside it, which is how `break` interrupts); CHANNEL_EXECUTE/_COMPLETE with
// Application-UUID from event-uuid; unknown applications hang up with DESTINATION_OUT_OF_ORDER; commands
// that need `full` answer -ERR command not found without it; myevents/event filtering and formats; linger,
// the linger notice, HANGUP_COMPLETE (async only) and the goodbye notice; exit; api and bgapi with a few
// uuid_* commands. Media takes Call.Media per prompt (0 by default; Call.Prompts per file), so flows run at
// full speed. For mod_lua-style flows it also plays: uuid_fileman on the playing file (seek, pause, restart,
// stop), sendevent (a Unique-ID of the call queues the event to the channel, diverted to the socket after
// divert_events on), global_getvar/global_setvar (Call.Globals), bgapi originate with legs driven by
// sendmsg <leg>, uuid_kill, uuid_setvar and uuid_bridge (Call.Originate chooses outcomes), bridge outcomes
// (Call.BridgeOutcomes), digits and events during a given file (Call.PressDuring, Call.EventDuring), and
// applications it does not know when Call.AllowUnknownApps.
package esltest

import (
	"fmt"
	"strings"
	"sync"
	"time"

	"github.com/switchboard/switchboard/internal/uuid"
)

// DTMF is a digit the caller presses At after the socket connected.
type DTMF struct {
	Digit string
	At    time.Duration
}

// ParseDTMF parses "1@2s" (digit 1 two seconds in) or "123@500ms" (three digits 100 ms apart from 500 ms).
func ParseDTMF(spec string) ([]DTMF, error) {
	digits, at, ok := strings.Cut(spec, "@")
	if !ok || digits == "" {
		return nil, fmt.Errorf("dtmf %q: expected digits@duration, e.g. 1@2s", spec)
	}
	d, err := time.ParseDuration(at)
	if err != nil {
		return nil, fmt.Errorf("dtmf %q: %w", spec, err)
	}
	var out []DTMF
	for i, c := range digits {
		if !strings.ContainsRune("0123456789*#ABCDabcd", c) {
			return nil, fmt.Errorf("dtmf %q: %q is not a DTMF digit", spec, c)
		}
		out = append(out, DTMF{Digit: string(c), At: d + time.Duration(i)*100*time.Millisecond})
	}
	return out, nil
}

// Call describes one simulated call.
type Call struct {
	Addr  string // the engine's esl listener, host:port
	Path  string // the socket path (variable_socket_path), "" for none
	Async bool   // `async` in the socket application's data
	Full  bool   // `full` in the socket application's data

	UUID   string            // default: random
	Caller string            // caller id number, default 1000
	Dest   string            // destination number, default 5000
	Vars   map[string]string // extra channel variables

	DTMF        []DTMF        // digits the caller presses
	PressOnRead string        // digits the caller types as soon as each read / play_and_get_digits starts
	HangupAfter time.Duration // caller hangs up this long after connect; 0 = never
	Media       time.Duration // length of each prompt (playback, say, speak, phrase, record); 0 = instant
	BridgeFor   time.Duration // how long a bridged call lasts

	// Prompts sets the length of single files (playback, record by path) over Media.
	Prompts map[string]time.Duration
	// PressDuring: when a playback of this file starts, the caller presses these digits (100 ms apart).
	PressDuring map[string]string
	// EventDuring: when a playback of this file starts, this session event is queued to the channel
	// (At is counted from the start of the playback).
	EventDuring map[string]SessionEvent
	// BridgeOutcomes: bridge to this dial string fails with this cause (USER_BUSY, NO_ANSWER...);
	// "" or SUCCESS answers. Without an entry, error/<cause> fails and anything else answers.
	BridgeOutcomes map[string]string
	// Originate: bgapi originate of this dial string fails with this cause; "" answers. Same default.
	Originate map[string]string
	// Globals are FreeSWITCH's global variables (global_getvar, global_setvar).
	Globals map[string]string
	// Events are session events something else queues to the channel at a time (a sendevent carrying
	// its Unique-ID); they reach the engine only when it asked for divert_events.
	Events []SessionEvent
	// AllowUnknownApps completes applications the simulator does not know (logged as not simulated)
	// instead of hanging up with DESTINATION_OUT_OF_ORDER as FreeSWITCH does for a missing application.
	AllowUnknownApps bool
	// Attach, when set, is called once at the start with a function that adds a line to the transcript
	// (switchboard flow test puts the flow's log lines there, in order).
	Attach func(note func(text string))

	ConnectWait time.Duration // how long to wait for the first command (FreeSWITCH: 25 s)
	// Quiet keeps no transcript (load runs).
	Quiet bool

	// ReplyTime, when set, gets the simulator's time for each command after connect: from the command read
	// off the socket to its reply written (load runs: the peer's share of a command round trip).
	ReplyTime *Latency

	started     func()        // load mode: called once connected
	MaxDuration time.Duration // safety stop: hang up after this (default 2 minutes)
}

func (c *Call) defaults() {
	if c.UUID == "" {
		c.UUID = uuid.New()
	}
	if c.Caller == "" {
		c.Caller = "1000"
	}
	if c.Dest == "" {
		c.Dest = "5000"
	}
	if c.ConnectWait == 0 {
		c.ConnectWait = 25 * time.Second
	}
	if c.MaxDuration == 0 {
		c.MaxDuration = 2 * time.Minute
	}
}

// SessionEvent is an event queued to the call's channel At after connect.
type SessionEvent struct {
	At      time.Duration
	Name    string // Event-Name, e.g. CUSTOM or NOTIFY
	Headers map[string]string
	Body    string
}

// Entry is one line of a call's transcript, At after the connection.
type Entry struct {
	At   time.Duration
	Text string
}

// Result is what a call did.
type Result struct {
	UUID        string
	Entries     []Entry
	Answered    bool
	HangupCause string // "" when the call was still up when the socket closed
	Commands    int    // commands the engine sent
	Vars        map[string]string
}

// Transcript is the text of every entry, in order.
func (r *Result) Transcript() []string {
	out := make([]string, len(r.Entries))
	for i, e := range r.Entries {
		out[i] = e.Text
	}
	return out
}

// String formats the transcript with times, one entry a line.
func (r *Result) String() string {
	var b strings.Builder
	for _, e := range r.Entries {
		fmt.Fprintf(&b, "%8.3fs  %s\n", e.At.Seconds(), e.Text)
	}
	return b.String()
}

type transcript struct {
	quiet   bool
	mu      sync.Mutex
	start   time.Time
	entries []Entry
}

func (t *transcript) add(format string, args ...any) {
	if t.quiet {
		return
	}
	t.mu.Lock()
	t.entries = append(t.entries, Entry{At: time.Since(t.start), Text: fmt.Sprintf(format, args...)})
	t.mu.Unlock()
}
