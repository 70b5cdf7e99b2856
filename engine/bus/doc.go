// Package bus carries messages between parts and scripts by topic, inside one
// process, with an optional Backplane to reach other nodes through a cluster
// broker.
//
// Publish never blocks and never allocates per subscriber beyond a queue slot:
// the subscriber list of a topic is a copy-on-write slice read without locks.
// Each subscription owns a FIFO queue drained by one goroutine, so a subscriber
// sees messages in publish order and a slow subscriber never slows the
// publisher or the other subscribers. A Sync() subscription instead runs its
// handler in the publisher's goroutine.
//
// A queue is bounded both in messages (Options.QueueSize, QueueSize; default
// 1024) and in bytes (Options.QueueBytes, QueueBytes; default 16 MiB). A
// message counts SizeOf(payload) + 64 bytes: string and byte lengths, 8 per
// number, 16 per table slot, so a slow subscriber of 900 KB messages holds at
// most ~16 MiB, not 1024 of them. SizeOf is computed once per Publish, only
// when the topic has a queued subscriber. A message bigger than the byte bound
// on its own is queued only into an empty queue (it is in memory anyway; the
// queue never holds it beside others).
//
// Slow-subscriber policy: when a subscription's queue is full, the bus drops
// the NEWEST message for that subscriber (the one being published) by default,
// or with DropOldest() the oldest queued message, so the queue keeps the most
// recent ones. Other subscribers are unaffected. Every drop is counted
// (Subscription.Dropped and the switchboard_bus_dropped_total{topic} counter)
// and logged: the first drop of a subscription at once, then at most once per
// second per subscription with the number dropped since the last line.
// switchboard_bus_published_total{topic} and
// switchboard_bus_delivered_total{topic} count publishes and handler calls.
//
// A subscription's topic is an exact name or a pattern (IsPattern): dot-separated
// tokens where "*" matches any one token and a final ">" one or more, as NATS
// subjects. A pattern is only for subscribing: a publish is matched against the
// patterns that exist (one atomic load per publish when there are none), and a
// publish to a pattern delivers nothing. A topic's state (its subscriber list
// and per-topic counters) lives as long as the Bus, so topic names should come
// from configuration and scripts, not from peer input.
//
// With a Backplane (engine/cluster), each local Publish is also handed to it,
// and the first subscription of a topic or pattern opens one backplane
// subscription whose messages go to that topic's (or pattern's) own
// subscribers, through the same queues and bounds. A refused backplane
// subscription is logged and the subscription stays local. A backplane that
// also implements BatchBackplane hands over a batch received from the broker
// in one call, which the bus queues with one lock and at most one wake-up per
// subscriber; each message is bounded, dropped and counted as if alone.
//
// Payloads are plain data (string, []byte, float64, int64, bool, nil,
// map[string]any, []any) shared by all subscribers: handlers must not modify
// them. A handler that panics is logged and the subscription keeps going.
//
// Subscription.Close stops a subscription; a handler call already running may
// still finish and queued messages are discarded. Bus.Close closes every
// subscription and waits for their goroutines.
package bus
