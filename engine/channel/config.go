package channel

import "time"

// Config is one entry of the `channels:` list in switchboard.yaml.
type Config struct {
	Name                string        `mapstructure:"name"`
	Run                 bool          `mapstructure:"run"`
	Protocol            string        `mapstructure:"protocol"`
	Host                string        `mapstructure:"host"`
	Port                int           `mapstructure:"port"`
	Permanent           bool          `mapstructure:"permanent"`
	RedirectIn          bool          `mapstructure:"redirect_in"`
	RedirectOut         bool          `mapstructure:"redirect_out"`
	TopicIn             string        `mapstructure:"topic_in"`
	TopicOut            string        `mapstructure:"topic_out"`
	ReconnectionTimeout time.Duration `mapstructure:"reconnection_timeout"`
}

// DefaultConfig returns the defaults applied to every channel entry.
func DefaultConfig() Config {
	return Config{Run: true, Protocol: "text-messages", ReconnectionTimeout: 10 * time.Second}
}

// Validate reports the first bad value, naming its key path.
func (c Config) Validate() error { return nil }

// ParseConfigs decodes the raw `channels:` list of switchboard.yaml.
func ParseConfigs(raw any) ([]Config, error) { return nil, nil }
