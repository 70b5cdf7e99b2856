package relay_test

import (
	"bytes"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/switchboard/switchboard/engine/relay/relaytest"
	"github.com/switchboard/switchboard/internal/testutil"
	"github.com/switchboard/switchboard/tests/harness"
)

type lockedBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (l *lockedBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}
func (l *lockedBuffer) String() string { l.mu.Lock(); defer l.mu.Unlock(); return l.b.String() }

// TestCentersFromFlagsAndEnvironment (issue 15 items 8 and 12), with the built binary as an operator runs
// it: one center from --set relay.centers.primary=..., one from SWITCHBOARD_RELAY_CENTERS_RISK=..., one from
// the file's 3forge text form without a name (named by its host:port). The relay logs in to all three.
func TestCentersFromFlagsAndEnvironment(t *testing.T) {
	if testing.Short() {
		t.Skip("builds and runs the binary")
	}
	var centers []*relaytest.Center
	for i := 0; i < 3; i++ {
		c, err := relaytest.NewCenter("127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		centers = append(centers, c)
	}
	dir := t.TempDir()
	os.MkdirAll(filepath.Join(dir, "scripts"), 0o755)
	os.WriteFile(filepath.Join(dir, "scripts", "relay.lua"), []byte("-- none\n"), 0o644)
	cfg := harness.Complete("relay:\n  listen: 127.0.0.1:0\n  centers: \""+centers[2].Addr()+"\"\n", filepath.Join(dir, "scripts"))
	os.WriteFile(filepath.Join(dir, "switchboard.yaml"), []byte(cfg), 0o644)
	cmd := exec.Command(harness.Binary(t), "run", "-c", filepath.Join(dir, "switchboard.yaml"), "--log-format", "json",
		"--set", "relay.centers.primary="+centers[0].Addr())
	cmd.Env = append(os.Environ(), "SWITCHBOARD_RELAY_CENTERS_RISK="+centers[1].Addr())
	var logs lockedBuffer
	cmd.Stderr = &logs
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	defer func() {
		cmd.Process.Signal(syscall.SIGTERM)
		cmd.Wait()
	}()
	for i, c := range centers {
		if err := c.WaitLogin(1, 10*time.Second); err != nil {
			t.Fatalf("center %d: %v\n%s", i, err, logs.String())
		}
	}
	for _, want := range []string{`"center":"primary"`, `"center":"risk"`, `"center":"` + centers[2].Addr() + `"`} {
		if !testutil.Poll(testutil.Wait, func() bool { return strings.Contains(logs.String(), want) }) {
			t.Fatalf("logs never name %s:\n%s", want, logs.String())
		}
	}
}

// TestShutdownWithStalledCenter (issue 15 item 9): a center that accepts the relay's login and then stops
// reading (the relay's writes to it block) does not hold the process past shutdown_timeout: SIGTERM, and
// the built binary exits within the timeout plus a little slack, in both modes.
func TestShutdownWithStalledCenter(t *testing.T) {
	if testing.Short() {
		t.Skip("builds and runs the binary")
	}
	for _, guaranteed := range []bool{false, true} {
		t.Run(fmt.Sprintf("guaranteed=%v", guaranteed), func(t *testing.T) {
			center, err := relaytest.NewCenter("127.0.0.1:0")
			if err != nil {
				t.Fatal(err)
			}
			defer center.Close()
			relayAddr := freeAddr(t)
			const timeout = 3 * time.Second
			p := harness.StartBinary(t, fmt.Sprintf("shutdown_timeout: 3s\nrelay:\n  listen: %s\n  guaranteed: %v\n  persist_dir: persist\n  centers:\n    hung: %s\n",
				relayAddr, guaranteed, center.Addr()), harness.Options{Scripts: scripts}, "relay")
			if err := center.WaitLogin(1, 10*time.Second); err != nil {
				t.Fatal(err)
			}
			center.StopReading(true)
			app, err := relaytest.Dial(relayAddr, "feed", `O="QUIET"`)
			if err != nil {
				t.Fatal(err)
			}
			defer app.Close()
			pad := strings.Repeat("p", 16<<10)
			stop := make(chan struct{})
			done := make(chan struct{})
			go func() {
				defer close(done)
				for i := 0; ; i++ {
					select {
					case <-stop:
						return
					default:
					}
					app.Conn().SetWriteDeadline(time.Now().Add(time.Second))
					if _, err := app.Queue('O', fmt.Sprintf(`T="x"|id=%d|pad="%s"`, i, pad)); err != nil {
						return
					}
					if i%8 == 7 && app.Flush() != nil {
						return
					}
				}
			}()
			p.Logs.WaitFor(t, "center stalled: it does not read", 30*time.Second)
			close(stop)
			<-done
			sent := time.Now()
			p.Signal(t, syscall.SIGTERM)
			code := p.Wait(t, timeout+10*time.Second)
			took := time.Since(sent)
			if took > timeout+2*time.Second {
				t.Fatalf("exited %v after SIGTERM, shutdown_timeout is %v", took, timeout)
			}
			t.Logf("exited with %d %v after SIGTERM", code, took.Round(10*time.Millisecond))
		})
	}
}
