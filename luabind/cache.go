package luabind

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"time"
)

// CacheStore is what sb.cache uses: the in-process Cache (LocalStore), or the cluster's shared bucket.
// Operations may wait on the network: they take the handler's context and return an error when it ends.
type CacheStore interface {
	Save(ctx context.Context, key string, value any, size int, ttl time.Duration) error
	Load(ctx context.Context, key string) (CacheEntry, error)
	Destroy(ctx context.Context, key string) (bool, error)
	Size(ctx context.Context) (int, error)
	// Lock takes key's lock for ttl: true for one caller while the lock stands, false if anyone (this
	// node included) holds it. Unlock releases it unless another node holds it; CheckLock says whether this
	// node may use key (no other node holds its lock). Save, Load and Destroy of a key another node has
	// locked fail with ErrCacheLocked.
	Lock(ctx context.Context, key string, ttl time.Duration) (bool, error)
	Unlock(ctx context.Context, key string) (bool, error)
	CheckLock(ctx context.Context, key string) (bool, error)
}

// DefaultLockTTL is sb.cache.lock's time to live when the script gives none (actionhero's lockDuration).
const DefaultLockTTL = 10 * time.Second

// lockOverhead is what a lock counts against lua.cache_max_bytes beyond its key.
const lockOverhead = 32

// Cache is the key/value store behind sb.cache, shared by every VM and every generation (it survives
// reloads). Values are plain Go data copied out of Lua, so no VM ever sees another's tables. It follows
// actionhero's cache: entries carry createdAt, an optional expiry and the time they were last read.
type Cache struct {
	mu       sync.Mutex
	max      int // live keys
	maxBytes int // sum of the entries' sizes
	bytes    int
	now      func() time.Time
	entries  map[string]*CacheEntry
	locks    map[string]time.Time // key → when its lock expires (one process holds them all)
}

// CacheEntry is what Load reports about a key.
type CacheEntry struct {
	Key        string
	Value      any
	CreatedAt  time.Time
	ExpiresAt  time.Time // zero: never
	LastReadAt time.Time // zero: never read before this load
	Size       int       // bytes counted against lua.cache_max_bytes: the key plus the value's encoded size
}

var (
	// ErrCacheNotFound is returned by Load for a key that was never saved or was destroyed.
	//lint:ignore ST1005 actionhero's text, which scripts compare
	ErrCacheNotFound = errors.New("Object not found")
	// ErrCacheExpired is returned by Load for a key whose time to live has passed.
	//lint:ignore ST1005 actionhero's text, which scripts compare
	ErrCacheExpired = errors.New("Object expired")
	// ErrCacheLocked is returned for a key whose lock another node of the cluster holds.
	//lint:ignore ST1005 actionhero's text, which scripts compare
	ErrCacheLocked = errors.New("Object locked")
	// ErrCacheFull is returned by Save when lua.cache_max_entries keys are stored, or when the value would
	// take the cache past lua.cache_max_bytes (the error then says so and wraps ErrCacheFull).
	ErrCacheFull = errors.New("cache is full")
)

// NewCache returns a cache holding at most maxEntries live keys and maxBytes of keys and values.
func NewCache(maxEntries, maxBytes int) *Cache {
	return &Cache{max: maxEntries, maxBytes: maxBytes, now: time.Now, entries: make(map[string]*CacheEntry), locks: map[string]time.Time{}}
}

// Save stores value under key; size is what the entry counts against the byte limit (the key's length plus
// the value's encoded size); ttl 0 keeps it until destroyed. Replacing a key frees its old size first.
func (c *Cache) Save(key string, value any, size int, ttl time.Duration) error {
	c.mu.Lock()
	defer c.mu.Unlock()
	now := c.now()
	if _, ok := c.entries[key]; !ok && len(c.entries)+len(c.locks) >= c.max {
		c.sweepLocked(now)
		if len(c.entries)+len(c.locks) >= c.max {
			return ErrCacheFull
		}
	}
	if size > c.maxBytes {
		return fmt.Errorf("%w: the value takes %d bytes, more than lua.cache_max_bytes (%d)", ErrCacheFull, size, c.maxBytes)
	}
	if size > c.roomLocked(key) {
		c.sweepLocked(now)
		if room := c.roomLocked(key); size > room {
			return fmt.Errorf("%w: %d bytes are stored and the value takes %d, %d more than lua.cache_max_bytes (%d) allows",
				ErrCacheFull, c.bytes, size, size-room, c.maxBytes)
		}
	}
	c.deleteLocked(key)
	e := &CacheEntry{Key: key, Value: value, CreatedAt: now, Size: size}
	if ttl > 0 {
		e.ExpiresAt = now.Add(ttl)
	}
	c.entries[key] = e
	c.bytes += size
	return nil
}

