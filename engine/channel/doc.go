// Package channel implements active sockets: connections the engine opens to external servers, bridged to
// in-process topics (engine/bus).
//
// Each channel (one entry of the `channels:` list) has a framing protocol per direction:
//
//   - text-messages: messages end with a delimiter (any byte string, written with C escapes such as \n or
//     \x01, read with transport.Reader); an empty delimiter makes every read one message. A reply that
//     spans several lines (a redis-style server's arrays and bulk strings) is several messages: each line
//     answers the next request or goes to topic_in / Receive. Use resp for such servers.
//   - xml-messages: one XML document (prolog + one root element) per message, scanned incrementally and
//     checked with encoding/xml; whitespace, NULs and the optional delimiter between documents are skipped.
//   - http: an HTTP/1.1 client. An outbound message is a request ("GET /path", "HEAD /path",
//     "GET http://host/path" or a table {method, path, headers, body}); each final response (Content-Length,
//     chunked or until close; interim 1xx responses are skipped) is an inbound table {status, reason, proto,
//     headers, body}. Keep-alive and pipelining are used, except that a non-idempotent request (POST, PATCH)
//     is written only when no other request is in flight and nothing follows it until it is answered.
//   - resp: RESP2, the redis protocol. A command ("SET k v" split on spaces, or an array of arguments) is
//     written as an array of bulk strings; each reply is one value however many lines it takes (simple
//     string and bulk string: a string; integer: an int64; array: []any; error: map{"err": message}; null:
//     false, as Redis's own Lua scripting converts them). A reply that answers no command (pub/sub pushes
//     after SUBSCRIBE) goes to topic_in or Receive.
//   - text-stream: whatever one read returns (up to max_message_size), or exactly fixed_size bytes.
//   - asymmetric: inbound and outbound framings configured separately.
//
// Pairing. A connection keeps, in write order, the messages written on it whose reply is due: on http and
// resp every request (whoever sent it), on the other framings every Request. Each inbound message answers the
// oldest; the pairing is done before the in transform runs, so a transform that drops or fails a reply
// answers that request with the reason (ErrReplyDropped or the transform's error). A reply goes to its
// Request, and to topic_in when redirect_in is on; a message that answers no Request and is not published is
// kept for Receive within receive_buffer_bytes, beyond which it is dropped and counted (no_taker). An http
// response that answers no request is dropped and counted (unsolicited).
//
// When a connection ends, every message on it is settled: one not yet written goes back to the send buffer;
// the request whose reply was being read when the connection failed (size limit, bad framing,
// response_timeout, heartbeat) gets that reason; other unanswered http requests are written again on the next
// connection when idempotent (GET, HEAD, PUT, DELETE, OPTIONS, TRACE; at most 3 connections) and fail with a
// clear error otherwise; unanswered resp commands and text requests fail (ErrDown). A request from topic_out
// that ends that way is counted (reply_lost) and logged. Nothing vanishes uncounted.
//
// Lifecycle: permanent channels connect at Start and, whenever the connection breaks, reconnect after
// reconnection_timeout (±5 %) and then with exponential backoff up to reconnect_max (transport.Dialer.Run).
// A failed attempt shows as state down with its error and fires channel.down with Event.Failed (the first
// at once, then at most one per 5 s). A connection on which the peer sent nothing and that ended within
// 1 s — a server that accepts and closes — counts as a failed attempt too, so the backoff keeps growing. An
// http or resp server that closes in good order after answering (Connection: close, HTTP/1.0), or closes a
// connection idle for more than 1 s (keep-alive timeout), is connected to again at once, quietly (no
// events); once an http server has closed after its first response the channel sends it one request per
// connection. Non-permanent channels connect on the first message sent (or
// Receive), make new connections while messages wait, and are not restored otherwise; a failed connect
// drops the buffered messages (connect_failed) and fails their requests. redirect_in without an explicit
// permanent means permanent.
//
// While a channel is down its outbound messages wait in the send buffer, bounded by send_buffer messages and
// send_buffer_bytes bytes (bytes queued on a live connection and not yet written count too), and are written
// in order on connect; over the buffer a message is refused (ErrBufferFull), counted
// (switchboard_channel_dropped_total) and logged.
//
// Dead peers: response_timeout bounds the time a due reply takes to arrive completely; a heartbeat (a
// message written at connect and every heartbeat_interval) must be followed by some input within
// heartbeat_timeout; with a heartbeat a new connection is up, and its buffered messages are written, only
// once the peer sent something (a connection sitting in a stopped server's listen queue never shows up).
// On http and resp the heartbeat's reply is consumed; on other framings a message equal to heartbeat_reply
// is. TCP keepalive and idle_timeout (no inbound bytes at all) also exist. All these use read deadlines on
// the connection, no timers.
//
// An absolute URL in an http request naming the channel's own host and port is sent on the channel; another
// server's is refused unless follow_absolute is set, then fetched on a connection of its own (closed after
// the response), at most 8 at once per channel.
//
// Limits: every inbound message is bounded by max_message_size (http: the body; the head by
// max_header_size; resp: the whole reply, arrays nested at most 32 deep). A framing error (over-long
// message, invalid XML, bad HTTP or RESP) is logged and closes the connection; a permanent channel
// reconnects.
package channel
