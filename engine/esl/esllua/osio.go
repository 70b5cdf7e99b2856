package esllua

import (
	"bufio"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"time"

	lua "github.com/yuin/gopher-lua"

	"github.com/switchboard/switchboard/luabind"
)

// The os and io subsets of mod_lua-style scripts: time and date, an allow-listed getenv, and files confined
// to esl.data_dir (os.Root refuses paths and links that leave it).

// dataFiles is a run's view of esl.data_dir: opened on first use, with the files the script left open.
type dataFiles struct {
	dir   string
	root  *os.Root
	open  []*luaFile
	abs   string
	err   error
	ready bool
}

func (d *dataFiles) rootDir() (*os.Root, error) {
	if d.ready {
		return d.root, d.err
	}
	d.ready = true
	if err := os.MkdirAll(d.dir, 0o755); err != nil {
		d.err = fmt.Errorf("esl.data_dir %s: %w", d.dir, err)
		return nil, d.err
	}
	d.abs, _ = filepath.Abs(d.dir)
	d.root, d.err = os.OpenRoot(d.dir)
	return d.root, d.err
}

// rel maps a script's path to one inside the data folder: relative paths are taken from it, absolute ones
// must lie inside it.
func (d *dataFiles) rel(p string) (string, error) {
	if _, err := d.rootDir(); err != nil {
		return "", err
	}
	if filepath.IsAbs(p) {
		r, err := filepath.Rel(d.abs, filepath.Clean(p))
		if err != nil || !filepath.IsLocal(r) {
			return "", fmt.Errorf("%s is outside esl.data_dir (%s)", p, d.dir)
		}
		return r, nil
	}
	if !filepath.IsLocal(p) {
		return "", fmt.Errorf("%s is outside esl.data_dir (%s)", p, d.dir)
	}
	return p, nil
}

func (d *dataFiles) close() {
	for _, f := range d.open {
		f.close()
	}
	d.open = nil
	if d.root != nil {
		d.root.Close()
		d.root = nil
	}
}

func callFiles(L *lua.LState, what string) *dataFiles {
	return modCallOrRaise(L, what).files
}

var osFuncs = map[string]lua.LGFunction{
	"time": func(L *lua.LState) int {
		t, ok := L.Get(1).(*lua.LTable)
		if !ok {
			L.Push(lua.LNumber(time.Now().Unix()))
			return 1
		}
		field := func(k string, def int) int {
			if n, ok := toInt(t.RawGetString(k)); ok {
				return n
			}
			return def
		}
		tm := time.Date(field("year", 1970), time.Month(field("month", 1)), field("day", 1), field("hour", 12), field("min", 0), field("sec", 0), 0, time.Local)
		L.Push(lua.LNumber(tm.Unix()))
		return 1
	},
	"clock": func(L *lua.LState) int {
		L.Push(lua.LNumber(float64(time.Since(processStart)) / float64(time.Second)))
		return 1
	},
	"difftime": func(L *lua.LState) int {
		a, _ := toInt(L.Get(1))
		b, _ := toInt(L.Get(2))
		L.Push(lua.LNumber(a - b))
		return 1
	},
	"date": osDate,
	"getenv": func(L *lua.LState) int {
		c := modCallOrRaise(L, "os.getenv")
		name := mOptStr(L, 1, "")
		if !slices.Contains(c.cfg.GetenvAllow, name) {
			L.Push(lua.LNil)
			return 1
		}
		if v, ok := os.LookupEnv(name); ok {
			L.Push(lua.LString(v))
		} else {
			L.Push(lua.LNil)
		}
		return 1
	},
	"remove": func(L *lua.LState) int {
		d := callFiles(L, "os.remove")
		p := mOptStr(L, 1, "")
		rel, err := d.rel(p)
		if err == nil {
			err = d.root.Remove(rel)
		}
		return fileResult(L, err, p)
	},
	"rename": func(L *lua.LState) int {
		d := callFiles(L, "os.rename")
		from, to := mOptStr(L, 1, ""), mOptStr(L, 2, "")
		rf, err := d.rel(from)
		var rt string
		if err == nil {
			rt, err = d.rel(to)
		}
		if err == nil {
			err = d.root.Rename(rf, rt)
		}
		return fileResult(L, err, from)
	},
	"exit": func(L *lua.LState) int {
		if c := callOf(L); c != nil {
			c.log.WithField("script", strings.TrimSuffix(L.Where(1), ":")).Error("os.exit is not allowed in a script (as in mod_lua): ignored")
		}
		return 0
	},
}

