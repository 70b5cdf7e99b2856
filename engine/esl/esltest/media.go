package esltest

import (
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/switchboard/switchboard/engine/esl"
	"github.com/switchboard/switchboard/internal/uuid"
)

// simFile is the file a playback is playing, as uuid_fileman sees it.
type simFile struct {
	name     string
	length   time.Duration
	pos      time.Duration
	segStart time.Time // when pos was last brought up to date
	paused   bool
	changed  bool // a fileman command arrived: the playback loop re-plans
	stop     bool
}

// fold brings pos up to now.
func (f *simFile) fold(now time.Time) {
	if !f.paused {
		f.pos += now.Sub(f.segStart)
	}
	f.segStart = now
	f.pos = min(max(f.pos, 0), f.length)
}

// filemanLocked applies one uuid_fileman command as switch_ivr_play_file's callback handling does.
func (s *sim) filemanLocked(cmd string) {
	f := s.file
	f.fold(time.Now())
	low := strings.ToLower(cmd)
	s.tr.add("fileman %s %s", f.name, low)
	switch {
	case strings.HasPrefix(low, "seek:"):
		arg := low[len("seek:"):]
		n, err := strconv.Atoi(strings.TrimLeft(arg, "+-"))
		if err != nil {
			return
		}
		d := time.Duration(n) * time.Millisecond
		switch {
		case strings.HasPrefix(arg, "+"):
			f.pos += d
		case strings.HasPrefix(arg, "-"):
			f.pos -= d
		default:
			f.pos = d
		}
		f.pos = min(max(f.pos, 0), f.length)
	case low == "pause":
		f.paused = !f.paused
	case low == "restart":
		f.pos = 0
	case low == "stop":
		f.stop = true
	}
	f.changed = true
	signal(s.wake)
}

// promptLen is how long one file plays: Call.Prompts, else Call.Media.
func (s *sim) promptLen(file string) time.Duration {
	if d, ok := s.call.Prompts[file]; ok {
		return d
	}
	return s.call.Media
}

// sendeventLocked answers `sendevent NAME`: an event carrying this channel's Unique-ID is queued to the
// channel (and diverted to the socket when asked); others are fired into the switch.
func (s *sim) sendeventLocked(fields []string, c *esl.Command) string {
	name := "MESSAGE"
	if len(fields) > 1 {
		name = strings.ToUpper(fields[1])
	}
	var parts []string
	for _, h := range c.Headers {
		if !strings.EqualFold(h.Name, "Content-Length") {
			parts = append(parts, h.Name+": "+h.Value)
		}
	}
	text := "> sendevent " + name
	if len(parts) > 0 {
		text += " (" + strings.Join(parts, ", ") + ")"
	}
	if len(c.Body) > 0 {
		text += " body " + strconv.Quote(string(c.Body))
	}
	s.tr.add("%s", text)
	id := uuid.New()
	if c.Headers.Get("Unique-ID") == s.call.UUID {
		s.deliverLocked(name, c.Headers, string(c.Body))
	}
	return "+OK " + id
}

// queueEvent is something else queuing an event to the channel.
func (s *sim) queueEvent(ev SessionEvent) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if !s.up {
		return
	}
	keys := make([]string, 0, len(ev.Headers))
	for k := range ev.Headers {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	h := esl.Headers{{Name: "Unique-ID", Value: s.call.UUID}}
	for _, k := range keys {
		h = append(h, esl.Header{Name: k, Value: ev.Headers[k]})
	}
	s.tr.add("event %s queued to the channel", ev.Name)
	s.deliverLocked(ev.Name, h, ev.Body)
}

// deliverLocked hands a session event to the socket when events are diverted; otherwise the channel's
// queue drops it (nothing reads it over an event socket).
func (s *sim) deliverLocked(name string, h esl.Headers, body string) {
	if !s.divert {
		return
	}
	s.seq++
	e := &esl.Event{Headers: append(esl.Headers{{Name: "Event-Name", Value: name}, {Name: "Event-Sequence", Value: strconv.Itoa(s.seq)}}, h...), Body: body}
	s.writeEventLocked(e)
}

