package esl

import (
	"context"
	"fmt"
	"strings"
	"time"

	"github.com/switchboard/switchboard/internal/uuid"
)

// Leg is a second channel the call's flow originated (mod_lua's freeswitch.Session(dial_string)). Its
// events reach the call's socket through a `filter Unique-ID <leg>`; applications run on it with
// `sendmsg <leg>` (ExecOptions.Target) and it is hung up with `api uuid_kill`.
type Leg struct {
	UUID string
	s    *Session

	// guarded by s.mu
	answered bool
	hungup   bool
	cause    string
	vars     map[string]string
	hangupCh chan struct{}
}

// Originate dials dial (a FreeSWITCH dial string such as user/1001 or sofia/gateway/gw/5551234) as a new
// channel parked on answer: `bgapi originate {origination_uuid=U,originate_timeout=T}dial &park()`. It
// returns when the leg answered or failed; a failed leg is returned too, not ready, with its cause. Needs
// `full`.
func (s *Session) Originate(ctx context.Context, dial string, timeout time.Duration) (*Leg, error) {
	if !s.info.Full {
		return nil, fmt.Errorf("esl: originate needs `full` in the socket application's data")
	}
	if timeout <= 0 {
		timeout = 60 * time.Second
	}
	leg := &Leg{UUID: uuid.New(), s: s, vars: map[string]string{}, hangupCh: make(chan struct{})}
	s.mu.Lock()
	if s.legs == nil {
		s.legs = map[string]*Leg{}
	}
	s.legs[leg.UUID] = leg
	s.mu.Unlock()
	if _, err := s.Raw(ctx, "filter Unique-ID "+leg.UUID); err != nil {
		return nil, err
	}
	vars := fmt.Sprintf("origination_uuid=%s,originate_timeout=%d", leg.UUID, int(timeout/time.Second))
	if strings.HasPrefix(dial, "{") {
		dial = "{" + vars + "," + dial[1:]
	} else {
		dial = "{" + vars + "}" + dial
	}
	body, err := s.BgAPI(ctx, "originate "+dial+" &park()")
	if err != nil {
		return nil, err
	}
	body = strings.TrimSpace(body)
	if !strings.HasPrefix(body, "+OK") {
		cause := strings.TrimSpace(strings.TrimPrefix(body, "-ERR"))
		if cause == "" {
			cause = "NORMAL_TEMPORARY_FAILURE"
		}
		s.mu.Lock()
		leg.cause = cause
		leg.markHungUpLocked()
		s.mu.Unlock()
		return leg, nil
	}
	s.mu.Lock()
	leg.answered = true
	s.mu.Unlock()
	return leg, nil
}

func (l *Leg) markHungUpLocked() {
	if !l.hungup {
		l.hungup = true
		close(l.hangupCh)
	}
}

// onLegEvent updates an originated leg from its event; false when id names no leg of this call.
func (s *Session) onLegEvent(id, name string, e *Event) bool {
	s.mu.Lock()
	leg := s.legs[id]
	if leg == nil {
		s.mu.Unlock()
		return false
	}
	for _, h := range e.Headers {
		if strings.HasPrefix(h.Name, "variable_") {
			leg.vars[h.Name[len("variable_"):]] = h.Value
		}
	}
	var w chan *Event
	switch name {
	case "CHANNEL_ANSWER":
		leg.answered = true
	case "CHANNEL_HANGUP", "CHANNEL_HANGUP_COMPLETE":
		if leg.cause == "" {
			leg.cause = e.Get("Hangup-Cause")
		}
		leg.markHungUpLocked()
	case "CHANNEL_EXECUTE_COMPLETE":
		w = s.waiterLocked(e.Get("Application-UUID"))
	}
	s.mu.Unlock()
	if w != nil {
		select {
		case w <- e:
		default:
		}
	}
	return true
}

// Ready is true while the leg is up (and the call's socket connected).
func (l *Leg) Ready() bool {
	l.s.mu.Lock()
	defer l.s.mu.Unlock()
	return !l.hungup && !l.s.hungup
}

// Answered reports whether the leg answered.
func (l *Leg) Answered() bool {
	l.s.mu.Lock()
	defer l.s.mu.Unlock()
	return l.answered
}

// HangupCause is why the leg failed or ended, "" while it is up.
func (l *Leg) HangupCause() string {
	l.s.mu.Lock()
	defer l.s.mu.Unlock()
	return l.cause
}

// Variable returns a variable of the leg as its latest event reported it.
func (l *Leg) Variable(name string) (string, bool) {
	l.s.mu.Lock()
	defer l.s.mu.Unlock()
	v, ok := l.vars[name]
	return v, ok
}

// SetVariable sets a variable of the leg (api uuid_setvar; "" unsets).
func (l *Leg) SetVariable(ctx context.Context, name, value string) error {
	if _, err := l.s.API(ctx, strings.TrimSpace("uuid_setvar "+l.UUID+" "+name+" "+value)); err != nil {
		return err
	}
	l.s.mu.Lock()
	if value == "" {
		delete(l.vars, name)
	} else {
		l.vars[name] = value
	}
	l.s.mu.Unlock()
	return nil
}

// Hangup hangs the leg up (api uuid_kill); no-op once it is down.
func (l *Leg) Hangup(ctx context.Context, cause string) error {
	if !l.Ready() {
		return nil
	}
	if cause == "" {
		cause = "NORMAL_CLEARING"
	}
	_, err := l.s.API(ctx, "uuid_kill "+l.UUID+" "+strings.ToUpper(cause))
	l.s.mu.Lock()
	if l.cause == "" {
		l.cause = strings.ToUpper(cause)
	}
	l.markHungUpLocked()
	l.s.mu.Unlock()
	return err
}

// Execute runs an application on the leg and waits for its completion.
func (l *Leg) Execute(ctx context.Context, app, arg string) (*Event, error) {
	return l.s.Execute(ctx, app, arg, ExecOptions{Target: l})
}
