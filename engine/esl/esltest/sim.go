package esltest

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"sort"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/switchboard/switchboard/engine/esl"
	"github.com/switchboard/switchboard/internal/uuid"
)

// Run dials call.Addr and plays the call until the socket closes or ctx is done.
func Run(ctx context.Context, call Call) (*Result, error) {
	call.defaults()
	var d net.Dialer
	conn, err := d.DialContext(ctx, "tcp", call.Addr)
	if err != nil {
		return nil, fmt.Errorf("esltest: dial %s: %w", call.Addr, err)
	}
	if call.started != nil {
		call.started()
	}
	s := newSim(call, conn)
	if call.Attach != nil {
		call.Attach(func(text string) { s.tr.add("%s", text) })
	}
	return s.run(ctx)
}

// myevents is the event set `myevents` subscribes (mod_event_socket).
var myevents = map[string]bool{
	"CHANNEL_ANSWER": true, "CHANNEL_APPLICATION": true, "CHANNEL_BRIDGE": true, "CHANNEL_CREATE": true,
	"CHANNEL_DATA": true, "CHANNEL_DESTROY": true, "CHANNEL_EXECUTE": true, "CHANNEL_EXECUTE_COMPLETE": true,
	"CHANNEL_HANGUP": true, "CHANNEL_HANGUP_COMPLETE": true, "CHANNEL_ORIGINATE": true, "CHANNEL_UUID": true,
	"CHANNEL_OUTGOING": true, "CHANNEL_PARK": true, "CHANNEL_PROGRESS": true, "CHANNEL_PROGRESS_MEDIA": true,
	"CHANNEL_STATE": true, "CHANNEL_UNBRIDGE": true, "CHANNEL_UNPARK": true, "DETECTED_SPEECH": true,
	"DTMF": true, "NOTALK": true, "TALK": true,
}

// noVars lists events that carry no variable_* headers.
var noVars = map[string]bool{"DTMF": true, "CHANNEL_STATE": true, "BACKGROUND_JOB": true}

type sim struct {
	call Call
	conn net.Conn
	tr   transcript

	mu          sync.Mutex
	vars        map[string]string
	up          bool
	answered    bool
	cause       string
	dtmf        []string
	msgs        []*esl.Command
	lockDepth   int
	brk         bool
	running     []string // apps running, outermost first
	myevents    bool
	subs        map[string]bool
	all         bool
	format      string
	linger      bool
	lingerSecs  int
	connected   bool
	transferred bool
	ctx         context.Context
	parked      bool
	out         []byte // events waiting for the listener to write
	ebuf        []byte // one event's serialization, reused
	hdrs        esl.Headers
	varKeys     []string // sorted variable names (sortVarsLocked)
	varNames    []string // "variable_" + varKeys[i]
	seq         int
	commands    int

	divert  bool            // divert_events on: session events go to the socket
	filters map[string]bool // extra Unique-IDs let through (filter Unique-ID <uuid>)
	file    *simFile        // the file playback is playing (uuid_fileman)
	legs    []*simLeg       // channels originated with bgapi originate
	globals map[string]string

	wake  chan struct{} // the channel's media loop: something changed
	lwake chan struct{} // the listener: events queued or channel down
	done  chan struct{} // closed when the listener ends
}

func newSim(call Call, conn net.Conn) *sim {
	s := &sim{call: call, conn: conn, up: true, subs: map[string]bool{}, format: "plain", filters: map[string]bool{}, globals: map[string]string{},
		wake: make(chan struct{}, 1), lwake: make(chan struct{}, 1), done: make(chan struct{})}
	s.tr.start = time.Now()
	s.tr.quiet = call.Quiet
	mode := "static"
	if call.Async {
		mode = "async"
	}
	data := call.Addr
	if call.Path != "" {
		data += "/" + call.Path
	}
	if call.Async {
		data += " async"
	}
	if call.Full {
		data += " full"
	}
	s.vars = map[string]string{
		"uuid": call.UUID, "direction": "inbound", "sip_from_user": call.Caller, "destination_number": call.Dest,
		"channel_name": "sofia/internal/" + call.Caller + "@127.0.0.1", "current_application": "socket",
		"current_application_data": data, "socket_host": "127.0.0.1", "caller_id_name": "Caller " + call.Caller,
	}
	if call.Path != "" {
		s.vars["socket_path"] = call.Path
	}
	for k, v := range call.Vars {
		s.vars[k] = v
	}
	for k, v := range call.Globals {
		s.globals[k] = v
	}
	s.tr.add("call %s from %s to %s (%s%s)", call.UUID, call.Caller, call.Dest, mode, map[bool]string{true: " full"}[call.Full])
	return s
}

