package esl

import (
	"fmt"
	"net"
	"strconv"
	"time"
)

// Config is the `esl:` section of switchboard.yaml.
type Config struct {
	Enabled        bool          `mapstructure:"enabled"`
	Listen         string        `mapstructure:"listen"`
	DefaultFlow    string        `mapstructure:"default_flow"`
	FlowVariable   string        `mapstructure:"flow_variable"`
	AutoHangup     bool          `mapstructure:"auto_hangup"`
	EventFormat    string        `mapstructure:"event_format"`    // plain | json
	Linger         bool          `mapstructure:"linger"`          // send `linger` on full sockets
	CommandTimeout time.Duration `mapstructure:"command_timeout"` // wait for a command's reply
	ConnectTimeout time.Duration `mapstructure:"connect_timeout"` // wait for the connect reply
	FlowGrace      time.Duration `mapstructure:"flow_grace"`      // after the socket is gone, a flow's context is cancelled this much later
	MaxCalls       int           `mapstructure:"max_calls"`       // 0 = unlimited
	MaxFrameBytes  int           `mapstructure:"max_frame_bytes"` // header block cap; bodies are capped at 16 MiB as in FreeSWITCH
	// BodiesInFlightBytes bounds the bytes of bodies being read past their first 64 KiB, all calls at once.
	BodiesInFlightBytes int `mapstructure:"bodies_in_flight_bytes"`
	// MaxVariablesBytes bounds the channel variables one call remembers (names and values, as FreeSWITCH
	// reports them); later new or longer ones are not remembered (logged once per call).
	MaxVariablesBytes int `mapstructure:"max_variables_bytes"`
	// MaxFlowSeries is how many flow names get their own switchboard_esl_calls_total series.
	MaxFlowSeries int           `mapstructure:"max_flow_series"`
	KeepAlive     time.Duration `mapstructure:"keepalive"`
	Allow         string        `mapstructure:"allow"` // "" = everyone; "text:127.0.0.1,10.0.0.0/8" or "file:path"
}

// DefaultConfig returns the defaults documented in configs/switchboard.yaml.
func DefaultConfig() Config {
	return Config{
		Enabled:        true,
		Listen:         "127.0.0.1:8084",
		DefaultFlow:    "main",
		FlowVariable:   "switchboard_flow",
		AutoHangup:     true,
		EventFormat:    "plain",
		Linger:         true,
		CommandTimeout: 5 * time.Second,
		ConnectTimeout: 5 * time.Second,
		FlowGrace:      5 * time.Second,
		MaxFrameBytes:  256 << 10,
		KeepAlive:      30 * time.Second,

		BodiesInFlightBytes: 64 << 20,
		MaxVariablesBytes:   1 << 20,
		MaxFlowSeries:       100,
	}
}

// Validate reports the first bad value, naming its key path.
func (c Config) Validate() error {
	if !c.Enabled {
		return nil
	}
	host, port, err := net.SplitHostPort(c.Listen)
	if err != nil {
		return fmt.Errorf("esl.listen: expected host:port, got %q", c.Listen)
	}
	if p, err := strconv.Atoi(port); err != nil || p < 0 || p > 65535 {
		return fmt.Errorf("esl.listen: expected a port 0-65535, got %q", port)
	}
	_ = host
	switch c.EventFormat {
	case "plain", "json":
	default:
		return fmt.Errorf("esl.event_format: expected plain or json, got %q", c.EventFormat)
	}
	if c.DefaultFlow == "" {
		return fmt.Errorf("esl.default_flow: expected a flow name, got \"\"")
	}
	for key, d := range map[string]time.Duration{"esl.command_timeout": c.CommandTimeout, "esl.connect_timeout": c.ConnectTimeout} {
		if d <= 0 {
			return fmt.Errorf("%s: expected a positive duration, got %s", key, d)
		}
	}
	if c.FlowGrace < 0 {
		return fmt.Errorf("esl.flow_grace: expected a duration >= 0, got %s", c.FlowGrace)
	}
	if c.MaxCalls < 0 {
		return fmt.Errorf("esl.max_calls: expected 0 (unlimited) or more, got %d", c.MaxCalls)
	}
	if c.MaxFrameBytes < 1024 {
		return fmt.Errorf("esl.max_frame_bytes: expected at least 1024, got %d", c.MaxFrameBytes)
	}
	if c.BodiesInFlightBytes < 1<<20 {
		return fmt.Errorf("esl.bodies_in_flight_bytes: expected at least 1048576, got %d", c.BodiesInFlightBytes)
	}
	if c.MaxVariablesBytes < 64<<10 {
		return fmt.Errorf("esl.max_variables_bytes: expected at least 65536, got %d", c.MaxVariablesBytes)
	}
	if c.MaxFlowSeries < 0 {
		return fmt.Errorf("esl.max_flow_series: expected 0 or more, got %d", c.MaxFlowSeries)
	}
	return nil
}
