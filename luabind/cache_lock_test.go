package luabind

import (
	"context"
	"errors"
	"strings"
	"testing"
	"time"
)

// sb.cache.lock/unlock/checkLock in one process: one holder (the process), actionhero's semantics.
func TestCacheLockInOneProcess(t *testing.T) {
	rt, _, _ := newRuntime(t, DefaultConfig(), map[string]string{"a.lua": `
local sb = require "switchboard"
sb.on("lock", function(key)
  local first = sb.cache.lock(key, 60000)
  local second = sb.cache.lock(key)
  local check = sb.cache.checkLock(key)
  local saved = sb.cache.save(key, "v")
  local unlocked = sb.cache.unlock(key)
  local again = sb.cache.lock(key, 50)
  return table.concat({tostring(first), tostring(second), tostring(check), tostring(saved), tostring(unlocked), tostring(again)}, " ")
end)
sb.on("bad", function() return sb.cache.lock("k", -1) end)`}, nil)
	out, err := callString(t, rt.Current(), "on", "lock", "job")
	if err != nil {
		t.Fatal(err)
	}
	if out != "true false true true true true" {
		t.Fatalf("lock sequence: %q", out)
	}
	time.Sleep(60 * time.Millisecond) // the last lock (50 ms) expires
	if ok, _ := rt.Cache().Lock("job", time.Second); !ok {
		t.Fatal("an expired lock could not be taken")
	}
	if _, err := callString(t, rt.Current(), "on", "bad", ""); err == nil || !strings.Contains(err.Error(), "sb.cache.lock: expireTimeMS must be positive") {
		t.Fatalf("negative ttl: %v", err)
	}
}

func TestCacheLocksCountAgainstBounds(t *testing.T) {
	c := NewCache(2, 1<<20)
	if ok, err := c.Lock("a", time.Minute); !ok || err != nil {
		t.Fatal(ok, err)
	}
	if err := c.Save("b", "v", 2, 0); err != nil {
		t.Fatal(err)
	}
	if ok, err := c.Lock("c", time.Minute); ok || !errors.Is(err, ErrCacheFull) {
		t.Fatalf("third entry: %v %v", ok, err)
	}
	if c.Bytes() != 2+1+lockOverhead {
		t.Fatalf("bytes %d", c.Bytes())
	}
	c.Unlock("a")
	if c.Bytes() != 2 {
		t.Fatalf("bytes after unlock %d", c.Bytes())
	}
	s := LocalStore{c}
	if ok, _ := s.CheckLock(context.Background(), "a"); !ok {
		t.Fatal("checkLock in one process")
	}
}
