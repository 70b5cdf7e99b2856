package channel

import (
	"errors"
	"io"
	"reflect"
	"strings"
	"testing"
	"testing/iotest"
)

func decodeAll(t *testing.T, d Decoder) ([]any, error) {
	t.Helper()
	var out []any
	for i := 0; i < 1000; i++ {
		m, err := d.Decode()
		if err != nil {
			return out, err
		}
		out = append(out, m)
	}
	t.Fatal("decoder never ended")
	return nil, nil
}

func TestTextMessagesDelimiters(t *testing.T) {
	for _, tc := range []struct {
		delim, in string
		want      []any
	}{
		{"\n", "a\nbb\n\nccc\n", []any{"a", "bb", "", "ccc"}},
		{"\x01", "<x/>\x01hello\x01", []any{"<x/>", "hello"}},
		{"\r\n", "one\r\ntwo\r\n", []any{"one", "two"}},
	} {
		f := framing{protocol: TextMessages, delim: []byte(tc.delim), max: 100}
		got, err := decodeAll(t, f.decoder(iotest.OneByteReader(strings.NewReader(tc.in))))
		if err != io.EOF || !reflect.DeepEqual(got, tc.want) {
			t.Errorf("delim %q: got %q, %v; want %q, EOF", tc.delim, got, err, tc.want)
		}
	}
}

func TestTextMessagesTooLong(t *testing.T) {
	f := framing{protocol: TextMessages, delim: []byte("\n"), max: 8}
	_, err := decodeAll(t, f.decoder(strings.NewReader(strings.Repeat("x", 100))))
	if !errors.Is(err, ErrTooLong) {
		t.Fatalf("endless line: got %v, want ErrTooLong", err)
	}
}

func TestTextEncode(t *testing.T) {
	f := framing{protocol: TextMessages, delim: []byte("\n")}
	b, err := f.encode("hi")
	if err != nil || string(b) != "hi\n" {
		t.Fatalf("encode: %q %v", b, err)
	}
	if _, err := f.encode("a\nb"); err == nil {
		t.Fatal("message with the delimiter inside was accepted")
	}
	b, err = f.encode(map[string]any{"k": "v"})
	if err != nil || string(b) != "{\"k\":\"v\"}\n" {
		t.Fatalf("table: %q %v", b, err)
	}
}

func TestTextStream(t *testing.T) {
	f := framing{protocol: TextStream, max: 4, fixed: 3}
	got, err := decodeAll(t, f.decoder(iotest.OneByteReader(strings.NewReader("abcdef"))))
	if err != io.EOF || !reflect.DeepEqual(got, []any{"abc", "def"}) {
		t.Fatalf("fixed: %q %v", got, err)
	}
	f.fixed = 0
	got, err = decodeAll(t, f.decoder(strings.NewReader("abcdefghij")))
	if err != io.EOF || !reflect.DeepEqual(got, []any{"abcd", "efgh", "ij"}) {
		t.Fatalf("available: %q %v", got, err)
	}
}

func TestXMLDecoder(t *testing.T) {
	in := `<?xml version="1.0"?><!-- hi --><a x="1>2"><b/><![CDATA[<not a tag>]]>text</a>` + "\n\x01" +
		`<c></c>` + "\n" + `<!DOCTYPE d [<!ELEMENT d ANY>]><d>x</d>`
	got, err := decodeAll(t, NewXMLDecoder(iotest.OneByteReader(strings.NewReader(in)), 1000, []byte("\x01")))
	want := []any{`<?xml version="1.0"?><!-- hi --><a x="1>2"><b/><![CDATA[<not a tag>]]>text</a>`, `<c></c>`,
		`<!DOCTYPE d [<!ELEMENT d ANY>]><d>x</d>`}
	if err != io.EOF || !reflect.DeepEqual(got, want) {
		t.Fatalf("got %q, %v", got, err)
	}
}

