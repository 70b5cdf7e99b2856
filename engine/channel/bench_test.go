package channel

import (
	"strings"
	"testing"
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
