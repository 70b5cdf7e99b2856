package relay_test

import (
	"fmt"
	"os"
	"regexp"
	"strings"
	"testing"
	"time"
)

// metricValue reads one sample of /metrics (0 when absent).
func metricValue(t *testing.T, s *setup, series string) float64 {
	t.Helper()
	re := regexp.MustCompile(`(?m)^` + regexp.QuoteMeta(series) + ` (\S+)$`)
	m := re.FindStringSubmatch(fetchMetrics(t, s.e))
	if m == nil {
		return 0
	}
	var v float64
	fmt.Sscan(m[1], &v)
	return v
}

// TestExpressionMustBeBoolean (issue 15 item 4), with the Lua expressions: an expression that yields a
// number when it runs counts as false (in Lua 0 would be true), is counted, and logged once for its rule;
// a routes file whose expression is visibly not boolean is refused and the table in use stays.
func TestExpressionMustBeBoolean(t *testing.T) {
	s := startRelay(t, "Num;1;O;*;qty Long nonull;math.abs(qty);a;BREAK;\nRest;2;O;*;;true;b;BREAK;\n", "", "a", "b")
	app := login(t, s.addr, "app", "")
	sendAll(t, app, 1, `O|T="x"|qty=0L`, `O|T="x"|qty=5L`, `O|T="y"|qty=-1L`)
	expectBodies(t, s, map[string][]string{"b": {`O|T="x"|qty=0L`, `O|T="x"|qty=5L`, `O|T="y"|qty=-1L`}})
	if n := metricValue(t, s, "switchboard_relay_expression_not_boolean_total"); n != 3 {
		t.Fatalf("not_boolean_total %v, want 3", n)
	}
	logs := s.e.Logs.String()
	if n := strings.Count(logs, "route expression yielded a non-boolean"); n != 1 {
		t.Fatalf("logged %d times, want once for the rule:\n%s", n, logs)
	}
	if !strings.Contains(logs, `route=Num`) || !strings.Contains(logs, `yields="a number"`) {
		t.Fatalf("log does not name the rule and the result:\n%s", logs)
	}

	if err := os.WriteFile(s.routes, []byte("Diff;1;O;*;qty Long nonull;qty - qty;a;BREAK;\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	s.e.Logs.WaitFor(t, `relay.routes:1: route Diff: EXPRESSION: \"qty - qty\" yields a number, not a boolean`, 5*time.Second)
	s.centers["b"].Reset()
	sendAll(t, app, 4, `O|T="x"|qty=1L`)
	expectBodies(t, s, map[string][]string{"b": {`O|T="x"|qty=1L`}})
}

// TestFollowObjectsModes (issue 15 item 3): by default a message goes where the rules send it, as 3forge
// documents; relay.follow_objects sends deletes (or updates and deletes) also where the object went before.
// The worked example of docs/configuration.md: o1 is a big NYSE order, becomes a small LSE one, is deleted.
func TestFollowObjectsModes(t *testing.T) {
	rows := []string{`O|T="Order"|I="o1"|qty=5000L|px=250.0D|venue="NYSE"`, `O|T="Order"|I="o1"|qty=1L|px=250.0D|venue="LSE"`,
		`D|T="Order"|I="o1"`}
	r := rows
	for _, c := range []struct {
		mode string
		want map[string][]string
	}{
		{"", map[string][]string{"risk": {r[0]}, "primary": {r[0], r[2]}, "hist": {r[0], r[2]}, "eu": {r[1]}}},
		{"off", map[string][]string{"risk": {r[0]}, "primary": {r[0], r[2]}, "hist": {r[0], r[2]}, "eu": {r[1]}}},
		{"deletes", map[string][]string{"risk": {r[0], r[2]}, "primary": {r[0], r[2]}, "hist": {r[0], r[2]}, "eu": {r[1], r[2]}}},
		{"updates_and_deletes", map[string][]string{"risk": {r[0], r[1], r[2]}, "primary": {r[0], r[1], r[2]},
			"hist": {r[0], r[1], r[2]}, "eu": {r[1], r[2]}}},
	} {
		t.Run("follow_objects="+c.mode, func(t *testing.T) {
			extra := ""
			if c.mode != "" {
				extra = "  follow_objects: " + c.mode + "\n"
			}
			s := startRelay(t, workedRoutes, extra, "primary", "risk", "hist", "eu")
			app := login(t, s.addr, "sor-1", "")
			sendAll(t, app, 1, rows...)
			expectBodies(t, s, c.want)
		})
	}
}

// TestCenterGetsMessageOnce: two rules that both route a message to the same center (the first goes on)
// send it there once, as 3forge documents.
func TestCenterGetsMessageOnce(t *testing.T) {
	s := startRelay(t, "First;1;O;*;;true;a;;\nSecond;2;O;*;;true;a,b;BREAK;\n", "", "a", "b")
	app := login(t, s.addr, "app", "")
	sendAll(t, app, 1, `O|T="x"|I="1"`)
	expectBodies(t, s, map[string][]string{"a": {`O|T="x"|I="1"`}, "b": {`O|T="x"|I="1"`}})
}
