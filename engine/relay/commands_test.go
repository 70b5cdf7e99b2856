package relay_test

import (
	"fmt"
	"regexp"
	"slices"
	"testing"
	"time"

	"github.com/switchboard/switchboard/engine/relay"
	"github.com/switchboard/switchboard/engine/relay/relaytest"
	"github.com/switchboard/switchboard/internal/testutil"
)

// expectLine reads the next line and matches it against the regexp.
func expectLine(t *testing.T, c *relaytest.Client, re string) {
	t.Helper()
	line, err := c.ReadLine(5 * time.Second)
	if err != nil {
		t.Fatal(err)
	}
	if !regexp.MustCompile(re).MatchString(line) {
		t.Fatalf("line %q, want %s", line, re)
	}
}

// expectNothing checks that nothing is waiting for the application: the next
// line is the answer to an H sent now. (Call it once where a line would have
// come has been decided, e.g. the E went elsewhere: the relay queues lines to
// an application in order.)
func expectNothing(t *testing.T, c *relaytest.Client) {
	t.Helper()
	if err := c.Raw("H\n"); err != nil { // unnumbered: the client's own numbering is not disturbed
		t.Fatal(err)
	}
	expectLine(t, c, `^M@\d{13}\|Q=\d+\|S=0\|M="AMI relay\. `)
}

// expectCenterGot waits for a center's n-th instruction and checks it.
func expectCenterGot(t *testing.T, c *relaytest.Center, n int, body string) {
	t.Helper()
	if err := c.WaitCount(n, 5*time.Second); err != nil {
		t.Fatal(err)
	}
	if got := c.Bodies(); len(got) != n || got[n-1] != body {
		t.Fatalf("center got %q, want #%d %q", got, n, body)
	}
}

// waitGone waits until the relay no longer has the application logged in.
func waitGone(t *testing.T, r *relay.Relay, id string) {
	t.Helper()
	testutil.WaitFor(t, id+" to log out", func() bool { return !slices.Contains(r.Applications(), id) })
}

// TestCommandReachesObjectOwner: an E naming an object (O and T) goes to the
// application that sent the object, not to the one that registered the
// command, and only that application's R goes back, to the center that sent
// the E. An unknown, untyped or deleted object falls back to the command's
// owner; an owner that has disconnected gets the center an R with S=1 and the
// reason; an owner that logs in again gets its objects' commands again.
func TestCommandReachesObjectOwner(t *testing.T) {
	g := start(t, workedRoutes, func(c *relay.Config) { c.FollowObjects = "deletes" }, "primary", "risk", "hist", "eu")
	sor := dial(t, g, "sor-1", "")
	algo, err := relaytest.Dial(g.addr, "algo-2", "")
	if err != nil {
		t.Fatal(err)
	}
	defer func() { algo.Close() }()
	sor.Send('C', `I="bust"|N="order.bust"`)
	expectStatus(t, sor, 1, 0, "OK")
	// o1 goes to risk, primary and hist (BigOrders, Default); s1 to primary and hist
	algo.Send('O', `T="Order"|I="o1"|qty=5000L|px=250.0D|venue="NYSE"`)
	expectStatus(t, algo, 1, 0, "OK")
	sor.Send('O', `T="Order"|I="s1"|qty=1L|px=1.0D|venue="NYSE"`)
	expectStatus(t, sor, 2, 0, "OK")
	risk, primary := g.centers["risk"], g.centers["primary"]
	if err := primary.WaitCount(3, 5*time.Second); err != nil {
		t.Fatal(err)
	}
	if err := risk.WaitCount(1, 5*time.Second); err != nil {
		t.Fatal(err)
	}

	// risk's E on o1 reaches algo-2, the object's sender
	if err := risk.SendE(`I="r1"|C="bust"|U="jsmith"|O="o1"|T="Order"`); err != nil {
		t.Fatal(err)
	}
	expectLine(t, algo, `^E@\d{13}\|I="r1"\|C="bust"\|U="jsmith"\|O="o1"\|T="Order"$`)
	expectNothing(t, sor)
	// only the application the E went to may answer it
	sor.Send('R', `I="r1"|S=0|M="not mine"`)
	expectStatus(t, sor, 3, 1, "Unknown request id r1: no pending E for this application")
	algo.Send('R', `I="r1"|S=0|M="busted"`)
	expectStatus(t, algo, 2, 0, "OK")
	expectCenterGot(t, risk, 2, `R|I="r1"|S=0|M="busted"`)
	// answered once: a second R is unknown
	algo.Send('R', `I="r1"|S=0`)
	expectStatus(t, algo, 3, 1, "Unknown request id r1")

	// an object the relay does not know, or an E without T: the command's owner
	if err := primary.SendE(`I="p1"|C="bust"|U="jsmith"|O="nosuch"|T="Order"`); err != nil {
		t.Fatal(err)
	}
	expectLine(t, sor, `^E@\d{13}\|I="p1"\|C="bust"\|U="jsmith"\|O="nosuch"\|T="Order"$`)
	if err := primary.SendE(`I="p2"|C="bust"|U="jsmith"|O="o1"`); err != nil {
		t.Fatal(err)
	}
	expectLine(t, sor, `^E@\d{13}\|I="p2"\|C="bust"\|U="jsmith"\|O="o1"$`)
	expectNothing(t, algo)
	sor.Send('R', `I="p2"|S=2|M="which order?"`)
	expectStatus(t, sor, 4, 0, "OK")
	expectCenterGot(t, primary, 4, `R|I="p2"|S=2|M="which order?"`)

	// the owner disconnects: the center that asked gets S=1 with the reason
	algo.Close()
	waitGone(t, g.r, "algo-2")
	if err := primary.SendE(`I="p3"|C="bust"|U="jsmith"|O="o1"|T="Order"`); err != nil {
		t.Fatal(err)
	}
	expectCenterGot(t, primary, 5, `R|I="p3"|S=1|M="application \"algo-2\" that sent Order \"o1\" is not connected"`)
	expectNothing(t, sor)

	// it logs in again: its objects are still its own
	algo, err = relaytest.Dial(g.addr, "algo-2", "")
	if err != nil {
		t.Fatal(err)
	}
	if err := primary.SendE(`I="p4"|C="bust"|U="jsmith"|O="o1"|T="Order"`); err != nil {
		t.Fatal(err)
	}
	expectLine(t, algo, `^E@\d{13}\|I="p4"\|C="bust"\|U="jsmith"\|O="o1"\|T="Order"$`)
	algo.Send('R', `I="p4"|S=0`)
	expectStatus(t, algo, 1, 0, "OK")
	expectCenterGot(t, primary, 6, `R|I="p4"|S=0`)

	// deleted: the object has no owner any more, the command's owner gets it
	algo.Send('D', `T="Order"|I="o1"`)
	expectStatus(t, algo, 2, 0, "OK")
	if err := risk.WaitCount(3, 5*time.Second); err != nil { // the delete followed o1 to risk
		t.Fatal(err)
	}
	if err := risk.SendE(`I="r2"|C="bust"|U="jsmith"|O="o1"|T="Order"`); err != nil {
		t.Fatal(err)
	}
	expectLine(t, sor, `^E@\d{13}\|I="r2"\|C="bust"\|U="jsmith"\|O="o1"\|T="Order"$`)

	// the command's owner gone too: S=1 naming the command
	sor.Close()
	waitGone(t, g.r, "sor-1")
	if err := risk.SendE(`I="r3"|C="bust"|U="jsmith"`); err != nil {
		t.Fatal(err)
	}
	expectCenterGot(t, risk, 4, `R|I="r3"|S=1|M="application \"sor-1\" that registered command \"bust\" is not connected"`)
	if err := risk.SendE(`I="r4"|C="nosuch"|U="jsmith"`); err != nil {
		t.Fatal(err)
	}
	expectCenterGot(t, risk, 5, `R|I="r4"|S=1|M="no application owns command \"nosuch\""`)
}

