package relay_test

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"math/big"
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/switchboard/switchboard/engine/relay"
	"github.com/switchboard/switchboard/engine/relay/relaytest"
)

// selfSigned writes a CA-less self-signed certificate for 127.0.0.1 and returns its files and pool.
func selfSigned(t *testing.T) (certFile, keyFile string, pool *x509.CertPool, cert tls.Certificate) {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "127.0.0.1"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour),
		IPAddresses: []net.IP{net.ParseIP("127.0.0.1")}, IsCA: true, BasicConstraintsValid: true,
		KeyUsage: x509.KeyUsageDigitalSignature | x509.KeyUsageCertSign, ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth, x509.ExtKeyUsageClientAuth}}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	kder, _ := x509.MarshalECPrivateKey(key)
	dir := t.TempDir()
	certFile, keyFile = filepath.Join(dir, "cert.pem"), filepath.Join(dir, "key.pem")
	certPEM := pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der})
	keyPEM := pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: kder})
	os.WriteFile(certFile, certPEM, 0o600)
	os.WriteFile(keyFile, keyPEM, 0o600)
	pool = x509.NewCertPool()
	pool.AppendCertsFromPEM(certPEM)
	cert, err = tls.X509KeyPair(certPEM, keyPEM)
	if err != nil {
		t.Fatal(err)
	}
	return certFile, keyFile, pool, cert
}

func TestTLSListenerAndCenter(t *testing.T) {
	certFile, keyFile, pool, cert := selfSigned(t)
	center, err := relaytest.NewCenterTLS("127.0.0.1:0", &tls.Config{Certificates: []tls.Certificate{cert}})
	if err != nil {
		t.Fatal(err)
	}
	defer center.Close()
	g := start(t, "", func(c *relay.Config) {
		c.TLS = relay.TLSConfig{Cert: certFile, Key: keyFile}
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
		certFile, keyFile, pool, cert := selfSigned(t)
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
	_, err := relay.New(relay.Options{Config: func() relay.Config {
		c := relay.DefaultConfig()
		c.Centers = relay.Centers{"alpha": "127.0.0.1:1"}
		c.CenterTLS = map[string]relay.CenterTLSConfig{"alpha": {Cert: "/nonexistent.pem", Key: "/nonexistent.key"}}
		c.RoutesFile = ""
		return c
	}()})
	if err == nil || !strings.Contains(err.Error(), "relay: center alpha: tls: client certificate /nonexistent.pem") {
		t.Fatalf("unreadable client certificate: %v", err)
	}
}