var processStart = time.Now()

// fileResult is Lua's io convention: true, or nil, message, errno.
func fileResult(L *lua.LState, err error, p string) int {
	if err == nil {
		L.Push(lua.LTrue)
		return 1
	}
	L.Push(lua.LNil)
	var pe *os.PathError
	if errors.As(err, &pe) {
		err = pe.Err
	}
	L.Push(lua.LString(p + ": " + err.Error()))
	L.Push(lua.LNumber(1))
	return 3
}

// osDate is Lua's os.date: "*t"/"!*t" give a table, other formats use C strftime conversions.
func osDate(L *lua.LState) int {
	format := mOptStr(L, 1, "%c")
	t := time.Now()
	if n, ok := toInt(L.Get(2)); ok {
		t = time.Unix(int64(n), 0)
	}
	if strings.HasPrefix(format, "!") {
		t = t.UTC()
		format = format[1:]
	}
	if format == "*t" {
		tb := L.CreateTable(0, 9)
		tb.RawSetString("year", lua.LNumber(t.Year()))
		tb.RawSetString("month", lua.LNumber(t.Month()))
		tb.RawSetString("day", lua.LNumber(t.Day()))
		tb.RawSetString("hour", lua.LNumber(t.Hour()))
		tb.RawSetString("min", lua.LNumber(t.Minute()))
		tb.RawSetString("sec", lua.LNumber(t.Second()))
		tb.RawSetString("wday", lua.LNumber(int(t.Weekday())+1))
		tb.RawSetString("yday", lua.LNumber(t.YearDay()))
		tb.RawSetString("isdst", lua.LFalse)
		L.Push(tb)
		return 1
	}
	L.Push(lua.LString(strftime(format, t)))
	return 1
}

func strftime(f string, t time.Time) string {
	var b strings.Builder
	for i := 0; i < len(f); i++ {
		if f[i] != '%' || i+1 == len(f) {
			b.WriteByte(f[i])
			continue
		}
		i++
		switch f[i] {
		case 'Y':
			b.WriteString(strconv.Itoa(t.Year()))
		case 'y':
			fmt.Fprintf(&b, "%02d", t.Year()%100)
		case 'm':
			fmt.Fprintf(&b, "%02d", int(t.Month()))
		case 'd':
			fmt.Fprintf(&b, "%02d", t.Day())
		case 'H':
			fmt.Fprintf(&b, "%02d", t.Hour())
		case 'I':
			h := t.Hour() % 12
			if h == 0 {
				h = 12
			}
			fmt.Fprintf(&b, "%02d", h)
		case 'M':
			fmt.Fprintf(&b, "%02d", t.Minute())
		case 'S':
			fmt.Fprintf(&b, "%02d", t.Second())
		case 'p':
			b.WriteString(t.Format("PM"))
		case 'A':
			b.WriteString(t.Weekday().String())
		case 'a':
			b.WriteString(t.Weekday().String()[:3])
		case 'B':
			b.WriteString(t.Month().String())
		case 'b':
			b.WriteString(t.Month().String()[:3])
		case 'j':
			fmt.Fprintf(&b, "%03d", t.YearDay())
		case 'w':
			b.WriteString(strconv.Itoa(int(t.Weekday())))
		case 'Z':
			z, _ := t.Zone()
			b.WriteString(z)
		case 'z':
			b.WriteString(t.Format("-0700"))
		case 'c':
			b.WriteString(t.Format("Mon Jan  2 15:04:05 2006"))
		case 'x':
			b.WriteString(t.Format("01/02/06"))
		case 'X':
			b.WriteString(t.Format("15:04:05"))
		case 'F':
			b.WriteString(t.Format("2006-01-02"))
		case 'T':
			b.WriteString(t.Format("15:04:05"))
		case 's':
			b.WriteString(strconv.FormatInt(t.Unix(), 10))
		case '%':
			b.WriteByte('%')
		default:
			b.WriteByte('%')
			b.WriteByte(f[i])
		}
	}
	return b.String()
}

