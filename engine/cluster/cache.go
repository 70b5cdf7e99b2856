package cluster

import (
	"context"
	"crypto/sha256"
	"encoding/base64"
	"errors"
	"fmt"
	"strings"
	"sync"
	"time"

	"github.com/nats-io/nats.go/jetstream"
)

// Cache is sb.cache shared by every node: one JetStream KV bucket (<name>_cache) holding values under
// "v.<key>" and locks under "l.<key>", with actionhero's semantics. Nothing is cached locally: a save on one
// node is what the next load on any node returns.
//
// Time to live: each value and lock records when it expires, and every read checks it (so expiry is exact
// to the nodes' clock agreement, whatever the server). On NATS 2.11 or later the bucket also has per-key
// TTLs, so the server removes expired keys itself; on older servers an expired key is removed when it is
// next read or overwritten.
//
// Locks: Lock creates "l.<key>" only if it does not exist (or has expired, replaced by a compare-and-set
// on its revision): JetStream orders the writes, so exactly one of any number of concurrent Locks wins.
// The holder is the node's id, as actionhero's lockName is the process's id: Unlock and CheckLock succeed
// for any handler of the holding node. Save, Load and Destroy of a key locked by another node fail with
// ErrLocked.
type Cache struct {
	n        *Node
	maxBytes int

	mu        sync.Mutex
	kv        jetstream.KeyValue
	serverTTL bool
}

// Cache errors; the engine maps them to sb.cache's.
var (
	//lint:ignore ST1005 actionhero's text, which scripts compare
	ErrNotFound = errors.New("Object not found")
	//lint:ignore ST1005 actionhero's text, which scripts compare
	ErrExpired = errors.New("Object expired")
	//lint:ignore ST1005 actionhero's text, which scripts compare
	ErrLocked = errors.New("Object locked")
	ErrFull   = errors.New("cache is full")
)

// CacheEntry is a loaded value.
type CacheEntry struct {
	Key       string
	Value     any
	CreatedAt time.Time
	ExpiresAt time.Time // zero: never
}

// Cache returns the shared cache; maxBytes (lua.cache_max_bytes) bounds the bucket when this node creates
// it, and each value.
func (n *Node) Cache(maxBytes int) *Cache { return &Cache{n: n, maxBytes: maxBytes} }

func (c *Cache) bucket(ctx context.Context) (jetstream.KeyValue, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.kv != nil {
		return c.kv, nil
	}
	name := c.n.Bucket("cache")
	cfg := jetstream.KeyValueConfig{Bucket: name, History: 1, MaxBytes: int64(c.maxBytes), LimitMarkerTTL: time.Second,
		Description: "switchboard sb.cache: values (v.) and locks (l.)"}
	kv, err := c.n.js.CreateKeyValue(ctx, cfg)
	if errors.Is(err, jetstream.ErrLimitMarkerTTLNotSupported) {
		cfg.LimitMarkerTTL = 0
		kv, err = c.n.js.CreateKeyValue(ctx, cfg)
	}
	if errors.Is(err, jetstream.ErrBucketExists) {
		kv, err = c.n.js.KeyValue(ctx, name)
	}
	if err != nil {
		return nil, fmt.Errorf("cluster: cache bucket %s: %w", name, err)
	}
	st, err := kv.Status(ctx)
	if err != nil {
		return nil, fmt.Errorf("cluster: cache bucket %s: %w", name, err)
	}
	c.kv = kv
	if kst, ok := st.(*jetstream.KeyValueBucketStatus); ok {
		c.serverTTL = kst.LimitMarkerTTL() > 0
	}
	return kv, nil
}

// token is a KV key token for any string key: its base64url form, or for a long key the hash's.
func token(key string) string {
	if len(key) <= 192 {
		return "k" + base64.RawURLEncoding.EncodeToString([]byte(key))
	}
	sum := sha256.Sum256([]byte(key))
	return "h" + base64.RawURLEncoding.EncodeToString(sum[:])
}

// serverTTL rounds a time to live up to the whole seconds NATS takes.
func serverTTL(ttl time.Duration) time.Duration {
	return (ttl + time.Second - 1).Truncate(time.Second)
}

func fromMS(v any) time.Time {
	if n, ok := v.(int64); ok && n != 0 {
		return time.UnixMilli(n)
	}
	return time.Time{}
}

