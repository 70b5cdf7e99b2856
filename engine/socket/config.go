package socket

import (
	"errors"
	"fmt"
	"time"

	"github.com/switchboard/switchboard/engine/transport"
)

// Config is the `socket:` section of switchboard.yaml.
type Config struct {
	Enabled   bool               `mapstructure:"enabled"`
	Listen    string             `mapstructure:"listen"`
	Secure    bool               `mapstructure:"secure"` // serve TLS with tls.cert and tls.key (the seed's key)
	TLS       transport.TLSFiles `mapstructure:"tls"`
	KeepAlive bool               `mapstructure:"keepalive"`
	// Delimiter ends a request line (any non-empty string; "\r\n" works). Replies always end in "\r\n".
	Delimiter string `mapstructure:"delimiter"`
	// MaxDataLength rejects complete lines longer than this many bytes (0 = no per-line limit).
	MaxDataLength int `mapstructure:"max_data_length"`
	// MaxBuffer is the hard cap on bytes buffered without a delimiter, whatever MaxDataLength says.
	MaxBuffer int `mapstructure:"max_buffer"`
	// Welcome is the welcome line's text; "" sends no welcome line.
	Welcome string `mapstructure:"welcome"`
	// Goodbye is the status text of the line sent before the server closes a connection.
	Goodbye             string `mapstructure:"goodbye"`
	SimultaneousActions int    `mapstructure:"simultaneous_actions"`
	// ActionTimeout limits an action (or a custom verb) that declares no timeout of its own.
	ActionTimeout time.Duration `mapstructure:"action_timeout"`
	// ParamScrubbing keeps only params that are some action's input (or action/messageId/file/...), as
	// the reference does; false keeps every paramAdd.
	ParamScrubbing bool          `mapstructure:"param_scrubbing"`
	Rooms          RoomsConfig   `mapstructure:"rooms"`
	IdleTimeout    time.Duration `mapstructure:"idle_timeout"`
	// MaxConnections caps open connections; 0 means none in this package, and the engine replaces 0 by
	// a share of the process's file descriptor limit (engine/connbudget.go).
	MaxConnections int `mapstructure:"max_connections"`
	// OutboundQueue is how many replies may wait for a slow reader before it is disconnected.
	OutboundQueue int `mapstructure:"outbound_queue"`
	// MaxOutboundBytes is how many bytes may wait for a slow reader before it is disconnected (a single
	// larger message is still sent when nothing else waits).
	MaxOutboundBytes int `mapstructure:"max_outbound_bytes"`
	// PublicDir is where the file verb reads; "" disables it.
	PublicDir string `mapstructure:"public_dir"`
	// FileMode is "raw" (the reference's bare bytes) or "framed" (one JSON line with base64 content).
	FileMode     string `mapstructure:"file_mode"`
	FileMaxBytes int64  `mapstructure:"file_max_bytes"`
}

// RoomsConfig lists the rooms that exist at start.
type RoomsConfig struct {
	Starting   []string `mapstructure:"starting"`
	Autocreate bool     `mapstructure:"autocreate"`
}

// maxFileBytes is the largest socket.file_max_bytes: the file verb holds the whole file in memory.
const maxFileBytes = 1 << 30

// DefaultConfig returns the defaults documented in configs/switchboard.yaml.
func DefaultConfig() Config {
	return Config{
		Enabled:             true,
		Listen:              "0.0.0.0:5000",
		TLS:                 transport.TLSFiles{HandshakeTimeout: 10 * time.Second},
		Delimiter:           "\n",
		MaxBuffer:           1 << 20,
		Welcome:             "Hello! Welcome to the switchboard api",
		Goodbye:             "Bye!",
		SimultaneousActions: 5,
		ActionTimeout:       5 * time.Second,
		ParamScrubbing:      true,
		Rooms:               RoomsConfig{Starting: []string{"defaultRoom"}},
		OutboundQueue:       1024,
		MaxOutboundBytes:    1 << 20,
		PublicDir:           "public",
		FileMode:            FileRaw,
		FileMaxBytes:        10 << 20,
	}
}

// Section is the socket server's listener (transport.Section): TLS when secure, keepalive 15 s when on
// (actionhero's setKeepAlive), the connection cap.
func (c Config) Section() transport.Section {
	sec := transport.Section{Key: "socket", Listen: c.Listen, MaxConns: c.MaxConnections}
	if c.Secure {
		tf := c.TLS
		sec.TLS = &tf
	}
	if c.KeepAlive {
		sec.KeepAlive = 15 * time.Second
	}
	return sec
}

// Validate reports every bad value, each naming its key path.
func (c Config) Validate() error {
	if !c.Enabled {
		return nil
	}
	var errs []error
	bad := func(format string, args ...any) { errs = append(errs, fmt.Errorf(format, args...)) }
	if err := transport.CheckHostPort(c.Listen); err != nil {
		bad("socket.listen: %v", err)
	}
	if c.Secure && c.TLS.Cert == "" {
		bad("socket.tls.cert: expected a certificate file when socket.secure is true, got an empty string")
	}
	if c.Secure && c.TLS.Key == "" {
		bad("socket.tls.key: expected a key file when socket.secure is true, got an empty string")
	}
	if c.TLS.HandshakeTimeout <= 0 {
		bad("socket.tls.handshake_timeout: expected a positive duration such as 10s, got %v", c.TLS.HandshakeTimeout)
	}
	if c.Delimiter == "" {
		bad("socket.delimiter: expected a non-empty string such as \"\\n\", got an empty string")
	}
	if c.MaxDataLength < 0 {
		bad("socket.max_data_length: expected 0 (no limit) or a positive number of bytes, got %d", c.MaxDataLength)
	}
	if c.MaxBuffer < 1024 {
		bad("socket.max_buffer: expected at least 1024 bytes, got %d", c.MaxBuffer)
	}
	if c.SimultaneousActions < 1 {
		bad("socket.simultaneous_actions: expected a positive number, got %d", c.SimultaneousActions)
	}
	if c.ActionTimeout <= 0 {
		bad("socket.action_timeout: expected a positive duration such as 5s, got %v", c.ActionTimeout)
	}
	if c.IdleTimeout < 0 {
		bad("socket.idle_timeout: expected 0s (off) or a positive duration, got %v", c.IdleTimeout)
	}
	if c.MaxConnections < 0 {
		bad("socket.max_connections: expected 0 (auto: the engine derives it from the file descriptor limit) or a positive number, got %d", c.MaxConnections)
	}
	if c.OutboundQueue < 1 {
		bad("socket.outbound_queue: expected a positive number of messages, got %d", c.OutboundQueue)
	}
	if c.MaxOutboundBytes < 1024 {
		bad("socket.max_outbound_bytes: expected at least 1024 bytes, got %d", c.MaxOutboundBytes)
	}
	if c.FileMode != FileRaw && c.FileMode != FileFramed {
		bad("socket.file_mode: expected \"raw\" or \"framed\", got %q", c.FileMode)
	}
	if c.FileMaxBytes < 1 || c.FileMaxBytes > maxFileBytes {
		bad("socket.file_max_bytes: expected a number of bytes from 1 to %d (the whole file is held in memory while it is sent), got %d", int64(maxFileBytes), c.FileMaxBytes)
	}
	if c.Goodbye == "" {
		bad("socket.goodbye: expected a non-empty text such as \"Bye!\", got an empty string")
	}
	for i, r := range c.Rooms.Starting {
		if r == "" {
			bad("socket.rooms.starting[%d]: expected a room name, got an empty string", i)
		}
	}
	return errors.Join(errs...)
}
