package esltest

import (
	"regexp"
	"strconv"
	"strings"
	"time"

	"github.com/switchboard/switchboard/engine/esl"
	"github.com/switchboard/switchboard/internal/uuid"
)

// app runs with s.mu held (it may release it while media plays) and returns its Application-Response and a
// note for the transcript.
type app func(s *sim, arg string) (resp, note string)

var apps map[string]app

func init() {
	prompt := func(s *sim, arg string) (string, string) {
		if s.mediaLocked(s.call.Media, nil) == "hangup" {
			return "PLAYBACK ERROR", ""
		}
		return "_none_", ""
	}
	record := func(s *sim, arg string) (string, string) {
		path, _, _ := strings.Cut(arg, " ")
		if s.mediaLocked(s.promptLen(path), nil) == "hangup" {
			return "_none_", "caller hung up"
		}
		return "_none_", ""
	}
	apps = map[string]app{
		"answer":              appAnswer,
		"pre_answer":          appPreAnswer,
		"playback":            appPlayback,
		"sleep":               appSleep,
		"read":                appRead,
		"play_and_get_digits": appPlayAndGetDigits,
		"say":                 prompt,
		"phrase":              prompt,
		"speak":               prompt,
		"record":              record,
		"set":                 appSet,
		"export":              appSet,
		"unset":               func(s *sim, arg string) (string, string) { delete(s.vars, arg); return "_none_", "" },
		"hangup":              appHangup,
		"transfer":            appTransfer,
		"bridge":              appBridge,
		"break":               func(s *sim, arg string) (string, string) { s.brk = true; return "_none_", "" },
		"flush_dtmf":          func(s *sim, arg string) (string, string) { s.dtmf = nil; return "_none_", "" },
		"park":                appPark,
		"echo":                appPark,
		"conference":          appPark,
		"log":                 func(s *sim, arg string) (string, string) { return "_none_", "" },
		"info":                func(s *sim, arg string) (string, string) { return "_none_", "" },
		"ring_ready":          func(s *sim, arg string) (string, string) { return "_none_", "" },
	}
}

// execLocked runs one execute message as switch_core_session_execute_application does.
func (s *sim) execLocked(c *esl.Command) {
	name := c.Headers.Get("execute-app-name")
	arg := c.Headers.Get("execute-app-arg")
	if arg == "" && len(c.Body) > 0 {
		arg = string(c.Body)
	}
	if !s.up || s.transferred {
		return // after hangup an application is skipped silently: no events at all
	}
	impl, ok := apps[name]
	if !ok && s.call.AllowUnknownApps {
		impl = func(s *sim, arg string) (string, string) { return "_none_", "(not simulated)" }
	} else if !ok {
		s.tr.add("execute %s: Invalid Application", name)
		s.hangupLocked("DESTINATION_OUT_OF_ORDER")
		return
	}
	appUUID := c.Headers.Get("event-uuid")
	if appUUID == "" {
		appUUID = uuid.New()
	}
	lock := strings.EqualFold(c.Headers.Get("event-lock"), "true")
	if !s.tr.quiet {
		text := "execute " + name
		if arg != "" {
			text += " " + arg
		}
		if lock {
			text += " [event-lock]"
		}
		if n := len(s.running); n > 0 {
			text += " (nested in " + s.running[n-1] + ")"
		}
		s.tr.add("%s", text)
	}
	s.brk = false // CF_BREAK is cleared when an application starts
	s.running = append(s.running, name)
	if lock {
		s.lockDepth++
	}
	s.vars["app_uuid"] = appUUID
	h := esl.Headers{{Name: "Application", Value: name}}
	if arg != "" {
		h = append(h, esl.Header{Name: "Application-Data", Value: arg})
	}
	h = append(h, esl.Header{Name: "Application-UUID", Value: appUUID})
	s.fireLocked("CHANNEL_EXECUTE", h)
	if s.call.PressOnRead != "" && (name == "read" || name == "play_and_get_digits") {
		for _, d := range s.call.PressOnRead {
			s.tr.add("caller presses %c", d)
			s.dtmf = append(s.dtmf, string(d))
		}
	}
	resp, note := impl(s, arg)
	s.vars["current_application_response"] = resp
	s.fireLocked("CHANNEL_EXECUTE_COMPLETE", append(h, esl.Header{Name: "Application-Response", Value: resp}))
	s.running = s.running[:len(s.running)-1]
	if lock {
		s.lockDepth--
	}
	if !s.tr.quiet {
		if note != "" {
			resp += " " + note
		}
		s.tr.add("complete %s: %s", name, resp)
	}
}

