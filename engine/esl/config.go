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
	if c.DTMFQueueBytes < 64 {
		return fmt.Errorf("esl.dtmf_queue_bytes: expected at least 64, got %d", c.DTMFQueueBytes)
	}
	if c.EventQueueBytes < 1024 {
		return fmt.Errorf("esl.event_queue_bytes: expected at least 1024, got %d", c.EventQueueBytes)
	}
	if c.DataDir == "" {
		return fmt.Errorf("esl.data_dir: expected a directory, got \"\"")
	}
	if c.OriginateTimeout <= 0 {
		return fmt.Errorf("esl.originate_timeout: expected a positive duration, got %s", c.OriginateTimeout)
	}
	if c.DBHMaxConns < 1 {
		return fmt.Errorf("esl.dbh_max_conns: expected at least 1, got %d", c.DBHMaxConns)
	}
	if c.DBHIdleTimeout < 0 || c.DBHQueryTimeout <= 0 {
		return fmt.Errorf("esl.dbh_idle_timeout / esl.dbh_query_timeout: expected durations (query > 0), got %s / %s", c.DBHIdleTimeout, c.DBHQueryTimeout)
	}
	if c.DBHMaxRowBytes < 1024 {
		return fmt.Errorf("esl.dbh_max_row_bytes: expected at least 1024, got %d", c.DBHMaxRowBytes)
	}
	return nil
}
