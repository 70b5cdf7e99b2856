package esl

import (
	"context"
	"errors"
	"fmt"
	"regexp"
	"strconv"
	"strings"
	"sync/atomic"
	"time"
)

// The mod_lua-shaped calls below are what the Lua session object uses; Go flows may use them too. Each is
// one execute that waits for its CHANNEL_EXECUTE_COMPLETE.

var readVarSeq atomic.Uint64

func readVar() string { return "switchboard_digits_" + strconv.FormatUint(readVarSeq.Add(1), 10) }

// Answer answers the call.
func (s *Session) Answer(ctx context.Context) error {
	_, err := s.Execute(ctx, "answer", "", ExecOptions{})
	return err
}

// PreAnswer starts early media.
func (s *Session) PreAnswer(ctx context.Context) error {
	_, err := s.Execute(ctx, "pre_answer", "", ExecOptions{})
	return err
}

// StreamFile plays file; onDTMF (optional) sees each digit and may stop the playback. It returns the
// Application-Response (FILE PLAYED, FILE NOT FOUND, PLAYBACK ERROR).
func (s *Session) StreamFile(ctx context.Context, file string, onDTMF func(DTMF) bool) (string, error) {
	e, err := s.Execute(ctx, "playback", file, ExecOptions{OnDTMF: onDTMF})
	if err != nil {
		return "", err
	}
	return e.Get("Application-Response"), nil
}

// Sleep waits ms milliseconds on the channel (the sleep application); onDTMF as for StreamFile.
func (s *Session) Sleep(ctx context.Context, ms int, onDTMF func(DTMF) bool) error {
	_, err := s.Execute(ctx, "sleep", strconv.Itoa(ms), ExecOptions{OnDTMF: onDTMF})
	return err
}

// Read plays prompt and collects min..max digits (the read application); it returns the digits.
func (s *Session) Read(ctx context.Context, min, max int, prompt string, timeoutMs int, terminators string, digitTimeoutMs int) (string, error) {
	v := readVar()
	if terminators == "" {
		terminators = "#"
	}
	arg := strings.Join([]string{strconv.Itoa(min), strconv.Itoa(max), orSilence(prompt), v, strconv.Itoa(timeoutMs), terminators}, " ")
	if digitTimeoutMs > 0 {
		arg += " " + strconv.Itoa(digitTimeoutMs)
	}
	e, err := s.Execute(ctx, "read", arg, ExecOptions{ConsumesDigits: true})
	if err != nil {
		return "", err
	}
	d, _ := e.Variable(v)
	return d, nil
}

func orSilence(file string) string {
	if file == "" {
		return "silence_stream://250"
	}
	return file
}

// PlayAndGetDigits runs play_and_get_digits and returns the digits, "" on failure. Arguments follow
// mod_lua's order (regexp before varName); the application gets the dialplan order.
func (s *Session) PlayAndGetDigits(ctx context.Context, min, max, tries, timeoutMs int, terminators, file, invalidFile, regexp, varName string, digitTimeoutMs int, transferOnFailure string) (string, error) {
	v := varName
	if v == "" {
		v = readVar()
	}
	if terminators == "" {
		terminators = "none"
	}
	if regexp == "" {
		regexp = `.*` // mod_lua: an empty pattern accepts any input (the app cannot take an empty field)
	}
	parts := []string{strconv.Itoa(min), strconv.Itoa(max), strconv.Itoa(tries), strconv.Itoa(timeoutMs), terminators,
		orSilence(file), orSilence(invalidFile), v, regexp}
	if digitTimeoutMs > 0 || transferOnFailure != "" {
		parts = append(parts, strconv.Itoa(digitTimeoutMs))
	}
	if transferOnFailure != "" {
		parts = append(parts, transferOnFailure)
	}
	e, err := s.Execute(ctx, "play_and_get_digits", strings.Join(parts, " "), ExecOptions{ConsumesDigits: true})
	if err != nil {
		return "", err
	}
	if r, ok := e.Variable("read_result"); ok && r != "success" {
		return "", nil
	}
	d, _ := e.Variable(v)
	return d, nil
}

// ReadResult is what a local read saw, as switch_ivr_read reports it in read_result and
// read_terminator_used.
type ReadResult struct {
	Digits     string
	Terminator string
	Result     string // success | timeout | failure
}

// ReadDigits is mod_lua's session:read done in the engine, so digits typed before it (type-ahead) count
// and the ones it takes are consumed: the prompt plays until the first digit (kept as the first
// character), then digits are collected until max, a terminator, timeout with none, or digitTimeout
// between digits (0 = timeout). min/max below 1 become 1, max below min becomes min. A leading '=' in
// terminators is accepted (a terminator is then required). It needs DTMF events (async); on hangup it
// returns what it has with ErrHungUp.
func (s *Session) ReadDigits(ctx context.Context, min, max int, prompt string, timeout, digitTimeout time.Duration, terminators string) (ReadResult, error) {
	min, max = clampReadLen(min, max)
	if timeout < time.Millisecond {
		timeout = time.Millisecond
	}
	if digitTimeout <= 0 {
		digitTimeout = timeout
	}
	required := strings.HasPrefix(terminators, "=")
	terminators = strings.TrimPrefix(terminators, "=")
	first := timeout
	if prompt != "" && prompt != "silence" && s.PendingDigits() == 0 {
		if _, err := s.ExecuteInput(ctx, "playback", prompt, ExecOptions{StopOnDTMF: true}); err != nil {
			return ReadResult{Result: "failure"}, err
		}
	}
	if s.PendingDigits() > 0 {
		first = digitTimeout
	}
	digits, term, err := s.GetDigits(ctx, max, terminators, first, digitTimeout, 0)
	r := ReadResult{Digits: digits, Terminator: term}
	switch {
	case err != nil:
		r.Result = "failure"
	case required && term == "":
		r.Result = "failure"
	case digits == "" && term == "":
		r.Result = "timeout"
	case len(digits) >= min:
		r.Result = "success"
	default:
		r.Result = "failure"
	}
	return r, err
}

