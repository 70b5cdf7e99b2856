package harness

import (
	"fmt"
	"testing"
)

// Node is one engine of a cluster started by StartCluster.
type Node struct {
	*Process
	ID string
}

// StartCluster starts n engines (the built binary) that join the NATS server(s) at natsURL as one cluster
// named name, node i with id "node-<i>". yaml(i) gives each node's own sections (the cluster section is
// added); opts(i) its scripts and files. wait names the parts each node must have listening before it
// returns (as StartBinary).
func StartCluster(t testing.TB, natsURL, name string, n int, yaml func(i int) string, opts func(i int) Options, wait ...string) []*Node {
	t.Helper()
	nodes := make([]*Node, n)
	for i := range n {
		id := fmt.Sprintf("node-%d", i)
		y := fmt.Sprintf("%s\ncluster:\n  nats_url: %s\n  name: %s\n  node_id: %s\n  reconnect_wait: 100ms\n", yaml(i), natsURL, name, id)
		var o Options
		if opts != nil {
			o = opts(i)
		}
		nodes[i] = &Node{Process: StartBinary(t, y, o, wait...), ID: id}
	}
	return nodes
}
