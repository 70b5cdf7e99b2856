package esllua

import (
	"context"
	"strings"

	lua "github.com/yuin/gopher-lua"

	"github.com/switchboard/switchboard/engine/esl/dbh"
	"github.com/switchboard/switchboard/luabind"
)

// freeswitch.Dbh: the Lua face of engine/esl/dbh. A handle belongs to the run that opened it and is
// released when the run ends; its pool (one per DSN) is shared by every call of the server.

type luaDbh struct {
	h   *dbh.Handle // nil when the DSN could not be used (connected() is false, queries fail)
	err string
}

func openDbh(L *lua.LState) int {
	c := modCallOrRaise(L, "freeswitch.Dbh")
	dsn, user, pass := mStrF(L, 1, "Dbh"), mOptStr(L, 2, ""), mOptStr(L, 3, "")
	if c.db == nil {
		c.db = dbh.NewPools(dbh.Config{DataDir: c.cfg.DataDir, MaxConns: c.cfg.DBHMaxConns, IdleTimeout: c.cfg.DBHIdleTimeout,
			QueryTimeout: c.cfg.DBHQueryTimeout, MaxRowBytes: c.cfg.DBHMaxRowBytes, ODBC: c.cfg.ODBC})
		c.ownDB = true
	}
	d := &luaDbh{}
	h, err := c.db.Open(dsn, user, pass)
	if err != nil {
		d.err = err.Error()
		c.log.WithField("script", strings.TrimSuffix(L.Where(1), ":")).WithError(err).Error("freeswitch.Dbh: cannot use this DSN")
	} else {
		d.h = h
		c.dbhs = append(c.dbhs, h)
	}
	ud := L.NewUserData()
	ud.Value = d
	ud.Metatable = luabind.VMOf(L).Runtime().Shared("modlua.meta.dbh", func(B *lua.LState) lua.LValue {
		methods := B.SetFuncs(B.NewTable(), dbhMethods)
		mt := B.NewTable()
		mt.RawSetString("__metatable", lua.LFalse)
		mt.RawSetString("__index", methods)
		return mt
	}).(*lua.LTable)
	L.Push(ud)
	return 1
}

func checkDbh(L *lua.LState) *luaDbh {
	if ud, ok := L.Get(1).(*lua.LUserData); ok {
		if d, ok := ud.Value.(*luaDbh); ok {
			return d
		}
	}
	L.RaiseError("expected a database handle (freeswitch.Dbh), got %s", describe(L.Get(1)))
	return nil
}

// dbQuery runs sql with an optional row callback; false on failure (logged, as FreeSWITCH logs SQL errors).
func dbQuery(L *lua.LState, d *luaDbh, sql string, fn lua.LValue) bool {
	if d.h == nil {
		return false
	}
	ctx := L.Context()
	var err error
	if fn == lua.LNil || fn == nil {
		err = d.h.Exec(ctx, sql)
	} else {
		err = d.h.Query(ctx, sql, func(r dbh.Row) (bool, error) {
			row := L.CreateTable(0, len(r.Columns))
			for i, col := range r.Columns {
				row.RawSetString(col, lua.LString(r.Values[i]))
			}
			L.Push(fn)
			L.Push(row)
			if err := L.PCall(1, 1, nil); err != nil {
				if ctx.Err() != nil {
					return false, context.Cause(ctx)
				}
				if c := callOf(L); c != nil {
					c.log.WithError(err).Error("freeswitch.Dbh:query callback failed: the query stops")
				}
				return false, nil
			}
			ret := L.Get(-1)
			L.Pop(1)
			if n, ok := ret.(lua.LNumber); ok && n != 0 {
				return false, nil
			}
			return true, nil
		})
	}
	if err != nil {
		if ctx.Err() != nil {
			L.RaiseError("freeswitch.Dbh:query: %v", context.Cause(ctx))
		}
		if c := callOf(L); c != nil {
			c.log.WithField("script", strings.TrimSuffix(L.Where(1), ":")).WithError(err).WithField("sql", sql).Error("SQL error")
		}
		return false
	}
	return true
}