func TestXMLDecoderErrors(t *testing.T) {
	for _, tc := range []struct{ in, want string }{
		{"<a><b></a>", "invalid document"},
		{"hello", "text outside"},
		{"</a>", "end tag without"},
		{"<a>" + strings.Repeat("x", 200) + "</a>", "over 100 bytes"},
		{"<a><b>", "unexpected EOF"},
		{"<a <b>", "'<' inside a tag"},
	} {
		_, err := decodeAll(t, NewXMLDecoder(strings.NewReader(tc.in), 100, nil))
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%q: got %v, want %q", tc.in, err, tc.want)
		}
	}
}

func TestHTTPDecoder(t *testing.T) {
	in := "HTTP/1.1 200 OK\r\nContent-Length: 5\r\nX-A: 1\r\nX-A: 2\r\n\r\nhello" +
		"HTTP/1.1 404 Not Found\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n2\r\nde\r\n0\r\n\r\n" +
		"HTTP/1.1 200 OK\r\nConnection: close\r\n\r\nuntil close"
	got, err := decodeAll(t, NewHTTPDecoder(iotest.HalfReader(strings.NewReader(in)), 1024, 100))
	if err != io.EOF || len(got) != 3 {
		t.Fatalf("got %d responses, %v", len(got), err)
	}
	r0 := got[0].(map[string]any)
	if r0["status"] != int64(200) || r0["body"] != "hello" || r0["headers"].(map[string]any)["X-A"] != "1, 2" || r0["reason"] != "OK" {
		t.Errorf("first: %v", r0)
	}
	r1 := got[1].(map[string]any)
	if r1["status"] != int64(404) || r1["body"] != "abcde" || r1["reason"] != "Not Found" {
		t.Errorf("chunked: %v", r1)
	}
	r2 := got[2].(map[string]any)
	if r2["body"] != "until close" || r2["close"] != true {
		t.Errorf("until close: %v", r2)
	}
}

func TestHTTPDecoderErrors(t *testing.T) {
	for _, tc := range []struct{ in, want string }{
		{"HTTP/1.1 200 OK\r\nContent-Length: 100\r\n\r\nshort", "got 5 of Content-Length 100"},
		{"HTTP/1.1 200 OK\r\nContent-Length: 1000\r\n\r\n", "over max 100"},
		{"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nhello", "bad response head"},
		{"HTTP/1.1 200 OK\r\nX: " + strings.Repeat("y", 2000) + "\r\n\r\n", "head over 1024"},
		{"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n1000\r\n" + strings.Repeat("z", 0x1000), "over 100 bytes"},
		{"garbage\r\n\r\n", "bad response head"},
		{"HTTP/1.1 099 Odd\r\n\r\n", "bad response head: status 99"},
		{"HTTP/1.1 101 Switching Protocols\r\n\r\n", "no longer speaks HTTP"},
	} {
		_, err := decodeAll(t, NewHTTPDecoder(strings.NewReader(tc.in), 1024, 100))
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%.40q: got %v, want %q", tc.in, err, tc.want)
		}
	}
}

func TestEncodeHTTPRequest(t *testing.T) {
	for _, tc := range []struct {
		in   any
		want string
	}{
		{"GET /index.html", "GET /index.html HTTP/1.1\r\nHost: h:8080\r\n\r\n"},
		{"/x?y=1", "GET /x?y=1 HTTP/1.1\r\nHost: h:8080\r\n\r\n"},
		{"GET http://code.google.com/p", "GET /p HTTP/1.1\r\nHost: code.google.com\r\n\r\n"},
		{map[string]any{"method": "post", "path": "/f", "body": "a=1", "headers": map[string]any{"X-K": "v"}},
			"POST /f HTTP/1.1\r\nHost: h:8080\r\nX-K: v\r\nContent-Length: 3\r\n\r\na=1"},
	} {
		b, err := EncodeHTTPRequest(tc.in, "h:8080")
		if err != nil || string(b) != tc.want {
			t.Errorf("%v: got %q, %v; want %q", tc.in, b, err, tc.want)
		}
	}
	for _, bad := range []any{"GET /a b c", "GET a", "CONNECT /", "GET ftp://h/x", map[string]any{"headers": map[string]any{"X": "a\r\nY: b"}},
		map[string]any{"verb": "GET"}, 42} {
		if b, err := EncodeHTTPRequest(bad, "h"); err == nil {
			t.Errorf("%v: accepted as %q", bad, b)
		}
	}
}

