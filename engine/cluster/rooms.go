package cluster

import (
	"errors"
	"fmt"
)

// RoomsConfig is `cluster.rooms`: the bounds of the socket server's chat rooms shared by the nodes
// (engine/socket/roomscluster).
type RoomsConfig struct {
	// MemberBytes bounds one member's record as stored for the other nodes (its id, node, join time and
	// the record a generateMemberDetails hook made); a bigger record refuses the join.
	MemberBytes int `mapstructure:"member_bytes"`
	// MaxBytes bounds each of the two KV buckets of rooms (names, members) on the NATS servers; a join or
	// a room creation past it is refused.
	MaxBytes int64 `mapstructure:"max_bytes"`
}

// DefaultRoomsConfig is 4 KiB per member record and 64 MiB per bucket.
func DefaultRoomsConfig() RoomsConfig { return RoomsConfig{MemberBytes: 4 << 10, MaxBytes: 64 << 20} }

// Validate checks the section.
func (c RoomsConfig) Validate() error {
	var errs []error
	if c.MemberBytes < 256 || c.MemberBytes > 1<<20 {
		errs = append(errs, fmt.Errorf("cluster.rooms.member_bytes: expected 256 to 1048576, got %d", c.MemberBytes))
	}
	if c.MaxBytes < 1<<20 {
		errs = append(errs, fmt.Errorf("cluster.rooms.max_bytes: expected at least 1048576, got %d", c.MaxBytes))
	}
	return errors.Join(errs...)
}
