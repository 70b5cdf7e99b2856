package socket

import (
	"fmt"
	"net"
	"strconv"
	"time"
)

// Config is the `socket:` section of switchboard.yaml.
type Config struct {
	Enabled   bool      `mapstructure:"enabled"`
	Listen    string    `mapstructure:"listen"`
	Secure    bool      `mapstructure:"secure"`
	TLS       TLSConfig `mapstructure:"tls"`
	KeepAlive bool      `mapstructure:"keepalive"`
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

// TLSConfig names the certificate and key files for `secure: true`.
type TLSConfig struct {
	Cert string `mapstructure:"cert"`
	Key  string `mapstructure:"key"`
	// HandshakeTimeout closes a connection whose TLS handshake is not done this long after accept.
	HandshakeTimeout time.Duration `mapstructure:"handshake_timeout"`
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
		TLS:                 TLSConfig{HandshakeTimeout: 10 * time.Second},
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

// Validate reports the first bad value, naming its key path.
func (c Config) Validate() error {
	if !c.Enabled {
		return nil
	}
	host, port, err := net.SplitHostPort(c.Listen)
	if err != nil {
		return fmt.Errorf("socket.listen: expected host:port, got %q", c.Listen)
	}
	_ = host
	if p, err := strconv.Atoi(port); err != nil || p < 0 || p > 65535 {
		return fmt.Errorf("socket.listen: expected a port number 0-65535, got %q", port)
	}
	switch {
	case c.Secure && c.TLS.Cert == "":
		return fmt.Errorf("socket.tls.cert: expected a certificate file when socket.secure is true, got an empty string")
	case c.Secure && c.TLS.Key == "":
		return fmt.Errorf("socket.tls.key: expected a key file when socket.secure is true, got an empty string")
	case c.TLS.HandshakeTimeout <= 0:
		return fmt.Errorf("socket.tls.handshake_timeout: expected a positive duration such as 10s, got %v", c.TLS.HandshakeTimeout)
	case c.Delimiter == "":
		return fmt.Errorf("socket.delimiter: expected a non-empty string such as \"\\n\", got an empty string")
	case c.MaxDataLength < 0:
		return fmt.Errorf("socket.max_data_length: expected 0 (no limit) or a positive number of bytes, got %d", c.MaxDataLength)
	case c.MaxBuffer < 1024:
		return fmt.Errorf("socket.max_buffer: expected at least 1024 bytes, got %d", c.MaxBuffer)
	case c.SimultaneousActions < 1:
		return fmt.Errorf("socket.simultaneous_actions: expected a positive number, got %d", c.SimultaneousActions)
	case c.ActionTimeout <= 0:
		return fmt.Errorf("socket.action_timeout: expected a positive duration such as 5s, got %v", c.ActionTimeout)
	case c.IdleTimeout < 0:
		return fmt.Errorf("socket.idle_timeout: expected 0s (off) or a positive duration, got %v", c.IdleTimeout)
	case c.MaxConnections < 0:
		return fmt.Errorf("socket.max_connections: expected 0 (auto: the engine derives it from the file descriptor limit) or a positive number, got %d", c.MaxConnections)
	case c.OutboundQueue < 1:
		return fmt.Errorf("socket.outbound_queue: expected a positive number of messages, got %d", c.OutboundQueue)
	case c.MaxOutboundBytes < 1024:
		return fmt.Errorf("socket.max_outbound_bytes: expected at least 1024 bytes, got %d", c.MaxOutboundBytes)
	case c.FileMode != FileRaw && c.FileMode != FileFramed:
		return fmt.Errorf("socket.file_mode: expected \"raw\" or \"framed\", got %q", c.FileMode)
	case c.FileMaxBytes < 1 || c.FileMaxBytes > maxFileBytes:
		return fmt.Errorf("socket.file_max_bytes: expected a number of bytes from 1 to %d (the whole file is held in memory while it is sent), got %d", int64(maxFileBytes), c.FileMaxBytes)
	case c.Goodbye == "":
		return fmt.Errorf("socket.goodbye: expected a non-empty text such as \"Bye!\", got an empty string")
	}
	for i, r := range c.Rooms.Starting {
		if r == "" {
			return fmt.Errorf("socket.rooms.starting[%d]: expected a room name, got an empty string", i)
		}
	}
	return nil
}
