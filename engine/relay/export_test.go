package relay

// CutNATS closes every NATS connection of a relay with the JetStream journal, as a machine cut from the
// NATS servers (for tests).
func CutNATS(r *Relay) {
	r.js.nc.Close()
	if r.js.leaseNC != nil {
		r.js.leaseNC.Close()
	}
}