// Save stores value under key for ttl (0: until destroyed); size is what the engine counts for it (the key
// and the encoded value), checked against the byte bound.
func (c *Cache) Save(ctx context.Context, key string, value any, size int, ttl time.Duration) error {
	if size > c.maxBytes {
		return fmt.Errorf("%w: the value takes %d bytes, more than lua.cache_max_bytes (%d)", ErrFull, size, c.maxBytes)
	}
	ctx, cancel := c.n.Context(ctx)
	defer cancel()
	kv, err := c.bucket(ctx)
	if err != nil {
		return err
	}
	if err := c.checkUnlocked(ctx, kv, key); err != nil {
		return err
	}
	now := time.Now()
	rec := map[string]any{"k": key, "v": value, "c": now.UnixMilli()}
	if ttl > 0 {
		rec["e"] = now.Add(ttl).UnixMilli()
	}
	data, err := EncodeValue(nil, rec)
	if err != nil {
		return err
	}
	k := "v." + token(key)
	if ttl > 0 && c.serverTTL {
		_, err = c.n.js.Publish(ctx, "$KV."+c.n.Bucket("cache")+"."+k, data, jetstream.WithMsgTTL(serverTTL(ttl)))
	} else {
		_, err = kv.Put(ctx, k, data)
	}
	return c.storeErr(err)
}

func (c *Cache) storeErr(err error) error {
	if err == nil {
		return nil
	}
	msg := strings.ToLower(err.Error())
	if strings.Contains(msg, "maximum bytes") || strings.Contains(msg, "resources exceeded") || strings.Contains(msg, "message size exceeds") {
		return fmt.Errorf("%w: the cluster's cache bucket is full (lua.cache_max_bytes %d when it was created)", ErrFull, c.maxBytes)
	}
	return fmt.Errorf("cluster: cache: %w", err)
}

// Load returns key's value; ErrNotFound, ErrExpired or ErrLocked otherwise.
func (c *Cache) Load(ctx context.Context, key string) (CacheEntry, error) {
	ctx, cancel := c.n.Context(ctx)
	defer cancel()
	kv, err := c.bucket(ctx)
	if err != nil {
		return CacheEntry{}, err
	}
	if err := c.checkUnlocked(ctx, kv, key); err != nil {
		return CacheEntry{}, err
	}
	k := "v." + token(key)
	e, err := kv.Get(ctx, k)
	if errors.Is(err, jetstream.ErrKeyNotFound) {
		return CacheEntry{}, ErrNotFound
	}
	if err != nil {
		return CacheEntry{}, fmt.Errorf("cluster: cache: %w", err)
	}
	v, err := DecodeValue(e.Value())
	rec, ok := v.(map[string]any)
	if err != nil || !ok || rec["k"] != key {
		return CacheEntry{}, ErrNotFound // another program's entry, or a hash collision: not ours
	}
	out := CacheEntry{Key: key, Value: rec["v"], CreatedAt: fromMS(rec["c"]), ExpiresAt: fromMS(rec["e"])}
	if !out.ExpiresAt.IsZero() && !time.Now().Before(out.ExpiresAt) {
		_ = kv.Delete(ctx, k, jetstream.LastRevision(e.Revision())) // unless rewritten meanwhile
		return CacheEntry{}, ErrExpired
	}
	return out, nil
}

// Destroy removes key; false if it did not exist. ErrLocked if another node holds its lock.
func (c *Cache) Destroy(ctx context.Context, key string) (bool, error) {
	ctx, cancel := c.n.Context(ctx)
	defer cancel()
	kv, err := c.bucket(ctx)
	if err != nil {
		return false, err
	}
	if err := c.checkUnlocked(ctx, kv, key); err != nil {
		return false, err
	}
	k := "v." + token(key)
	if _, err := kv.Get(ctx, k); errors.Is(err, jetstream.ErrKeyNotFound) {
		return false, nil
	} else if err != nil {
		return false, fmt.Errorf("cluster: cache: %w", err)
	}
	if err := kv.Delete(ctx, k); err != nil {
		return false, fmt.Errorf("cluster: cache: %w", err)
	}
	return true, nil
}

// Size counts the keys stored (on NATS before 2.11, expired keys not yet read count too).
func (c *Cache) Size(ctx context.Context) (int, error) {
	ctx, cancel := c.n.Context(ctx)
	defer cancel()
	kv, err := c.bucket(ctx)
	if err != nil {
		return 0, err
	}
	l, err := kv.ListKeysFiltered(ctx, "v.>")
	if err != nil {
		if errors.Is(err, jetstream.ErrNoKeysFound) {
			return 0, nil
		}
		return 0, fmt.Errorf("cluster: cache: %w", err)
	}
	defer func() { _ = l.Stop() }()
	n := 0
	for range l.Keys() {
		n++
	}
	return n, nil
}