func (s *sim) writeEventLocked(e *esl.Event) {
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

// simLeg is a channel the engine originated.
type simLeg struct {
	n    int
	uuid string
	dial string
	up   bool
	vars map[string]string
}

func (s *sim) legLocked(uuid string) *simLeg {
	for _, l := range s.legs {
		if l.uuid == uuid {
			return l
		}
	}
	return nil
}

// originateLocked runs `originate {origination_uuid=U,...}dial &park()`: the outcome comes from
// Call.Originate (or error/<cause>); an answered leg parks and its events reach the socket if filtered.
func (s *sim) originateLocked(args string) string {
	dial, _, _ := strings.Cut(args, " ")
	uuid := uuid.New()
	if strings.HasPrefix(dial, "{") {
		if end := strings.Index(dial, "}"); end > 0 {
			for _, kv := range strings.Split(dial[1:end], ",") {
				if k, v, ok := strings.Cut(kv, "="); ok && k == "origination_uuid" {
					uuid = v
				}
			}
			dial = dial[end+1:]
		}
	}
	leg := &simLeg{n: len(s.legs) + 1, uuid: uuid, dial: dial, vars: map[string]string{}}
	cause, ok := s.call.Originate[dial]
	if !ok {
		if m := failCause.FindStringSubmatch(dial); m != nil {
			cause = strings.ToUpper(m[1])
		}
	}
	if cause != "" && cause != "SUCCESS" {
		s.tr.add("originate %s: %s", dial, cause)
		return "-ERR " + cause + "\n"
	}
	leg.up = true
	s.legs = append(s.legs, leg)
	s.tr.add("originate %s: answered (leg %d)", dial, leg.n)
	s.fireLegLocked(leg, "CHANNEL_ANSWER", nil)
	return "+OK " + uuid + "\n"
}

// fireLegLocked sends an event of a leg when a filter lets its Unique-ID through.
func (s *sim) fireLegLocked(leg *simLeg, name string, extra esl.Headers) {
	if !s.filters[leg.uuid] || !(s.all || s.subs[name] || (s.myevents && myevents[name])) {
		return
	}
	state, answer := "CS_EXECUTE", "answered"
	if !leg.up {
		state, answer = "CS_HANGUP", "hangup"
	}
	s.seq++
	h := esl.Headers{{Name: "Event-Name", Value: name}, {Name: "Event-Sequence", Value: strconv.Itoa(s.seq)},
		{Name: "Unique-ID", Value: leg.uuid}, {Name: "Channel-State", Value: state}, {Name: "Answer-State", Value: answer}}
	h = append(h, extra...)
	for k, v := range leg.vars {
		h = append(h, esl.Header{Name: "variable_" + k, Value: v})
	}
	s.writeEventLocked(&esl.Event{Headers: h})
}

func (s *sim) legHangupLocked(leg *simLeg, cause string) {
	if !leg.up {
		return
	}
	leg.up = false
	s.tr.add("leg %d: hangup %s", leg.n, cause)
	s.fireLegLocked(leg, "CHANNEL_HANGUP", esl.Headers{{Name: "Hangup-Cause", Value: cause}})
}

// legAPILocked answers the uuid_* api commands aimed at a leg.
func (s *sim) legAPILocked(leg *simLeg, f []string) string {
	if !leg.up {
		return "-ERR No such channel!\n"
	}
	switch f[0] {
	case "uuid_kill":
		cause := "NORMAL_CLEARING"
		if len(f) > 2 {
			cause = strings.ToUpper(f[2])
		}
		s.legHangupLocked(leg, cause)
		return "+OK\n"
	case "uuid_setvar":
		if len(f) == 3 {
			delete(leg.vars, f[2])
		} else if len(f) > 3 {
			leg.vars[f[2]] = strings.Join(f[3:], " ")
		}
		return "+OK\n"
	case "uuid_getvar":
		if len(f) < 3 || leg.vars[f[2]] == "" {
			return "_undef_"
		}
		return leg.vars[f[2]]
	case "uuid_exists":
		return "true"
	}
	return "-ERR " + f[0] + " Command not found!\n"
}

// legExecLocked runs an application on a leg: it completes at once (legs have no media in the simulator).
func (s *sim) legExecLocked(leg *simLeg, c *esl.Command) string {
	if !strings.EqualFold(c.Headers.Get("call-command"), "execute") {
		if strings.EqualFold(c.Headers.Get("call-command"), "hangup") {
			s.legHangupLocked(leg, strings.ToUpper(c.Headers.Get("hangup-cause")))
		}
		return "+OK"
	}
	name := c.Headers.Get("execute-app-name")
	arg := c.Headers.Get("execute-app-arg")
	if arg == "" {
		arg = string(c.Body)
	}
	if !leg.up {
		return "+OK"
	}
	s.tr.add("leg %d: execute %s %s", leg.n, name, arg)
	if name == "set" {
		k, v, _ := strings.Cut(arg, "=")
		leg.vars[k] = v
	}
	if name == "hangup" {
		s.legHangupLocked(leg, "NORMAL_CLEARING")
	}
	h := esl.Headers{{Name: "Application", Value: name}, {Name: "Application-UUID", Value: c.Headers.Get("event-uuid")}, {Name: "Application-Response", Value: "_none_"}}
	s.fireLegLocked(leg, "CHANNEL_EXECUTE_COMPLETE", h)
	return "+OK"
}

// uuidBridgeLocked bridges the call with a leg for Call.BridgeFor; then the leg hangs up.
func (s *sim) uuidBridgeLocked(a, b string) string {
	other := b
	if a != s.call.UUID {
		other = a
	}
	leg := s.legLocked(other)
	if leg == nil || !leg.up || !s.up {
		return "-ERR Invalid uuid\n"
	}
	s.tr.add("bridge with leg %d", leg.n)
	s.fireLocked("CHANNEL_BRIDGE", esl.Headers{{Name: "Other-Leg-Unique-ID", Value: leg.uuid}})
	d := s.call.BridgeFor
	if d <= 0 {
		d = time.Millisecond
	}
	time.AfterFunc(d, func() {
		s.mu.Lock()
		defer s.mu.Unlock()
		s.fireLocked("CHANNEL_UNBRIDGE", esl.Headers{{Name: "Other-Leg-Unique-ID", Value: leg.uuid}})
		s.legHangupLocked(leg, "NORMAL_CLEARING")
	})
	return "+OK\n"
}
