// Package esl is the call-control part: a server for FreeSWITCH's outbound event socket (the `socket`
// dialplan application) that runs one flow per call.
//
// Wire protocol (FreeSWITCH's mod_event_socket, outbound mode). FreeSWITCH connects and sends nothing; the engine speaks
// first with `connect`, whose reply is the url-encoded channel data (Content-Type near its end). Then
// `myevents <plain|json>`, and on `full` sockets `event <fmt> BACKGROUND_JOB` and `linger`. Each blocking
// operation is a `sendmsg` execute carrying a fresh `event-uuid` (and `event-lock: true` unless it must be
// interruptible), answered by `+OK` (queued in async mode, finished in static mode) and completed by the
// CHANNEL_EXECUTE_COMPLETE whose Application-UUID is that event-uuid. Every wait also ends on
// CHANNEL_HANGUP, a disconnect notice, socket loss (ErrHungUp) and the call's context. At the end of a flow
// the call is hung up (esl.auto_hangup) and `exit` is sent; the goodbye notice ends the connection.
//
// mod_lua primitives (what esllua's mod_lua-style flows are built on; Go flows may use them too):
// ReadDigits and PlayAndGetDigitsLocal (switch_ivr_read done in the engine, type-ahead included and consumed
// digits not handed out again), ExecuteInput with an input callback that may stop the application or act on
// the playing file (`api uuid_fileman`), session events (anything on the socket that is not a channel event
// of myevents, i.e. a sendevent to this channel diverted with divert_events), WaitInput, SendEvent, Originate
// (a second leg: filter Unique-ID + bgapi originate, driven with sendmsg <leg>), Transfer (the engine then
// leaves the call to the dialplan), ProfileVariable (caller-profile fields of the connect reply). Sub-packages:
// dbh (freeswitch.Dbh's database handles: SQLite, PostgreSQL; one pool per DSN, owned by the Server) and
// ivrmenu (freeswitch.IVRMenu).
//
// Flow selection: the socket path (`data="127.0.0.1:8084/sales async full"` arrives as
// variable_socket_path), else the channel variable named by esl.flow_variable, else esl.default_flow.
// A FlowResolver maps the call to a Flow; Lua flows (sb.flow) are one implementation, Go funcs another.
//
// A flow still running esl.flow_grace after its call ended (hangup or socket gone) has its context cancelled
// with ErrFlowGrace. At the end of a flow the call is hung up per AutoHangup: never after a transfer, and for
// mod_lua-style flows only when asked (SetModLua).
//
// Limits (docs/operations.md, "Limits"): header block esl.max_frame_bytes (default 256 KiB), 4096 headers,
// bodies 16 MiB (FreeSWITCH's own cap); a frame over a limit or with a bad Content-Length closes that call's
// socket (logged, switchboard_esl_bad_frames_total). A body is never allocated from its Content-Length: one
// over 64 KiB grows with the bytes that arrived and takes those past 64 KiB from esl.bodies_in_flight_bytes,
// shared by all calls (a body past it closes its call's socket). Events hold at most 4096 headers; a call remembers
// esl.max_variables_bytes of channel variables, esl.dtmf_queue_bytes of unread digits (later ones dropped, one
// warning) and esl.event_queue_bytes of session events for input callbacks (oldest dropped); a reply no command waits for is
// dropped. Unknown content types (log/data, text/rude-rejection, ...) are counted and ignored. Commands
// wait esl.command_timeout for their reply (not a static-mode execute, which replies when the application
// ends). Concurrent calls are capped by esl.max_calls. Static mode has no DTMF events while idle and no
// input callbacks (FreeSWITCH does not read the socket while an application runs); api/bgapi/linger need
// `full`.
//
// Metrics: calls active and total (by flow and outcome), hangup causes, ignored and bad frames, body bytes
// in flight, the command round trip (switchboard_esl_command_seconds) and the engine's own share of it by
// phase (switchboard_esl_command_engine_seconds{phase="write"|"receive"}), which tells a slow FreeSWITCH
// or a busy host from a slow engine. No label value comes from the peer unchecked: causes are FreeSWITCH's
// cause names or "other", flows are those the resolver found (at most esl.max_flow_series, then "other").
//
// Memory: an idle call holds its session, a 1 KiB read buffer and the channel variables of the latest
// event; event bodies up to 64 KiB are read into buffers pooled across calls and parsed into one string
// per event.
//
// Package esltest is the FreeSWITCH simulator the tests, `switchboard flow test` and `sbbench esl` use.
package esl
