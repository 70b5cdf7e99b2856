// Package relay_test drives the AMI relay end to end: the engine (in-process, or the built binary for crash
// recovery) with Lua route expressions, real test centers and AMI clients on loopback.
package relay_test

import (
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/switchboard/switchboard/engine/relay/relaytest"
	"github.com/switchboard/switchboard/internal/testutil"
	"github.com/switchboard/switchboard/tests/harness"
)

var scripts = map[string]string{"relay.lua": "-- route expressions are compiled from relay.routes\n"}

type setup struct {
	e       *harness.Engine
	centers map[string]*relaytest.Center
	routes  string
	addr    string
}

// startRelay runs the engine with the relay, the given routes and one test center per name.
func startRelay(t *testing.T, routes, extra string, names ...string) *setup {
	t.Helper()
	dir := t.TempDir()
	s := &setup{centers: map[string]*relaytest.Center{}, routes: filepath.Join(dir, "relay.routes")}
	if err := os.WriteFile(s.routes, []byte(routes), 0o644); err != nil {
		t.Fatal(err)
	}
	var yaml strings.Builder
	fmt.Fprintf(&yaml, "relay:\n  listen: 127.0.0.1:0\n  routes_file: %s\n  persist_dir: %s\n", s.routes, filepath.Join(dir, "persist"))
	yaml.WriteString(extra)
	yaml.WriteString("  centers:\n")
	for _, n := range names {
		c, err := relaytest.NewCenter("127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(c.Close)
		s.centers[n] = c
		fmt.Fprintf(&yaml, "    %s: %s\n", n, c.Addr())
	}
	s.e = harness.Start(t, yaml.String(), harness.Options{Scripts: scripts})
	s.addr = s.e.Addr(t, "relay")
	for _, c := range s.centers {
		if err := c.WaitLogin(1, 5*time.Second); err != nil {
			t.Fatal(err)
		}
	}
	return s
}

func login(t *testing.T, addr, id, extra string) *relaytest.Client {
	t.Helper()
	c, err := relaytest.Dial(addr, id, extra)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return c
}

var okStatus = regexp.MustCompile(`^M@\d{13}\|Q=(\d+)\|S=0\|M="OK"$`)

// sendAll sends each line (type letter + params) and checks each exact status.
func sendAll(t *testing.T, c *relaytest.Client, firstSeq int, lines ...string) {
	t.Helper()
	for i, l := range lines {
		if err := c.Send(l[0], l[2:]); err != nil {
			t.Fatal(err)
		}
		got, err := c.ReadLine(5 * time.Second)
		if err != nil {
			t.Fatal(err)
		}
		m := okStatus.FindStringSubmatch(got)
		if m == nil || m[1] != fmt.Sprint(firstSeq+i) {
			t.Fatalf("%s: status %q, want Q=%d S=0", l, got, firstSeq+i)
		}
	}
}

func expectBodies(t *testing.T, s *setup, want map[string][]string) {
	t.Helper()
	for name, c := range s.centers {
		lines := want[name]
		if err := c.WaitCount(len(lines), 5*time.Second); err != nil {
			t.Fatalf("%s: %v; got %q", name, err, c.Bodies())
		}
	}
	time.Sleep(50 * time.Millisecond) // nothing more arrives
	for name, c := range s.centers {
		if got := strings.Join(c.Bodies(), "\n"); got != strings.Join(want[name], "\n") {
			t.Errorf("%s got\n%s\nwant\n%s", name, got, strings.Join(want[name], "\n"))
		}
	}
}

func TestForgeExample(t *testing.T) {
	routes := `RULE0;0;O,D;NewOrder,Cancel;Symbol String nonull;Symbol < "F";Center0;BREAK;
RULE1;1;O,D;NewOrder,Cancel;Symbol String nonull;Symbol < "Q";Center1;BREAK;
RULE2;2;O,D;NewOrder,Cancel;Symbol String nonull;true;Center2,Center3;BREAK;
RULE3;3;*;*;;true;*;BREAK;
`
	s := startRelay(t, routes, "", "Center0", "Center1", "Center2", "Center3")
	app := login(t, s.addr, "app", "")
	sendAll(t, app, 1, `O|T="NewOrder"|Symbol="AAPL"`, `O|T="NewOrder"|Symbol="IBM"`, `O|T="NewOrder"|Symbol="ZVZZT"`)
	expectBodies(t, s, map[string][]string{
		"Center0": {`O|T="NewOrder"|Symbol="AAPL"`},
		"Center1": {`O|T="NewOrder"|Symbol="IBM"`},
		"Center2": {`O|T="NewOrder"|Symbol="ZVZZT"`},
		"Center3": {`O|T="NewOrder"|Symbol="ZVZZT"`},
	})
}

const workedRoutes = `# RouteName;Priority;MessageTypes;ObjectTypes;ParamTypes;Expression;RouteList;OnTrue;OnFalse
BigOrders;10;O;Order;qty Long nonull,px Double nonull;qty * px >= 1000000;risk;;
EuOrders;20;O,D;Order,Fill;venue String nonull;venue == "LSE" || venue == "XETRA";eu;BREAK;
Cmds;30;C;*;;true;primary;BREAK;
Default;99;*;*;;true;primary,hist;BREAK;
`

var workedRows = []string{
	`O|T="Order"|I="o1"|qty=5000L|px=250.0D|venue="NYSE"`,
	`O|T="Order"|I="o2"|qty=10|px=3.5|venue="LSE"`,
	`O|T="Order"|I="o3"|qty=2000000L|px=1.0D|venue="XETRA"`,
	`O|T="Order"|I="o4"|px=10.0D|venue="NYSE"`,
	`D|T="Order"|I="o2"|venue="LSE"`,
	`D|T="Order"|I="o1"`,
	`C|I="bust"|N="order.bust"`,
	`O|T="Heartbeat"|I="h"|qty=1`,
}

func TestWorkedExampleAllRows(t *testing.T) {
	// the default: the rules alone, exactly the table of ami-relay.md §1.7
	s := startRelay(t, workedRoutes, "", "primary", "risk", "hist", "eu")
	app := login(t, s.addr, "sor-1", `APP="SOR"|O="UNIX"`)
	sendAll(t, app, 1, workedRows...)
	r := workedRows
	expectBodies(t, s, map[string][]string{
		"risk":    {r[0], r[2]},
		"eu":      {`O|T="Order"|I="o2"|qty=10|px=3.5F|venue="LSE"`, r[2], r[4]},
		"primary": {r[0], r[3], r[5], r[6], r[7]},
		"hist":    {r[0], r[3], r[5], r[7]},
	})
}

func TestWorkedExampleDeletesFollowInserts(t *testing.T) {
	s := startRelay(t, workedRoutes, "  follow_objects: deletes\n", "primary", "risk", "hist", "eu")
	app := login(t, s.addr, "sor-1", "")
	sendAll(t, app, 1, workedRows...)
	r := workedRows
	expectBodies(t, s, map[string][]string{
		"risk":    {r[0], r[2], r[5]}, // row 6: o1's delete also reaches risk, where o1 was inserted
		"eu":      {`O|T="Order"|I="o2"|qty=10|px=3.5F|venue="LSE"`, r[2], r[4]},
		"primary": {r[0], r[3], r[5], r[6], r[7]},
		"hist":    {r[0], r[3], r[5], r[7]},
	})
}

func TestRoutesEditedUnderTraffic(t *testing.T) {
	s := startRelay(t, "ToA;1;O;*;seq Int nonull;seq >= 0;a;BREAK;\n", "", "a", "b")
	app := login(t, s.addr, "app", `O="QUIET"`)
	var mu sync.Mutex
	sent := 0
	stop := make(chan struct{})
	done := make(chan struct{})
	go func() {
		defer close(done)
		for i := 0; ; i++ {
			select {
			case <-stop:
				app.Flush()
				return
			default:
			}
			app.Queue('O', fmt.Sprintf(`T="x"|seq=%d`, i))
			mu.Lock()
			sent = i + 1
			mu.Unlock()
			if i%20 == 19 {
				app.Flush()
				time.Sleep(time.Millisecond)
			}
		}
	}()
	time.Sleep(200 * time.Millisecond)
	// broken edit: the old table keeps working
	if err := os.WriteFile(s.routes, []byte("ToA;1;O;*;seq Int nonull;seq >= ;b;BREAK;\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	s.e.Logs.WaitFor(t, "relay.routes:1: route ToA: EXPRESSION", 2*time.Second)
	countA := s.centers["a"].Count()
	time.Sleep(100 * time.Millisecond)
	if s.centers["a"].Count() == countA || s.centers["b"].Count() != 0 {
		t.Fatal("broken edit disturbed routing")
	}
	// good edit: applies within 1 s
	edited := time.Now()
	if err := os.WriteFile(s.routes, []byte("ToB;1;O;*;seq Int nonull;seq >= 0;b;BREAK;\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := s.centers["b"].WaitCount(1, time.Second); err != nil {
		t.Fatalf("new routes not applied within 1s: %v", err)
	}
	t.Logf("new routes applied after %v", time.Since(edited))
	time.Sleep(100 * time.Millisecond)
	close(stop)
	<-done
	mu.Lock()
	n := sent
	mu.Unlock()
	a, b := s.centers["a"], s.centers["b"]
	testutil.Poll(5*time.Second, func() bool { return a.Count()+b.Count() >= n })
	time.Sleep(50 * time.Millisecond)
	if a.Count()+b.Count() != n {
		t.Fatalf("sent %d, centers got %d + %d", n, a.Count(), b.Count())
	}
	// a got 0..k-1 and b got k..n-1: nothing lost, duplicated or misrouted
	i := 0
	for _, c := range []*relaytest.Center{a, b} {
		for _, r := range c.Received() {
			v, _ := r.Msg.Get("seq")
			if v.I != int64(i) {
				t.Fatalf("expected seq %d, got %d", i, v.I)
			}
			i++
		}
	}
}

func TestBadInputKeepsConnection(t *testing.T) {
	s := startRelay(t, "", "", "a")
	app := login(t, s.addr, "app", "")
	app.Raw("O#1|T=\"x\"|qty=12X\n")
	line, err := app.ReadLine(5 * time.Second)
	if err != nil || !regexp.MustCompile(`^M@\d{13}\|Q=1\|S=1\|M="Parse error: column 17: unknown number suffix 'X' \(expected L, F, D or T\)"$`).MatchString(line) {
		t.Fatalf("got %q %v", line, err)
	}
	sendAll(t, app, 1, `O|T="x"|qty=12L`)
	if err := s.centers["a"].WaitCount(1, 5*time.Second); err != nil {
		t.Fatal(err)
	}
	if got := s.centers["a"].Bodies(); len(got) != 1 || got[0] != `O|T="x"|qty=12L` {
		t.Fatalf("center got %q", got)
	}
}
