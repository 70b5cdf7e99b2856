package luabind

import (
	"errors"
	"sync"
	"time"
)

// Cache is the key/value store behind sb.cache, shared by every VM and every generation (it survives
// reloads). Values are plain Go data copied out of Lua, so no VM ever sees another's tables. It follows
// actionhero's cache: entries carry createdAt, an optional expiry and the time they were last read.
type Cache struct {
	mu      sync.Mutex
	max     int
	now     func() time.Time
	entries map[string]*CacheEntry
}

// CacheEntry is what Load reports about a key.
type CacheEntry struct {
	Key        string
	Value      any
	CreatedAt  time.Time
	ExpiresAt  time.Time // zero: never
	LastReadAt time.Time // zero: never read before this load
}

var (
	// ErrCacheNotFound is returned by Load for a key that was never saved or was destroyed.
	ErrCacheNotFound = errors.New("Object not found")
	// ErrCacheExpired is returned by Load for a key whose time to live has passed.
	ErrCacheExpired = errors.New("Object expired")
	// ErrCacheFull is returned by Save when lua.cache_max_entries keys are stored.
	ErrCacheFull = errors.New("cache is full")
)

// NewCache returns a cache holding at most max live keys.
func NewCache(max int) *Cache {
	return &Cache{max: max, now: time.Now, entries: make(map[string]*CacheEntry)}
}

// Save stores value under key; ttl 0 keeps it until destroyed.
func (c *Cache) Save(key string, value any, ttl time.Duration) error {
	c.mu.Lock()
	defer c.mu.Unlock()
	now := c.now()
	if _, ok := c.entries[key]; !ok && len(c.entries) >= c.max {
		c.sweepLocked(now)
		if len(c.entries) >= c.max {
			return ErrCacheFull
		}
	}
	e := &CacheEntry{Key: key, Value: value, CreatedAt: now}
	if ttl > 0 {
		e.ExpiresAt = now.Add(ttl)
	}
	c.entries[key] = e
	return nil
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
		delete(c.entries, key)
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
	delete(c.entries, key)
	return ok
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
			delete(c.entries, k)
		}
	}
}
