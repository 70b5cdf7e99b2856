package engine

import (
	"github.com/switchboard/switchboard/engine/channel"
	"github.com/switchboard/switchboard/engine/channel/channellua"
)

// newChannelPart builds the active sockets of e.cfg.Channels; nil, nil when the list is empty. Transforms
// and channel.up/down listeners come from the serving script generation, looked up per message, so a
// reload changes them at once.
func newChannelPart(e *Engine) (Part, error) {
	if len(e.cfg.Channels) == 0 {
		return nil, nil
	}
	set, err := channel.New(e.cfg.Channels, channel.Options{
		Bus:       e.bus,
		Log:       e.log,
		Metrics:   e.metrics,
		Transform: channellua.Transforms(e.lua),
		OnEvent:   channellua.Events(e.lua),
	})
	if err != nil {
		return nil, err
	}
	return set, nil
}
