package relay_test

import (
	"fmt"
	"regexp"
	"testing"
	"time"

	"github.com/switchboard/switchboard/engine/relay/relaytest"
)

// readLine reads the application's next line and matches it.
func readLine(t *testing.T, c *relaytest.Client, re string) {
	t.Helper()
	line, err := c.ReadLine(5 * time.Second)
	if err != nil {
		t.Fatal(err)
	}
	if !regexp.MustCompile(re).MatchString(line) {
		t.Fatalf("line %q, want %s", line, re)
	}
}

// centerGot waits for a center's n-th instruction and checks it is body.
func centerGot(t *testing.T, c *relaytest.Center, n int, body string) {
	t.Helper()
	if err := c.WaitCount(n, 5*time.Second); err != nil {
		t.Fatalf("%v; got %q", err, c.Bodies())
	}
	if got := c.Bodies(); len(got) != n || got[n-1] != body {
		t.Fatalf("center got %q, want #%d %q", got, n, body)
	}
}

// TestCommandsFollowObjectOwners drives the engine (Lua routes, the worked
// example's rules) with two applications: the E a center sends about an
// object reaches the application that sent the object, its R goes back to
// that center only; an E about no known object reaches the command's owner;
// once the object's owner has gone, the center gets R with S=1 and why.
func TestCommandsFollowObjectOwners(t *testing.T) {
	for _, guaranteed := range []bool{false, true} {
		t.Run(fmt.Sprintf("guaranteed=%v", guaranteed), func(t *testing.T) {
			s := startRelay(t, workedRoutes, fmt.Sprintf("  guaranteed: %v\n", guaranteed), "primary", "risk", "hist", "eu")
			sor := login(t, s.addr, "sor-1", "")
			algo := login(t, s.addr, "algo-2", "")
			sendAll(t, sor, 1, `C|I="bust"|N="order.bust"`)
			// BigOrders and Default: o1 is at risk, primary and hist
			sendAll(t, algo, 1, `O|T="Order"|I="o1"|qty=5000L|px=250.0D|venue="NYSE"`)
			risk, primary, hist := s.centers["risk"], s.centers["primary"], s.centers["hist"]
			centerGot(t, risk, 1, `O|T="Order"|I="o1"|qty=5000L|px=250.0D|venue="NYSE"`)
			centerGot(t, primary, 2, `O|T="Order"|I="o1"|qty=5000L|px=250.0D|venue="NYSE"`)

			if err := risk.SendE(`I="k1"|C="bust"|U="jsmith"|O="o1"|T="Order"|V="[{\"qty\":5000}]"J`); err != nil {
				t.Fatal(err)
			}
			readLine(t, algo, `^E@\d{13}\|I="k1"\|C="bust"\|U="jsmith"\|O="o1"\|T="Order"\|V="\[\{\\"qty\\":5000\}\]"J$`)
			sendAll(t, algo, 2, `R|I="k1"|S=3|M="busted"|qty=0`)
			centerGot(t, risk, 2, `R|I="k1"|S=3|M="busted"|qty=0`)

			// no object named: the command's owner
			if err := hist.SendE(`I="k2"|C="bust"|U="jsmith"`); err != nil {
				t.Fatal(err)
			}
			readLine(t, sor, `^E@\d{13}\|I="k2"\|C="bust"\|U="jsmith"$`)
			sendAll(t, sor, 2, `R|I="k2"|S=0`)
			centerGot(t, hist, 2, `R|I="k2"|S=0`)

			// the owner of o1 goes: the asking center is told, sor-1 gets nothing
			algo.Close()
			s.e.Logs.WaitFor(t, `msg="application logged out"`, 5*time.Second)
			if err := risk.SendE(`I="k3"|C="bust"|U="jsmith"|O="o1"|T="Order"`); err != nil {
				t.Fatal(err)
			}
			centerGot(t, risk, 3, `R|I="k3"|S=1|M="application \"algo-2\" that sent Order \"o1\" is not connected"`)
			sendAll(t, sor, 3, `O|T="Heartbeat"|I="h"`) // its next line is this status: no E was queued for it
			for name, c := range s.centers {
				for _, b := range c.Bodies() {
					if b == `R|I="k1"|S=3|M="busted"|qty=0` && name != "risk" {
						t.Errorf("%s got risk's answer", name)
					}
				}
			}
		})
	}
}
