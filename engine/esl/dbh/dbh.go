// Package dbh gives call flows database handles as FreeSWITCH's freeswitch.Dbh does: a DSN names an
// embedded SQLite file (pure Go, no cgo) or a PostgreSQL server, and a handle runs queries that hand rows to a
// callback one at a time. Each distinct DSN gets one bounded pool (Pools), shared by every call; a Handle
// is one script's use of a pool and keeps its own affected-rows count and last error.
//
// DSN forms, as mod_lua takes them (switch_core_sqldb.c):
//
//	sqlite://name            <data dir>/name.db (an absolute or ./-relative path is used as is)
//	sqlite://memory://name   an in-memory database shared by the handles of this process
//	name                     a bare name: SQLite, as above
//	pgsql://host=h dbname=d user=u password=p    libpq keywords
//	postgres://user:pass@host/db, postgresql://...  a PostgreSQL URI
//	odbc://dsn[:user[:pass]] or dsn:user:pass       an ODBC DSN, mapped by esl.odbc to a PostgreSQL connection string
//
// Limits: esl.dbh_max_conns connections per DSN, esl.dbh_idle_timeout before an idle connection closes,
// esl.dbh_query_timeout per query (and the caller's context), esl.dbh_max_row_bytes per row handed over.
package dbh

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"time"

	_ "github.com/jackc/pgx/v5/stdlib" // registers "pgx"
	_ "modernc.org/sqlite"             // registers "sqlite"
)

// Config bounds the pools.
type Config struct {
	DataDir      string            // where relative SQLite names live
	MaxConns     int               // per DSN
	IdleTimeout  time.Duration     // 0 keeps idle connections
	QueryTimeout time.Duration     // per query; 0 = only the caller's context
	MaxRowBytes  int               // one row; 0 = 1 MiB
	ODBC         map[string]string // ODBC DSN name -> PostgreSQL connection string
}

// Pools holds one *sql.DB per distinct DSN. Safe for concurrent use.
type Pools struct {
	cfg    Config
	mu     sync.Mutex
	dbs    map[string]*sql.DB
	closed bool
}

// NewPools makes an empty set of pools; databases open on first use.
func NewPools(cfg Config) *Pools {
	if cfg.MaxConns <= 0 {
		cfg.MaxConns = 4
	}
	if cfg.MaxRowBytes <= 0 {
		cfg.MaxRowBytes = 1 << 20
	}
	return &Pools{cfg: cfg, dbs: map[string]*sql.DB{}}
}

// Close closes every pool; handles in use fail afterwards.
func (p *Pools) Close() error {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.closed = true
	var errs []error
	for k, db := range p.dbs {
		errs = append(errs, db.Close())
		delete(p.dbs, k)
	}
	return errors.Join(errs...)
}

// Target is where a DSN points after parsing: a database/sql driver and its data source.
type Target struct {
	Driver string // "sqlite" or "pgx"
	Source string
	Kind   string // "sqlite" or "pgsql", for messages
}

// ParseDSN maps a freeswitch.Dbh DSN (with the optional user and password arguments) to a driver and data
// source. It does no I/O.
func ParseDSN(dsn, user, pass string, dataDir string, odbc map[string]string) (Target, error) {
	dsn = strings.TrimSpace(dsn)
	if dsn == "" {
		return Target{}, errors.New("dbh: empty DSN")
	}
	prefix, rest, hasPrefix := strings.Cut(dsn, "://")
	if !hasPrefix {
		// "dsn:user:pass" is ODBC; a bare name is SQLite.
		if name, cred, ok := strings.Cut(dsn, ":"); ok {
			u, p, _ := strings.Cut(cred, ":")
			return odbcTarget(name, firstNonEmpty(user, u), firstNonEmpty(pass, p), odbc)
		}
		return sqliteTarget(dsn, dataDir)
	}
	switch strings.ToLower(prefix) {
	case "sqlite":
		return sqliteTarget(rest, dataDir)
	case "pgsql":
		src := rest
		if user != "" {
			src += " user=" + quoteKeyword(user)
		}
		if pass != "" {
			src += " password=" + quoteKeyword(pass)
		}
		return Target{Driver: "pgx", Source: src, Kind: "pgsql"}, nil
	case "postgres", "postgresql":
		return Target{Driver: "pgx", Source: dsn, Kind: "pgsql"}, nil
	case "odbc":
		name, cred, _ := strings.Cut(rest, ":")
		u, p, _ := strings.Cut(cred, ":")
		return odbcTarget(name, firstNonEmpty(user, u), firstNonEmpty(pass, p), odbc)
	case "mariadb", "maria", "mysql":
		return Target{}, fmt.Errorf("dbh: %s:// databases are not supported (SQLite and PostgreSQL are)", prefix)
	}
	return Target{}, fmt.Errorf("dbh: unknown DSN prefix %q (expected sqlite://, pgsql://, postgres:// or odbc://)", prefix)
}

