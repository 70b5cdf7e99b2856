// Package relay is Switchboard's AMI relay: applications connect with 3forge
// AMI realtime messages, the relay acknowledges every instruction and routes
// it to centers (outbound AMI links) by the rules of a relay.routes file.
//
// Wire protocol (see docs and ami-relay.md): one instruction per line,
// `TYPE[#seq][@now]|key=value|...`, ended by LF (CRLF accepted). Input is
// parsed leniently (Parse); everything the relay writes is strict: statuses
// are exactly `M@<now>|Q=<seq>|S=<code>|M="<text>"`, the form the 3forge Java
// client requires. The first instruction must be L with I; O needs T; D needs
// I and T; C needs I; R answers an E from a center and goes back to it (see
// Commands); X closes; P pauses; H returns help text in the status. Login
// options QUIET (no statuses), UNIX/WINDOWS (line endings), LOG and TTY are
// accepted.
//
// Routing: rules in priority order (ties by name), prefiltered in Go by
// message type, object type (T) and declared params, then an expression
// compiled once by an ExprCompiler (Lua in production, see luabind). A
// center receives a message at most once; no rules means every center. An
// ObjectIndex remembers, per object (login I, T, I), the centers it went to,
// so its updates and deletes follow it there, and the application that sent
// it (see Commands); it holds at most relay.routes_cache_size objects. The
// routes file is watched (fsnotify) and reloaded on Reload; a bad file keeps
// the table in use and its errors are logged as `relay.routes:LINE: reason`.
//
// Centers: each has its own queue and goroutine; they log in as the relay
// (`L|I=<relay.id>`) and number instructions themselves. Non-guaranteed mode
// acks once a message is accepted and drops (counted) when a center's queue
// is full. Guaranteed mode appends each routed message to a Journal
// (segments, CRC per record, group-commit fsync) and acks only after the
// fsync; each center reads the journal from its cursor, which advances as
// the center acks, so centers that are down or late receive everything in
// order (at least once). Segments every center has passed are removed.
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
// Limits (docs/operations.md, "Limits"): everything an application or a
// center can make the relay hold is bounded in bytes. relay.max_line bytes
// per instruction (longer ones get S=1 and are skipped); relay.max_login_bytes
// per login id; relay.client_queue_bytes of statuses and E lines waiting for
// an application (one that does not read them is disconnected and counted);
// relay.client_queue statuses waiting for the journal (guaranteed mode);
// relay.center_queue messages and relay.center_queue_bytes bytes per center
// (dropped and counted past them, or journal records in flight in guaranteed
// mode); relay.expression_cache_bytes of remembered expression results per
// connection (params over 1 KiB are never remembered); 4 MiB of registered
// commands (C with L=0 removes one) and of pending E request ids; error
// status texts cut to 512 bytes; 64 centers.
//
// Metrics: no label value comes from a peer unchecked. The app label of
// switchboard_relay_app_messages_in_total is the login id made valid UTF-8
// and cut to 64 bytes, for at most relay.max_app_series applications at a
// time (the rest count under "other"), and its series is deleted when the
// application's last session ends (package labels).
package relay
