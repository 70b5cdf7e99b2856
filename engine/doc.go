// Package engine builds Switchboard from its configuration: the logger, the metrics registry, the bus,
// the Lua runtime and the four parts (socket server, relay, call control, active sockets), and runs them:
// Start, Reload (SIGHUP and POST /reload), Shutdown. Signal handling lives in cmd/switchboard.
//
// LoadConfig reads the configuration (file, SWITCHBOARD_* environment, flags), resolves every path key
// against the file's folder and records its origin. Start either starts every part or, when one fails,
// stops what it started and returns a *StartError; every part's Shutdown is idempotent.
//
// Every part implements Part (part.go): Start, an idempotent Shutdown, Addrs, and Reload for the relay. Each
// is built in its own file (part_socket.go, part_relay.go, part_esl.go, part_channel.go) from its section of
// the configuration with its package's New(cfg, Options); a part that is disabled builds to nothing. Then
// each part's Lua binding (engine/<part>/<part>lua) is registered with the runtime, handed the part's Go
// object, and the scripts load.
//
// The admin listener (admin.go) serves /healthz, /metrics, POST /reload and the status page (status.go: GET /
// and its JSON under /api/, read from each part's status.go snapshots; statusui/ holds the embedded page).
package engine
