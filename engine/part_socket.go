package engine

// newSocketPart builds the socket part from e.cfg; it returns nil, nil when the part is disabled.
// Owned by the socket part; replaced when the part lands.
func newSocketPart(e *Engine) (part, error) { return nil, nil }
