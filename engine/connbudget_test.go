package engine

import (
	"testing"

	"github.com/sirupsen/logrus"
	logtest "github.com/sirupsen/logrus/hooks/test"

	"github.com/switchboard/switchboard/engine/channel"
)

func TestConnBudgetFormula(t *testing.T) {
	all := DefaultConfig() // socket, relay and esl enabled, admin on
	all.Relay.Centers = map[string]string{"a": "127.0.0.1:1", "b": "127.0.0.1:2"}
	all.Channels = make([]channel.Config, 3)
	socketOnly := DefaultConfig()
	socketOnly.Relay.Enabled, socketOnly.ESL.Enabled = false, false
	relayNoListener := DefaultConfig()
	relayNoListener.Relay.Listen = "0.0.0.0:-1"
	noAdmin := socketOnly
	noAdmin.Admin.Listen = ""
	for _, tt := range []struct {
		name           string
		cfg            Config
		limit          uint64
		reserve, share int
	}{
		// 64 + (16 + 16) admin + (16 + 2 x 4) relay + 3 x 16 listeners + 3 x 4 channels
		{"all parts", all, 1024, 64 + 32 + 24 + 48 + 12, (1024 - 180) / 3},
		{"socket only", socketOnly, 1024, 64 + 32 + 16, 1024 - 112},
		{"relay without listener", relayNoListener, 20000, 64 + 32 + 16 + 2*16, (20000 - 144) / 2},
		{"no admin", noAdmin, 4096, 64 + 16, 4096 - 80},
		{"limit below the reserve", all, 100, 180, 0},
		{"unknown limit", all, 0, 0, 0},
	} {
		b := newConnBudget(tt.cfg, tt.limit)
		if b.reserve != tt.reserve || b.share != tt.share {
			t.Errorf("%s: reserve %d share %d, want %d and %d", tt.name, b.reserve, b.share, tt.reserve, tt.share)
		}
	}
}

func TestConnBudgetCaps(t *testing.T) {
	logger, hook := logtest.NewNullLogger()
	log := logrus.NewEntry(logger)
	b := connBudget{limit: 1024, reserve: 112, share: 912}
	if got := b.capFor(log, "socket.max_connections", 0, 2); got != 456 {
		t.Fatalf("auto socket cap %d, want 456", got)
	}
	if e := hook.LastEntry(); e.Level != logrus.InfoLevel || e.Data["cap"] != 456 || e.Data["fd_limit"] != uint64(1024) {
		t.Fatalf("log %v %v", e.Message, e.Data)
	}
	if got := b.capFor(log, "relay.max_connections", 100, 1); got != 100 {
		t.Fatalf("a configured cap is kept: %d", got)
	}
	if got := b.capFor(log, "relay.max_connections", 5000, 1); got != 5000 || hook.LastEntry().Level != logrus.WarnLevel {
		t.Fatalf("a configured cap over the share is kept with a warning: %d %v", got, hook.LastEntry().Message)
	}
	tiny := connBudget{limit: 100, reserve: 180}
	if got := tiny.capFor(log, "esl.max_calls", 0, 1); got != 1 || hook.LastEntry().Level != logrus.WarnLevel {
		t.Fatalf("no room: cap %d (want 1) and a warning, got %v", got, hook.LastEntry().Message)
	}
	if got := (connBudget{}).capFor(log, "esl.max_calls", 0, 1); got != 0 {
		t.Fatalf("unknown limit: cap %d, want 0 (as configured)", got)
	}
}

// The example in docs/operations.md ("Connection caps").
func TestConnBudgetDocumentedExample(t *testing.T) {
	b := newConnBudget(DefaultConfig(), 1024)
	log := logrus.NewEntry(logrus.New())
	log.Logger.SetLevel(logrus.ErrorLevel)
	if b.reserve != 160 || b.share != 288 || b.capFor(log, "socket.max_connections", 0, fdPerSocketConn) != 144 {
		t.Fatalf("reserve %d share %d", b.reserve, b.share)
	}
}
