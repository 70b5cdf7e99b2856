// Package socket is Switchboard's actionhero-compatible TCP/TLS socket server: clients written for
// actionhero's socket server (v20 built in, v21+ plugin) and its node client work unmodified.
//
// # Wire protocol
//
// The server speaks first with {"welcome":<text>,"context":"api"}. Every server message is one JSON value
// followed by "\r\n" (the raw file verb excepted). A request is one line ended by socket.delimiter
// (default "\n"; with it a bare "\r" also ends a line, as in the reference, so "\r\n" input works; any
// other delimiter, "\r\n" included, is matched exactly). Empty lines are ignored.
//
// The first word of a line (split on single spaces) is a built-in verb (quit exit paramAdd paramView
// paramDelete paramsView paramsDelete roomAdd roomLeave roomView detailsView say documentation file), else
// a custom verb registered by a script, else: a line that parses as JSON may set "params" (replacing every
// sticky param) and "action"; any other line names the action to run and that name becomes the sticky
// "action" param. Replies:
//
//	action ok    {<result fields>,"context":"response","messageId":..,"messageCount":n}
//	verb ok      {"status":"OK","context":"response"[,"data":..],"messageId":..,"messageCount":n}
//	error        {"error":"<message>","context":"response","messageId":..,"messageCount":n}
//	too long     {"status":"error","error":"data length is too big (41 received/20 max)",...}
//	chat         {"message":..,"room":..,"from":<conn id>,"context":"user","sentAt":<ms>}
//	server chat  {"message":..,"room":..,"from":0,"context":"user","sentAt":<ms>}
//	goodbye      {"status":"Bye!","context":"api"} then close
//
// The too-long text is actionhero v20's with its numbers the right way round (the line's length, then the
// limit; v20 swaps them: "20 received/41 max"; the v21+ plugin sends "DATA_LENGTH_TOO_LONG"). A client
// that half-closes (sends FIN) after a request still gets the reply once the action ends, then the server
// closes without a goodbye line, as the reference does.
//
// quit and exit first answer the requests sent before them that are still running (each within its action's
// time limit), then say goodbye; the reference drops those replies.
//
// messageId is the sticky "messageId" param when set, else a UUID made up for the request, captured when
// the line is read, so every reply (verbs included, unlike the reference) carries its own request's id
// even when lines are pipelined. Made-up ids are the connection's random 128-bit base plus the request's
// number, in UUID v4 form: unique on the connection and, being random per connection, across them;
// clients only compare ids (actionhero's socket protocol). messageCount numbers the requests of the connection (the
// older protocol of the seed).
//
// Actions run concurrently (at most socket.simultaneous_actions per connection; replies arrive in
// completion order); verbs run in line order. Scripts plug in through the small interfaces Actions,
// Verbs, Hooks and RoomHooks (actionhero's chat middleware and member/message shaping), so Go code and
// tests drive the server without Lua.
//
// # Rooms
//
// Room membership, member records and the hand-off of chat messages to other nodes live behind Rooms
// (LocalRooms in one process; a cluster backs it with a shared store). The server runs the RoomHooks
// itself, never while a Rooms method runs: a join checks the room and membership, runs the join hooks
// (which may refuse with the error the client reads) and MemberDetails, then joins; a leave runs the leave
// hooks first. A chat message (a say, or Server.Broadcast from the server itself, "from":0) runs the
// onSayReceive hooks once on the sender's node, then Deliver writes it to this node's members through
// Payload and the per-recipient SayTo hooks. Without hooks a message is one shared line for every member.
//
// # Running actions
//
// When nothing else is pending on the connection and no further request is buffered, the connection's
// reader runs the action itself, which spares a goroutine hand-off per request. If that action is still
// running after 2 ms (it sleeps, waits, or spins), a stall watch gives the reading role to an
// action worker (counted in switchboard_socket_inline_handoffs_total), so the requests that arrive
// meanwhile start at most about 4 ms late, on action workers, and can overtake it. A Lua action that
// never returns therefore holds up neither its own connection (beyond those milliseconds) nor others;
// it is stopped at its time limit. (The reference runs on one event loop: its async actions never hold
// the connection up, but a synchronous loop would stall the whole server.) Pipelined requests, and
// requests that arrive while an action of the connection runs, go to action workers at once.
//
// Replies are written on the goroutine that produced them, with a non-blocking write, when nothing is
// queued for the connection; otherwise, or for what the socket does not take at once, or over TLS, they
// go through the connection's bounded outbox and its writer goroutine, in order.
//
// # Limits
//
// A line over max_data_length gets the "data length is too big" error and the connection stays open; the
// bytes buffered without a delimiter never exceed max_buffer (the over-long message is answered with the
// same error and skipped up to the next delimiter). idle_timeout closes silent connections with the
// goodbye line; max_connections refuses extra connections with an error line; a client that does not
// read is disconnected (logged, counted once in switchboard_socket_slow_readers_total) when
// outbound_queue messages or max_outbound_bytes bytes wait for it (a single larger message is still sent
// when nothing else waits; a file request waits, up to action_timeout, for earlier output to leave). A say
// is one shared copy for all room members. JSON request lines are decoded in time linear in their size.
// The file verb sends only regular files inside public_dir, at most file_max_bytes. Over TLS the
// handshake must finish within tls.handshake_timeout (TLS 1.2 with AEAD suites only, or 1.3). Telnet Ctrl-C
// (ff f4 ff fd 06) or Ctrl-D (04) sent as a chunk of its own closes with the goodbye line. Shutdown stops
// accepting, answers pending actions, then says goodbye and closes.
package socket
