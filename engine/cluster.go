package engine

import (
	"context"
	"encoding/json"
	"errors"
	"net"
	"net/http"
	"os"
	"time"

	"github.com/switchboard/switchboard/engine/bus"
	"github.com/switchboard/switchboard/engine/cluster"
	"github.com/switchboard/switchboard/luabind"
)

// newCluster joins the cluster of e.cfg.Cluster: the node, the bus's backplane and sb.cache's shared
// bucket. With cluster.nats_url empty it returns nils and the engine stays one process.
func (e *Engine) newCluster() (bus.Backplane, luabind.CacheStore, error) {
	if !e.cfg.Cluster.Enabled() {
		return nil, nil, nil
	}
	n, err := cluster.New(e.cfg.Cluster, cluster.Options{Log: e.log, Metrics: e.metrics, DefaultID: defaultNodeID(e.cfg)})
	if err != nil {
		return nil, nil, err
	}
	e.node = n
	n.Log().WithField("cluster", n.Name()).Info("cluster: joined")
	return n.Backplane(e.metrics), clusterStore{n.Cache(e.cfg.Lua.CacheMaxBytes)}, nil
}

// stopCluster leaves the cluster (after the parts and the bus stopped): the socket rooms stop following
// it first (their last records are deleted while the node is still connected).
func (e *Engine) stopCluster(ctx context.Context) {
	if e.rooms != nil {
		e.rooms.Close(ctx)
	}
	if e.node != nil {
		_ = e.node.Shutdown(ctx)
	}
}

// defaultNodeID is hostname:port, the port being the first configured of socket, relay, esl and admin
// (each node of a cluster on one host listens on its own ports); hostname:pid<pid> when none names a port.
func defaultNodeID(cfg Config) string {
	host, err := os.Hostname()
	if err != nil || host == "" {
		host = "localhost"
	}
	var addrs []string
	if cfg.Socket.Enabled {
		addrs = append(addrs, cfg.Socket.Listen)
	}
	if cfg.Relay.Enabled && !cfg.Relay.ListenDisabled() {
		addrs = append(addrs, cfg.Relay.Listen)
	}
	if cfg.ESL.Enabled {
		addrs = append(addrs, cfg.ESL.Listen)
	}
	addrs = append(addrs, cfg.Admin.Listen)
	for _, a := range addrs {
		if _, port, err := net.SplitHostPort(a); err == nil && port != "" && port != "0" {
			return net.JoinHostPort(host, port)
		}
	}
	return host + ":pid" + itoa(os.Getpid())
}

func itoa(n int) string {
	b, _ := json.Marshal(n)
	return string(b)
}

// clusterStore is the cluster's cache as sb.cache's store, with sb.cache's errors.
type clusterStore struct{ c *cluster.Cache }

func cacheErr(err error) error {
	switch {
	case err == nil:
		return nil
	case errors.Is(err, cluster.ErrNotFound):
		return luabind.ErrCacheNotFound
	case errors.Is(err, cluster.ErrExpired):
		return luabind.ErrCacheExpired
	case errors.Is(err, cluster.ErrLocked):
		return luabind.ErrCacheLocked
	}
	return err // ErrFull's text already reads "cache is full: ..."
}

func (s clusterStore) Save(ctx context.Context, key string, value any, size int, ttl time.Duration) error {
	return cacheErr(s.c.Save(ctx, key, value, size, ttl))
}

func (s clusterStore) Load(ctx context.Context, key string) (luabind.CacheEntry, error) {
	e, err := s.c.Load(ctx, key)
	if err != nil {
		return luabind.CacheEntry{}, cacheErr(err)
	}
	return luabind.CacheEntry{Key: e.Key, Value: e.Value, CreatedAt: e.CreatedAt, ExpiresAt: e.ExpiresAt}, nil
}

func (s clusterStore) Destroy(ctx context.Context, key string) (bool, error) {
	ok, err := s.c.Destroy(ctx, key)
	return ok, cacheErr(err)
}

func (s clusterStore) Size(ctx context.Context) (int, error) { return s.c.Size(ctx) }

func (s clusterStore) Lock(ctx context.Context, key string, ttl time.Duration) (bool, error) {
	return s.c.Lock(ctx, key, ttl)
}

func (s clusterStore) Unlock(ctx context.Context, key string) (bool, error) {
	return s.c.Unlock(ctx, key)
}

func (s clusterStore) CheckLock(ctx context.Context, key string) (bool, error) {
	return s.c.CheckLock(ctx, key)
}

// cluster serves GET /api/cluster: every node's /api/status, asked over NATS (this node's included), and
// the nodes that heartbeat but did not answer in time. Without a cluster it lists this engine alone.
func (a *statusAPI) cluster(w http.ResponseWriter, r *http.Request) {
	out := struct {
		Clustered bool     `json:"clustered"`
		Cluster   string   `json:"cluster"`
		Node      string   `json:"node"` // the node that answered this request
		Connected bool     `json:"connected"`
		Nodes     list     `json:"nodes"` // items: {"node", "connected", "status": /api/status of that node}
		Missing   []string `json:"missing"`
	}{Missing: []string{}}
	b := a.newBudget()
	n := a.e.node
	if n == nil {
		out.Nodes = list{Total: 1, Limit: 1}
		addItems(&out.Nodes, b, []cluster.NodeReport{{Connected: true, Status: mustJSON(a.statusBody())}})
		writeJSON(w, http.StatusOK, out)
		return
	}
	out.Clustered, out.Cluster, out.Node, out.Connected = true, n.Name(), n.ID(), n.Connected()
	reports, missing, err := n.Nodes(r.Context())
	if err != nil {
		apiError(w, http.StatusServiceUnavailable, err.Error())
		return
	}
	if missing != nil {
		out.Missing = missing
	}
	out.Nodes = list{Total: len(reports), Limit: len(reports)}
	addItems(&out.Nodes, b, reports)
	writeJSON(w, http.StatusOK, out)
}

func mustJSON(v any) json.RawMessage {
	raw, err := json.Marshal(v)
	if err != nil {
		return json.RawMessage("null")
	}
	return raw
}
