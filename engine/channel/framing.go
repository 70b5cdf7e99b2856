package channel

import (
	"bufio"
	"bytes"
	"encoding/json"
	"encoding/xml"
	"errors"
	"fmt"
	"io"
	"strconv"
	"strings"

	"github.com/switchboard/switchboard/engine/transport"
)

// ErrTooLong is wrapped by every framing error about a message over its size limit.
var ErrTooLong = transport.ErrTooLong

// Decoder reads the inbound messages of one connection. Any error ends the connection: a framing error
// leaves the stream position unknown, so the channel reconnects rather than guess.
type Decoder interface {
	Decode() (any, error)
}

// paired reports whether every outbound message of the framing gets exactly one reply (http, resp): then
// replies pair with requests whoever sent them, and a reply that answers nothing is unsolicited.
func (f framing) paired() bool { return f.protocol == HTTP || f.protocol == RESP }

// framing is one direction's wire format.
type framing struct {
	protocol  string
	delim     []byte
	max       int
	fixed     int
	maxHeader int
	host      string // http Host header
}

func framingsOf(c Config) (in, out framing) {
	base := framing{protocol: c.Protocol, delim: []byte(c.Delimiter), max: c.MaxMessageSize, fixed: c.FixedSize,
		maxHeader: c.MaxHeaderSize, host: c.Host}
	if c.Port != 80 && c.Port != 443 {
		base.host = c.Addr()
	}
	if c.Protocol != Asymmetric {
		return base, base
	}
	in, out = base, base
	in.protocol, in.delim = c.Inbound.Protocol, []byte(c.Inbound.Delimiter)
	out.protocol, out.delim = c.Outbound.Protocol, []byte(c.Outbound.Delimiter)
	return in, out
}

func (f framing) decoder(r io.Reader) Decoder {
	switch f.protocol {
	case TextMessages:
		if len(f.delim) > 0 {
			return &delimDecoder{r: transport.NewReader(r, f.delim, f.max)}
		}
		return newStreamDecoder(r, f.max, 0)
	case TextStream:
		return newStreamDecoder(r, f.max, f.fixed)
	case XMLMessages:
		return NewXMLDecoder(r, f.max, f.delim)
	case HTTP:
		return NewHTTPDecoder(r, f.maxHeader, f.max)
	case RESP:
		return NewRESPDecoder(r, f.max)
	}
	return errDecoder{fmt.Errorf("channel: no decoder for protocol %q", f.protocol)}
}

type errDecoder struct{ err error }

func (d errDecoder) Decode() (any, error) { return nil, d.err }

// encode turns an outbound payload into the bytes written to the peer.
func (f framing) encode(payload any) ([]byte, error) {
	switch f.protocol {
	case HTTP:
		return EncodeHTTPRequest(payload, f.host)
	case RESP:
		return encodeRESP(payload)
	case XMLMessages:
		b, err := payloadBytes(payload)
		if err != nil {
			return nil, err
		}
		if err := checkXML(b); err != nil {
			return nil, err
		}
		return append(b, f.delim...), nil
	}
	if s, ok := payload.(string); ok && f.protocol == TextMessages && len(f.delim) > 0 {
		// The common case in one allocation.
		if containsDelim(s, f.delim) {
			return nil, fmt.Errorf("text-messages: message contains the delimiter %q", f.delim)
		}
		b := make([]byte, 0, len(s)+len(f.delim))
		return append(append(b, s...), f.delim...), nil
	}
	b, err := payloadBytes(payload)
	if err != nil {
		return nil, err
	}
	if f.protocol == TextMessages && len(f.delim) > 0 {
		if bytes.Contains(b, f.delim) {
			return nil, fmt.Errorf("text-messages: message contains the delimiter %q", f.delim)
		}
		b = append(b, f.delim...)
	}
	return b, nil
}

func containsDelim(s string, delim []byte) bool {
	if len(delim) == 1 {
		return strings.IndexByte(s, delim[0]) >= 0
	}
	return strings.Contains(s, string(delim))
}