func signal(c chan struct{}) {
	select {
	case c <- struct{}{}:
	default:
	}
}

func (s *sim) run(ctx context.Context) (*Result, error) {
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	s.ctx = ctx
	var wg sync.WaitGroup
	// The caller: digits and hangup at their times.
	var timers []*time.Timer
	for _, d := range s.call.DTMF {
		timers = append(timers, time.AfterFunc(d.At, func() { s.press(d.Digit) }))
	}
	if s.call.HangupAfter > 0 {
		timers = append(timers, time.AfterFunc(s.call.HangupAfter, func() { s.tr.add("caller hangs up"); s.hangup("NORMAL_CLEARING") }))
	}
	for _, ev := range s.call.Events {
		timers = append(timers, time.AfterFunc(ev.At, func() { s.queueEvent(ev) }))
	}
	timers = append(timers, time.AfterFunc(s.call.MaxDuration, func() { s.tr.add("simulator: max duration"); s.hangup("ALLOTTED_TIMEOUT") }))
	defer func() {
		for _, t := range timers {
			t.Stop()
		}
	}()
	stop := context.AfterFunc(ctx, func() { s.conn.Close() })
	defer stop()
	err := s.listen(ctx, &wg)
	s.conn.Close()
	cancel()
	wg.Wait()
	s.mu.Lock()
	defer s.mu.Unlock()
	res := &Result{UUID: s.call.UUID, Answered: s.answered, HangupCause: s.cause, Commands: s.commands, Vars: map[string]string{}}
	for k, v := range s.vars {
		res.Vars[k] = v
	}
	s.tr.mu.Lock()
	res.Entries = append(res.Entries, s.tr.entries...)
	s.tr.mu.Unlock()
	return res, err
}

func (s *sim) press(digit string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if !s.up {
		return
	}
	s.tr.add("caller presses %s", digit)
	s.dtmf = append(s.dtmf, digit)
	signal(s.wake)
	if s.call.Async && s.connected && s.parked && len(s.running) == 0 {
		s.drainDTMFLocked()
	}
}

// drainDTMFLocked is the parked channel dequeuing digits: each becomes a DTMF event.
func (s *sim) drainDTMFLocked() {
	for _, d := range s.dtmf {
		s.fireLocked("DTMF", esl.Headers{{Name: "DTMF-Digit", Value: d}, {Name: "DTMF-Duration", Value: "2000"}, {Name: "DTMF-Source", Value: "RTP"}})
	}
	s.dtmf = s.dtmf[:0]
}

// hangup takes the channel down with cause: CHANNEL_HANGUP fires, running apps stop.
func (s *sim) hangup(cause string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.hangupLocked(cause)
}

func (s *sim) hangupLocked(cause string) {
	if !s.up {
		return
	}
	s.up = false
	s.cause = cause
	s.tr.add("hangup %s", cause)
	s.fireLocked("CHANNEL_HANGUP", esl.Headers{{Name: "Hangup-Cause", Value: cause}})
	s.vars["hangup_cause"] = cause
	signal(s.wake)
	signal(s.lwake)
}

func (s *sim) answerState() string {
	switch {
	case !s.up:
		return "hangup"
	case s.answered:
		return "answered"
	}
	return "ringing"
}

