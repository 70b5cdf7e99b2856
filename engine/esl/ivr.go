package esl

import (
	"context"
	"strconv"
	"strings"
	"sync/atomic"
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
	e, err := s.Execute(ctx, "read", arg, ExecOptions{})
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
		regexp = `\d+`
	}
	parts := []string{strconv.Itoa(min), strconv.Itoa(max), strconv.Itoa(tries), strconv.Itoa(timeoutMs), terminators,
		orSilence(file), orSilence(invalidFile), v, regexp}
	if digitTimeoutMs > 0 || transferOnFailure != "" {
		parts = append(parts, strconv.Itoa(digitTimeoutMs))
	}
	if transferOnFailure != "" {
		parts = append(parts, transferOnFailure)
	}
	e, err := s.Execute(ctx, "play_and_get_digits", strings.Join(parts, " "), ExecOptions{})
	if err != nil {
		return "", err
	}
	if r, ok := e.Variable("read_result"); ok && r != "success" {
		return "", nil
	}
	d, _ := e.Variable(v)
	return d, nil
}
