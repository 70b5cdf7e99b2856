package channel

import (
	"bufio"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"sort"
	"strings"
)

// HTTPDecoder reads HTTP/1.1 responses (Content-Length, chunked or until close) from a keep-alive
// connection. Memory is bounded: the status line and headers may take maxHeader bytes, the body max bytes.
// Interim responses (100 Continue, 103 Early Hints) are skipped: the final response answers the request.
type HTTPDecoder struct {
	budget    *budgetReader
	br        *bufio.Reader
	maxHeader int
	max       int
	// Method, when set, returns the method of the request the next response answers, asked once the
	// response's first byte has arrived (a response to HEAD has no body whatever its headers say).
	Method func() string
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

// Decode returns the next final response as map{status, reason, proto, headers, body}: status an int64,
// headers a map of canonical names to values (repeated headers joined with ", "), body a string; "close" is
// true when the server closes the connection after it.
func (d *HTTPDecoder) Decode() (any, error) {
	d.budget.left = int64(d.maxHeader)
	if _, err := d.br.Peek(1); err != nil {
		return nil, err // io.EOF between responses is a clean close
	}
	method := "GET"
	if d.Method != nil {
		method = d.Method()
	}
	req := &http.Request{Method: method}
	var resp *http.Response
	for {
		var err error
		resp, err = http.ReadResponse(d.br, req)
		if err != nil {
			if errors.Is(err, errBudget) {
				return nil, fmt.Errorf("http: response head over %d bytes: %w", d.maxHeader, ErrTooLong)
			}
			if err == io.EOF {
				err = io.ErrUnexpectedEOF
			}
			return nil, fmt.Errorf("http: bad response head: %w", err)
		}
		if resp.StatusCode < 100 || resp.StatusCode > 999 {
			resp.Body.Close()
			return nil, fmt.Errorf("http: bad response head: status %d", resp.StatusCode)
		}
		if resp.StatusCode == http.StatusSwitchingProtocols {
			return nil, errors.New("http: 101 Switching Protocols: the connection no longer speaks HTTP")
		}
		if resp.StatusCode >= 200 {
			break
		}
		// An interim response: its head is all there is; the final one follows.
		d.budget.left = int64(d.maxHeader)
	}
	// The body may use max bytes plus chunk framing; the Content-Length check below is exact.
	d.budget.left += int64(d.max) + int64(d.max)/8 + 4096
	if resp.ContentLength > int64(d.max) && method != "HEAD" {
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

// httpRequest is an outbound request before encoding.
type httpRequest struct {
	method  string
	target  string   // origin form: /path?query
	url     *url.URL // set when the request named an absolute URL
	headers map[string]any
	body    string
}

// idempotent reports whether the request may be sent again when a connection closed before its response
// (RFC 9110 9.2.2).
func (r *httpRequest) idempotent() bool {
	switch r.method {
	case "GET", "HEAD", "PUT", "DELETE", "OPTIONS", "TRACE":
		return true
	}
	return false
}

// hostPort is the absolute URL's host:port with the scheme's default port filled in.
func (r *httpRequest) hostPort() string {
	if r.url.Port() != "" {
		return r.url.Host
	}
	port := "80"
	if r.url.Scheme == "https" {
		port = "443"
	}
	return net.JoinHostPort(r.url.Hostname(), port)
}

// parseHTTPRequest reads "GET /path", "GET http://host/path" (the seed's form), "/path", or a table
// {method, path or url, headers, body}.
func parseHTTPRequest(payload any) (*httpRequest, error) {
	r := &httpRequest{method: "GET"}
	switch p := payload.(type) {
	case string:
		f := strings.Fields(p)
		switch {
		case len(f) == 1:
			r.target = f[0]
		case len(f) == 2 || (len(f) == 3 && strings.HasPrefix(f[2], "HTTP/")):
			r.method, r.target = f[0], f[1]
		default:
			return nil, fmt.Errorf("http: expected \"METHOD /path\", got %q", p)
		}
	case []byte:
		return parseHTTPRequest(string(p))
	case map[string]any:
		for k, v := range p {
			switch k {
			case "method":
				r.method = fmt.Sprint(v)
			case "path", "url", "page":
				r.target = fmt.Sprint(v)
			case "body":
				r.body = fmt.Sprint(v)
			case "headers":
				h, ok := v.(map[string]any)
				if !ok {
					return nil, fmt.Errorf("http: headers: expected a table of name = value, got %T", v)
				}
				r.headers = h
			default:
				return nil, fmt.Errorf("http: request field %q: expected method, path, url, headers or body", k)
			}
		}
	default:
		return nil, fmt.Errorf("http: expected a request string or table, got %T", payload)
	}
	r.method = strings.ToUpper(r.method)
	if !validToken(r.method) {
		return nil, fmt.Errorf("http: bad method %q", r.method)
	}
	if r.method == "CONNECT" {
		return nil, fmt.Errorf("http: method %s not supported on a channel", r.method)
	}
	if r.target == "" {
		r.target = "/"
	}
	if strings.Contains(r.target, "://") {
		u, err := url.Parse(r.target)
		if err != nil {
			return nil, fmt.Errorf("http: bad url %q: %w", r.target, err)
		}
		if u.Scheme != "http" && u.Scheme != "https" {
			return nil, fmt.Errorf("http: bad url %q: expected http:// or https://", r.target)
		}
		if u.Host == "" || u.User != nil {
			return nil, fmt.Errorf("http: bad url %q: expected http://host[:port]/path", r.target)
		}
		r.url = u
		r.target = u.RequestURI()
	}
	if !strings.HasPrefix(r.target, "/") || strings.ContainsAny(r.target, " \r\n\t\x00") {
		return nil, fmt.Errorf("http: bad path %q", r.target)
	}
	return r, nil
}

// encode writes the request with host as the default Host header; closeConn adds Connection: close.
func (r *httpRequest) encode(host string, closeConn bool) ([]byte, error) {
	var b strings.Builder
	fmt.Fprintf(&b, "%s %s HTTP/1.1\r\n", r.method, r.target)
	names := make([]string, 0, len(r.headers))
	hasHost := false
	for k := range r.headers {
		if !validToken(k) {
			return nil, fmt.Errorf("http: bad header name %q", k)
		}
		switch http.CanonicalHeaderKey(k) {
		case "Host":
			hasHost = true
		case "Content-Length", "Transfer-Encoding":
			return nil, fmt.Errorf("http: header %s is set by the channel", k)
		case "Connection":
			if closeConn {
				continue
			}
		}
		names = append(names, k)
	}
	sort.Strings(names)
	if !hasHost {
		fmt.Fprintf(&b, "Host: %s\r\n", host)
	}
	for _, k := range names {
		v := fmt.Sprint(r.headers[k])
		if strings.ContainsAny(v, "\r\n\x00") {
			return nil, fmt.Errorf("http: header %s: value contains a line break", k)
		}
		fmt.Fprintf(&b, "%s: %s\r\n", k, v)
	}
	if closeConn {
		b.WriteString("Connection: close\r\n")
	}
	if r.body != "" || r.method == "POST" || r.method == "PUT" || r.method == "PATCH" {
		fmt.Fprintf(&b, "Content-Length: %d\r\n", len(r.body))
	}
	b.WriteString("\r\n")
	b.WriteString(r.body)
	return []byte(b.String()), nil
}

// EncodeHTTPRequest builds an HTTP/1.1 request from "GET /path", "GET http://host/path" (the seed's form),
// "/path", or a table {method, path or url, headers, body}. host is the default Host header; an absolute URL
// sets its own (the channel decides beforehand which server such a request goes to).
func EncodeHTTPRequest(payload any, host string) ([]byte, error) {
	r, err := parseHTTPRequest(payload)
	if err != nil {
		return nil, err
	}
	if r.url != nil {
		host = r.url.Host
	}
	return r.encode(host, false)
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
