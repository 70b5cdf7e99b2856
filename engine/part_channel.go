package engine

// newChannelPart builds the channel part from e.cfg; it returns nil, nil when the part is disabled.
// Owned by the channel part; replaced when the part lands.
func newChannelPart(e *Engine) (part, error) { return nil, nil }
