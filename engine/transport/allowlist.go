package transport

import (
	"bufio"
	"bytes"
	"context"
	"fmt"
	"net"
	"os"
	"strings"
	"time"
)

// DNSTimeout bounds the reverse and forward lookups of one allowlist check.
const DNSTimeout = 2 * time.Second

// Allowlist decides which peers may connect. A nil *Allowlist allows everyone.
type Allowlist struct {
	nets  []*net.IPNet // single IPs are stored as /32 or /128
	hosts []string     // lower-case globs: "*" any run of characters, "?" one
	// resolver hooks, replaced in tests
	lookupAddr func(ctx context.Context, addr string) ([]string, error)
	lookupIP   func(ctx context.Context, host string) ([]net.IPAddr, error)
}

// ParseAllowlist parses an allowlist spec:
//
//	""                 nil: everyone is allowed
//	"text:p1,p2"       comma-separated patterns (a bare "p1,p2" means the same)
//	"file:path"        one pattern per line; blank lines and # comments ignored
//
// A pattern is an IP ("10.0.0.7", "::1"), a CIDR ("10.0.0.0/8") or a hostname
// glob ("*.example.com", "localhost") matched against the peer's
// forward-confirmed reverse DNS names.
func ParseAllowlist(spec string) (*Allowlist, error) {
	spec = strings.TrimSpace(spec)
	if spec == "" {
		return nil, nil
	}
	var pats []string
	switch {
	case strings.HasPrefix(spec, "file:"):
		path := strings.TrimPrefix(spec, "file:")
		data, err := os.ReadFile(path)
		if err != nil {
			return nil, err
		}
		sc := bufio.NewScanner(bytes.NewReader(data))
		for sc.Scan() {
			line := sc.Text()
			if i := strings.IndexByte(line, '#'); i >= 0 {
				line = line[:i]
			}
			pats = append(pats, strings.Split(line, ",")...)
		}
		if err := sc.Err(); err != nil {
			return nil, fmt.Errorf("read %s: %w", path, err)
		}
	default:
		pats = strings.Split(strings.TrimPrefix(spec, "text:"), ",")
	}
	a := &Allowlist{}
	for _, p := range pats {
		p = strings.TrimSpace(p)
		if p == "" {
			continue
		}
		if err := a.add(p); err != nil {
			return nil, err
		}
	}
	if len(a.nets) == 0 && len(a.hosts) == 0 {
		return nil, fmt.Errorf("%q: no pattern", spec)
	}
	return a, nil
}

func (a *Allowlist) add(p string) error {
	if strings.Contains(p, "/") {
		_, n, err := net.ParseCIDR(p)
		if err != nil {
			return fmt.Errorf("bad CIDR %q: %w", p, err)
		}
		a.nets = append(a.nets, n)
		return nil
	}
	if ip := net.ParseIP(p); ip != nil {
		bits := 128
		if ip4 := ip.To4(); ip4 != nil {
			ip, bits = ip4, 32
		}
		a.nets = append(a.nets, &net.IPNet{IP: ip, Mask: net.CIDRMask(bits, bits)})
		return nil
	}
	for _, r := range p {
		if !(r == '*' || r == '?' || r == '.' || r == '-' || r == '_' ||
			r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9') {
			return fmt.Errorf("bad pattern %q: expected IP, CIDR or hostname glob", p)
		}
	}
	a.hosts = append(a.hosts, strings.ToLower(strings.TrimSuffix(p, ".")))
	return nil
}

// String lists the patterns, for logs.
func (a *Allowlist) String() string {
	if a == nil {
		return "*"
	}
	var s []string
	for _, n := range a.nets {
		s = append(s, n.String())
	}
	return strings.Join(append(s, a.hosts...), ",")
}

// Allows reports whether ip may connect. IP and CIDR patterns are checked
// first; reverse DNS is looked up only if that fails and a hostname pattern
// exists, bounded by ctx and DNSTimeout. A name counts only if it resolves back
// to ip (forward confirmation), so a peer cannot claim a name through its own
// PTR record.
func (a *Allowlist) Allows(ctx context.Context, ip net.IP) bool {
	if a == nil {
		return true
	}
	if ip4 := ip.To4(); ip4 != nil {
		ip = ip4
	}
	if a.quick(ip) {
		return true
	}
	if len(a.hosts) == 0 {
		return false
	}
	ctx, cancel := context.WithTimeout(ctx, DNSTimeout)
	defer cancel()
	lookupAddr, lookupIP := a.lookupAddr, a.lookupIP
	if lookupAddr == nil {
		lookupAddr = net.DefaultResolver.LookupAddr
	}
	if lookupIP == nil {
		lookupIP = net.DefaultResolver.LookupIPAddr
	}
	names, err := lookupAddr(ctx, ip.String())
	if err != nil {
		return false
	}
	for _, name := range names {
		name = strings.ToLower(strings.TrimSuffix(name, "."))
		if !a.matchHost(name) {
			continue
		}
		addrs, err := lookupIP(ctx, name)
		if err != nil {
			continue
		}
		for _, ad := range addrs {
			if ad.IP.Equal(ip) {
				return true
			}
		}
	}
	return false
}

func (a *Allowlist) matchHost(name string) bool {
	for _, h := range a.hosts {
		if globMatch(h, name) {
			return true
		}
	}
	return false
}

// globMatch matches s against a pattern of literal characters, '*' (any run,
// including dots) and '?' (one character).
func globMatch(pat, s string) bool {
	px, sx := 0, 0
	starP, starS := -1, 0
	for sx < len(s) {
		switch {
		case px < len(pat) && (pat[px] == '?' || pat[px] == s[sx]):
			px++
			sx++
		case px < len(pat) && pat[px] == '*':
			starP, starS = px, sx
			px++
		case starP >= 0:
			px = starP + 1
			starS++
			sx = starS
		default:
			return false
		}
	}
	for px < len(pat) && pat[px] == '*' {
		px++
	}
	return px == len(pat)
}