// lock is a decoded lock entry.
type lock struct {
	holder  string
	expires time.Time
	rev     uint64
}

func (c *Cache) getLock(ctx context.Context, kv jetstream.KeyValue, key string) (lock, bool, error) {
	e, err := kv.Get(ctx, "l."+token(key))
	if errors.Is(err, jetstream.ErrKeyNotFound) {
		return lock{}, false, nil
	}
	if err != nil {
		return lock{}, false, fmt.Errorf("cluster: cache: lock %q: %w", clipName(key), err)
	}
	v, _ := DecodeValue(e.Value())
	rec, _ := v.(map[string]any)
	h, _ := rec["h"].(string)
	return lock{holder: h, expires: fromMS(rec["e"]), rev: e.Revision()}, true, nil
}

// held says whether a lock entry still stands against this node.
func (c *Cache) heldByOther(l lock) bool {
	return l.holder != c.n.id && (l.expires.IsZero() || time.Now().Before(l.expires))
}

func (c *Cache) checkUnlocked(ctx context.Context, kv jetstream.KeyValue, key string) error {
	l, ok, err := c.getLock(ctx, kv, key)
	if err != nil {
		return err
	}
	if ok && c.heldByOther(l) {
		return ErrLocked
	}
	return nil
}

// Lock takes key's lock for ttl: true for exactly one caller while the lock stands (actionhero's
// cache.lock: false if anyone holds it, this node included).
func (c *Cache) Lock(ctx context.Context, key string, ttl time.Duration) (bool, error) {
	ctx, cancel := c.n.Context(ctx)
	defer cancel()
	kv, err := c.bucket(ctx)
	if err != nil {
		return false, err
	}
	data, err := EncodeValue(nil, map[string]any{"h": c.n.id, "e": time.Now().Add(ttl).UnixMilli()})
	if err != nil {
		return false, err
	}
	k := "l." + token(key)
	var opts []jetstream.KVCreateOpt
	if c.serverTTL {
		opts = append(opts, jetstream.KeyTTL(serverTTL(ttl)))
	}
	_, err = kv.Create(ctx, k, data, opts...)
	if err == nil {
		return true, nil
	}
	if !errors.Is(err, jetstream.ErrKeyExists) {
		return false, c.storeErr(err)
	}
	l, ok, err := c.getLock(ctx, kv, key)
	if err != nil {
		return false, err
	}
	if !ok { // released between the two: one more try
		if _, err := kv.Create(ctx, k, data, opts...); err == nil {
			return true, nil
		}
		return false, nil
	}
	if !l.expires.IsZero() && time.Now().Before(l.expires) {
		return false, nil
	}
	// Expired but still stored (no server TTL): replace it only if no one else did meanwhile.
	if _, err := kv.Update(ctx, k, data, l.rev); err != nil {
		return false, nil
	}
	return true, nil
}

// Unlock releases key's lock: true if this node held it or no one did; false if another node holds it.
func (c *Cache) Unlock(ctx context.Context, key string) (bool, error) {
	ctx, cancel := c.n.Context(ctx)
	defer cancel()
	kv, err := c.bucket(ctx)
	if err != nil {
		return false, err
	}
	l, ok, err := c.getLock(ctx, kv, key)
	if err != nil || !ok {
		return err == nil, err
	}
	if c.heldByOther(l) {
		return false, nil
	}
	if err := kv.Delete(ctx, "l."+token(key), jetstream.LastRevision(l.rev)); err != nil {
		// Taken again between the read and the delete: by whom decides.
		l, ok, gerr := c.getLock(ctx, kv, key)
		if gerr != nil {
			return false, gerr
		}
		return !ok || !c.heldByOther(l), nil
	}
	return true, nil
}

// CheckLock says whether this node may use key: true if no other node holds its lock.
func (c *Cache) CheckLock(ctx context.Context, key string) (bool, error) {
	ctx, cancel := c.n.Context(ctx)
	defer cancel()
	kv, err := c.bucket(ctx)
	if err != nil {
		return false, err
	}
	l, ok, err := c.getLock(ctx, kv, key)
	if err != nil {
		return false, err
	}
	return !ok || !c.heldByOther(l), nil
}
