package relay_test

import (
	"crypto/tls"
	"strings"
	"testing"
	"time"

	"github.com/switchboard/switchboard/engine/relay"
	"github.com/switchboard/switchboard/engine/relay/relaytest"
	"github.com/switchboard/switchboard/internal/testutil"
)

func TestTLSListenerAndCenter(t *testing.T) {
	tc := testutil.SelfSigned(t)
	certFile, keyFile, pool, cert := tc.CertFile, tc.KeyFile, tc.Pool, tc.TLS
	center, err := relaytest.NewCenterTLS("127.0.0.1:0", &tls.Config{Certificates: []tls.Certificate{cert}})
	if err != nil {
		t.Fatal(err)
	}
	defer center.Close()
	g := start(t, "", func(c *relay.Config) {
		c.TLS.Cert, c.TLS.Key = certFile, keyFile
		c.Centers = map[string]string{"secure": "tls://" + center.Addr()}
		c.CenterCA = certFile
	})
	if err := center.WaitLogin(1, 5*time.Second); err != nil {
		t.Fatal(err)
	}
	app, err := relaytest.DialTLS(g.addr, &tls.Config{RootCAs: pool, ServerName: "127.0.0.1"}, "tls-app", "")
	if err != nil {
		t.Fatal(err)
	}
	defer app.Close()
	app.Send('O', `T="x"|I="1"`)
	expectStatus(t, app, 1, 0, "OK")
	if err := center.WaitCount(1, 5*time.Second); err != nil {
		t.Fatal(err)
	}
	if got := center.Bodies(); len(got) != 1 || got[0] != `O|T="x"|I="1"` {
		t.Fatalf("center got %q", got)
	}
	// a plaintext client gets nothing useful from the TLS listener
	if c, err := relaytest.Dial(g.addr, "plain", ""); err == nil {
		c.Close()
		t.Fatal("plaintext login succeeded on a TLS listener")
	}
}

// TestPerCenterClientCertificates (issue 15 item 8): each center gets its own client certificate and CA
// (3forge's ami.center.<name>.keystore.*). Two centers that require a client certificate, each trusting
// only its own; no relay.center_ca and no tls:// prefix: relay.center_tls alone makes the links TLS.
func TestPerCenterClientCertificates(t *testing.T) {
	type side struct {
		cert, key string
		center    *relaytest.Center
	}
	sides := map[string]*side{}
	for _, name := range []string{"alpha", "beta"} {
		tc := testutil.SelfSigned(t)
		certFile, keyFile, pool, cert := tc.CertFile, tc.KeyFile, tc.Pool, tc.TLS
		c, err := relaytest.NewCenterTLS("127.0.0.1:0", &tls.Config{Certificates: []tls.Certificate{cert},
			ClientAuth: tls.RequireAndVerifyClientCert, ClientCAs: pool})
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		sides[name] = &side{cert: certFile, key: keyFile, center: c}
	}
	g := start(t, "", func(c *relay.Config) {
		c.Centers = relay.Centers{"alpha": sides["alpha"].center.Addr(), "beta": sides["beta"].center.Addr()}
		c.CenterTLS = map[string]relay.CenterTLSConfig{}
		for name, s := range sides {
			c.CenterTLS[name] = relay.CenterTLSConfig{Cert: s.cert, Key: s.key, CA: s.cert}
		}
	})
	for name, s := range sides {
		if err := s.center.WaitLogin(1, 5*time.Second); err != nil {
			t.Fatalf("%s: %v", name, err)
		}
	}
	app := dial(t, g, "app", "")
	app.Send('O', `T="x"|I="1"`)
	expectStatus(t, app, 1, 0, "OK")
	for name, s := range sides {
		if err := s.center.WaitCount(1, 5*time.Second); err != nil {
			t.Fatalf("%s: %v", name, err)
		}
	}
	// a client certificate that cannot be read stops the relay from being built, naming the center
	_, err := relay.New(func() relay.Config {
		c := relay.DefaultConfig()
		c.Centers = relay.Centers{"alpha": "127.0.0.1:1"}
		c.CenterTLS = map[string]relay.CenterTLSConfig{"alpha": {Cert: "/nonexistent.pem", Key: "/nonexistent.key"}}
		c.RoutesFile = ""
		return c
	}(), relay.Options{})
	if err == nil || !strings.Contains(err.Error(), "relay: center alpha: tls: client certificate /nonexistent.pem") {
		t.Fatalf("unreadable client certificate: %v", err)
	}
}
