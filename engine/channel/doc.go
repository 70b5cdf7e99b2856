// Package channel implements active sockets: connections the engine opens to external servers, bridged to
// in-process topics (engine/bus).
//
// Each channel (one entry of the `channels:` list) has a framing protocol per direction:
//
//   - text-messages: messages end with a delimiter (any byte string, written with C escapes such as \n or
//     \x01, read with transport.Reader); an empty delimiter makes every read one message.
//   - xml-messages: one XML document (prolog + one root element) per message, scanned incrementally and
//     checked with encoding/xml; whitespace, NULs and the optional delimiter between documents are skipped.
//   - http: an HTTP/1.1 client. An outbound message is a request ("GET /path", "GET http://host/path" or a
//     table {method, path, headers, body}); each response (Content-Length, chunked or until close) is an
//     inbound table {status, reason, proto, headers, body}. Keep-alive is used; HEAD is refused (its
//     response has no body and the framing would lose track).
//   - text-stream: whatever one read returns (up to max_message_size), or exactly fixed_size bytes.
//   - asymmetric: inbound and outbound framings configured separately.
//
// Lifecycle: permanent channels connect at Start and, whenever the connection breaks, reconnect after
// reconnection_timeout (±5 %) and then with exponential backoff up to reconnect_max (transport.Dialer.Run).
// Non-permanent channels connect on the first message sent and are not restored after a break. While a
// channel is down its outbound messages wait in a buffer of send_buffer messages and are written in order on
// connect; over the buffer a message is dropped, counted (switchboard_channel_dropped_total) and logged.
// TCP keepalive and an optional idle_timeout (no inbound bytes) detect dead peers.
//
// An HTTP server that closes the connection after each response (Connection: close, HTTP/1.0) ends the
// session each time; a permanent channel then waits reconnection_timeout before the next request goes out,
// so use permanent: false for such servers (each request connects on demand).
//
// Limits: every inbound message is bounded by max_message_size (http: the body; the head by
// max_header_size). A framing error (over-long message, invalid XML, bad HTTP) is logged and closes the
// connection; a permanent channel reconnects.
package channel