var dbhMethods = map[string]lua.LGFunction{
	"connected": func(L *lua.LState) int {
		d := checkDbh(L)
		L.Push(lua.LBool(d.h != nil && d.h.Connected(L.Context())))
		return 1
	},
	"query": func(L *lua.LState) int {
		d := checkDbh(L)
		sql := mOptStr(L, 2, "")
		fn := L.Get(3)
		if fn != lua.LNil {
			if _, ok := fn.(*lua.LFunction); !ok {
				L.RaiseError("dbh:query: argument #2 expected a function, got %s", describe(fn))
			}
		}
		L.Push(lua.LBool(dbQuery(L, d, sql, fn)))
		return 1
	},
	"query_rows": func(L *lua.LState) int {
		d := checkDbh(L)
		sql := mOptStr(L, 2, "")
		rows := L.CreateTable(0, 0)
		if d.h == nil {
			L.Push(lua.LFalse)
			L.Push(rows)
			L.Push(lua.LString(d.err))
			return 3
		}
		total, limit := 0, 64*d.h.MaxRowBytes()
		err := d.h.Query(L.Context(), sql, func(r dbh.Row) (bool, error) {
			row := L.CreateTable(0, len(r.Columns))
			for i, col := range r.Columns {
				total += len(col) + len(r.Values[i])
				if !r.Null[i] {
					row.RawSetString(col, lua.LString(r.Values[i]))
				}
			}
			if total > limit {
				return false, errTooMuch
			}
			rows.Append(row)
			return true, nil
		})
		if err != nil {
			if L.Context().Err() != nil {
				L.RaiseError("dbh:query_rows: %v", context.Cause(L.Context()))
			}
			L.Push(lua.LFalse)
			L.Push(rows)
			L.Push(lua.LString(err.Error()))
			return 3
		}
		L.Push(lua.LTrue)
		L.Push(rows)
		L.Push(lua.LNil)
		return 3
	},
	"affected_rows": func(L *lua.LState) int {
		d := checkDbh(L)
		if d.h == nil {
			L.Push(lua.LNumber(0))
		} else {
			L.Push(lua.LNumber(d.h.AffectedRows()))
		}
		return 1
	},
	"last_error": func(L *lua.LState) int {
		d := checkDbh(L)
		msg := d.err
		if d.h != nil {
			msg = d.h.LastError()
		}
		if msg == "" {
			L.Push(lua.LNil)
		} else {
			L.Push(lua.LString(msg))
		}
		return 1
	},
	"clear_error": func(L *lua.LState) int {
		if d := checkDbh(L); d.h != nil {
			d.h.ClearError()
		}
		return 0
	},
	"test_reactive": func(L *lua.LState) int {
		d := checkDbh(L)
		test, drop, reactive := mOptStr(L, 2, ""), mOptStr(L, 3, ""), mOptStr(L, 4, "")
		if test == "" || reactive == "" {
			L.RaiseError("dbh:test_reactive: expected (test_sql, drop_sql, reactive_sql); test and reactive are required")
		}
		if dbQuery(L, d, test, nil) {
			L.Push(lua.LTrue)
			return 1
		}
		if d.h != nil {
			d.h.ClearError()
		}
		if drop != "" {
			dbQuery(L, d, drop, nil)
		}
		L.Push(lua.LBool(dbQuery(L, d, reactive, nil)))
		return 1
	},
	"release": func(L *lua.LState) int {
		d := checkDbh(L)
		L.Push(lua.LBool(d.h != nil && d.h.Release()))
		return 1
	},
	"load_extension": notAvailable("dbh:load_extension", "the embedded SQLite loads no native extensions"),
}

type tooMuchError struct{}

func (tooMuchError) Error() string {
	return "dbh:query_rows: the result exceeds 64 times esl.dbh_max_row_bytes"
}

var errTooMuch error = tooMuchError{}
