package relay_test

import (
	"fmt"
	"io"
	"net"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/switchboard/switchboard/engine/relay"
)

// TestLogoutAnswersEveryInstruction sends a whole session in one write, as `printf ... | nc` does: every
// instruction before X gets its status, in order, before the relay closes (issue 15 item 10). In guaranteed
// mode the last statuses wait for the journal's fsync while X is already read.
func TestLogoutAnswersEveryInstruction(t *testing.T) {
	for _, guaranteed := range []bool{false, true} {
		t.Run(fmt.Sprintf("guaranteed=%v", guaranteed), func(t *testing.T) {
			g := start(t, "", func(c *relay.Config) { c.Guaranteed = guaranteed }, "primary")
			for round := 0; round < 20; round++ {
				c, err := net.Dial("tcp", g.addr)
				if err != nil {
					t.Fatal(err)
				}
				session := "L#0|I=\"sor-1\"\nO#1|T=\"Order\"|I=\"o1\"|qty=5000L|px=250.0D\nO#2|T=\"Order\"|I=\"o2\"|qty=10|px=3.5D\n" +
					"D#3|T=\"Order\"|I=\"o1\"\nX#4|STAT=\"GOODBYE\"\n"
				if _, err := c.Write([]byte(session)); err != nil {
					t.Fatal(err)
				}
				_ = c.SetReadDeadline(time.Now().Add(10 * time.Second))
				got, err := io.ReadAll(c)
				c.Close()
				if err != nil {
					t.Fatalf("round %d: %v (got %q)", round, err, got)
				}
				lines := strings.Split(strings.TrimSuffix(string(got), "\n"), "\n")
				if len(lines) != 5 {
					t.Fatalf("round %d: %d statuses before the close, want 5: %q", round, len(lines), got)
				}
				for i, l := range lines {
					if !regexp.MustCompile(fmt.Sprintf(`^M@\d{13}\|Q=%d\|S=0\|M="OK"$`, i)).MatchString(l) {
						t.Fatalf("round %d: status %d is %q", round, i, l)
					}
				}
			}
			if err := g.centers["primary"].WaitCount(60, 5*time.Second); err != nil {
				t.Fatal(err)
			}
		})
	}
}