// luaFile is a file opened with io.open inside the data folder.
type luaFile struct {
	f      *os.File
	r      *bufio.Reader
	closed bool
}

func (f *luaFile) close() error {
	if f.closed {
		return nil
	}
	f.closed = true
	return f.f.Close()
}

func (f *luaFile) reader() *bufio.Reader {
	if f.r == nil {
		f.r = bufio.NewReader(f.f)
	}
	return f.r
}

const maxReadBytes = 16 << 20

var ioFuncs = map[string]lua.LGFunction{
	"write": func(L *lua.LState) int {
		var b strings.Builder
		for i := 1; i <= L.GetTop(); i++ {
			b.WriteString(lua.LVAsString(L.Get(i)))
		}
		if c := callOf(L); c != nil {
			c.log.WithField("script", strings.TrimSuffix(L.Where(1), ":")).Info(strings.TrimRight(b.String(), "\n"))
		}
		return 0
	},
	"open": func(L *lua.LState) int {
		d := callFiles(L, "io.open")
		p := mOptStr(L, 1, "")
		mode := mOptStr(L, 2, "r")
		rel, err := d.rel(p)
		if err != nil {
			return fileResult(L, err, p)
		}
		flag := os.O_RDONLY
		switch strings.TrimSuffix(mode, "b") {
		case "r":
		case "w":
			flag = os.O_WRONLY | os.O_CREATE | os.O_TRUNC
		case "a":
			flag = os.O_WRONLY | os.O_CREATE | os.O_APPEND
		case "r+":
			flag = os.O_RDWR
		case "w+":
			flag = os.O_RDWR | os.O_CREATE | os.O_TRUNC
		case "a+":
			flag = os.O_RDWR | os.O_CREATE | os.O_APPEND
		default:
			L.RaiseError("io.open: invalid mode %q", mode)
		}
		if flag&os.O_CREATE != 0 {
			if dir := filepath.Dir(rel); dir != "." {
				_ = d.root.MkdirAll(dir, 0o755)
			}
		}
		f, err := d.root.OpenFile(rel, flag, 0o644)
		if err != nil {
			return fileResult(L, err, p)
		}
		lf := &luaFile{f: f}
		d.open = append(d.open, lf)
		L.Push(newFileUD(L, lf))
		return 1
	},
	"lines": func(L *lua.LState) int {
		d := callFiles(L, "io.lines")
		p := mOptStr(L, 1, "")
		rel, err := d.rel(p)
		if err != nil {
			L.RaiseError("io.lines: %v", err)
		}
		f, err := d.root.Open(rel)
		if err != nil {
			L.RaiseError("io.lines: %s: %v", p, err)
		}
		lf := &luaFile{f: f}
		d.open = append(d.open, lf)
		L.Push(L.NewFunction(func(L *lua.LState) int {
			if lf.closed {
				L.Push(lua.LNil)
				return 1
			}
			v := readLine(lf, false)
			if v == lua.LNil {
				lf.close()
			}
			L.Push(v)
			return 1
		}))
		return 1
	},
	"read": func(L *lua.LState) int { L.Push(lua.LNil); return 1 },
}

func readLine(f *luaFile, keep bool) lua.LValue {
	line, err := f.reader().ReadString('\n')
	if line == "" && err != nil {
		return lua.LNil
	}
	if !keep {
		line = strings.TrimSuffix(strings.TrimSuffix(line, "\n"), "\r")
	}
	return lua.LString(line)
}

