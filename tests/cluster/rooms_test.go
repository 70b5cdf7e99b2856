package cluster_test

import (
	"fmt"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/switchboard/switchboard/engine/cluster"
	"github.com/switchboard/switchboard/engine/cluster/clustertest"
	"github.com/switchboard/switchboard/tests/harness"
)

// verb sends one line of the socket protocol and returns its reply (chat lines before it are kept for
// chat).
func (c *client) verb(line string) map[string]any {
	c.t.Helper()
	if _, err := c.c.Write([]byte(line + "\n")); err != nil {
		c.t.Fatalf("write: %v", err)
	}
	for {
		m := c.read()
		if m["context"] == "response" {
			return m
		}
		c.pending = append(c.pending, m)
	}
}

// chat returns the next chat message the client got.
func (c *client) chat() map[string]any {
	c.t.Helper()
	if len(c.pending) > 0 {
		m := c.pending[0]
		c.pending = c.pending[1:]
		return m
	}
	for {
		if m := c.read(); m["context"] == "user" {
			return m
		}
	}
}

func (c *client) id() string {
	c.t.Helper()
	d, _ := c.verb("detailsView")["data"].(map[string]any)
	id, _ := d["id"].(string)
	if id == "" {
		c.t.Fatal("detailsView gave no id")
	}
	return id
}

// members is roomView's members, by id, and membersCount.
func (c *client) members(room string) (map[string]any, int) {
	c.t.Helper()
	r := c.verb("roomView " + room)
	d, _ := r["data"].(map[string]any)
	if d == nil {
		c.t.Fatalf("roomView %s: %v", room, r)
	}
	m, _ := d["members"].(map[string]any)
	n, _ := d["membersCount"].(float64)
	return m, int(n)
}

func mustOK(t *testing.T, r map[string]any) {
	t.Helper()
	if r["status"] != "OK" {
		t.Fatalf("reply: %v", r)
	}
}

// TestRoomsAcrossThreeNodes: one room seen from three engines, a say reaching all three, NATS restarted
// (local rooms keep working, cross-node resumes), then a node killed with kill -9: its members leave every
// view within cluster.MembersTTL.
func TestRoomsAcrossThreeNodes(t *testing.T) {
	srv := clustertest.Start(t)
	nodes := harness.StartCluster(t, srv.URL(), "e2erooms", 3, func(int) string { return socketYAML }, scripts, "socket", "admin")
	clients := make([]*client, len(nodes))
	ids := make([]string, len(nodes))
	for i, n := range nodes {
		clients[i] = dial(t, n.Addr(t, "socket"))
		ids[i] = clients[i].id()
		mustOK(t, clients[i].verb("roomAdd defaultRoom"))
	}
	for i, c := range clients {
		waitFor(t, fmt.Sprintf("3 members in node-%d's view", i), 20*time.Second, func() bool {
			_, n := c.members("defaultRoom")
			return n == 3
		})
		m, _ := c.members("defaultRoom")
		for _, id := range ids {
			if rec, _ := m[id].(map[string]any); rec == nil || rec["id"] != id {
				t.Fatalf("node-%d's view lacks %s: %v", i, id, m)
			}
		}
	}

	// A say on node 0 reaches the members on all three.
	mustOK(t, clients[0].verb("say defaultRoom hello from node 0"))
	for i, c := range clients {
		m := c.chat()
		if m["message"] != "hello from node 0" || m["from"] != ids[0] || m["room"] != "defaultRoom" {
			t.Fatalf("node-%d's member got %v", i, m)
		}
	}

	// NATS goes away: node 0's own members keep chatting, what could not reach the others is counted.
	srv.Stop()
	waitFor(t, "node-0 to see NATS gone", 10*time.Second, func() bool {
		return metric(t, nodes[0].Process, "switchboard_cluster_connected") == 0
	})
	local := dial(t, nodes[0].Addr(t, "socket"))
	localID := local.id()
	mustOK(t, local.verb("roomAdd defaultRoom"))
	mustOK(t, local.verb("say defaultRoom while down"))
	for _, c := range []*client{local, clients[0]} {
		if m := c.chat(); m["message"] != "while down" {
			t.Fatalf("local say while NATS is down: %v", m)
		}
	}
	// (delivered here before it is handed to the other nodes: wait for the count)
	waitFor(t, "the say counted as unsent", 10*time.Second, func() bool {
		return metric(t, nodes[0].Process, `switchboard_cluster_room_messages_unsent_total{reason="disconnected"}`) >= 1
	})
	srv.Restart()
	// The member that joined while NATS was away reaches the other nodes' views; says cross again.
	waitFor(t, "node-2 to see the member node-0 took while NATS was down", 30*time.Second, func() bool {
		m, n := clients[2].members("defaultRoom")
		return n == 4 && m[localID] != nil
	})
	waitFor(t, "a say from node 0 to reach node 2 again", 20*time.Second, func() bool {
		mustOK(t, clients[0].verb("say defaultRoom after restart"))
		_ = clients[2].c.SetReadDeadline(time.Now().Add(300 * time.Millisecond))
		line, err := clients[2].r.ReadString('\n')
		return err == nil && strings.Contains(line, `"message":"after restart"`)
	})

	// kill -9 node 2: its member leaves the views of nodes 0 and 1 within the bound.
	nodes[2].Signal(t, syscall.SIGKILL)
	nodes[2].Wait(t, 10*time.Second)
	killed := time.Now()
	bound := cluster.MembersTTL
	for i := range 2 {
		waitFor(t, fmt.Sprintf("node-%d's view without node-2's member", i), bound+15*time.Second, func() bool {
			m, n := clients[i].members("defaultRoom")
			return n == 3 && m[ids[2]] == nil
		})
	}
	took := time.Since(killed)
	t.Logf("node-2's member left the views %v after kill -9 (bound %v)", took.Round(10*time.Millisecond), bound)
	// The views were polled from the kill on; what passed beyond the bound is polling and a loaded machine.
	if took > bound+5*time.Second {
		t.Fatalf("node-2's member left the views %v after the kill, past the documented bound of %v", took, bound)
	}
	// And its record is deleted by a survivor once the survivors' node list is settled.
	waitFor(t, "a survivor to delete node-2's records", 30*time.Second, func() bool {
		return metric(t, nodes[0].Process, "switchboard_cluster_room_members_purged_total")+
			metric(t, nodes[1].Process, "switchboard_cluster_room_members_purged_total") >= 1
	})
	mustOK(t, clients[1].verb("say defaultRoom after the kill"))
	for _, c := range []*client{clients[0], clients[1], local} {
		for m := c.chat(); m["message"] != "after the kill"; m = c.chat() {
			if m["message"] != "after restart" { // the retried says of the restart above
				t.Fatalf("say after the kill: %v", m)
			}
		}
	}
}
