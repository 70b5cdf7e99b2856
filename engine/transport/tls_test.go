package transport

import (
	"crypto/tls"
	"crypto/x509"
	"errors"
	"net"
	"os"
	"slices"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/sirupsen/logrus"
	logtest "github.com/sirupsen/logrus/hooks/test"

	"github.com/switchboard/switchboard/internal/testutil"
)

// tlsListener listens with the test certificate and records handshake failures.
func tlsListener(t *testing.T, timeout time.Duration) (net.Listener, *tls.Config, *logtest.Hook, func() []string) {
	t.Helper()
	tc := testutil.SelfSigned(t)
	certFile, keyFile := tc.CertFile, tc.KeyFile
	srv, err := ServerTLS(certFile, keyFile)
	if err != nil {
		t.Fatal(err)
	}
	var mu sync.Mutex
	var reasons []string
	logger, hook := logtest.NewNullLogger()
	l := mustListen(t, ListenConfig{TLS: srv, MaxConns: 8, HandshakeTimeout: timeout, Log: logrus.NewEntry(logger),
		OnHandshakeFailure: func(reason string) { mu.Lock(); reasons = append(reasons, reason); mu.Unlock() }})
	go func() {
		for {
			c, err := l.Accept()
			if err != nil {
				return
			}
			go func() { defer c.Close(); c.Write([]byte("hi\n")); c.Read(make([]byte, 1)) }()
		}
	}()
	pem, _ := os.ReadFile(certFile)
	pool := x509.NewCertPool()
	pool.AppendCertsFromPEM(pem)
	return l, &tls.Config{RootCAs: pool, ServerName: "localhost"}, hook, func() []string {
		mu.Lock()
		defer mu.Unlock()
		return slices.Clone(reasons)
	}
}

