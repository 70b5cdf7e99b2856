package luabind

import (
	"errors"
	"fmt"
	"path/filepath"
	"strings"
	"time"
)

// localDir accepts "" or a relative path that stays inside its parent.
func localDir(p string) bool {
	return p == "" || (filepath.IsLocal(p) && !strings.Contains(p, "\\"))
}

// Config is the `lua:` section of switchboard.yaml.
type Config struct {
	// ScriptsDir holds the scripts loaded at start and on every reload.
	ScriptsDir string `mapstructure:"scripts_dir"`
	// HandlerTimeout limits a short handler (action, verb, hook, route expression, transform) when the
	// part does not give one of its own.
	HandlerTimeout time.Duration `mapstructure:"handler_timeout"`
	// PoolSize is how many idle VMs each generation keeps; 0 sizes it from GOMAXPROCS.
	PoolSize int `mapstructure:"pool_size"`
	// MemoryLimitMB: when the Go heap grows past it (after a collection), the memory guard cancels running
	// Lua handlers, longest running first (memguard.go); 0 = off.
	MemoryLimitMB int `mapstructure:"memory_limit_mb"`
	// MaxStringBytes caps the strings library functions build (string.rep, gsub, format, char, table.concat).
	MaxStringBytes int `mapstructure:"max_string_bytes"`
	// MaxResults caps how many values one library call returns (string.byte, unpack).
	MaxResults int `mapstructure:"max_results"`
	// CacheMaxEntries bounds sb.cache; a save beyond it fails.
	CacheMaxEntries int `mapstructure:"cache_max_entries"`
	// FreeSWITCHDir (relative to ScriptsDir) holds mod_lua-style scripts: each NAME.lua is the call flow
	// NAME, compiled at load and run per call in a fresh environment with session, freeswitch and argv.
	// "" turns the folder off.
	FreeSWITCHDir string `mapstructure:"freeswitch_dir"`
	// FreeSWITCHRequireRoot (relative to ScriptsDir) is where require "a.b.c" looks for a/b/c.lua from a
	// mod_lua-style script; "" means FreeSWITCHDir. Nothing outside ScriptsDir can be required.
	FreeSWITCHRequireRoot string `mapstructure:"freeswitch_require_root"`
	// CacheMaxBytes bounds the keys and values sb.cache holds (a value counts its encoded size); a save
	// beyond it fails.
	CacheMaxBytes int `mapstructure:"cache_max_bytes"`
	// MaxTimers bounds the timers created inside handlers (sb.after, sb.every) that are live at once in a
	// generation; one more raises an error.
	MaxTimers int `mapstructure:"max_timers"`
}

// DefaultConfig returns the defaults documented in configs/switchboard.yaml.
func DefaultConfig() Config {
	return Config{
		ScriptsDir:      "scripts",
		HandlerTimeout:  time.Second,
		MemoryLimitMB:   2048,
		MaxStringBytes:  16 << 20,
		MaxResults:      8000,
		CacheMaxEntries: 100000,
		FreeSWITCHDir:   "freeswitch",
		CacheMaxBytes:   64 << 20,
		MaxTimers:       10000,
	}
}

// Validate reports every bad value, each naming its key path.
func (c Config) Validate() error {
	var errs []error
	bad := func(format string, args ...any) { errs = append(errs, fmt.Errorf(format, args...)) }
	if c.ScriptsDir == "" {
		bad("lua.scripts_dir: expected a directory, got an empty string")
	}
	if c.HandlerTimeout <= 0 {
		bad("lua.handler_timeout: expected a positive duration such as 1s, got %v", c.HandlerTimeout)
	}
	if c.PoolSize < 0 {
		bad("lua.pool_size: expected 0 (automatic) or a positive number, got %d", c.PoolSize)
	}
	if c.MemoryLimitMB < 0 {
		bad("lua.memory_limit_mb: expected 0 (off) or a positive number of MiB, got %d", c.MemoryLimitMB)
	}
	if c.MaxStringBytes < 1024 {
		bad("lua.max_string_bytes: expected at least 1024, got %d", c.MaxStringBytes)
	}
	if c.MaxResults < minResultsCap {
		bad("lua.max_results: expected at least %d, got %d", minResultsCap, c.MaxResults)
	}
	if c.CacheMaxEntries < 1 {
		bad("lua.cache_max_entries: expected a positive number, got %d", c.CacheMaxEntries)
	}
	if !localDir(c.FreeSWITCHDir) {
		bad("lua.freeswitch_dir: expected a folder inside lua.scripts_dir such as freeswitch, got %q", c.FreeSWITCHDir)
	}
	if !localDir(c.FreeSWITCHRequireRoot) {
		bad("lua.freeswitch_require_root: expected a folder inside lua.scripts_dir, got %q", c.FreeSWITCHRequireRoot)
	}
	if c.CacheMaxBytes < 1024 {
		bad("lua.cache_max_bytes: expected at least 1024, got %d", c.CacheMaxBytes)
	}
	if c.MaxTimers < 1 {
		bad("lua.max_timers: expected a positive number, got %d", c.MaxTimers)
	}
	return errors.Join(errs...)
}