func firstNonEmpty(a, b string) string {
	if a != "" {
		return a
	}
	return b
}

func quoteKeyword(v string) string {
	if v != "" && !strings.ContainsAny(v, " '\\") {
		return v
	}
	return "'" + strings.NewReplacer(`\`, `\\`, `'`, `\'`).Replace(v) + "'"
}

func sqliteTarget(name, dataDir string) (Target, error) {
	if mem, ok := strings.CutPrefix(name, "memory://"); ok {
		if mem == "" {
			mem = "memory"
		}
		return Target{Driver: "sqlite", Source: "file:" + mem + "?mode=memory&cache=shared", Kind: "sqlite"}, nil
	}
	if name == "" {
		return Target{}, errors.New("dbh: sqlite:// needs a database name")
	}
	p := name
	if !filepath.IsAbs(p) && !strings.HasPrefix(p, "./") && !strings.HasPrefix(p, "../") {
		if !strings.HasSuffix(p, ".db") {
			p += ".db"
		}
		p = filepath.Join(dataDir, p)
	}
	return Target{Driver: "sqlite", Source: "file:" + p + "?_pragma=busy_timeout(5000)&_pragma=journal_mode(WAL)", Kind: "sqlite"}, nil
}

func odbcTarget(name, user, pass string, odbc map[string]string) (Target, error) {
	conn, ok := odbc[name]
	if !ok {
		return Target{}, fmt.Errorf("dbh: ODBC DSN %q is not mapped: add it to esl.odbc (name: PostgreSQL connection string)", name)
	}
	if strings.Contains(conn, "://") {
		return Target{Driver: "pgx", Source: conn, Kind: "pgsql"}, nil
	}
	if user != "" {
		conn += " user=" + quoteKeyword(user)
	}
	if pass != "" {
		conn += " password=" + quoteKeyword(pass)
	}
	return Target{Driver: "pgx", Source: conn, Kind: "pgsql"}, nil
}

// Open returns a handle on the pool of dsn, creating the pool on first use. It does not connect: the first
// query (or Connected) does.
func (p *Pools) Open(dsn, user, pass string) (*Handle, error) {
	t, err := ParseDSN(dsn, user, pass, p.cfg.DataDir, p.cfg.ODBC)
	if err != nil {
		return nil, err
	}
	key := t.Driver + "\x00" + t.Source
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.closed {
		return nil, errors.New("dbh: closed")
	}
	db, ok := p.dbs[key]
	if !ok {
		if t.Driver == "sqlite" && strings.HasPrefix(t.Source, "file:") && !strings.Contains(t.Source, "mode=memory") {
			file := strings.TrimPrefix(t.Source, "file:")
			file, _, _ = strings.Cut(file, "?")
			if err := os.MkdirAll(filepath.Dir(file), 0o755); err != nil {
				return nil, fmt.Errorf("dbh: %w", err)
			}
		}
		db, err = sql.Open(t.Driver, t.Source)
		if err != nil {
			return nil, fmt.Errorf("dbh: open %s: %w", t.Kind, err)
		}
		db.SetMaxOpenConns(p.cfg.MaxConns)
		db.SetMaxIdleConns(p.cfg.MaxConns)
		db.SetConnMaxIdleTime(p.cfg.IdleTimeout)
		p.dbs[key] = db
	}
	return &Handle{p: p, db: db, kind: t.Kind}, nil
}

// Handle is one script's database handle.
type Handle struct {
	p        *Pools
	db       *sql.DB
	kind     string
	affected int64
	lastErr  string
	released bool
}

// Kind is "sqlite" or "pgsql".
func (h *Handle) Kind() string { return h.kind }

// ErrReleased is returned by a released handle.
var ErrReleased = errors.New("dbh: handle released")

func (h *Handle) ctx(ctx context.Context) (context.Context, context.CancelFunc) {
	if h.p.cfg.QueryTimeout > 0 {
		return context.WithTimeout(ctx, h.p.cfg.QueryTimeout)
	}
	return context.WithCancel(ctx)
}

// Connected reports whether the database answers.
func (h *Handle) Connected(ctx context.Context) bool {
	if h.released {
		return false
	}
	ctx, cancel := h.ctx(ctx)
	defer cancel()
	return h.db.PingContext(ctx) == nil
}

// Row is one result row: column names in order and their values (NULL as "").
type Row struct {
	Columns []string
	Values  []string
	Null    []bool
}

// Exec runs a statement that returns no rows to read and records the rows it changed.
func (h *Handle) Exec(ctx context.Context, query string) error {
	if h.released {
		return ErrReleased
	}
	ctx, cancel := h.ctx(ctx)
	defer cancel()
	res, err := h.db.ExecContext(ctx, query)
	if err != nil {
		h.lastErr = err.Error()
		return fmt.Errorf("dbh: %w", err)
	}
	h.affected, _ = res.RowsAffected()
	return nil
}

// Query runs query and hands each row to fn until fn returns false. A row over the byte bound is an
// error.
func (h *Handle) Query(ctx context.Context, query string, fn func(Row) (more bool, err error)) error {
	if h.released {
		return ErrReleased
	}
	ctx, cancel := h.ctx(ctx)
	defer cancel()
	rows, err := h.db.QueryContext(ctx, query)
	if err != nil {
		h.lastErr = err.Error()
		return fmt.Errorf("dbh: %w", err)
	}
	defer rows.Close()
	cols, err := rows.Columns()
	if err != nil {
		return fmt.Errorf("dbh: %w", err)
	}
	vals := make([]sql.NullString, len(cols))
	ptrs := make([]any, len(cols))
	for i := range vals {
		ptrs[i] = &vals[i]
	}
	n := int64(0)
	for rows.Next() {
		if err := rows.Scan(ptrs...); err != nil {
			h.lastErr = err.Error()
			return fmt.Errorf("dbh: %w", err)
		}
		n++
		r := Row{Columns: cols, Values: make([]string, len(cols)), Null: make([]bool, len(cols))}
		size := 0
		for i, v := range vals {
			r.Values[i], r.Null[i] = v.String, !v.Valid
			size += len(cols[i]) + len(v.String)
		}
		if size > h.p.cfg.MaxRowBytes {
			err := fmt.Errorf("dbh: a row of %d bytes exceeds esl.dbh_max_row_bytes (%d)", size, h.p.cfg.MaxRowBytes)
			h.lastErr = err.Error()
			return err
		}
		more, err := fn(r)
		if err != nil {
			return err
		}
		if !more {
			break
		}
	}
	if err := rows.Err(); err != nil {
		h.lastErr = err.Error()
		return fmt.Errorf("dbh: %w", err)
	}
	h.affected = n
	return nil
}

// MaxRowBytes is the bound of one row.
func (h *Handle) MaxRowBytes() int { return h.p.cfg.MaxRowBytes }

// AffectedRows is what the last statement changed (or the rows the last query read).
func (h *Handle) AffectedRows() int64 { return h.affected }

// LastError is the last failure's text, "" if none since ClearError.
func (h *Handle) LastError() string { return h.lastErr }

// ClearError forgets the last error.
func (h *Handle) ClearError() { h.lastErr = "" }

// Release gives the handle up; later calls fail. The pool stays for other handles.
func (h *Handle) Release() bool {
	if h.released {
		return false
	}
	h.released = true
	return true
}
