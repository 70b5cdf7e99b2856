// Package relay is Switchboard's AMI relay: applications connect with 3forge
// AMI realtime messages, the relay acknowledges every instruction and routes
// it to centers (outbound AMI links) by the rules of a relay.routes file.
//
// Wire protocol (3forge AMI realtime messages; docs/relay-conformance.md): one instruction per line,
// `TYPE[#seq][@now]|key=value|...`, ended by LF (CRLF accepted). Input is
// parsed leniently (Parse; a \uXXXX surrogate pair, as Java writes code
// points above U+FFFF, is one code point, a lone surrogate an error);
// everything the relay writes is strict: statuses
// are exactly `M@<now>|Q=<seq>|S=<code>|M="<text>"`, the form the 3forge Java
// client requires. The first instruction must be L with I; O needs T; D needs
// I and T; C needs I; R answers an E from a center and goes back to it (see
// Commands); X closes; P pauses; H returns help text in the status. Login
// options QUIET (no statuses), UNIX/WINDOWS (line endings), LOG and TTY are
// accepted.
//
// Routing: rules in priority order (ties by name), prefiltered in Go by
// message type, object type (T) and declared params, then an expression
// compiled once by an ExprCompiler (Lua in production: relay/relaylua, which
// also compiles the common forms to Go closures that give Lua's results, and
// whose results the memo does not keep: they cost less than a lookup). An
// expression must yield a boolean: null (nil) is false, and a non-boolean
// result (*NotBooleanError) counts as false, counted and logged once per
// rule. A center receives a message at most once; no rules means every
// center. By default a message goes where the rules send it, as 3forge
// documents. An ObjectIndex remembers, per object (login I, T, I), the
// centers it went to and the application that sent it (see Commands); with
// relay.follow_objects = deletes (or updates_and_deletes) a D (and an update)
// also goes wherever its object went. It holds at most
// relay.routes_cache_size objects. The routes file is watched (fsnotify): a
// change goes live once the file has been quiet and reads the same twice, a
// bad file keeps the table in use (errors logged as `relay.routes:LINE:
// reason`), and a file with no rule replaces a table that has rules only on
// an explicit Reload. A missing routes file is created with instructions.
//
// Centers: each has its own queue and goroutine; they log in as the relay
// (`L|I=<relay.id>`) and number instructions themselves. relay.centers is a
// map, or 3forge's text `[name=]host:port,...` (a center without a name is
// named by its host:port); relay.center_tls gives a center its own client
// certificate and CA. Every write has a deadline (relay.write_timeout): a
// center whose write blocks for more than a second is "stalled" (State,
// logged, switchboard_relay_center_stalled), cut at the deadline and
// redialed, and cut at once by Shutdown. Non-guaranteed mode acks once a
// message is accepted; a message a center does not get (its queue full, the
// link closed before the center acknowledged it, still queued at shutdown)
// is counted in switchboard_relay_center_dropped_total. Guaranteed mode
// appends each routed message to a Journal (segments, CRC per record,
// group-commit fsync) and acks only after the fsync; each center reads the
// journal from its cursor, which advances as the center acks, so centers
// that are down or late receive everything in order (at least once).
// Records name centers by a slot the journal keeps per center name (the
// file persist_dir/centers), so they reach the same centers whatever
// relay.centers says at the next start; journals written before are read
// and migrated once. Retention per center (relay.journal_retention_bytes,
// _age) drops the oldest segments for a center too far behind (counted in
// switchboard_relay_journal_dropped_total, logged); segments every center
// has passed are removed.
//
// JetStream journal (relay.journal = jetstream, relay.jetstream.*): guaranteed
// mode journals to a replicated stream of the NATS cluster (Options.Cluster)
// instead, so that a relay machine's loss loses no acknowledged message.
// Records are published without waiting for each other, each expecting the
// sequence of the one before it, so the stream holds them in order or not
// at all; after a failure the writer reads what the stream stored and sends
// the rest again. The S=0 of a message waits for its record's
// acknowledgement (an R3 stream: on two servers). Engines with the same
// relay.id share the journal; one at a time is active (a lease in a KV
// bucket, renewed every lease_ttl/3): it takes applications and drives the
// centers from their cursors (kept in KV), the others answer logins with S=1
// and take over within about 1.2 lease_ttl after it dies, replaying what the
// centers did not acknowledge. The object index is logged to a stream
// (deltas and snapshots) and restored, with the journal's tail, by the node
// that takes over. See docs/architecture.md, "Cluster: the relay".
//
// Commands: an application registers a command with C; a center sends E
// when a user runs it (I = request id, C = command, optional O = object id
// and T = its type). An E naming an object the ObjectIndex knows (O and T,
// the object's I and T; I="5", I=5 and I=5L are the same id) goes to the
// application that sent that object, whatever application registered the
// command; if several applications sent that type and id, the command's
// owner among them wins, else the first connected one by login. Any other
// E (no O or no T, an object never sent, deleted, forgotten by the bounded
// index, or sent before the relay started: the index lives in memory) goes
// to the application that registered the command. A
// login owns its objects across reconnects. Only the application the E went
// to may answer it: its R goes back to the center that sent the E (others
// get S=1 "Unknown request id"); at most 10000 E await an answer (oldest
// forgotten). When the chosen application is not connected, or does not
// read, the center gets `R@now|I=<request>|S=1|M="<reason>"` at once, e.g.
// `application "algo-2" that sent Order "o1" is not connected` (no other
// application gets the E: it may not know the command, and the object is
// not its own). Counted in switchboard_relay_commands_total{result=object|
// command|undelivered}. With relay.routes_cache_size 0, E goes by command
// only. The index interns at most 65536 distinct login ids; objects of
// later new logins are still followed but have no known owner.
//
// Hot path (see docs/benchmarks.md): a connection's lines are parsed into
// shared arena blocks; a params section already in strict form is forwarded
// as is (only the header `T@now` is written, and each center inserts its
// #seq); everything one read burst produces (statuses, lines per center,
// metric counts) is sent when the reader is about to read again. The object
// index is an open-addressing table per shard. CheckConfig checks the routes
// file offline for `switchboard check`.
//
// Conformance with 3forge's documented behaviour, row by row with the test
// that shows it: docs/relay-conformance.md.
//
// Limits (docs/operations.md, "Limits"): everything an application or a
// center can make the relay hold is bounded in bytes or time. relay.max_line bytes
// per instruction (longer ones get S=1 with their own Q, and are skipped); relay.max_login_bytes
// per login id; relay.client_queue_bytes of statuses and E lines waiting for
// an application (one that does not read them is disconnected and counted);
// relay.client_queue statuses waiting for the journal (guaranteed mode);
// relay.center_queue messages and relay.center_queue_bytes bytes per center
// (dropped and counted past them, or journal records in flight in guaranteed
// mode); relay.expression_cache_bytes of remembered expression results per
// connection (params over 1 KiB are never remembered); 4 MiB of registered
// commands (C with L=0 removes one) and of pending E request ids; error
// status texts cut to 512 bytes; 64 centers; relay.write_timeout per write
// to a center or an application; relay.journal_retention_bytes and
// relay.journal_retention_age of journal per center.
//
// Metrics: no label value comes from a peer unchecked. The app label of
// switchboard_relay_app_messages_in_total is the login id made valid UTF-8
// and cut to 64 bytes, for at most relay.max_app_series applications at a
// time (the rest count under "other"), and its series is deleted when the
// application's last session ends (package labels).
package relay
