// Package cluster makes several engines one system over NATS with JetStream (github.com/nats-io/nats.go).
//
// A Node is this engine's membership: its id (cluster.node_id, default hostname:port), the cluster's name
// (cluster.name, which prefixes every subject and bucket) and two connections to the servers of
// cluster.nats_url: one for topics, one for everything else (sb.cache's KV bucket, status requests to the
// nodes, presence, the relay's streams). New returns at once when NATS is unreachable and keeps trying for
// the node's life; the engine serves its local clients meanwhile and nats.go restores every subscription
// when a connection returns. Nothing is queued while disconnected: what cannot be sent fails at once and is
// counted and logged by its sender.
//
// Names (see Node.Subject and Node.Bucket), with <name> = cluster.name:
//
//	<name>.t.<topic>        a topic of the bus (Backplane); patterns are NATS wildcards
//	<name>.tx.<base64url>   a topic whose name is no valid subject (exact match only)
//	<name>.node.status      request: every node answers with its status (Node.Nodes)
//	<name>_nodes            KV bucket: one key per live node, expiring MembersTTL after its last heartbeat
//	<name>_cache            KV bucket behind sb.cache: values and locks (Cache)
//	<name>.rooms            socket rooms: chat messages and room destructions (engine/socket/roomscluster)
//	<name>_rooms            KV bucket: one key per socket room
//	<name>_roommembers      KV bucket: one key per socket room member, with its node and record
//
// Presence is the helper for anything that must vanish with a dead node: keys in a KV bucket whose max age
// is the TTL, renewed by their owner. LiveNodes watches the node list, for what hangs off a node without a
// key of its own (socket rooms' members: hidden as soon as their node stops heartbeating). Values crossing nodes use the value codec
// (EncodeValue, DecodeValue): exact for any value a script can make, bounded when decoding.
//
// With cluster.nats_url empty none of this exists: the bus has no backplane and sb.cache is the in-process
// cache.
package cluster
