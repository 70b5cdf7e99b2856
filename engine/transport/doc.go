// Package transport is the network layer every Switchboard server and client
// stands on: one listener, one framing reader, one outbound queue and one
// dialer, so that limits and security behave the same in every part.
//
// Listening: Listen binds a TCP address (port 0 picks a free port), checks
// the peer against an Allowlist (IPs, CIDRs and hostname globs; hostnames are
// matched on forward-confirmed reverse DNS, looked up only when a hostname
// pattern exists), sets TCP keepalive and enforces a connection cap. Refused
// peers are logged with their address and the reason and closed at once; an
// optional OnRefuse hook may first say something in the part's own protocol
// (at most 16 refused peers are held open for that at a time; the rest are
// closed without a word, so a flood cannot spend descriptors on refusals).
// With TLS the listener runs the handshake itself, holding the connection's
// slot under the cap, within HandshakeTimeout (default 10 s): a peer that
// never sends a ClientHello is closed, logged and reported. TLS is 1.2 or
// later; 1.2 offers only ECDHE with AES-GCM or ChaCha20-Poly1305
// (ModernCipherSuites), never CBC or SHA-1 MACs. Accept only ever returns
// admitted connections, handshake done.
//
// Framing: Reader splits a byte stream on any non-empty delimiter ("\n",
// "\r\n", "\x01", ...). It never allocates on the hot path (a returned message
// aliases its buffer and is valid until the next call) and its memory is
// bounded by max + len(delim) + one read chunk (4 KiB) even when the peer never
// sends a delimiter. A message longer than max yields one error wrapping
// ErrTooLong; the reader then skips to the next delimiter and carries on.
//
// Writing: Outbox is a bounded queue of outbound messages drained by one
// writer goroutine that coalesces whatever is queued into one write. It is
// bounded in messages and, with NewBoundedOutbox, in bytes (a single message
// over the byte bound is taken only when nothing waits). Send never blocks:
// when the queue is full it returns ErrOutboxFull and the caller is expected
// to drop the slow peer; WaitBelow lets a caller that may block (a peer's own
// request) wait for room instead. Messages are never modified, so one buffer
// may be sent to many outboxes.
//
// Dialing: Dialer.Dial makes one attempt (TCP or TLS, with timeout and
// keepalive); Dialer.Run keeps a link up, redialing with exponential backoff
// and ±jitter (Backoff), and honours its context while dialing and sleeping.
package transport