// mediaLocked is a media loop: for d (forever when d < 0) it plays, running nested messages when no
// event-lock holds, offering pending digits to onDigit (true stops the loop), and stopping on hangup or
// break. It returns "done", "hangup", "break" or "digit".
func (s *sim) mediaLocked(d time.Duration, onDigit func() bool) string {
	var tc <-chan time.Time
	if d > 0 {
		t := time.NewTimer(d)
		defer t.Stop()
		tc = t.C
	}
	for {
		switch {
		case !s.up:
			return "hangup"
		case s.transferred:
			return "hangup"
		case s.brk:
			s.brk = false
			return "break"
		case s.file != nil && s.file.changed:
			s.file.changed = false
			return "file"
		case onDigit != nil && len(s.dtmf) > 0:
			if onDigit() {
				return "digit"
			}
			continue
		case len(s.msgs) > 0 && s.lockDepth == 0:
			m := s.msgs[0]
			s.msgs = s.msgs[1:]
			s.execLocked(m)
			continue
		case d == 0:
			return "done"
		}
		s.mu.Unlock()
		select {
		case <-s.wake:
			s.mu.Lock()
		case <-tc:
			s.mu.Lock()
			return "done"
		case <-s.ctx.Done():
			s.mu.Lock()
			return "hangup"
		}
	}
}

// takeDigitLocked dequeues the first pending digit; dequeuing is what fires the DTMF event.
func (s *sim) takeDigitLocked() string {
	d := s.dtmf[0]
	s.dtmf = s.dtmf[1:]
	s.fireLocked("DTMF", esl.Headers{{Name: "DTMF-Digit", Value: d}, {Name: "DTMF-Duration", Value: "2000"}, {Name: "DTMF-Source", Value: "RTP"}})
	return d
}

func appAnswer(s *sim, _ string) (string, string) {
	if !s.answered {
		s.answered = true
		s.vars["answered"] = "true"
		s.fireLocked("CHANNEL_ANSWER", nil)
	}
	return "_none_", ""
}

func appPreAnswer(s *sim, _ string) (string, string) {
	s.fireLocked("CHANNEL_PROGRESS_MEDIA", nil)
	return "_none_", ""
}

func appPlayback(s *sim, file string) (string, string) {
	terms := s.vars["playback_terminators"]
	if terms == "" {
		terms = "*"
	}
	if digits := s.call.PressDuring[file]; digits != "" {
		for i, d := range digits {
			time.AfterFunc(time.Duration(i)*100*time.Millisecond+time.Millisecond, func() { s.press(string(d)) })
		}
	}
	if ev, ok := s.call.EventDuring[file]; ok {
		time.AfterFunc(ev.At+time.Millisecond, func() { s.queueEvent(ev) })
	}
	used := ""
	name, _, _ := strings.Cut(file, "@@")
	f := &simFile{name: name, length: s.promptLen(name), segStart: time.Now()}
	outer := s.file
	s.file = f
	defer func() { s.file = outer }()
	var r string
	for {
		left := f.length - f.pos
		if f.paused {
			left = -1
		}
		r = s.mediaLocked(left, func() bool {
			d := s.takeDigitLocked()
			if terms == "any" || (terms != "none" && strings.Contains(terms, d)) {
				used = d
				return true
			}
			return false // other digits are eaten
		})
		f.fold(time.Now())
		if r != "file" {
			break
		}
		if f.stop {
			r = "done"
			break
		}
	}
	if used != "" {
		s.vars["playback_terminator_used"] = used
	}
	if r == "hangup" {
		return "PLAYBACK ERROR", ""
	}
	if strings.HasPrefix(file, "missing/") {
		return "FILE NOT FOUND", ""
	}
	return "FILE PLAYED", ""
}

func appSleep(s *sim, arg string) (string, string) {
	ms, _ := strconv.Atoi(strings.TrimSpace(arg))
	eat := s.vars["sleep_eat_digits"] == "true"
	s.mediaLocked(time.Duration(ms)*time.Millisecond, func() bool {
		if eat {
			s.takeDigitLocked()
			return false
		}
		return true // a pending digit ends the sleep and stays queued
	})
	return "_none_", ""
}

func timeoutArg(v string, def time.Duration) time.Duration {
	ms, err := strconv.Atoi(v)
	if err != nil {
		return def
	}
	if ms <= 1000 {
		ms = 1000 // FreeSWITCH raises read timeouts to a second
	}
	return time.Duration(ms) * time.Millisecond
}

// collectLocked plays file (a digit stops it and is kept) then collects digits as switch_ivr_read does.
func (s *sim) collectLocked(min, max int, file string, timeout, digitTimeout time.Duration, terms string) (digits, result, term string) {
	if file != "" {
		if s.mediaLocked(s.call.Media, func() bool { return true }) == "hangup" {
			return "", "failure", ""
		}
	}
	for len(digits) < max {
		t := timeout
		if digits != "" {
			t = digitTimeout
		}
		got := ""
		r := s.mediaLocked(t, func() bool { got = s.takeDigitLocked(); return true })
		if r != "digit" {
			break
		}
		if strings.Contains(terms, got) {
			term = got
			break
		}
		digits += got
	}
	switch {
	case !s.up:
		return digits, "failure", term
	case len(digits) >= min && digits != "":
		return digits, "success", term
	case digits == "":
		return "", "timeout", term
	}
	return digits, "failure", term
}