// payloadBytes is the wire form of a plain payload: strings and bytes as they are, tables as JSON.
func payloadBytes(p any) ([]byte, error) {
	switch v := p.(type) {
	case string:
		return []byte(v), nil
	case []byte:
		return append([]byte(nil), v...), nil
	case nil:
		return nil, errors.New("nil message")
	case bool, int, int64, float64:
		return []byte(fmt.Sprint(v)), nil
	}
	b, err := json.Marshal(p)
	if err != nil {
		return nil, fmt.Errorf("encode message as JSON: %w", err)
	}
	return b, nil
}

type delimDecoder struct{ r *transport.Reader }

func (d *delimDecoder) Decode() (any, error) {
	b, err := d.r.Next()
	if err != nil {
		return nil, err
	}
	return string(b), nil
}

// streamDecoder returns what one read delivers (at most max bytes), or exactly fixed bytes.
type streamDecoder struct {
	r     io.Reader
	buf   []byte
	fixed int
}

func newStreamDecoder(r io.Reader, max, fixed int) *streamDecoder {
	n := max
	if n > 64<<10 {
		n = 64 << 10
	}
	if fixed > 0 {
		n = fixed
	}
	return &streamDecoder{r: r, buf: make([]byte, n), fixed: fixed}
}

func (d *streamDecoder) Decode() (any, error) {
	if d.fixed > 0 {
		if _, err := io.ReadFull(d.r, d.buf); err != nil {
			return nil, err
		}
		return string(d.buf), nil
	}
	for i := 0; i < 100; i++ {
		n, err := d.r.Read(d.buf)
		if n > 0 {
			return string(d.buf[:n]), nil
		}
		if err != nil {
			return nil, err
		}
	}
	return nil, io.ErrNoProgress
}

// XMLDecoder splits a stream into XML documents: an optional prolog (declaration, comments, doctype) and one
// root element. It scans incrementally, never holds more than max bytes, skips whitespace and the optional
// delimiter between documents, and checks each document with encoding/xml before returning it.
type XMLDecoder struct {
	r     *bufio.Reader
	max   int
	delim []byte
	buf   []byte
}

// NewXMLDecoder returns a decoder of documents of at most max bytes; delim (may be empty) is skipped
// between documents.
func NewXMLDecoder(r io.Reader, max int, delim []byte) *XMLDecoder {
	return &XMLDecoder{r: bufio.NewReaderSize(r, 4096), max: max, delim: delim}
}

var errXMLText = errors.New("xml-messages: text outside the root element")

func (d *XMLDecoder) next() (byte, error) {
	c, err := d.r.ReadByte()
	if err != nil {
		if err == io.EOF && len(d.buf) > 0 {
			return 0, io.ErrUnexpectedEOF
		}
		return 0, err
	}
	if len(d.buf) >= d.max {
		return 0, fmt.Errorf("xml-messages: document over %d bytes: %w", d.max, ErrTooLong)
	}
	d.buf = append(d.buf, c)
	return c, nil
}

// until consumes through the terminator end.
func (d *XMLDecoder) until(end string) error {
	for !bytes.HasSuffix(d.buf, []byte(end)) {
		if _, err := d.next(); err != nil {
			return err
		}
	}
	return nil
}

// tag consumes a tag body through '>' outside quotes (and '[...]' for doctype) and reports whether it ended
// with "/>".
func (d *XMLDecoder) tag() (selfClosing bool, err error) {
	var quote byte
	bracket := 0
	prev := byte(0)
	for {
		c, err := d.next()
		if err != nil {
			return false, err
		}
		switch {
		case quote != 0:
			if c == quote {
				quote = 0
			}
		case c == '"' || c == '\'':
			quote = c
		case c == '[':
			bracket++
		case c == ']' && bracket > 0:
			bracket--
		case c == '<' && bracket == 0:
			return false, errors.New("xml-messages: '<' inside a tag")
		case c == '>' && bracket == 0:
			return prev == '/', nil
		}
		prev = c
	}
}

func (d *XMLDecoder) isSkippable(c byte) bool {
	return c == ' ' || c == '\t' || c == '\r' || c == '\n' || c == 0 || bytes.IndexByte(d.delim, c) >= 0
}