// roomLocked is how many bytes a save of key may take: what is free plus what key holds now.
func (c *Cache) roomLocked(key string) int {
	r := c.maxBytes - c.bytes
	if old, ok := c.entries[key]; ok {
		r += old.Size
	}
	return r
}

// Bytes is the sum of the stored entries' sizes.
func (c *Cache) Bytes() int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.bytes
}

// Load returns a copy of the entry as it was before this read, and records the read.
func (c *Cache) Load(key string) (CacheEntry, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	e, ok := c.entries[key]
	if !ok {
		return CacheEntry{}, ErrCacheNotFound
	}
	now := c.now()
	if !e.ExpiresAt.IsZero() && !now.Before(e.ExpiresAt) {
		c.deleteLocked(key)
		return CacheEntry{}, ErrCacheExpired
	}
	out := *e
	e.LastReadAt = now
	return out, nil
}

// Destroy removes key and reports whether it existed.
func (c *Cache) Destroy(key string) bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	_, ok := c.entries[key]
	c.deleteLocked(key)
	return ok
}

func (c *Cache) deleteLocked(key string) {
	if e, ok := c.entries[key]; ok {
		c.bytes -= e.Size
		delete(c.entries, key)
	}
}

// Size counts the keys that have not expired.
func (c *Cache) Size() int {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.sweepLocked(c.now())
	return len(c.entries)
}

func (c *Cache) sweepLocked(now time.Time) {
	for k, e := range c.entries {
		if !e.ExpiresAt.IsZero() && !now.Before(e.ExpiresAt) {
			c.deleteLocked(k)
		}
	}
	for k, exp := range c.locks {
		if !now.Before(exp) {
			c.unlockLocked(k)
		}
	}
}

func (c *Cache) unlockLocked(key string) {
	if _, ok := c.locks[key]; ok {
		delete(c.locks, key)
		c.bytes -= len(key) + lockOverhead
	}
}

// Lock takes key's lock for ttl: true unless it is held (in one process every handler is the same holder,
// as in one actionhero process, so a second Lock before Unlock or expiry is false). Locks count against
// lua.cache_max_entries and lua.cache_max_bytes.
func (c *Cache) Lock(key string, ttl time.Duration) (bool, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	now := c.now()
	if exp, ok := c.locks[key]; ok {
		if now.Before(exp) {
			return false, nil
		}
		c.unlockLocked(key)
	}
	size := len(key) + lockOverhead
	if len(c.entries)+len(c.locks) >= c.max || c.bytes+size > c.maxBytes {
		c.sweepLocked(now)
		if len(c.entries)+len(c.locks) >= c.max || c.bytes+size > c.maxBytes {
			return false, fmt.Errorf("%w: no room for a lock (lua.cache_max_entries %d, lua.cache_max_bytes %d)", ErrCacheFull, c.max, c.maxBytes)
		}
	}
	c.locks[key] = now.Add(ttl)
	c.bytes += size
	return true, nil
}

// Unlock releases key's lock; true (this process is the only holder there is).
func (c *Cache) Unlock(key string) bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.unlockLocked(key)
	return true
}

// LocalStore is the in-process Cache as a CacheStore.
type LocalStore struct{ *Cache }

func (s LocalStore) Save(_ context.Context, key string, value any, size int, ttl time.Duration) error {
	return s.Cache.Save(key, value, size, ttl)
}
func (s LocalStore) Load(_ context.Context, key string) (CacheEntry, error) { return s.Cache.Load(key) }
func (s LocalStore) Destroy(_ context.Context, key string) (bool, error) {
	return s.Cache.Destroy(key), nil
}
func (s LocalStore) Size(context.Context) (int, error) { return s.Cache.Size(), nil }
func (s LocalStore) Lock(_ context.Context, key string, ttl time.Duration) (bool, error) {
	return s.Cache.Lock(key, ttl)
}
func (s LocalStore) Unlock(_ context.Context, key string) (bool, error) {
	return s.Cache.Unlock(key), nil
}

// CheckLock is true: no other holder exists in one process.
func (s LocalStore) CheckLock(context.Context, string) (bool, error) { return true, nil }
