package esl

import (
	"errors"
	"fmt"
	"time"

	"github.com/switchboard/switchboard/engine/transport"
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

	// DTMFQueueBytes bounds the digits a call keeps while no one reads them (each counts its text plus 40
	// bytes); past it new digits are dropped and logged once.
	DTMFQueueBytes int `mapstructure:"dtmf_queue_bytes"`
	// EventQueueBytes bounds the session events kept for an input callback; past it the oldest go.
	EventQueueBytes int `mapstructure:"event_queue_bytes"`

	// mod_lua-style flows (lua.freeswitch_dir): what their freeswitch table may reach.
	DataDir          string            `mapstructure:"data_dir"`          // io.open, os.remove/rename, sqlite:// names live here
	GetenvAllow      []string          `mapstructure:"getenv_allow"`      // os.getenv answers these names only
	OriginateTimeout time.Duration     `mapstructure:"originate_timeout"` // freeswitch.Session(dial_string) waits this long for an answer
	DBHMaxConns      int               `mapstructure:"dbh_max_conns"`     // connections per freeswitch.Dbh DSN
	DBHIdleTimeout   time.Duration     `mapstructure:"dbh_idle_timeout"`  // an idle database connection closes after this
	DBHQueryTimeout  time.Duration     `mapstructure:"dbh_query_timeout"` // one Dbh query may take this long
	DBHMaxRowBytes   int               `mapstructure:"dbh_max_row_bytes"` // one row handed to Lua; query_rows caps its total at 64 times this
	ODBC             map[string]string `mapstructure:"odbc"`              // ODBC DSN name -> PostgreSQL connection string
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
		DTMFQueueBytes:      8 << 10,
		EventQueueBytes:     256 << 10,
		DataDir:             "data/freeswitch",
		GetenvAllow:         []string{"HOSTNAME", "LANG", "TZ"},
		OriginateTimeout:    60 * time.Second,
		DBHMaxConns:         4,
		DBHIdleTimeout:      time.Minute,
		DBHQueryTimeout:     30 * time.Second,
		DBHMaxRowBytes:      1 << 20,
		ODBC:                map[string]string{},
	}
}

// Section is call control's listener (transport.Section): the allowlist esl.allow, keepalive, the cap
// esl.max_calls. FreeSWITCH's outbound sockets are plain TCP.
func (c Config) Section() transport.Section {
	return transport.Section{Key: "esl", Listen: c.Listen, Allow: c.Allow, AllowKey: "esl.allow", KeepAlive: c.KeepAlive, MaxConns: c.MaxCalls}
}

// Validate reports every bad value, each naming its key path.
func (c Config) Validate() error {
	if !c.Enabled {
		return nil
	}
	var errs []error
	bad := func(format string, args ...any) { errs = append(errs, fmt.Errorf(format, args...)) }
	if err := transport.CheckHostPort(c.Listen); err != nil {
		bad("esl.listen: %v", err)
	}
	switch c.EventFormat {
	case "plain", "json":
	default:
		bad("esl.event_format: expected plain or json, got %q", c.EventFormat)
	}
	if c.DefaultFlow == "" {
		bad("esl.default_flow: expected a flow name, got \"\"")
	}
	if c.CommandTimeout <= 0 {
		bad("esl.command_timeout: expected a positive duration, got %s", c.CommandTimeout)
	}
	if c.ConnectTimeout <= 0 {
		bad("esl.connect_timeout: expected a positive duration, got %s", c.ConnectTimeout)
	}
	if c.FlowGrace < 0 {
		bad("esl.flow_grace: expected a duration >= 0, got %s", c.FlowGrace)
	}
	if c.MaxCalls < 0 {
		bad("esl.max_calls: expected 0 (unlimited) or more, got %d", c.MaxCalls)
	}
	if c.MaxFrameBytes < 1024 {
		bad("esl.max_frame_bytes: expected at least 1024, got %d", c.MaxFrameBytes)
	}
	if c.BodiesInFlightBytes < 1<<20 {
		bad("esl.bodies_in_flight_bytes: expected at least 1048576, got %d", c.BodiesInFlightBytes)
	}
	if c.MaxVariablesBytes < 64<<10 {
		bad("esl.max_variables_bytes: expected at least 65536, got %d", c.MaxVariablesBytes)
	}
	if c.MaxFlowSeries < 0 {
		bad("esl.max_flow_series: expected 0 or more, got %d", c.MaxFlowSeries)
	}
	if c.DTMFQueueBytes < 64 {
		bad("esl.dtmf_queue_bytes: expected at least 64, got %d", c.DTMFQueueBytes)
	}
	if c.EventQueueBytes < 1024 {
		bad("esl.event_queue_bytes: expected at least 1024, got %d", c.EventQueueBytes)
	}
	if c.DataDir == "" {
		bad("esl.data_dir: expected a directory, got \"\"")
	}
	if c.OriginateTimeout <= 0 {
		bad("esl.originate_timeout: expected a positive duration, got %s", c.OriginateTimeout)
	}
	if c.DBHMaxConns < 1 {
		bad("esl.dbh_max_conns: expected at least 1, got %d", c.DBHMaxConns)
	}
	if c.DBHIdleTimeout < 0 {
		bad("esl.dbh_idle_timeout: expected a duration >= 0, got %s", c.DBHIdleTimeout)
	}
	if c.DBHQueryTimeout <= 0 {
		bad("esl.dbh_query_timeout: expected a positive duration, got %s", c.DBHQueryTimeout)
	}
	if c.DBHMaxRowBytes < 1024 {
		bad("esl.dbh_max_row_bytes: expected at least 1024, got %d", c.DBHMaxRowBytes)
	}
	return errors.Join(errs...)
}