// Decode returns the next document as a string.
func (d *XMLDecoder) Decode() (any, error) {
	d.buf = d.buf[:0]
	depth := 0
	var open []string // names of the open elements, to report a mismatched end tag at once
	for {
		c, err := d.r.ReadByte()
		if err != nil {
			if err == io.EOF && len(d.buf) > 0 {
				err = io.ErrUnexpectedEOF
			}
			return nil, err
		}
		if depth == 0 && c != '<' {
			prologSpace := len(d.buf) > 0 && (c == ' ' || c == '\t' || c == '\r' || c == '\n')
			switch {
			case prologSpace: // whitespace between prolog items belongs to the document
			case d.isSkippable(c):
				continue
			default:
				return nil, errXMLText
			}
		}
		if len(d.buf) >= d.max {
			return nil, fmt.Errorf("xml-messages: document over %d bytes: %w", d.max, ErrTooLong)
		}
		d.buf = append(d.buf, c)
		if c != '<' {
			continue // character data inside the root
		}
		lt := len(d.buf) - 1
		c, err = d.next()
		if err != nil {
			return nil, err
		}
		switch c {
		case '?':
			err = d.until("?>")
		case '!':
			err = d.bang()
		case '/':
			if depth == 0 {
				return nil, errors.New("xml-messages: end tag without a start tag")
			}
			if _, err = d.tag(); err != nil {
				return nil, err
			}
			if name := tagName(d.buf[lt+2:]); name != open[len(open)-1] {
				return nil, fmt.Errorf("xml-messages: invalid document: element <%s> closed by </%s>", open[len(open)-1], name)
			}
			open = open[:len(open)-1]
			depth--
		default:
			var self bool
			self, err = d.tag()
			if !self {
				depth++
				open = append(open, tagName(d.buf[lt+1:]))
			}
			if self && depth == 0 {
				return d.finish()
			}
		}
		if err != nil {
			return nil, err
		}
		if depth == 0 && c == '/' {
			return d.finish()
		}
	}
}

func tagName(b []byte) string {
	end := bytes.IndexAny(b, " \t\r\n/>")
	if end < 0 {
		end = len(b)
	}
	return string(b[:end])
}

// bang consumes a comment, CDATA section or declaration after "<!".
func (d *XMLDecoder) bang() error {
	c, err := d.next()
	if err != nil {
		return err
	}
	switch c {
	case '-':
		if c, err = d.next(); err != nil {
			return err
		}
		if c != '-' {
			return errors.New("xml-messages: malformed comment")
		}
		return d.until("-->")
	case '[':
		return d.until("]]>")
	}
	_, err = d.tag()
	return err
}

func (d *XMLDecoder) finish() (any, error) {
	if err := checkXML(d.buf); err != nil {
		return nil, err
	}
	return string(d.buf), nil
}

// checkXML reports whether b is one well-formed XML document (one pass of encoding/xml, which also matches
// end tags to start tags).
func checkXML(b []byte) error {
	dec := xml.NewDecoder(bytes.NewReader(b))
	root, depth := 0, 0
	for {
		tok, err := dec.Token()
		if err == io.EOF {
			break
		}
		if err != nil {
			return fmt.Errorf("xml-messages: invalid document: %w", err)
		}
		switch t := tok.(type) {
		case xml.StartElement:
			if depth == 0 {
				root++
			}
			depth++
		case xml.EndElement:
			depth--
		case xml.CharData:
			if depth == 0 && len(bytes.TrimSpace(t)) > 0 {
				return errXMLText
			}
		}
	}
	if root != 1 || depth != 0 {
		return fmt.Errorf("xml-messages: invalid document: expected one root element, got %d", root)
	}
	return nil
}

// quoteBytes is the escaped form used by showmessages/showpackets.
func quoteBytes(b []byte, limit int) string {
	if len(b) > limit {
		return strconv.Quote(string(b[:limit])) + fmt.Sprintf("...(%d bytes)", len(b))
	}
	return strconv.Quote(string(b))
}
