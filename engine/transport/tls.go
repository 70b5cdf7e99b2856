package transport

import (
	"crypto/tls"
	"crypto/x509"
	"fmt"
	"os"
)

// ModernCipherSuites are the TLS 1.2 suites a listener offers: forward-secret
// key exchange (ECDHE) with an AEAD cipher (AES-GCM, ChaCha20-Poly1305). The
// CBC suites with SHA-1 MACs that Go still enables by default are left out.
// TLS 1.3 suites are not configurable in Go, and all of them are modern.
func ModernCipherSuites() []uint16 {
	return []uint16{
		tls.TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256,
		tls.TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256,
		tls.TLS_ECDHE_ECDSA_WITH_AES_256_GCM_SHA384,
		tls.TLS_ECDHE_RSA_WITH_AES_256_GCM_SHA384,
		tls.TLS_ECDHE_ECDSA_WITH_CHACHA20_POLY1305_SHA256,
		tls.TLS_ECDHE_RSA_WITH_CHACHA20_POLY1305_SHA256,
	}
}

// ServerTLS loads a certificate/key pair (PEM files) into a server config that
// accepts TLS 1.3, and TLS 1.2 with ModernCipherSuites only.
func ServerTLS(certFile, keyFile string) (*tls.Config, error) {
	cert, err := tls.LoadX509KeyPair(certFile, keyFile)
	if err != nil {
		return nil, fmt.Errorf("load key pair %s, %s: %w", certFile, keyFile, err)
	}
	return &tls.Config{
		Certificates: []tls.Certificate{cert},
		MinVersion:   tls.VersionTLS12,
		CipherSuites: ModernCipherSuites(),
	}, nil
}

// ClientTLS returns a client config for serverName (may be "": the dialer then
// uses the host of its address). caFile "" trusts the system roots; otherwise
// only the PEM certificates in caFile are trusted.
func ClientTLS(serverName, caFile string) (*tls.Config, error) {
	cfg := &tls.Config{ServerName: serverName, MinVersion: tls.VersionTLS12}
	if caFile == "" {
		return cfg, nil
	}
	pem, err := os.ReadFile(caFile)
	if err != nil {
		return nil, fmt.Errorf("read ca file: %w", err)
	}
	pool := x509.NewCertPool()
	if !pool.AppendCertsFromPEM(pem) {
		return nil, fmt.Errorf("ca file %s: no PEM certificate found", caFile)
	}
	cfg.RootCAs = pool
	return cfg, nil
}