func FuzzXMLDecoder(f *testing.F) {
	f.Add([]byte(`<?xml version="1.0"?><a x="1"><b/>t</a><c/>`))
	f.Add([]byte("<a><![CDATA[x]]><!-- c --></a>\x01<b></b>"))
	f.Add([]byte(`<!DOCTYPE a [<!ENTITY e "x">]><a>&e;</a>`))
	f.Add([]byte("<a><b></a>"))
	f.Add([]byte("text"))
	f.Fuzz(func(t *testing.T, data []byte) {
		d := NewXMLDecoder(iotest.HalfReader(strings.NewReader(string(data))), 256, []byte("\x01"))
		total := 0
		for i := 0; i < len(data)+1; i++ {
			m, err := d.Decode()
			if err != nil {
				return
			}
			s := m.(string)
			if len(s) > 256 {
				t.Fatalf("document of %d bytes over max", len(s))
			}
			if err := checkXML([]byte(s)); err != nil {
				t.Fatalf("returned an invalid document %q: %v", s, err)
			}
			total += len(s)
			if total > len(data) {
				t.Fatal("returned more bytes than read")
			}
		}
	})
}

func FuzzHTTPDecoder(f *testing.F) {
	f.Add([]byte("HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nhello"))
	f.Add([]byte("HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n0\r\n\r\nHTTP/1.0 204 No Content\r\n\r\n"))
	f.Add([]byte("HTTP/1.1 200 OK\r\nContent-Length: 99\r\n\r\nshort"))
	f.Add([]byte("HTTP/1.1 301 Moved\r\nLocation: /x\r\nConnection: close\r\n\r\nbody"))
	f.Add([]byte("HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 103 Early Hints\r\nLink: </a>\r\n\r\nHTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok"))
	f.Add([]byte("HTTP/1.1 200 OK\r\nContent-Length: 99999\r\n\r\nHTTP/1.1 204 No Content\r\n\r\n")) // as HEAD responses
	f.Add([]byte("HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\n\r\n"))
	f.Fuzz(func(t *testing.T, data []byte) {
		d := NewHTTPDecoder(iotest.HalfReader(strings.NewReader(string(data))), 512, 128)
		head := len(data)%2 == 0
		d.Method = func() string {
			head = !head
			if head {
				return "HEAD"
			}
			return "GET"
		}
		for i := 0; i < len(data)+1; i++ {
			m, err := d.Decode()
			if err != nil {
				return
			}
			r := m.(map[string]any)
			if body := r["body"].(string); len(body) > 128 || (head && body != "") {
				t.Fatalf("body of %d bytes (HEAD %v) over max", len(body), head)
			}
			if st := r["status"].(int64); st < 200 {
				t.Fatalf("interim response %d returned", st)
			}
		}
	})
}

func FuzzEncodeHTTPRequest(f *testing.F) {
	f.Add("GET /x")
	f.Add("POST http://h/p?q")
	f.Fuzz(func(t *testing.T, s string) {
		b, err := EncodeHTTPRequest(s, "h")
		if err != nil {
			return
		}
		// A request encoded from one string is one request: the decoder side must not see two.
		if strings.Count(string(b), "\r\n\r\n") != 1 {
			t.Fatalf("%q encoded as %q", s, b)
		}
	})
}