func clampReadLen(min, max int) (int, int) {
	if min < 1 {
		min = 1
	}
	if max < 1 {
		max = 1
	}
	if max < min {
		max = min
	}
	return min, max
}

// CompilePattern compiles a playAndGetDigits pattern: PCRE's /re/flags form is accepted (flags i and s),
// "" matches anything. Go's regexp is RE2: no backreferences or lookaround.
func CompilePattern(p string) (*regexp.Regexp, error) {
	if p == "" {
		return nil, nil
	}
	if strings.HasPrefix(p, "/") {
		if i := strings.LastIndex(p, "/"); i > 0 {
			flags := p[i+1:]
			p = p[1:i]
			if f := strings.Map(func(r rune) rune {
				if r == 'i' || r == 's' {
					return r
				}
				return -1
			}, flags); f != "" {
				p = "(?" + f + ")" + p
			}
		}
	}
	re, err := regexp.Compile(p)
	if err != nil {
		return nil, fmt.Errorf("pattern %q: %w", p, err)
	}
	return re, nil
}

// PlayAndGetDigitsLocal is mod_lua's session:playAndGetDigits done in the engine (async calls): up to
// tries reads with file as the prompt; a read that succeeds and matches re (unanchored; nil matches
// anything) returns its digits and sets varName when given; a mismatch sets <varName>_invalid; between
// tries invalidFile plays without DTMF handling (keys typed meanwhile are type-ahead for the next try).
// Failure returns "" after transferring to transferOnFailure ("ext [dialplan [context]]") when given.
// tries <= 0 returns "" at once. On hangup it returns "" with ErrHungUp.
func (s *Session) PlayAndGetDigitsLocal(ctx context.Context, min, max, tries int, timeout time.Duration, terminators, file, invalidFile string,
	re *regexp.Regexp, varName string, digitTimeout time.Duration, transferOnFailure string) (string, error) {
	if re != nil && varName != "" {
		if err := s.SetVariable(ctx, varName+"_invalid", ""); err != nil {
			return "", err
		}
	}
	for ; tries > 0 && s.Ready(); tries-- {
		r, err := s.ReadDigits(ctx, min, max, file, timeout, digitTimeout, terminators)
		if err != nil {
			return "", err
		}
		if r.Result == "success" && r.Digits != "" {
			if re == nil || re.MatchString(r.Digits) {
				if varName != "" {
					if err := s.SetVariable(ctx, varName, r.Digits); err != nil {
						return "", err
					}
				}
				return r.Digits, nil
			}
			if varName != "" {
				if err := s.SetVariable(ctx, varName+"_invalid", r.Digits); err != nil {
					return "", err
				}
			}
		}
		if min == 0 && r.Digits == "" && r.Terminator != "" {
			return "", nil
		}
		if tries > 1 && invalidFile != "" && s.Ready() {
			if _, err := s.Execute(ctx, "playback", invalidFile, ExecOptions{}); err != nil {
				return "", err
			}
		}
	}
	if transferOnFailure != "" && s.Ready() {
		if err := s.Transfer(ctx, transferOnFailure); err != nil {
			return "", err
		}
	}
	return "", nil
}

// Transfer sends the call back to the dialplan at "ext [dialplan [context]]" (the transfer application):
// Ready is false afterwards and the engine will not hang the call up when the flow ends.
func (s *Session) Transfer(ctx context.Context, dest string) error {
	_, err := s.Execute(ctx, "transfer", dest, ExecOptions{})
	if err == nil || errors.Is(err, ErrHungUp) {
		// FreeSWITCH may end the socket session as soon as the transfer ran: it happened all the same.
		s.MarkTransferred()
		return nil
	}
	return err
}

// WaitInput waits d (0 = no limit) on the engine side, handing digits and session events to onInput
// (nil: digits stay queued and the wait just runs out); it returns early, stopped, when onInput says
// stop, or after idle with no input (0 = no limit). It is mod_lua's sleep and collectDigits: the channel
// keeps whatever it was doing.
func (s *Session) WaitInput(ctx context.Context, d, idle time.Duration, onInput func(Input) Control) (stopped bool, err error) {
	var total, idleT <-chan time.Time
	if d > 0 {
		t := time.NewTimer(d)
		defer t.Stop()
		total = t.C
	}
	var it *time.Timer
	if idle > 0 {
		it = time.NewTimer(idle)
		defer it.Stop()
		idleT = it.C
	}
	var dtmfCh, evCh chan struct{}
	if onInput != nil {
		dtmfCh, evCh = s.dtmfCh, s.evCh
		s.mu.Lock()
		if len(s.digits) > 0 {
			signalCh(s.dtmfCh)
		}
		if len(s.events) > 0 {
			signalCh(s.evCh)
		}
		s.mu.Unlock()
	}
	handle := func(in Input) bool {
		c := onInput(in)
		if it != nil {
			it.Reset(idle)
		}
		return c.Stop || c.FileCmd != ""
	}
	for {
		select {
		case <-total:
			return false, nil
		case <-idleT:
			return false, nil
		case <-s.hangupCh:
			return false, ErrHungUp
		case <-ctx.Done():
			return false, ctx.Err()
		case <-dtmfCh:
			for _, dg := range s.TakeDigits() {
				if handle(Input{DTMF: &dg}) {
					return true, nil
				}
			}
		case <-evCh:
			for _, e := range s.TakeEvents() {
				if handle(Input{Event: e}) {
					return true, nil
				}
			}
		}
	}
}
