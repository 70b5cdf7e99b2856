package socket

// Params are a connection's sticky parameters, in the order they were first set (paramsView shows them
// that way). Values are strings (from paramAdd and plain-text action names) or JSON data (from a JSON
// line's "params"). An action gets a copy taken when it starts.
type Params struct {
	fields Object
	// shared says fields may be seen by a clone: the next change copies them first (copy on write), so
	// taking a snapshot for each action costs nothing while the params do not change.
	shared bool
}

// Get returns the value of key.
func (p *Params) Get(key string) (any, bool) { return p.fields.Get(key) }

// String returns the value of key when it is a non-empty string.
func (p *Params) String(key string) string {
	v, _ := p.fields.Get(key)
	s, _ := v.(string)
	return s
}

// own makes fields private before a change.
func (p *Params) own() {
	if p.shared {
		p.fields = append(make(Object, 0, len(p.fields)+2), p.fields...)
		p.shared = false
	}
}

// Set sets key, keeping its position if it exists. It scans the keys, which is linear in their number:
// a request makes a few Set calls at most, and many keys arrive together through Replace.
func (p *Params) Set(key string, v any) {
	p.own()
	for i := range p.fields {
		if p.fields[i].Key == key {
			p.fields[i].Value = v
			return
		}
	}
	p.fields = append(p.fields, Field{Key: key, Value: v})
}

// Replace makes obj's keys and values the params, in its order; obj must not hold a key twice (a decoded
// JSON object never does). It costs one copy, however many keys there are.
func (p *Params) Replace(obj Object) {
	p.fields, p.shared = append(make(Object, 0, len(obj)+2), obj...), false
}

// Delete removes key.
func (p *Params) Delete(key string) {
	for i := range p.fields {
		if p.fields[i].Key == key {
			p.own()
			p.fields = append(p.fields[:i:i], p.fields[i+1:]...)
			return
		}
	}
}

// Reset removes every key.
func (p *Params) Reset() { p.fields, p.shared = nil, false }

// Len is the number of keys.
func (p *Params) Len() int { return len(p.fields) }

// Fields returns the keys and values in order; the slice must not be modified.
func (p *Params) Fields() Object { return p.fields }

// Clone returns an independent copy (values are shared; they are never mutated in place). The fields
// themselves are copied only when either side changes next.
func (p *Params) Clone() Params {
	if len(p.fields) == 0 {
		return Params{}
	}
	if !p.shared {
		p.shared = true
	}
	return Params{fields: p.fields, shared: true}
}

// Object returns the params as an ordered JSON object (never nil, so it renders as {}).
func (p *Params) Object() Object {
	out := make(Object, len(p.fields))
	copy(out, p.fields)
	return out
}
