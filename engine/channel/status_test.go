package channel

import (
	"context"
	"errors"
	"io"
	"net"
	"strings"
	"testing"
	"time"

	"github.com/sirupsen/logrus"

	"github.com/switchboard/switchboard/internal/testutil"
)

// Status shows a channel up with a request awaiting its reply, and one that cannot connect with the
// request it holds and its last error; StatusPage pages them in configuration order.
func TestStatus(t *testing.T) {
	u := newUpstream(t, func(c net.Conn) { io.Copy(io.Discard, c) }) // never answers
	ln, _ := net.Listen("tcp", "127.0.0.1:0")
	closedPort := ln.Addr().(*net.TCPAddr).Port
	ln.Close()
	quiet := textConfig(u)
	quiet.Name, quiet.RedirectIn, quiet.RedirectOut, quiet.TopicIn, quiet.TopicOut = "quiet", false, false, "", ""
	down := DefaultConfig()
	down.Name, down.Host, down.Port, down.Permanent, down.ReconnectionTimeout = "down", "127.0.0.1", closedPort, true, 50*time.Millisecond
	logger := logrus.New()
	logger.SetOutput(io.Discard)
	set, err := New([]Config{quiet, down}, Options{Log: logrus.NewEntry(logger)})
	if err != nil {
		t.Fatal(err)
	}
	if err := set.Start(context.Background()); err != nil {
		t.Fatal(err)
	}
	qc, _ := set.Channel("quiet")
	dc, _ := set.Channel("down")
	testutil.WaitFor(t, "the condition", func() bool { st, _ := qc.State(); return st == StateUp })
	errs := make(chan error, 2)
	for _, ch := range []*Channel{qc, dc} {
		go func() {
			_, err := ch.Request(context.Background(), "hello", time.Minute)
			errs <- err
		}()
	}
	testutil.WaitFor(t, "the condition", func() bool {
		q, d := qc.Status(), dc.Status()
		return q.AwaitingReply == 1 && d.BufferedMessages == 1 && d.LastError != ""
	})
	q := qc.Status()
	if q.Name != "quiet" || q.State != StateUp || q.UpSince.IsZero() || q.BufferedBytes <= 0 || q.LastError != "" || q.Addr != u.addr {
		t.Fatalf("quiet: %+v", q)
	}
	d := dc.Status()
	if d.State == StateUp || !d.UpSince.IsZero() || d.BufferedBytes != int64(len("hello\n")) || !strings.Contains(d.LastError, "connection refused") {
		t.Fatalf("down: %+v", d)
	}
	page, total := set.StatusPage(1, 10)
	if total != 2 || len(page) != 1 || page[0].Name != "down" {
		t.Fatalf("page from 1: %d %+v", total, page)
	}
	if page, total := set.StatusPage(2, 10); total != 2 || len(page) != 0 {
		t.Fatalf("page past the end: %d %+v", total, page)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if err := set.Shutdown(ctx); err != nil {
		t.Fatal(err)
	}
	for i := 0; i < 2; i++ {
		if err := <-errs; !errors.Is(err, ErrStopped) {
			t.Errorf("request at shutdown: %v", err)
		}
	}
	if st := qc.Status(); st.State != StateStopped || st.AwaitingReply != 0 {
		t.Fatalf("after shutdown: %+v", st)
	}
}