// appRead: min max file var timeout terminators [digit_timeout]
func appRead(s *sim, arg string) (string, string) {
	f := strings.Fields(arg)
	for len(f) < 6 {
		f = append(f, "")
	}
	min, _ := strconv.Atoi(f[0])
	max, _ := strconv.Atoi(f[1])
	if max <= 0 {
		max = 128
	}
	timeout := timeoutArg(f[4], 5*time.Second)
	dt := timeout
	if len(f) > 6 {
		dt = timeoutArg(f[6], timeout)
	}
	terms := f[5]
	if terms == "" {
		terms = "#"
	}
	digits, result, term := s.collectLocked(min, max, f[2], timeout, dt, terms)
	if f[3] != "" {
		s.vars[f[3]] = digits
	}
	s.vars["read_result"] = result
	s.vars["read_terminator_used"] = term
	return "_none_", f[3] + "=" + digits + " (" + result + ")"
}

// appPlayAndGetDigits: min max tries timeout terminators file invalid_file var_name regexp [digit_timeout]
func appPlayAndGetDigits(s *sim, arg string) (string, string) {
	f := strings.Fields(arg)
	for len(f) < 9 {
		f = append(f, "")
	}
	min, _ := strconv.Atoi(f[0])
	max, _ := strconv.Atoi(f[1])
	tries, _ := strconv.Atoi(f[2])
	if tries < 1 {
		tries = 1
	}
	timeout := timeoutArg(f[3], 5*time.Second)
	dt := timeout
	if len(f) > 9 {
		dt = timeoutArg(f[9], timeout)
	}
	terms, file, invalid, varName := f[4], f[5], f[6], f[7]
	re, err := regexp.Compile(f[8])
	if err != nil || f[8] == "" {
		re = regexp.MustCompile(`.*`)
	}
	for try := 0; try < tries && s.up; try++ {
		digits, result, _ := s.collectLocked(min, max, file, timeout, dt, terms)
		if result == "success" && re.MatchString(digits) {
			if varName != "" {
				s.vars[varName] = digits
			}
			s.vars["read_result"] = "success"
			return "_none_", varName + "=" + digits + " (success)"
		}
		if digits != "" && varName != "" {
			s.vars[varName+"_invalid"] = digits
		}
		if invalid != "" && invalid != "silence_stream://250" && s.up {
			if s.mediaLocked(s.call.Media, nil) == "hangup" {
				break
			}
		}
	}
	if varName != "" {
		delete(s.vars, varName)
	}
	s.vars["read_result"] = "failure"
	return "_none_", varName + "= (failure)"
}

func appSet(s *sim, arg string) (string, string) {
	k, v, _ := strings.Cut(arg, "=")
	if v == "" {
		delete(s.vars, k)
	} else {
		s.vars[k] = v
	}
	return "_none_", ""
}

func appHangup(s *sim, arg string) (string, string) {
	cause := strings.ToUpper(strings.TrimSpace(arg))
	if !knownCause[cause] {
		cause = "NORMAL_CLEARING"
	}
	s.hangupLocked(cause)
	return "_none_", ""
}

func appTransfer(s *sim, arg string) (string, string) {
	s.transferred = true
	s.vars["transfer_destination"] = arg
	s.tr.add("transferred to %s; the socket session ends", arg)
	signal(s.lwake)
	return "_none_", ""
}

var failCause = regexp.MustCompile(`^(?:\{[^}]*\})?error/([a-z_]+)$`)

func appBridge(s *sim, dest string) (string, string) {
	cause, chosen := s.call.BridgeOutcomes[dest]
	if !chosen {
		if m := failCause.FindStringSubmatch(dest); m != nil {
			cause = strings.ToUpper(m[1])
		}
	}
	if cause != "" && cause != "SUCCESS" {
		s.vars["originate_disposition"] = cause
		s.vars["DIALSTATUS"] = cause
		return "_none_", "failed " + cause
	}
	s.vars["originate_disposition"] = "SUCCESS"
	s.fireLocked("CHANNEL_BRIDGE", esl.Headers{{Name: "Other-Leg-Unique-ID", Value: "b-" + s.call.UUID}})
	d := s.call.BridgeFor
	if d <= 0 {
		d = time.Millisecond
	}
	r := s.mediaLocked(d, nil)
	s.fireLocked("CHANNEL_UNBRIDGE", esl.Headers{{Name: "Other-Leg-Unique-ID", Value: "b-" + s.call.UUID}})
	s.vars["bridge_hangup_cause"] = "NORMAL_CLEARING"
	if r == "hangup" {
		return "_none_", "caller hung up"
	}
	return "_none_", ""
}

func appPark(s *sim, _ string) (string, string) {
	s.mediaLocked(-1, func() bool { s.takeDigitLocked(); return false })
	return "_none_", ""
}
