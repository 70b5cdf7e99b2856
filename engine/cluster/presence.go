package cluster

import (
	"context"
	"encoding/base64"
	"errors"
	"fmt"
	"sync"
	"time"

	"github.com/nats-io/nats.go/jetstream"
)

// Presence is a set of keys that stay alive while someone renews them: a JetStream KV bucket whose
// entries expire TTL after their last write (the bucket's max age, which every JetStream server applies,
// 2.9 included). A node's members (its own id, a room's members...) vanish within TTL of the node's
// death, with no clean-up by anyone. Keys are any strings (stored encoded).
type Presence struct {
	n    *Node
	name string
	ttl  time.Duration

	mu sync.Mutex
	kv jetstream.KeyValue
}

// Presence returns the presence set stored in bucket Bucket(kind), whose keys expire ttl after their last
// Beat. The bucket is created (or its TTL updated) on first use, so this works while NATS is away.
func (n *Node) Presence(kind string, ttl time.Duration) *Presence {
	return &Presence{n: n, name: n.Bucket(kind), ttl: ttl}
}

// TTL is how long a key lives after its last Beat.
func (p *Presence) TTL() time.Duration { return p.ttl }

func (p *Presence) bucket(ctx context.Context) (jetstream.KeyValue, error) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.kv != nil {
		return p.kv, nil
	}
	kv, err := p.n.js.CreateOrUpdateKeyValue(ctx, jetstream.KeyValueConfig{Bucket: p.name, TTL: p.ttl, History: 1,
		Description: "switchboard presence (keys expire " + p.ttl.String() + " after their last heartbeat)"})
	if err != nil {
		return nil, fmt.Errorf("cluster: presence bucket %s: %w", p.name, err)
	}
	p.kv = kv
	return kv, nil
}

// Beat writes (or renews) key with value.
func (p *Presence) Beat(ctx context.Context, key string, value []byte) error {
	kv, err := p.bucket(ctx)
	if err != nil {
		return err
	}
	_, err = kv.Put(ctx, EncodeKey(key), value)
	return err
}

// Leave removes key at once (a clean departure).
func (p *Presence) Leave(ctx context.Context, key string) error {
	kv, err := p.bucket(ctx)
	if err != nil {
		return err
	}
	return kv.Purge(ctx, EncodeKey(key))
}

// List returns every live key with its value.
func (p *Presence) List(ctx context.Context) (map[string][]byte, error) {
	kv, err := p.bucket(ctx)
	if err != nil {
		return nil, err
	}
	w, err := kv.WatchAll(ctx, jetstream.IgnoreDeletes())
	if err != nil {
		return nil, err
	}
	defer func() { _ = w.Stop() }()
	out := map[string][]byte{}
	for {
		select {
		case e, ok := <-w.Updates():
			if !ok {
				return out, nil
			}
			if e == nil { // the initial values are all in
				return out, nil
			}
			if k, err := DecodeKey(e.Key()); err == nil {
				out[k] = e.Value()
			}
		case <-ctx.Done():
			return nil, ctx.Err()
		}
	}
}

// EncodeKey turns any string into a valid KV key (letters, digits, - and _), one to one: "k" followed by
// its unpadded base64url form.
func EncodeKey(s string) string { return "k" + base64.RawURLEncoding.EncodeToString([]byte(s)) }

// DecodeKey reverses EncodeKey.
func DecodeKey(k string) (string, error) {
	if len(k) == 0 || k[0] != 'k' {
		return "", errors.New("cluster: not an encoded key")
	}
	b, err := base64.RawURLEncoding.DecodeString(k[1:])
	return string(b), err
}
