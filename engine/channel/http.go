package channel

import (
	"bufio"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"sort"
	"strings"
)

// HTTPDecoder reads HTTP/1.1 responses (Content-Length, chunked or until close) from a keep-alive
// connection. Memory is bounded: the status line and headers may take maxHeader bytes, the body max bytes.
type HTTPDecoder struct {
	budget    *budgetReader
	br        *bufio.Reader
	maxHeader int
	max       int
}

// errBudget is what the connection reader returns once a response has used its byte budget.
var errBudget = errors.New("http: response over its size limit")

type budgetReader struct {
	r    io.Reader
	left int64
}

func (b *budgetReader) Read(p []byte) (int, error) {
	if b.left <= 0 {
		return 0, errBudget
	}
	if int64(len(p)) > b.left {
		p = p[:b.left]
	}
	n, err := b.r.Read(p)
	b.left -= int64(n)
	return n, err
}

const httpReadBuf = 4096

// NewHTTPDecoder returns a decoder of responses with at most maxHeader bytes of head and max of body.
func NewHTTPDecoder(r io.Reader, maxHeader, max int) *HTTPDecoder {
	b := &budgetReader{r: r}
	return &HTTPDecoder{budget: b, br: bufio.NewReaderSize(b, httpReadBuf), maxHeader: maxHeader, max: max}
}

// Decode returns the next response as map{status, reason, proto, headers, body}: status an int64, headers a
// map of canonical names to values (repeated headers joined with ", "), body a string.
func (d *HTTPDecoder) Decode() (any, error) {
	d.budget.left = int64(d.maxHeader)
	if _, err := d.br.Peek(1); err != nil {
		return nil, err // io.EOF between responses is a clean close
	}
	resp, err := http.ReadResponse(d.br, nil)
	if err != nil {
		if errors.Is(err, errBudget) {
			return nil, fmt.Errorf("http: response head over %d bytes: %w", d.maxHeader, ErrTooLong)
		}
		if err == io.EOF {
			err = io.ErrUnexpectedEOF
		}
		return nil, fmt.Errorf("http: bad response head: %w", err)
	}
	// The body may use max bytes plus chunk framing; the Content-Length check below is exact.
	d.budget.left += int64(d.max) + int64(d.max)/8 + 4096
	if resp.ContentLength > int64(d.max) {
		resp.Body.Close()
		return nil, fmt.Errorf("http: Content-Length %d over max %d: %w", resp.ContentLength, d.max, ErrTooLong)
	}
	body, err := io.ReadAll(io.LimitReader(resp.Body, int64(d.max)+1))
	resp.Body.Close()
	switch {
	case errors.Is(err, errBudget) || (err == nil && len(body) > d.max):
		return nil, fmt.Errorf("http: body over %d bytes: %w", d.max, ErrTooLong)
	case err != nil && resp.ContentLength >= 0:
		return nil, fmt.Errorf("http: body: got %d of Content-Length %d bytes: %w", len(body), resp.ContentLength, err)
	case err != nil:
		return nil, fmt.Errorf("http: body: %w", err)
	}
	headers := make(map[string]any, len(resp.Header))
	for k, v := range resp.Header {
		headers[k] = strings.Join(v, ", ")
	}
	msg := map[string]any{
		"status":  int64(resp.StatusCode),
		"reason":  strings.TrimSpace(strings.TrimPrefix(resp.Status, fmt.Sprint(resp.StatusCode))),
		"proto":   resp.Proto,
		"headers": headers,
		"body":    string(body),
	}
	if resp.Close {
		// The server closes after this response; returning it first, the next Decode sees io.EOF.
		msg["close"] = true
	}
	return msg, nil
}

// EncodeHTTPRequest builds an HTTP/1.1 request from "GET /path", "GET http://host/path" (the seed's form),
// "/path", or a table {method, path or url, headers, body}. host is the default Host header.
func EncodeHTTPRequest(payload any, host string) ([]byte, error) {
	method, target := "GET", ""
	var headers map[string]any
	var body string
	switch p := payload.(type) {
	case string:
		f := strings.Fields(p)
		switch {
		case len(f) == 1:
			target = f[0]
		case len(f) == 2 || (len(f) == 3 && strings.HasPrefix(f[2], "HTTP/")):
			method, target = f[0], f[1]
		default:
			return nil, fmt.Errorf("http: expected \"METHOD /path\", got %q", p)
		}
	case []byte:
		return EncodeHTTPRequest(string(p), host)
	case map[string]any:
		for k, v := range p {
			switch k {
			case "method":
				method = fmt.Sprint(v)
			case "path", "url", "page":
				target = fmt.Sprint(v)
			case "body":
				body = fmt.Sprint(v)
			case "headers":
				h, ok := v.(map[string]any)
				if !ok {
					return nil, fmt.Errorf("http: headers: expected a table of name = value, got %T", v)
				}
				headers = h
			default:
				return nil, fmt.Errorf("http: request field %q: expected method, path, url, headers or body", k)
			}
		}
	default:
		return nil, fmt.Errorf("http: expected a request string or table, got %T", payload)
	}
	method = strings.ToUpper(method)
	if !validToken(method) {
		return nil, fmt.Errorf("http: bad method %q", method)
	}
	if method == "HEAD" || method == "CONNECT" {
		return nil, fmt.Errorf("http: method %s not supported on a channel", method)
	}
	if target == "" {
		target = "/"
	}
	if strings.Contains(target, "://") {
		u, err := url.Parse(target)
		if err != nil {
			return nil, fmt.Errorf("http: bad url %q: %w", target, err)
		}
		if u.Host != "" {
			host = u.Host
		}
		target = u.RequestURI()
	}
	if !strings.HasPrefix(target, "/") || strings.ContainsAny(target, " \r\n\t\x00") {
		return nil, fmt.Errorf("http: bad path %q", target)
	}
	var b strings.Builder
	fmt.Fprintf(&b, "%s %s HTTP/1.1\r\n", method, target)
	names := make([]string, 0, len(headers))
	hasHost := false
	for k := range headers {
		if !validToken(k) {
			return nil, fmt.Errorf("http: bad header name %q", k)
		}
		switch http.CanonicalHeaderKey(k) {
		case "Host":
			hasHost = true
		case "Content-Length", "Transfer-Encoding":
			return nil, fmt.Errorf("http: header %s is set by the channel", k)
		}
		names = append(names, k)
	}
	sort.Strings(names)
	if !hasHost {
		fmt.Fprintf(&b, "Host: %s\r\n", host)
	}
	for _, k := range names {
		v := fmt.Sprint(headers[k])
		if strings.ContainsAny(v, "\r\n\x00") {
			return nil, fmt.Errorf("http: header %s: value contains a line break", k)
		}
		fmt.Fprintf(&b, "%s: %s\r\n", k, v)
	}
	if body != "" || method == "POST" || method == "PUT" || method == "PATCH" {
		fmt.Fprintf(&b, "Content-Length: %d\r\n", len(body))
	}
	b.WriteString("\r\n")
	b.WriteString(body)
	return []byte(b.String()), nil
}

func validToken(s string) bool {
	if s == "" {
		return false
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		if c <= ' ' || c >= 0x7f || strings.IndexByte("()<>@,;:\\\"/[]?={}", c) >= 0 {
			return false
		}
	}
	return true
}
