package engine

import (
	"context"

	"github.com/switchboard/switchboard/engine/channel"
	"github.com/switchboard/switchboard/luabind"
)

// channelPart runs the active sockets of e.cfg.Channels.
type channelPart struct {
	set  *channel.Set
	stop stopOnce
}

// newChannelPart builds the active sockets of e.cfg.Channels; it returns nil, nil when the list is empty.
// Transforms and channel.up/down listeners come from the serving script generation, looked up per message,
// so a reload changes them at once.
func newChannelPart(e *Engine) (part, error) {
	if len(e.cfg.Channels) == 0 {
		return nil, nil
	}
	set, err := channel.New(channel.Options{
		Configs:   e.cfg.Channels,
		Bus:       e.bus,
		Log:       e.log,
		Metrics:   e.metrics,
		Transform: luabind.ChannelTransforms(e.lua),
		OnEvent:   luabind.ChannelEvents(e.lua),
	})
	if err != nil {
		return nil, err
	}
	e.lua.Services().Provide(luabind.ChannelsService, set)
	return &channelPart{set: set}, nil
}

func (p *channelPart) Start(ctx context.Context) error { return p.set.Start(ctx) }

// Shutdown is idempotent and safe on a set that never started (see stopOnce).
func (p *channelPart) Shutdown(ctx context.Context) error {
	return p.stop.do(ctx, func() error { return p.set.Shutdown(ctx) })
}
