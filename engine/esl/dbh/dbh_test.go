package dbh

import (
	"context"
	"errors"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

func TestParseDSN(t *testing.T) {
	odbc := map[string]string{"fusionpbx": "host=db dbname=fusionpbx", "uri": "postgres://u@db/x"}
	for _, c := range []struct {
		dsn, user, pass string
		driver, source  string
		err             string
	}{
		{dsn: "sqlite://voicemail", driver: "sqlite", source: "file:/data/voicemail.db?_pragma=busy_timeout(5000)&_pragma=journal_mode(WAL)"},
		{dsn: "voicemail", driver: "sqlite", source: "file:/data/voicemail.db?_pragma=busy_timeout(5000)&_pragma=journal_mode(WAL)"},
		{dsn: "sqlite:///var/x.db", driver: "sqlite", source: "file:/var/x.db?_pragma=busy_timeout(5000)&_pragma=journal_mode(WAL)"},
		{dsn: "sqlite://memory://calls", driver: "sqlite", source: "file:calls?mode=memory&cache=shared"},
		{dsn: "pgsql://host=db dbname=x", user: "u", pass: "p w", driver: "pgx", source: "host=db dbname=x user=u password='p w'"},
		{dsn: "postgresql://u:p@db/x", driver: "pgx", source: "postgresql://u:p@db/x"},
		{dsn: "odbc://fusionpbx:fp:secret", driver: "pgx", source: "host=db dbname=fusionpbx user=fp password=secret"},
		{dsn: "fusionpbx:fp:secret", driver: "pgx", source: "host=db dbname=fusionpbx user=fp password=secret"},
		{dsn: "odbc://uri", driver: "pgx", source: "postgres://u@db/x"},
		{dsn: "odbc://nope", err: `ODBC DSN "nope" is not mapped`},
		{dsn: "mysql://x", err: "not supported"},
		{dsn: "redis://x", err: "unknown DSN prefix"},
		{dsn: " ", err: "empty DSN"},
	} {
		got, err := ParseDSN(c.dsn, c.user, c.pass, "/data", odbc)
		if c.err != "" {
			if err == nil || !strings.Contains(err.Error(), c.err) {
				t.Errorf("%q: error %v, want %q", c.dsn, err, c.err)
			}
			continue
		}
		if err != nil || got.Driver != c.driver || got.Source != c.source {
			t.Errorf("%q: %+v %v, want %s %s", c.dsn, got, err, c.driver, c.source)
		}
	}
}

func FuzzParseDSN(f *testing.F) {
	for _, s := range []string{"sqlite://x", "pgsql://host=a", "odbc://a:b:c", "a:b:c", "memory://", "sqlite://memory://", "://", "x://y"} {
		f.Add(s, "u", "p")
	}
	f.Fuzz(func(t *testing.T, dsn, user, pass string) {
		tg, err := ParseDSN(dsn, user, pass, "/data", map[string]string{"a": "host=x"})
		if err == nil && tg.Driver != "sqlite" && tg.Driver != "pgx" {
			t.Fatalf("driver %q", tg.Driver)
		}
	})
}

func TestSQLiteHandle(t *testing.T) {
	p := NewPools(Config{DataDir: t.TempDir(), MaxConns: 2, QueryTimeout: 5 * time.Second, MaxRowBytes: 64})
	defer p.Close()
	h, err := p.Open("sqlite://calls", "", "")
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	if !h.Connected(ctx) {
		t.Fatal("not connected")
	}
	for _, q := range []string{"CREATE TABLE c (n INTEGER, who TEXT)", "INSERT INTO c VALUES (1, 'a'), (2, NULL), (3, 'c')"} {
		if err := h.Exec(ctx, q); err != nil {
			t.Fatal(err)
		}
	}
	if h.AffectedRows() != 3 {
		t.Fatalf("affected %d", h.AffectedRows())
	}
	var got []string
	err = h.Query(ctx, "SELECT n, who FROM c ORDER BY n", func(r Row) (bool, error) {
		got = append(got, r.Columns[0]+"="+r.Values[0]+","+r.Columns[1]+"="+r.Values[1])
		return r.Values[0] != "2", nil // stop after the second row
	})
	if err != nil || strings.Join(got, ";") != "n=1,who=a;n=2,who=" {
		t.Fatalf("rows %q, %v", got, err)
	}
	if err := h.Exec(ctx, "SELEC nonsense"); err == nil || h.LastError() == "" {
		t.Fatalf("bad SQL: %v, last error %q", err, h.LastError())
	}
	h.ClearError()
	err = h.Query(ctx, "SELECT '"+strings.Repeat("x", 100)+"' AS big", func(Row) (bool, error) { return true, nil })
	if err == nil || !strings.Contains(err.Error(), "exceeds esl.dbh_max_row_bytes (64)") {
		t.Fatalf("big row: %v", err)
	}
	cctx, cancel := context.WithCancel(ctx)
	cancel()
	if err := h.Exec(cctx, "SELECT 1"); err == nil || !errors.Is(err, context.Canceled) {
		t.Fatalf("cancelled context: %v", err)
	}
	// A second handle on the same DSN shares the pool and sees the data.
	h2, _ := p.Open("calls", "", "")
	n := ""
	_ = h2.Query(ctx, "SELECT count(*) FROM c", func(r Row) (bool, error) { n = r.Values[0]; return true, nil })
	if n != "3" || len(p.dbs) != 1 {
		t.Fatalf("count %q, pools %d", n, len(p.dbs))
	}
	if !h.Release() || h.Release() || h.Exec(ctx, "SELECT 1") != ErrReleased {
		t.Fatal("release")
	}
	if _, err := filepath.Glob(filepath.Join(p.cfg.DataDir, "calls.db")); err != nil {
		t.Fatal(err)
	}
}
