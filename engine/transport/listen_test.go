package transport

import (
	"bufio"
	"context"
	"crypto/tls"
	"errors"
	"io"
	"net"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/sirupsen/logrus"
	logtest "github.com/sirupsen/logrus/hooks/test"

	"github.com/switchboard/switchboard/internal/testutil"
)

// acceptOne accepts one connection in the background.
func acceptOne(t *testing.T, l net.Listener) <-chan net.Conn {
	ch := make(chan net.Conn, 1)
	go func() {
		c, err := l.Accept()
		if err != nil {
			close(ch)
			return
		}
		ch <- c
	}()
	return ch
}

func mustListen(t *testing.T, cfg ListenConfig) net.Listener {
	t.Helper()
	if cfg.Addr == "" {
		cfg.Addr = "127.0.0.1:0"
	}
	l, err := Listen(cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { l.Close() })
	return l
}

// expectClosed asserts the peer closed c without admitting it (EOF or reset),
// after reading want first.
func expectClosed(t *testing.T, c net.Conn, want string) {
	t.Helper()
	c.SetReadDeadline(time.Now().Add(5 * time.Second))
	got, err := io.ReadAll(c)
	if string(got) != want {
		t.Fatalf("refused peer read %q, want %q", got, want)
	}
	if err != nil && !errors.Is(err, syscall.ECONNRESET) {
		t.Fatalf("refused peer: %v, want EOF or reset", err)
	}
}