// TestCommandSharedObjectID: when two applications sent the same type and
// id, the one that registered the command gets the E (connected or not);
// when the command's owner is not among them, the first connected sender by
// login. Without the index (routes_cache_size 0) E goes by command only.
func TestCommandSharedObjectID(t *testing.T) {
	for _, size := range []int{10000, 0} {
		t.Run(fmt.Sprintf("routes_cache_size=%d", size), func(t *testing.T) {
			g := start(t, "", func(c *relay.Config) { c.RoutesCacheSize = size }, "a")
			x := dial(t, g, "x-app", "")
			y := dial(t, g, "y-app", "")
			z := dial(t, g, "z-app", "")
			y.Send('C', `I="cancel"`)
			expectStatus(t, y, 1, 0, "OK")
			x.Send('C', `I="inspect"`)
			expectStatus(t, x, 1, 0, "OK")
			z.Send('C', `I="audit"`)
			expectStatus(t, z, 1, 0, "OK")
			for _, c := range []*relaytest.Client{y, x} {
				c.Send('O', `T="Order"|I="o1"`)
				expectStatus(t, c, 2, 0, "OK")
			}
			center := g.centers["a"]
			if err := center.WaitCount(5, 5*time.Second); err != nil {
				t.Fatal(err)
			}
			center.SendE(`I="e1"|C="cancel"|O="o1"|T="Order"`)
			expectLine(t, y, `^E@\d{13}\|I="e1"\|C="cancel"\|O="o1"\|T="Order"$`)
			center.SendE(`I="e2"|C="inspect"|O="o1"|T="Order"`)
			expectLine(t, x, `^E@\d{13}\|I="e2"\|C="inspect"\|O="o1"\|T="Order"$`)
			center.SendE(`I="e3"|C="audit"|O="o1"|T="Order"`)
			if size == 0 {
				expectLine(t, z, `^E@\d{13}\|I="e3"\|C="audit"\|O="o1"\|T="Order"$`)
				return
			}
			expectLine(t, x, `^E@\d{13}\|I="e3"\|C="audit"\|O="o1"\|T="Order"$`)
			expectNothing(t, z)
			x.Close()
			waitGone(t, g.r, "x-app")
			center.SendE(`I="e4"|C="audit"|O="o1"|T="Order"`)
			expectLine(t, y, `^E@\d{13}\|I="e4"\|C="audit"\|O="o1"\|T="Order"$`)
			center.SendE(`I="e5"|C="inspect"|O="o1"|T="Order"`)
			expectCenterGot(t, center, 6, `R|I="e5"|S=1|M="application \"x-app\" that sent Order \"o1\" is not connected"`)
			expectNothing(t, y)
			expectNothing(t, z)
		})
	}
}