// eventLocked builds an event with the prep headers, the channel data and, for most events, every variable.
// The headers live in a buffer the simulator reuses: they are valid until the next event.
func (s *sim) eventLocked(name string, extra esl.Headers) *esl.Event {
	s.seq++
	ts := time.Now()
	h := append(s.hdrs[:0],
		esl.Header{Name: "Event-Name", Value: name},
		esl.Header{Name: "Core-UUID", Value: "c0de0000-0000-4000-8000-000000000001"},
		esl.Header{Name: "FreeSWITCH-Hostname", Value: "esltest"},
		esl.Header{Name: "FreeSWITCH-IPv4", Value: "127.0.0.1"},
		esl.Header{Name: "Event-Date-Local", Value: ts.Format("2006-01-02 15:04:05")},
		esl.Header{Name: "Event-Date-Timestamp", Value: strconv.FormatInt(ts.UnixMicro(), 10)},
		esl.Header{Name: "Event-Calling-File", Value: "esltest.go"},
		esl.Header{Name: "Event-Sequence", Value: strconv.Itoa(s.seq)},
	)
	if name != "BACKGROUND_JOB" {
		state, num := "CS_EXECUTE", "4"
		if !s.up {
			num = "10"
		}
		h = append(h,
			esl.Header{Name: "Channel-State", Value: state},
			esl.Header{Name: "Channel-State-Number", Value: num},
			esl.Header{Name: "Channel-Name", Value: s.vars["channel_name"]},
			esl.Header{Name: "Unique-ID", Value: s.call.UUID},
			esl.Header{Name: "Call-Direction", Value: "inbound"},
			esl.Header{Name: "Answer-State", Value: s.answerState()},
		)
		if s.cause != "" {
			h = append(h, esl.Header{Name: "Hangup-Cause", Value: s.cause})
		}
		h = append(h,
			esl.Header{Name: "Caller-Caller-ID-Name", Value: s.vars["caller_id_name"]},
			esl.Header{Name: "Caller-Caller-ID-Number", Value: s.call.Caller},
			esl.Header{Name: "Caller-Destination-Number", Value: s.call.Dest},
			esl.Header{Name: "Caller-Unique-ID", Value: s.call.UUID},
			esl.Header{Name: "Caller-Context", Value: "default"},
		)
	}
	h = append(h, extra...)
	if !noVars[name] {
		s.sortVarsLocked()
		for i, k := range s.varKeys {
			h = append(h, esl.Header{Name: s.varNames[i], Value: s.vars[k]})
		}
	}
	s.hdrs = h
	return &esl.Event{Headers: h}
}

// sortVarsLocked keeps varKeys (the variable names in order) and varNames ("variable_<name>") in step with
// vars, sorting again only when the set of names changed.
func (s *sim) sortVarsLocked() {
	same := len(s.varKeys) == len(s.vars)
	for i := 0; same && i < len(s.varKeys); i++ {
		_, same = s.vars[s.varKeys[i]]
	}
	if same {
		return
	}
	s.varKeys = s.varKeys[:0]
	for k := range s.vars {
		s.varKeys = append(s.varKeys, k)
	}
	sort.Strings(s.varKeys)
	s.varNames = s.varNames[:0]
	for _, k := range s.varKeys {
		s.varNames = append(s.varNames, "variable_"+k)
	}
}

// fireLocked queues event name for the engine when its subscriptions let it through.
func (s *sim) fireLocked(name string, extra esl.Headers) {
	s.fireEventLocked(name, extra, "")
}

func (s *sim) fireEventLocked(name string, extra esl.Headers, body string) {
	if !(s.all || s.subs[name] || (s.myevents && myevents[name])) {
		return
	}
	e := s.eventLocked(name, extra)
	e.Body = body
	ct := esl.TypeEventPlain
	if s.format == "json" {
		ct = esl.TypeEventJSON
		s.ebuf = esl.AppendJSONEvent(s.ebuf[:0], e)
	} else {
		s.ebuf = esl.AppendPlainEvent(s.ebuf[:0], e)
	}
	s.out = append(s.out, "Content-Length: "...)
	s.out = strconv.AppendInt(s.out, int64(len(s.ebuf)), 10)
	s.out = append(s.out, "\nContent-Type: "...)
	s.out = append(s.out, ct...)
	s.out = append(s.out, "\n\n"...)
	s.out = append(s.out, s.ebuf...)
	signal(s.lwake)
}

