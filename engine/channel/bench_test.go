package channel

import (
	"context"
	"io"
	"net"
	"strings"
	"testing"
	"time"

	"github.com/switchboard/switchboard/internal/testutil"
)

// repeatReader returns the same bytes forever, so decoders run without allocation from the source.
type repeatReader struct {
	data []byte
	off  int
}

func (r *repeatReader) Read(p []byte) (int, error) {
	n := 0
	for n < len(p) {
		c := copy(p[n:], r.data[r.off:])
		n += c
		r.off = (r.off + c) % len(r.data)
	}
	return n, nil
}

func benchDecode(b *testing.B, d Decoder, msgBytes int) {
	b.ReportAllocs()
	b.SetBytes(int64(msgBytes))
	for i := 0; i < b.N; i++ {
		if _, err := d.Decode(); err != nil {
			b.Fatal(err)
		}
	}
}

func BenchmarkDecodeText64(b *testing.B) {
	line := strings.Repeat("x", 63) + "\n"
	f := framing{protocol: TextMessages, delim: []byte("\n"), max: 1 << 20}
	benchDecode(b, f.decoder(&repeatReader{data: []byte(line)}), len(line))
}

func BenchmarkDecodeXML(b *testing.B) {
	doc := `<event type="trade" id="42"><px>101.5</px><qty>300</qty><venue>XETRA</venue></event>` + "\n"
	benchDecode(b, NewXMLDecoder(&repeatReader{data: []byte(doc)}, 1<<20, nil), len(doc))
}

func BenchmarkDecodeHTTP(b *testing.B) {
	resp := "HTTP/1.1 200 OK\r\nContent-Type: text/html\r\nContent-Length: 512\r\n\r\n" + strings.Repeat("y", 512)
	benchDecode(b, NewHTTPDecoder(&repeatReader{data: []byte(resp)}, 64<<10, 1<<20), len(resp))
}

func BenchmarkEncodeText64(b *testing.B) {
	f := framing{protocol: TextMessages, delim: []byte("\n")}
	msg := strings.Repeat("x", 63)
	b.ReportAllocs()
	for i := 0; i < b.N; i++ {
		if _, err := f.encode(msg); err != nil {
			b.Fatal(err)
		}
	}
}

func BenchmarkEncodeHTTPRequest(b *testing.B) {
	b.ReportAllocs()
	for i := 0; i < b.N; i++ {
		if _, err := EncodeHTTPRequest("GET /index.html?q=1", "www.example.com"); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkRequestEcho is one Request round trip on a text channel to a loopback echo server: the channel's
// own cost (pairing, outbox, framing, deadlines) plus two loopback syscalls each way.
func BenchmarkRequestEcho(b *testing.B) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		b.Fatal(err)
	}
	defer ln.Close()
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			go func() { defer c.Close(); _, _ = io.Copy(c, c) }()
		}
	}()
	cfg := DefaultConfig()
	cfg.Name, cfg.Host, cfg.Port, cfg.Permanent = "bench", "127.0.0.1", ln.Addr().(*net.TCPAddr).Port, true
	set, err := New([]Config{cfg}, Options{})
	if err != nil {
		b.Fatal(err)
	}
	if err := set.Start(context.Background()); err != nil {
		b.Fatal(err)
	}
	defer func() {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		_ = set.Shutdown(ctx)
	}()
	ch, _ := set.Channel("bench")
	testutil.WaitFor(b, "the channel to be up", func() bool { st, _ := ch.State(); return st == StateUp })
	msg := strings.Repeat("x", 63)
	b.ReportAllocs()
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		if r, err := ch.Request(context.Background(), msg, 10*time.Second); err != nil || r != msg {
			b.Fatal(r, err)
		}
	}
}