// A peer that connects and never sends a ClientHello is closed after the handshake timeout, logged and
// reported; it does not hold up a well-behaved client meanwhile.
func TestListenTLSHandshakeTimeout(t *testing.T) {
	l, cli, hook, reasons := tlsListener(t, 200*time.Millisecond)
	silent, err := net.Dial("tcp", l.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	defer silent.Close()

	good, err := tls.Dial("tcp", l.Addr().String(), cli)
	if err != nil {
		t.Fatal(err)
	}
	defer good.Close()
	buf := make([]byte, 3)
	if _, err := good.Read(buf); err != nil || string(buf) != "hi\n" {
		t.Fatalf("good client: %q %v", buf, err)
	}

	expectClosed(t, silent, "")
	testutil.WaitFor(t, "the timeout to be reported", func() bool { return slices.Equal(reasons(), []string{HandshakeTimedOut}) })
	testutil.WaitFor(t, "the log line", func() bool {
		for _, e := range hook.AllEntries() {
			if e.Message == "TLS handshake failed; connection closed" && e.Data["reason"] == HandshakeTimedOut &&
				e.Data["remote"] == silent.LocalAddr().String() {
				return true
			}
		}
		return false
	})
}

// TLS 1.2 offers AEAD suites with ECDHE only: a client that offers only CBC-SHA1 suites fails the
// handshake (reported as failed), one that offers GCM succeeds, and TLS 1.3 works as Go does it.
func TestListenTLSModernSuitesOnly(t *testing.T) {
	l, cli, _, reasons := tlsListener(t, 0)
	cbc := cli.Clone()
	cbc.MaxVersion = tls.VersionTLS12
	cbc.CipherSuites = []uint16{tls.TLS_ECDHE_ECDSA_WITH_AES_128_CBC_SHA, tls.TLS_ECDHE_ECDSA_WITH_AES_256_CBC_SHA,
		tls.TLS_ECDHE_RSA_WITH_AES_128_CBC_SHA, tls.TLS_ECDHE_RSA_WITH_AES_256_CBC_SHA}
	if c, err := tls.Dial("tcp", l.Addr().String(), cbc); err == nil {
		c.Close()
		t.Fatalf("a client offering only CBC-SHA1 suites completed the handshake (%s)",
			tls.CipherSuiteName(c.ConnectionState().CipherSuite))
	}
	testutil.WaitFor(t, "the failure to be reported", func() bool { return slices.Equal(reasons(), []string{HandshakeFailed}) })

	gcm := cli.Clone()
	gcm.MaxVersion = tls.VersionTLS12
	c, err := tls.Dial("tcp", l.Addr().String(), gcm)
	if err != nil {
		t.Fatalf("TLS 1.2 with the default client suites: %v", err)
	}
	st := c.ConnectionState()
	c.Close()
	if !slices.Contains(ModernCipherSuites(), st.CipherSuite) {
		t.Fatalf("negotiated %s", tls.CipherSuiteName(st.CipherSuite))
	}
	c13, err := tls.Dial("tcp", l.Addr().String(), cli)
	if err != nil {
		t.Fatal(err)
	}
	defer c13.Close()
	if v := c13.ConnectionState().Version; v != tls.VersionTLS13 {
		t.Fatalf("negotiated version %x, want TLS 1.3", v)
	}
}

// A config built without ServerTLS still gets the modern suites from Listen.
func TestListenAppliesModernSuites(t *testing.T) {
	tc := testutil.SelfSigned(t)
	certFile, keyFile := tc.CertFile, tc.KeyFile
	cert, err := tls.LoadX509KeyPair(certFile, keyFile)
	if err != nil {
		t.Fatal(err)
	}
	l := mustListen(t, ListenConfig{TLS: &tls.Config{Certificates: []tls.Certificate{cert}}})
	if got := l.(*listener).cfg.TLS; got.MinVersion != tls.VersionTLS12 || !slices.Equal(got.CipherSuites, ModernCipherSuites()) {
		t.Fatalf("listener TLS: min %x suites %v", got.MinVersion, got.CipherSuites)
	}
}

// Refused peers being told why hold descriptors: at most maxRefusing at a time; the rest are closed at
// once. Every refusal is reported to OnRefused.
func TestListenRefusalsBounded(t *testing.T) {
	release := make(chan struct{})
	var mu sync.Mutex
	inFlight, most, refused := 0, 0, 0
	l := mustListen(t, ListenConfig{MaxConns: 1,
		OnRefused: func(string) { mu.Lock(); refused++; mu.Unlock() },
		OnRefuse: func(c net.Conn, reason string) {
			mu.Lock()
			inFlight++
			most = max(most, inFlight)
			mu.Unlock()
			<-release
			mu.Lock()
			inFlight--
			mu.Unlock()
		}})
	acc := acceptOne(t, l)
	first, err := net.Dial("tcp", l.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	defer first.Close()
	admitted := <-acc
	defer admitted.Close()
	const flood = 3 * maxRefusing
	var conns []net.Conn
	for i := 0; i < flood; i++ {
		c, err := net.Dial("tcp", l.Addr().String())
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		conns = append(conns, c)
	}
	testutil.WaitFor(t, "every refusal to be reported", func() bool { mu.Lock(); defer mu.Unlock(); return refused == flood })
	// The ones past maxRefusing were closed without waiting for OnRefuse.
	var wg sync.WaitGroup
	var closedN atomic.Int64
	for _, c := range conns {
		wg.Add(1)
		go func() {
			defer wg.Done()
			c.SetReadDeadline(time.Now().Add(2 * time.Second)) // the held ones time out
			if _, err := c.Read(make([]byte, 1)); err != nil && !errors.Is(err, os.ErrDeadlineExceeded) {
				closedN.Add(1)
			}
		}()
	}
	wg.Wait()
	closed := int(closedN.Load())
	close(release)
	mu.Lock()
	defer mu.Unlock()
	if most != maxRefusing || closed != flood-maxRefusing {
		t.Fatalf("%d refusals told at once (want %d), %d closed at once (want %d)", most, maxRefusing, closed, flood-maxRefusing)
	}
}
