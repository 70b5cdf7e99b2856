// Command centers runs two test AMI centers (engine/relay/relaytest) for the relay-two-centers example and
// prints every instruction they receive.
package main

import (
	"flag"
	"fmt"
	"os"
	"os/signal"
	"time"

	"github.com/switchboard/switchboard/engine/relay/relaytest"
)

func main() {
	primary := flag.String("primary", "127.0.0.1:3270", "address of the primary center")
	risk := flag.String("risk", "127.0.0.1:3271", "address of the risk center")
	flag.Parse()
	names := []string{"primary", "risk"}
	var centers []*relaytest.Center
	for i, addr := range []string{*primary, *risk} {
		c, err := relaytest.NewCenter(addr)
		if err != nil {
			fmt.Fprintln(os.Stderr, err)
			os.Exit(1)
		}
		defer c.Close()
		centers = append(centers, c)
		fmt.Printf("%s center listening on %s\n", names[i], c.Addr())
	}
	stop := make(chan os.Signal, 1)
	signal.Notify(stop, os.Interrupt)
	seen := make([]int, len(centers))
	tick := time.NewTicker(100 * time.Millisecond)
	defer tick.Stop()
	for {
		select {
		case <-stop:
			return
		case <-tick.C:
			for i, c := range centers {
				got := c.Received()
				for _, r := range got[seen[i]:] {
					fmt.Printf("%-8s <- %s\n", names[i], r.Body)
				}
				seen[i] = len(got)
			}
		}
	}
}