func TestListenPlainEcho(t *testing.T) {
	l := mustListen(t, ListenConfig{})
	acc := acceptOne(t, l)
	c, err := net.Dial("tcp", l.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	s := <-acc
	defer s.Close()
	go io.Copy(s, s)
	io.WriteString(c, "ping\n")
	line, err := bufio.NewReader(c).ReadString('\n')
	if err != nil || line != "ping\n" {
		t.Fatalf("echo: %q %v", line, err)
	}
}

func TestListenCloseUnblocksAccept(t *testing.T) {
	l, err := Listen(ListenConfig{Addr: "127.0.0.1:0"})
	if err != nil {
		t.Fatal(err)
	}
	errc := make(chan error, 1)
	go func() { _, err := l.Accept(); errc <- err }()
	l.Close()
	if err := <-errc; !errors.Is(err, net.ErrClosed) {
		t.Fatalf("Accept after Close: %v, want net.ErrClosed", err)
	}
}

func TestListenTLS(t *testing.T) {
	tc := testutil.SelfSigned(t)
	certFile, keyFile := tc.CertFile, tc.KeyFile
	srv, err := ServerTLS(certFile, keyFile)
	if err != nil {
		t.Fatal(err)
	}
	if srv.MinVersion != tls.VersionTLS12 {
		t.Fatalf("MinVersion %x", srv.MinVersion)
	}
	l := mustListen(t, ListenConfig{TLS: srv, MaxConns: 4})
	go func() {
		for {
			c, err := l.Accept()
			if err != nil {
				return
			}
			go func() {
				defer c.Close()
				if _, ok := c.(*tls.Conn); !ok {
					t.Errorf("accepted %T, want *tls.Conn", c)
				}
				if _, ok := TCPConn(c); !ok {
					t.Errorf("TCPConn cannot unwrap %T", c)
				}
				io.Copy(c, c)
			}()
		}
	}()

	cli, err := ClientTLS("", certFile)
	if err != nil {
		t.Fatal(err)
	}
	d := &Dialer{Addr: l.Addr().String(), TLS: cli, Timeout: 5 * time.Second}
	c, err := d.Dial(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	io.WriteString(c, "secret\n")
	line, err := bufio.NewReader(c).ReadString('\n')
	if err != nil || line != "secret\n" {
		t.Fatalf("tls echo: %q %v", line, err)
	}
	if v := c.(*tls.Conn).ConnectionState().Version; v < tls.VersionTLS12 {
		t.Fatalf("negotiated %x", v)
	}

	// a client limited to TLS 1.1 is refused by the handshake
	old := cli.Clone()
	old.MinVersion, old.MaxVersion = tls.VersionTLS10, tls.VersionTLS11
	oc, err := tls.Dial("tcp", l.Addr().String(), old)
	if err == nil {
		oc.Close()
		t.Fatal("TLS 1.1 client was accepted")
	}

	// an untrusting client fails verification
	if _, err := (&Dialer{Addr: l.Addr().String(), TLS: &tls.Config{}}).Dial(context.Background()); err == nil {
		t.Fatal("client without the CA verified the self-signed cert")
	}
}

func TestClientTLSBadCA(t *testing.T) {
	f := filepath.Join(t.TempDir(), "ca.pem")
	os.WriteFile(f, []byte("not pem"), 0o600)
	if _, err := ClientTLS("x", f); err == nil {
		t.Fatal("want error for a CA file without certificates")
	}
	if _, err := ServerTLS(f, f); err == nil {
		t.Fatal("want error for bad key pair")
	}
}

func TestAllowlistRefusesByCIDR(t *testing.T) {
	deny, err := ParseAllowlist("text:10.0.0.0/8, 192.168.1.7")
	if err != nil {
		t.Fatal(err)
	}
	l := mustListen(t, ListenConfig{Allow: deny, OnRefuse: func(c net.Conn, reason string) {
		io.WriteString(c, "refused: "+reason+"\n")
	}})
	acc := acceptOne(t, l)
	c, err := net.Dial("tcp", l.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	expectClosed(t, c, "refused: address not allowed\n")
	l.Close()
	if got, ok := <-acc; ok {
		got.Close()
		t.Fatal("a refused connection was returned by Accept")
	}

	allow, _ := ParseAllowlist("10.0.0.0/8,127.0.0.0/8")
	l2 := mustListen(t, ListenConfig{Allow: allow})
	acc2 := acceptOne(t, l2)
	c2, err := net.Dial("tcp", l2.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	defer c2.Close()
	s := <-acc2
	if s == nil {
		t.Fatal("allowed peer not accepted")
	}
	s.Close()
}

func TestParseAllowlist(t *testing.T) {
	if a, err := ParseAllowlist(""); a != nil || err != nil {
		t.Fatalf("empty: %v %v", a, err)
	}
	var nilList *Allowlist
	if !nilList.Allows(context.Background(), net.IPv4(1, 2, 3, 4)) {
		t.Fatal("nil allowlist must allow")
	}
	f := filepath.Join(t.TempDir(), "allow")
	os.WriteFile(f, []byte("# trading floor\n10.1.0.0/16\n\n  ::1  # v6 loopback\n*.Example.com\n"), 0o600)
	a, err := ParseAllowlist("file:" + f)
	if err != nil {
		t.Fatal(err)
	}
	if got := a.String(); got != "10.1.0.0/16,::1/128,*.example.com" {
		t.Fatalf("patterns %q", got)
	}
	ctx := context.Background()
	a.lookupAddr = func(context.Context, string) ([]string, error) { return nil, errors.New("no PTR") }
	for ip, want := range map[string]bool{"10.1.2.3": true, "10.2.0.1": false, "::1": true, "::ffff:10.1.0.9": true} {
		if got := a.Allows(ctx, net.ParseIP(ip)); got != want {
			t.Errorf("Allows(%s) = %v, want %v", ip, got, want)
		}
	}
	for _, bad := range []string{"text:10.0.0.0/33", "text:bad host!", "file:/nonexistent/x", "text: , "} {
		if _, err := ParseAllowlist(bad); err == nil {
			t.Errorf("%q: want error", bad)
		}
	}
}

func TestAllowlistHostnameForwardConfirmed(t *testing.T) {
	a, err := ParseAllowlist("*.example.com,localhost")
	if err != nil {
		t.Fatal(err)
	}
	peer := net.ParseIP("192.0.2.10")
	ptr := map[string][]string{"192.0.2.10": {"Gw.Floor.example.com."}, "192.0.2.11": {"evil.example.com."}}
	fwd := map[string][]net.IPAddr{"gw.floor.example.com": {{IP: peer}}, "evil.example.com": {{IP: net.ParseIP("192.0.2.99")}}}
	a.lookupAddr = func(_ context.Context, addr string) ([]string, error) { return ptr[addr], nil }
	a.lookupIP = func(_ context.Context, host string) ([]net.IPAddr, error) { return fwd[host], nil }
	ctx := context.Background()
	if !a.Allows(ctx, peer) {
		t.Fatal("forward-confirmed name refused")
	}
	if a.Allows(ctx, net.ParseIP("192.0.2.11")) {
		t.Fatal("PTR that does not resolve back was allowed")
	}
	if a.Allows(ctx, net.ParseIP("192.0.2.12")) {
		t.Fatal("peer without PTR allowed")
	}
	for pat, name := range map[string]string{"*.example.com": "a.b.example.com", "host?": "host7", "*": "x"} {
		if !globMatch(pat, name) {
			t.Errorf("%q should match %q", pat, name)
		}
	}
	for pat, name := range map[string]string{"*.example.com": "example.com", "host?": "host", "a*b": "ac"} {
		if globMatch(pat, name) {
			t.Errorf("%q should not match %q", pat, name)
		}
	}
}

func TestListenConnCap(t *testing.T) {
	logger, hook := logtest.NewNullLogger()
	l := mustListen(t, ListenConfig{MaxConns: 2, Log: logrus.NewEntry(logger), OnRefuse: func(c net.Conn, reason string) {
		io.WriteString(c, "busy: "+reason+"\n")
	}})
	var server []net.Conn
	var clients []net.Conn
	defer func() {
		for _, c := range append(server, clients...) {
			c.Close()
		}
	}()
	for i := 0; i < 2; i++ {
		acc := acceptOne(t, l)
		c, err := net.Dial("tcp", l.Addr().String())
		if err != nil {
			t.Fatal(err)
		}
		clients = append(clients, c)
		server = append(server, <-acc)
	}
	third, err := net.Dial("tcp", l.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	defer third.Close()
	expectClosed(t, third, "busy: too many connections\n")
	if e := hook.LastEntry(); e == nil || e.Message != "connection refused" || e.Data["reason"] != ReasonTooManyConn ||
		e.Data["remote"] != third.LocalAddr().String() {
		t.Fatalf("refusal log: %+v", e)
	}

	// closing an admitted conn (twice: idempotent) frees exactly one slot
	server[0].Close()
	server[0].Close()
	acc := acceptOne(t, l)
	c, err := net.Dial("tcp", l.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	clients = append(clients, c)
	s, ok := <-acc
	if !ok {
		t.Fatal("slot was not freed")
	}
	server = append(server, s)
	fourth, err := net.Dial("tcp", l.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	defer fourth.Close()
	expectClosed(t, fourth, "busy: too many connections\n")
}

func sockopt(t *testing.T, c net.Conn, level, opt int) int {
	t.Helper()
	tc, ok := TCPConn(c)
	if !ok {
		t.Fatalf("not TCP: %T", c)
	}
	raw, err := tc.SyscallConn()
	if err != nil {
		t.Fatal(err)
	}
	var v int
	var serr error
	raw.Control(func(fd uintptr) { v, serr = syscall.GetsockoptInt(int(fd), level, opt) })
	if serr != nil {
		t.Fatal(serr)
	}
	return v
}

func TestListenKeepAlive(t *testing.T) {
	for _, period := range []time.Duration{0, 7 * time.Second} {
		l := mustListen(t, ListenConfig{KeepAlive: period, MaxConns: 10})
		acc := acceptOne(t, l)
		c, err := net.Dial("tcp", l.Addr().String())
		if err != nil {
			t.Fatal(err)
		}
		s := <-acc
		on := sockopt(t, s, syscall.SOL_SOCKET, syscall.SO_KEEPALIVE)
		if period == 0 && on != 0 {
			t.Errorf("keepalive off: SO_KEEPALIVE=%d", on)
		}
		if period > 0 {
			if on == 0 {
				t.Errorf("keepalive %v: SO_KEEPALIVE off", period)
			}
			if idle := sockopt(t, s, syscall.IPPROTO_TCP, syscall.TCP_KEEPIDLE); idle != 7 {
				t.Errorf("TCP_KEEPIDLE=%d, want 7", idle)
			}
		}
		s.Close()
		c.Close()
	}
}

func TestListenBadAddr(t *testing.T) {
	_, err := Listen(ListenConfig{Addr: "127.0.0.1:notaport"})
	if err == nil || !strings.Contains(err.Error(), "listen tcp") {
		t.Fatalf("got %v", err)
	}
}

func TestListenHostnameAllowlist(t *testing.T) {
	for _, tc := range []struct {
		ptr   string
		admit bool
	}{{"gw.floor.example.com.", true}, {"gw.elsewhere.net.", false}} {
		a, err := ParseAllowlist("text:*.floor.example.com")
		if err != nil {
			t.Fatal(err)
		}
		a.lookupAddr = func(_ context.Context, addr string) ([]string, error) {
			if addr != "127.0.0.1" {
				return nil, errors.New("unexpected lookup " + addr)
			}
			return []string{tc.ptr}, nil
		}
		a.lookupIP = func(context.Context, string) ([]net.IPAddr, error) {
			return []net.IPAddr{{IP: net.IPv4(127, 0, 0, 1)}}, nil
		}
		l := mustListen(t, ListenConfig{Allow: a})
		acc := acceptOne(t, l)
		c, err := net.Dial("tcp", l.Addr().String())
		if err != nil {
			t.Fatal(err)
		}
		if tc.admit {
			s := <-acc
			if s == nil {
				t.Fatalf("%s: not admitted", tc.ptr)
			}
			s.Close()
		} else {
			expectClosed(t, c, "")
			l.Close()
			if s, ok := <-acc; ok {
				s.Close()
				t.Fatalf("%s: admitted", tc.ptr)
			}
		}
		c.Close()
	}
}

func TestCheckHostPort(t *testing.T) {
	for _, good := range []string{"127.0.0.1:9090", ":5000", "0.0.0.0:0", "[::1]:8084", "example.com:65535"} {
		if err := CheckHostPort(good); err != nil {
			t.Errorf("%q: %v", good, err)
		}
	}
	for bad, want := range map[string]string{
		"nowhere":      `expected host:port such as 127.0.0.1:9090, got "nowhere"`,
		"::1:80":       `expected host:port such as 127.0.0.1:9090, got "::1:80"`,
		"h:99999":      `expected host:port with a port 0-65535, got "h:99999"`,
		"h:http":       `expected host:port with a port 0-65535, got "h:http"`,
		"127.0.0.1:-1": `expected host:port with a port 0-65535, got "127.0.0.1:-1"`,
		"":             `expected host:port such as 127.0.0.1:9090, got ""`,
	} {
		if err := CheckHostPort(bad); err == nil || err.Error() != want {
			t.Errorf("%q: %v, want %s", bad, err, want)
		}
	}
}

// A section's errors name its keys.
func TestSectionErrorsNameKeys(t *testing.T) {
	_, err := Section{Key: "relay", Listen: "127.0.0.1:0", TLS: &TLSFiles{Cert: "/nonexistent.pem", Key: "/nonexistent.key"}}.ListenConfig()
	if err == nil || !strings.HasPrefix(err.Error(), "relay.tls: load key pair /nonexistent.pem, /nonexistent.key: ") {
		t.Errorf("tls: %v", err)
	}
	_, err = Section{Key: "esl", Listen: "127.0.0.1:0", Allow: "text:10.0.0.0/99", AllowKey: "esl.allow"}.ListenConfig()
	if err == nil || !strings.HasPrefix(err.Error(), `esl.allow: bad CIDR "10.0.0.0/99"`) {
		t.Errorf("allow: %v", err)
	}
	tf := testutil.SelfSigned(t)
	lc, err := Section{Key: "socket", Listen: "127.0.0.1:0", TLS: &TLSFiles{Cert: tf.CertFile, Key: tf.KeyFile, HandshakeTimeout: time.Second},
		Allow: "text:127.0.0.1", AllowKey: "socket.allow", KeepAlive: 7 * time.Second, MaxConns: 3}.ListenConfig()
	if err != nil || lc.TLS == nil || lc.HandshakeTimeout != time.Second || lc.Allow == nil || lc.KeepAlive != 7*time.Second || lc.MaxConns != 3 {
		t.Errorf("%+v %v", lc, err)
	}
}
