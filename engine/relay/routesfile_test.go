package relay_test

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/sirupsen/logrus"

	"github.com/switchboard/switchboard/engine/relay"
	"github.com/switchboard/switchboard/engine/relay/relaytest"
	"github.com/switchboard/switchboard/internal/testutil"
)

// syncBuffer collects log output.
type syncBuffer struct {
	mu sync.Mutex
	b  strings.Builder
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

func (s *syncBuffer) waitFor(t *testing.T, text string) {
	t.Helper()
	if !testutil.Poll(testutil.Wait, func() bool { return strings.Contains(s.String(), text) }) {
		t.Fatalf("log never said %q:\n%s", text, s.String())
	}
}

func logTo(b *syncBuffer) *logrus.Entry {
	l := logrus.New()
	l.SetOutput(b)
	l.SetLevel(logrus.DebugLevel)
	return logrus.NewEntry(l)
}

// streamIDs sends O|T="x"|id=<n> messages (QUIET) until stop is closed and returns how many.
func streamIDs(app *relaytest.Client, stop <-chan struct{}) <-chan int {
	sent := make(chan int, 1)
	go func() {
		n := 0
		for {
			select {
			case <-stop:
				app.Flush()
				sent <- n
				return
			default:
			}
			app.Queue('O', fmt.Sprintf(`T="x"|id=%d`, n))
			n++
			if n%20 == 0 {
				app.Flush()
				time.Sleep(time.Millisecond)
			}
		}
	}()
	return sent
}

// TestTruncatedRoutesFileNeverGoesLive (issue 15 item 2): an editor that truncates the routes file, pauses,
// then writes the new rules. For the 300 ms the file is empty ("no rules": every message to every center),
// the table in use stays; then the new rules apply. Every message goes to exactly one center, a's before
// b's. Only an explicit reload applies a file with no rule, and says so.
func TestTruncatedRoutesFileNeverGoesLive(t *testing.T) {
	var logs syncBuffer
	g := startWith(t, "ToA;1;O;*;;true;a;BREAK;\n", nil, relay.Options{Log: logTo(&logs)}, "a", "b")
	app := dial(t, g, "app", `O="QUIET"`)
	stop := make(chan struct{})
	sent := streamIDs(app, stop)
	a, b := g.centers["a"], g.centers["b"]
	if err := a.WaitCount(100, 5*time.Second); err != nil {
		t.Fatal(err)
	}
	// the editor: truncate, think, write
	f, err := os.OpenFile(g.routes, os.O_WRONLY|os.O_TRUNC, 0)
	if err != nil {
		t.Fatal(err)
	}
	f.Close()
	time.Sleep(300 * time.Millisecond)
	f, _ = os.OpenFile(g.routes, os.O_WRONLY|os.O_TRUNC, 0)
	f.WriteString("ToB;1;O;*;") // in two writes, like a buffered editor
	time.Sleep(10 * time.Millisecond)
	f.WriteString(";true;b;BREAK;\n")
	f.Close()
	if err := b.WaitCount(100, 5*time.Second); err != nil {
		t.Fatal(err)
	}
	close(stop)
	n := <-sent
	testutil.Poll(10*time.Second, func() bool { return a.Count()+b.Count() >= n })
	time.Sleep(50 * time.Millisecond)
	if a.Count()+b.Count() != n {
		t.Fatalf("sent %d, a got %d, b got %d: a message went to both (an empty table went live) or none", n, a.Count(), b.Count())
	}
	next := 0
	for _, c := range []*relaytest.Center{a, b} {
		for _, r := range c.Received() {
			if v, _ := r.Msg.Get("id"); v.I != int64(next) {
				t.Fatalf("id %d where %d was expected", v.I, next)
			}
			next++
		}
	}
	logs.waitFor(t, "routes file has no rule: not applied from a file change (the table in use stays)")

	// an explicit reload applies an empty file, and says so
	if err := os.WriteFile(g.routes, nil, 0o644); err != nil {
		t.Fatal(err)
	}
	if err := g.r.Reload(context.Background()); err != nil {
		t.Fatal(err)
	}
	logs.waitFor(t, "routes file has no rule: every message now goes to every center (explicit reload)")
	na, nb := a.Count(), b.Count()
	app.Send('O', `T="x"|id=-1`)
	if err := a.WaitCount(na+1, 5*time.Second); err != nil {
		t.Fatal(err)
	}
	if err := b.WaitCount(nb+1, 5*time.Second); err != nil {
		t.Fatal(err)
	}
}

// TestMissingRoutesFileIsCreated (issue 15 item 8): a routes file that does not exist is created with
// instructions and no rule (every message to every center, as 3forge does); rules written into it later
// apply.
func TestMissingRoutesFileIsCreated(t *testing.T) {
	var logs syncBuffer
	dir := t.TempDir()
	routes := filepath.Join(dir, "data", "relay.routes")
	g := startWith(t, "", func(c *relay.Config) { c.RoutesFile = routes }, relay.Options{Log: logTo(&logs)}, "a", "b")
	got, err := os.ReadFile(routes)
	if err != nil || string(got) != relay.PlaceholderRoutes {
		t.Fatalf("routes file %q, %v", got, err)
	}
	logs.waitFor(t, "routes file not found: created it with instructions and no rule")
	app := dial(t, g, "app", "")
	app.Send('O', `T="x"|I="1"`)
	expectStatus(t, app, 1, 0, "OK")
	for _, c := range g.centers {
		if err := c.WaitCount(1, 5*time.Second); err != nil {
			t.Fatal(err)
		}
	}
	if err := os.WriteFile(routes, append(got, "OnlyB;1;*;*;;;b;BREAK;\n"...), 0o644); err != nil {
		t.Fatal(err)
	}
	logs.waitFor(t, "routes loaded")
	app.Send('O', `T="x"|I="2"`)
	expectStatus(t, app, 2, 0, "OK")
	if err := g.centers["b"].WaitCount(2, 5*time.Second); err != nil {
		t.Fatal(err)
	}
	time.Sleep(50 * time.Millisecond)
	if n := g.centers["a"].Count(); n != 1 {
		t.Fatalf("a got %d messages, want 1", n)
	}
}