// listen is mod_event_socket's listener: read a command, answer it, flush events, check hangup and linger.
func (s *sim) listen(ctx context.Context, wg *sync.WaitGroup) error {
	defer close(s.done)
	type command struct {
		c  *esl.Command
		at time.Time // when it was read
	}
	cmds := make(chan command)
	readErr := make(chan error, 1)
	wg.Add(1)
	go func() {
		defer wg.Done()
		r := esl.NewReader(s.conn, esl.Limits{})
		for {
			c, err := r.ReadCommand()
			if err != nil {
				readErr <- err
				return
			}
			select {
			case cmds <- command{c, time.Now()}:
			case <-s.done:
				return
			}
		}
	}()
	first := time.NewTimer(s.call.ConnectWait)
	select {
	case cmd := <-cmds:
		c := cmd.c
		first.Stop()
		s.commands++
		if strings.EqualFold(strings.TrimSpace(c.Line), "connect") {
			s.handle(ctx, wg, c)
		} else {
			// The reply to the first packet is discarded; the command still takes effect.
			s.tr.add("> %s (first command, reply dropped)", c.Line)
			s.command(ctx, wg, c)
		}
	case err := <-readErr:
		first.Stop()
		s.tr.add("socket error before connect: %v", err)
		return nil
	case <-first.C:
		s.tr.add("no command within %s: Socket Error!", s.call.ConnectWait)
		s.goodbye()
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
	var lingerT <-chan time.Time
	downHandled := false
	var free []byte // the buffer written last round, reused for the next events
	for {
		s.mu.Lock()
		out := s.out
		s.out = free[:0]
		up, linger, secs, xfer := s.up, s.linger, s.lingerSecs, s.transferred
		chanName := s.vars["channel_name"]
		s.mu.Unlock()
		if len(out) > 0 {
			if _, err := s.conn.Write(out); err != nil {
				s.hangup("NORMAL_CLEARING")
				return nil
			}
		}
		free = out
		if xfer && up {
			s.goodbye()
			return nil
		}
		if !up && !downHandled {
			downHandled = true
			if !linger {
				s.goodbye()
				return nil
			}
			lt := "-1"
			if secs > 0 {
				lt = strconv.Itoa(secs)
				lingerT = time.After(time.Duration(secs) * time.Second)
			}
			s.tr.add("< linger notice")
			s.write([]byte("Content-Type: text/disconnect-notice\nControlled-Session-UUID: " + s.call.UUID +
				"\nContent-Disposition: linger\nChannel-Name: " + chanName + "\nLinger-Time: " + lt + "\nContent-Length: 0\n\n"))
			if s.call.Async {
				// CS_REPORTING comes after the socket application returned: only a lingering async socket hears it.
				s.mu.Lock()
				s.fireLocked("CHANNEL_HANGUP_COMPLETE", esl.Headers{{Name: "Hangup-Cause", Value: s.cause}})
				s.mu.Unlock()
			}
			continue
		}
		select {
		case cmd := <-cmds:
			s.commands++
			end := s.handle(ctx, wg, cmd.c)
			if s.call.ReplyTime != nil {
				s.call.ReplyTime.Add(time.Since(cmd.at))
			}
			if end {
				return nil
			}
		case err := <-readErr:
			if !errors.Is(err, io.EOF) && !errors.Is(err, net.ErrClosed) {
				s.tr.add("bad packet from engine: %v", err)
			} else {
				s.tr.add("engine closed the socket")
			}
			s.endOfSocket()
			return nil
		case <-s.lwake:
		case <-lingerT:
			s.goodbye()
			return nil
		case <-ctx.Done():
			return ctx.Err()
		}
	}
}

// endOfSocket: the socket application returned with the channel up; the dialplan has nothing after it, so
// FreeSWITCH hangs up.
func (s *sim) endOfSocket() {
	s.mu.Lock()
	up := s.up
	s.mu.Unlock()
	if up {
		s.tr.add("socket application returned; dialplan ends")
		s.hangup("NORMAL_CLEARING")
	}
}

func (s *sim) write(b []byte) {
	_, _ = s.conn.Write(b)
}

func (s *sim) goodbye() {
	s.tr.add("< disconnect notice")
	const body = "Disconnected, goodbye.\nSee you at ClueCon! http://www.cluecon.com/\n"
	s.write([]byte("Content-Type: text/disconnect-notice\nControlled-Session-UUID: " + s.call.UUID +
		"\nContent-Disposition: disconnect\nContent-Length: " + strconv.Itoa(len(body)) + "\n\n" + body))
}

func (s *sim) reply(text string, extra ...esl.Header) {
	b := []byte("Content-Type: command/reply\nReply-Text: " + text + "\n")
	for _, h := range extra {
		b = append(b, h.Name+": "+h.Value+"\n"...)
	}
	b = append(b, '\n')
	s.write(b)
}

// handle answers one command; true means the listener ends.
func (s *sim) handle(ctx context.Context, wg *sync.WaitGroup, c *esl.Command) bool {
	line := strings.TrimSpace(c.Line)
	word, _, _ := strings.Cut(line, " ")
	if strings.EqualFold(word, "connect") {
		s.mu.Lock()
		first := !s.connected
		s.connected = true
		reply := s.connectReplyLocked()
		s.mu.Unlock()
		s.tr.add("> connect")
		s.write(reply)
		if first && s.call.Async {
			wg.Add(1)
			go func() { defer wg.Done(); s.park(ctx) }()
		}
		return false
	}
	text, extra, end := s.command(ctx, wg, c)
	if text != "" {
		s.reply(text, extra...)
	}
	if end {
		s.goodbye()
	}
	return end
}

func (s *sim) connectReplyLocked() []byte {
	e := s.eventLocked("CHANNEL_DATA", nil)
	// The connect reply is the plain serialization of the channel data plus these, all url-encoded.
	mode, control := "static", "single-channel"
	if s.call.Async {
		mode = "async"
	}
	if s.call.Full {
		control = "full"
	}
	e.Headers = append(e.Headers, esl.Header{Name: "Content-Type", Value: "command/reply"},
		esl.Header{Name: "Reply-Text", Value: "+OK\n"}, esl.Header{Name: "Socket-Mode", Value: mode},
		esl.Header{Name: "Control", Value: control})
	return esl.AppendPlainEvent(nil, e)
}

var fullOnly = map[string]bool{"sendevent": true, "api": true, "bgapi": true, "log": true, "nolog": true,
	"linger": true, "nolinger": true, "event": true, "nixevent": true, "noevents": true}

// command runs a command other than connect and returns the reply text ("" for none) and whether the
// listener ends after it.
func (s *sim) command(ctx context.Context, wg *sync.WaitGroup, c *esl.Command) (string, esl.Headers, bool) {
	line := strings.TrimSpace(c.Line)
	fields := strings.Fields(line)
	if len(fields) == 0 {
		return "-ERR command not found", nil, false
	}
	word := strings.ToLower(fields[0])
	if strings.HasPrefix(word, "exit") || strings.HasPrefix(word, "...") {
		s.tr.add("> exit")
		s.reply("+OK bye")
		return "", nil, true
	}
	if word != "sendmsg" && word != "sendevent" {
		s.tr.add("> %s", line)
	}
	if fullOnly[word] && !s.call.Full {
		return "-ERR command not found", nil, false
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	switch word {
	case "myevents":
		if s.myevents {
			return "-ERR aready enabled.", nil, false
		}
		s.myevents = true
		if strings.Contains(line, "json") {
			s.format = "json"
		}
		return "+OK Events Enabled", nil, false
	case "event":
		n := 0
		for _, f := range fields[1:] {
			switch strings.ToLower(f) {
			case "plain":
				s.format = "plain"
			case "json":
				s.format = "json"
			case "xml":
				s.format = "xml"
			case "all":
				s.all = true
				n++
			default:
				if f == strings.ToUpper(f) {
					s.subs[f] = true
					n++
				}
			}
		}
		if n == 0 {
			return "-ERR no keywords supplied", nil, false
		}
		return "+OK event listener enabled " + s.format, nil, false
	case "noevents":
		s.myevents, s.all, s.subs = false, false, map[string]bool{}
		return "+OK no longer listening for events", nil, false
	case "nixevent":
		for _, f := range fields[1:] {
			delete(s.subs, f)
		}
		return "+OK events nixed", nil, false
	case "linger":
		s.linger = true
		if len(fields) > 1 {
			if n, err := strconv.Atoi(fields[1]); err == nil && n > 0 {
				s.lingerSecs = n
				return fmt.Sprintf("+OK will linger %d seconds", n), nil, false
			}
		}
		s.lingerSecs = 0
		return "+OK will linger", nil, false
	case "nolinger":
		s.linger = false
		return "+OK will not linger", nil, false
	case "resume":
		return "+OK", nil, false
	case "divert_events":
		if len(fields) < 2 {
			return "-ERR missing value.", nil, false
		}
		if fields[1] == "on" {
			s.divert = true
			return "+OK events diverted", nil, false
		}
		s.divert = false
		return "+OK events not diverted", nil, false
	case "filter":
		if len(fields) < 3 {
			return "-ERR invalid syntax", nil, false
		}
		if strings.EqualFold(fields[1], "Unique-ID") {
			s.filters[fields[2]] = true
		}
		return fmt.Sprintf("+OK filter added. [%s]=[%s]", fields[1], strings.Join(fields[2:], " ")), nil, false
	case "getvar":
		if len(fields) < 2 || s.vars[fields[1]] == "" {
			return "-ERR command not found", nil, false
		}
		return s.vars[fields[1]], nil, false
	case "log":
		return "+OK log level DEBUG [7]", nil, false
	case "nolog":
		return "-ERR not loging", nil, false
	case "api":
		body := s.apiLocked(strings.TrimSpace(strings.TrimPrefix(line, fields[0])))
		s.mu.Unlock()
		s.write([]byte("Content-Type: api/response\nContent-Length: " + strconv.Itoa(len(body)) + "\n\n" + body))
		s.mu.Lock()
		return "", nil, false
	case "bgapi":
		job := c.Headers.Get("Job-UUID")
		if job == "" {
			job = uuid.New()
		}
		cmd := strings.TrimSpace(strings.TrimPrefix(line, fields[0]))
		body := s.apiLocked(cmd)
		name, arg, _ := strings.Cut(cmd, " ")
		// The reply goes first; the job's event follows it.
		s.mu.Unlock()
		s.reply("+OK Job-UUID: "+job, esl.Header{Name: "Job-UUID", Value: job})
		s.mu.Lock()
		s.fireEventLocked("BACKGROUND_JOB", esl.Headers{{Name: "Job-UUID", Value: job}, {Name: "Job-Owner-UUID", Value: s.call.UUID},
			{Name: "Job-Command", Value: name}, {Name: "Job-Command-Arg", Value: arg}}, body)
		return "", nil, false
	case "sendmsg":
		return s.sendmsgLocked(c), nil, false
	case "sendevent":
		return s.sendeventLocked(fields, c), nil, false
	}
	return "-ERR command not found", nil, false
}

func (s *sim) apiLocked(cmd string) string {
	f := strings.Fields(cmd)
	if len(f) == 0 {
		return "-ERR no reply\n"
	}
	mine := len(f) > 1 && f[1] == s.call.UUID
	if len(f) > 1 && !mine {
		if leg := s.legLocked(f[1]); leg != nil {
			return s.legAPILocked(leg, f)
		}
	}
	switch f[0] {
	case "uuid_getvar":
		if !mine || !s.up {
			return "-ERR No such channel!\n"
		}
		if len(f) < 3 || s.vars[f[2]] == "" {
			return "_undef_"
		}
		return s.vars[f[2]]
	case "uuid_setvar":
		if !mine || !s.up {
			return "-ERR No such channel!\n"
		}
		if len(f) < 3 {
			return "-USAGE: <uuid> <var> [value]\n"
		}
		if len(f) == 3 {
			delete(s.vars, f[2])
		} else {
			s.vars[f[2]] = strings.Join(f[3:], " ")
		}
		return "+OK\n"
	case "uuid_exists":
		return strconv.FormatBool(mine && s.up)
	case "uuid_break":
		if !mine || !s.up {
			return "-ERR No such channel!\n"
		}
		s.brk = true
		if len(f) > 2 && f[2] == "all" {
			s.msgs = nil
		}
		signal(s.wake)
		return "+OK\n"
	case "uuid_kill":
		if !mine || !s.up {
			return "-ERR No such channel!\n"
		}
		cause := "NORMAL_CLEARING"
		if len(f) > 2 {
			cause = strings.ToUpper(f[2])
		}
		s.hangupLocked(cause)
		return "+OK\n"
	case "uuid_fileman":
		if !mine || !s.up {
			return "-ERR No such channel!\n"
		}
		if s.file == nil || len(f) < 3 {
			return "-ERR No file handle!\n"
		}
		s.filemanLocked(f[2])
		return "+OK\n"
	case "global_getvar":
		if len(f) < 2 || s.globals[f[1]] == "" {
			return "-ERR no reply\n"
		}
		return s.globals[f[1]]
	case "global_setvar":
		if len(f) < 2 {
			return "-USAGE: <var>=<value>\n"
		}
		k, v, _ := strings.Cut(strings.Join(f[1:], " "), "=")
		if v == "" {
			delete(s.globals, k)
		} else {
			s.globals[k] = v
		}
		return "+OK\n"
	case "originate":
		return s.originateLocked(strings.Join(f[1:], " "))
	case "uuid_bridge":
		if len(f) < 3 {
			return "-USAGE: <uuid> <other_uuid>\n"
		}
		return s.uuidBridgeLocked(f[1], f[2])
	case "uuid_send_text":
		s.tr.add("text to the caller: %s", strings.Join(f[2:], " "))
		return "+OK\n"
	case "status":
		return "UP 0 years, 0 days, 0 hours, 0 minutes, 1 second\nFreeSWITCH (esltest) is ready\n"
	case "echo":
		return strings.Join(f[1:], " ")
	}
	return "-ERR " + f[0] + " Command not found!\n"
}

func (s *sim) sendmsgLocked(c *esl.Command) string {
	if f := strings.Fields(c.Line); len(f) > 1 && f[1] != s.call.UUID {
		if leg := s.legLocked(f[1]); leg != nil {
			return s.legExecLocked(leg, c)
		}
		return "-ERR invalid session id [" + f[1] + "]"
	}
	switch strings.ToLower(c.Headers.Get("call-command")) {
	case "execute":
		if s.call.Async || strings.EqualFold(c.Headers.Get("async"), "true") {
			s.msgs = append(s.msgs, c)
			signal(s.wake)
			return "+OK"
		}
		// Static: the listener is the channel thread; the reply waits for the application.
		s.execLocked(c)
		return "+OK"
	case "hangup":
		cause := strings.ToUpper(c.Headers.Get("hangup-cause"))
		if cause == "" || !knownCause[cause] {
			cause = "NORMAL_CLEARING"
		}
		s.tr.add("engine hangs up %s", cause)
		s.hangupLocked(cause)
		return "+OK"
	}
	s.tr.add("sendmsg with invalid call-command %q", c.Headers.Get("call-command"))
	return "+OK"
}

var knownCause = map[string]bool{"NORMAL_CLEARING": true, "USER_BUSY": true, "NO_ANSWER": true, "CALL_REJECTED": true,
	"NO_ROUTE_DESTINATION": true, "UNALLOCATED_NUMBER": true, "NORMAL_TEMPORARY_FAILURE": true, "ORIGINATOR_CANCEL": true,
	"DESTINATION_OUT_OF_ORDER": true, "SERVICE_UNAVAILABLE": true, "RECOVERY_ON_TIMER_EXPIRE": true, "ALLOTTED_TIMEOUT": true,
	"MANAGER_REQUEST": true, "SYSTEM_SHUTDOWN": true}

// park is the async channel thread: it runs queued messages in order and dequeues digits while idle.
func (s *sim) park(ctx context.Context) {
	s.mu.Lock()
	s.parked = true
	for {
		if len(s.msgs) > 0 {
			m := s.msgs[0]
			s.msgs = s.msgs[1:]
			s.execLocked(m)
			continue
		}
		if !s.up || s.transferred {
			break
		}
		if len(s.dtmf) > 0 {
			s.drainDTMFLocked()
		}
		s.mu.Unlock()
		select {
		case <-s.wake:
		case <-ctx.Done():
			s.mu.Lock()
			s.parked = false
			s.mu.Unlock()
			return
		}
		s.mu.Lock()
	}
	s.parked = false
	s.mu.Unlock()
}