func checkFile(L *lua.LState) *luaFile {
	if ud, ok := L.Get(1).(*lua.LUserData); ok {
		if f, ok := ud.Value.(*luaFile); ok {
			if f.closed {
				L.RaiseError("attempt to use a closed file")
			}
			return f
		}
	}
	L.RaiseError("expected a file, got %s", describe(L.Get(1)))
	return nil
}

func newFileUD(L *lua.LState, f *luaFile) *lua.LUserData {
	ud := L.NewUserData()
	ud.Value = f
	ud.Metatable = luabind.VMOf(L).Runtime().Shared("modlua.meta.file", func(B *lua.LState) lua.LValue {
		methods := B.SetFuncs(B.NewTable(), map[string]lua.LGFunction{
			"read": func(L *lua.LState) int {
				f := checkFile(L)
				format := lua.LValue(lua.LString("*l"))
				if L.GetTop() >= 2 {
					format = L.Get(2)
				}
				if n, ok := format.(lua.LNumber); ok {
					buf := make([]byte, min(int(n), maxReadBytes))
					k, _ := io.ReadFull(f.reader(), buf)
					if k == 0 && n > 0 {
						L.Push(lua.LNil)
					} else {
						L.Push(lua.LString(buf[:k]))
					}
					return 1
				}
				switch strings.TrimPrefix(lua.LVAsString(format), "*") {
				case "a":
					b, err := io.ReadAll(io.LimitReader(f.reader(), maxReadBytes+1))
					if err == nil && len(b) > maxReadBytes {
						L.RaiseError("file:read: more than %d bytes", maxReadBytes)
					}
					L.Push(lua.LString(b))
				case "n":
					s := readLine(f, false)
					if s == lua.LNil {
						L.Push(lua.LNil)
					} else if n, err := strconv.ParseFloat(strings.TrimSpace(s.String()), 64); err == nil {
						L.Push(lua.LNumber(n))
					} else {
						L.Push(lua.LNil)
					}
				case "L":
					L.Push(readLine(f, true))
				default:
					L.Push(readLine(f, false))
				}
				return 1
			},
			"write": func(L *lua.LState) int {
				f := checkFile(L)
				for i := 2; i <= L.GetTop(); i++ {
					if _, err := f.f.WriteString(lua.LVAsString(L.Get(i))); err != nil {
						return fileResult(L, err, f.f.Name())
					}
				}
				L.Push(L.Get(1))
				return 1
			},
			"lines": func(L *lua.LState) int {
				f := checkFile(L)
				L.Push(L.NewFunction(func(L *lua.LState) int {
					if f.closed {
						L.Push(lua.LNil)
						return 1
					}
					L.Push(readLine(f, false))
					return 1
				}))
				return 1
			},
			"seek": func(L *lua.LState) int {
				f := checkFile(L)
				whence := map[string]int{"set": io.SeekStart, "cur": io.SeekCurrent, "end": io.SeekEnd}[mOptStr(L, 2, "cur")]
				off, _ := toInt(L.Get(3))
				f.r = nil
				pos, err := f.f.Seek(int64(off), whence)
				if err != nil {
					return fileResult(L, err, f.f.Name())
				}
				L.Push(lua.LNumber(pos))
				return 1
			},
			"flush":   func(L *lua.LState) int { checkFile(L); L.Push(L.Get(1)); return 1 },
			"setvbuf": func(L *lua.LState) int { checkFile(L); L.Push(lua.LTrue); return 1 },
			"close": func(L *lua.LState) int {
				f := checkFile(L)
				return fileResult(L, f.close(), f.f.Name())
			},
		})
		mt := B.NewTable()
		mt.RawSetString("__metatable", lua.LFalse)
		mt.RawSetString("__index", methods)
		return mt
	}).(*lua.LTable)
	return ud
}
