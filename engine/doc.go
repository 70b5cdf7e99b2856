// Package engine builds Switchboard from its configuration: the logger, the metrics registry, the bus,
// the Lua runtime and the four parts (socket server, relay, call control, active sockets), and runs them:
// Start, Reload (SIGHUP and POST /reload), Shutdown. Signal handling lives in cmd/switchboard.
//
// Each part is built in its own file (part_socket.go, part_relay.go, part_esl.go, part_channel.go) from its
// section of the configuration; a part that is disabled builds to nothing.
package engine
