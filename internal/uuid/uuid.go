// Package uuid makes the random (version 4) UUIDs the engine hands out: connection and message ids of the
// socket server, command and leg ids of call control, the simulator's call ids, and sb.uuid() in Lua.
package uuid

import (
	"crypto/rand"
	"encoding/binary"
)

// New returns a random RFC 4122 version 4 UUID in its 36-character form (xxxxxxxx-xxxx-4xxx-yxxx-xxxxxxxxxxxx).
// Its bits come from crypto/rand, so a script may use one as an unguessable token.
func New() string {
	var r [16]byte
	_, _ = rand.Read(r[:]) // never fails (crypto/rand panics rather than return an error)
	var s [36]byte
	return string(Append(s[:0], binary.BigEndian.Uint64(r[:8]), binary.BigEndian.Uint64(r[8:])))
}

const hexDigits = "0123456789abcdef"

// Append appends the 128 bits hi, lo formatted as a version 4 UUID: the version and variant bits are
// overwritten. Callers that number their ids from a random base use it to render one without allocating.
func Append(b []byte, hi, lo uint64) []byte {
	var u [16]byte
	binary.BigEndian.PutUint64(u[:8], hi)
	binary.BigEndian.PutUint64(u[8:], lo)
	u[6] = u[6]&0x0f | 0x40
	u[8] = u[8]&0x3f | 0x80
	for i, x := range u {
		if i == 4 || i == 6 || i == 8 || i == 10 {
			b = append(b, '-')
		}
		b = append(b, hexDigits[x>>4], hexDigits[x&0xf])
	}
	return b
}
