package relay_test

import (
	"fmt"
	"io"
	"net/http"
	"regexp"
	"strings"
	"sync"
	"testing"
	"time"
	"unicode/utf8"

	"github.com/switchboard/switchboard/engine/relay/relaytest"
	"github.com/switchboard/switchboard/internal/testutil"
	"github.com/switchboard/switchboard/tests/harness"
)

func fetchMetrics(t *testing.T, e *harness.Engine) string {
	t.Helper()
	resp, err := http.Get("http://" + e.Addr(t, "admin") + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

var appSeriesRE = regexp.MustCompile(`(?m)^switchboard_relay_app_messages_in_total\{app="((?:[^"\\]|\\.)*)"\} `)

// Issue 10 item 13, end to end: 400 applications with 250-byte ids (and ids that are 60 KB long or not
// UTF-8) log in to the engine at once. /metrics keeps at most relay.max_app_series (100) app series plus
// "other" and grows by kilobytes, not by the ids (6,000 logins with 60 KB ids used to add 360 MB to
// /metrics); the series go when the applications do; a bystander application is served throughout.
func TestLoginFloodKeepsMetricsBounded(t *testing.T) {
	s := startRelay(t, "", "  max_app_series: 100\n", "primary")
	bystander := login(t, s.addr, "bystander", "")
	seq := 1
	check := func() {
		t.Helper()
		sendAll(t, bystander, seq, fmt.Sprintf(`O|T="Tick"|I="t%d"`, seq))
		seq++
	}
	check()
	base := len(fetchMetrics(t, s.e))

	raw, err := relaytest.DialRaw(s.addr)
	if err != nil {
		t.Fatal(err)
	}
	defer raw.Close()
	raw.Raw("L#0|I=\"" + strings.Repeat("L", 60<<10) + "\"\n")
	if st, err := raw.ReadStatus(5 * time.Second); err != nil || st.Code != 1 || !strings.Contains(st.Text, "relay.max_login_bytes") {
		t.Fatalf("60 KB login id: %+v %v", st, err)
	}
	raw.Raw("L#1|I=\"\xff\xfe-not-utf8\"\n")
	if st, err := raw.ReadStatus(5 * time.Second); err != nil || st.Code != 0 {
		t.Fatalf("login id not UTF-8: %+v %v", st, err)
	}
	check()

	var (
		wg    sync.WaitGroup
		mu    sync.Mutex
		conns []*relaytest.Client
	)
	for i := 0; i < 400; i++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			c, err := relaytest.Dial(s.addr, fmt.Sprintf("app-%03d-%s", i, strings.Repeat("i", 240)), "")
			if err != nil {
				t.Error(err)
				return
			}
			mu.Lock()
			conns = append(conns, c)
			mu.Unlock()
		}()
	}
	wg.Wait()
	defer func() {
		for _, c := range conns {
			c.Close()
		}
	}()
	if t.Failed() {
		t.FailNow()
	}
	check()
	m := fetchMetrics(t, s.e)
	series := appSeriesRE.FindAllStringSubmatch(m, -1)
	if len(series) != 101 {
		t.Fatalf("%d app series for 402 applications, want 100 + other", len(series))
	}
	for _, sm := range series {
		if len(sm[1]) > 64 || !utf8.ValidString(sm[1]) {
			t.Fatalf("app label %q", sm[1])
		}
	}
	if grew := len(m) - base; grew > 32<<10 {
		t.Fatalf("/metrics grew by %d bytes for 402 applications", grew)
	}

	for _, c := range conns {
		c.Close()
	}
	raw.Close()
	if !testutil.Poll(testutil.Wait, func() bool {
		series = appSeriesRE.FindAllStringSubmatch(fetchMetrics(t, s.e), -1)
		return len(series) == 2 // the bystander and other
	}) {
		t.Fatalf("%d app series left after the applications went", len(series))
	}
	check()
}
