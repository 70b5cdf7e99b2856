// Command amiforwarder is the baseline `sbbench relay --server-process` compares the relay with: a bare AMI
// forwarder in its own process. It accepts applications, reads each line with a bufio.Reader, writes it to
// the centers a byte search picks (no parsing, routing table, object index or journal) and acknowledges it
// with the status line the relay sends (`M@<ms>|Q=<seq>|S=0|M="OK"`); like the relay it reads the clock
// once per read burst and writes the burst's statuses and forwarded lines when the burst is done. It reads
// and drops what the centers send back. sbbench embeds this file and builds it with `go build` into a
// temporary directory; it imports the standard library only.
//
//	amiforwarder -listen 127.0.0.1:7000 -center 127.0.0.1:3270 [-center ...] [-route 'Symbol="AAPL"=1' ...]
//
// -route BYTES=MASK sends a line holding BYTES to the centers of MASK (bit i = the i-th -center); the first
// match wins and a line matching none goes to every center. It runs until SIGTERM or SIGINT.
package main

import (
	"bufio"
	"bytes"
	"errors"
	"flag"
	"fmt"
	"net"
	"os"
	"os/signal"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"
)

type route struct {
	match []byte
	mask  int
}

// sink is one center connection, shared by every application connection.
type sink struct {
	mu sync.Mutex
	w  *bufio.Writer
}

func main() {
	listen := flag.String("listen", "127.0.0.1:0", "address to listen on")
	var centers []string
	var routes []route
	flag.Func("center", "a center's host:port (repeat for more)", func(s string) error {
		centers = append(centers, s)
		return nil
	})
	flag.Func("route", "BYTES=MASK: lines holding BYTES go to the centers of MASK", func(s string) error {
		i := strings.LastIndexByte(s, '=')
		if i < 0 {
			return errors.New("expected BYTES=MASK")
		}
		mask, err := strconv.Atoi(s[i+1:])
		if err != nil {
			return err
		}
		routes = append(routes, route{match: []byte(s[:i]), mask: mask})
		return nil
	})
	flag.Parse()
	if len(centers) == 0 {
		fail(errors.New("no -center"))
	}
	sinks := make([]*sink, len(centers))
	for i, addr := range centers {
		c, err := net.Dial("tcp", addr)
		if err != nil {
			fail(err)
		}
		sinks[i] = &sink{w: bufio.NewWriterSize(c, 64<<10)}
		go func() { // the centers' acks are read and dropped
			br := bufio.NewReaderSize(c, 64<<10)
			for {
				if _, err := br.ReadSlice('\n'); err != nil && !errors.Is(err, bufio.ErrBufferFull) {
					return
				}
			}
		}()
	}
	all := 1<<len(sinks) - 1
	ln, err := net.Listen("tcp", *listen)
	if err != nil {
		fail(err)
	}
	stop := make(chan os.Signal, 1)
	signal.Notify(stop, syscall.SIGTERM, syscall.SIGINT)
	go func() {
		<-stop
		ln.Close()
	}()
	for {
		c, err := ln.Accept()
		if err != nil {
			var ne net.Error
			if errors.As(err, &ne) && ne.Timeout() {
				continue
			}
			return // closed by the signal: exit (open connections go with the process)
		}
		go serve(c, sinks, routes, all)
	}
}

func fail(err error) {
	fmt.Fprintln(os.Stderr, "amiforwarder:", err)
	os.Exit(1)
}

func serve(c net.Conn, sinks []*sink, routes []route, all int) {
	defer c.Close()
	br := bufio.NewReaderSize(c, 64<<10)
	bw := bufio.NewWriterSize(c, 64<<10)
	var now, num []byte // the burst's clock reading; a sequence number being formatted
	burst := 0          // centers written to in this burst
	for {
		line, err := br.ReadSlice('\n')
		if err != nil {
			return // a line longer than the buffer is not AMI this baseline serves
		}
		if len(now) == 0 {
			now = strconv.AppendInt(now[:0], time.Now().UnixMilli(), 10)
		}
		to := all
		for _, r := range routes {
			if bytes.Contains(line, r.match) {
				to = r.mask
				break
			}
		}
		for i, s := range sinks {
			if to&(1<<i) != 0 {
				s.mu.Lock()
				s.w.Write(line)
				s.mu.Unlock()
				burst |= 1 << i
			}
		}
		seq := int64(0)
		if j := bytes.IndexByte(line, '#'); j > 0 {
			for k := j + 1; k < len(line) && line[k] >= '0' && line[k] <= '9'; k++ {
				seq = seq*10 + int64(line[k]-'0')
			}
		}
		bw.WriteString("M@")
		bw.Write(now)
		bw.WriteString("|Q=")
		num = strconv.AppendInt(num[:0], seq, 10)
		bw.Write(num)
		bw.WriteString("|S=0|M=\"OK\"\n")
		if br.Buffered() > 0 {
			continue
		}
		// end of the read burst: out go the forwarded lines and the statuses
		for i, s := range sinks {
			if burst&(1<<i) != 0 {
				s.mu.Lock()
				s.w.Flush()
				s.mu.Unlock()
			}
		}
		burst, now = 0, now[:0]
		if bw.Flush() != nil {
			return
		}
	}
}
