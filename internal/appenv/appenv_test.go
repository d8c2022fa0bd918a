package appenv

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"fmt"
	"io"
	"log/slog"
	"math/big"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/spf13/pflag"
	"go.temporal.io/sdk/client"
)

// connEnv are the environment variables of the connection settings.
var connEnv = []string{"MHA_TEMPORAL_TLS", "MHA_TEMPORAL_TLS_CA", "MHA_TEMPORAL_TLS_CERT", "MHA_TEMPORAL_TLS_KEY",
	"MHA_TEMPORAL_TLS_SERVER_NAME", APIKeyEnv, "MHA_TEMPORAL_ADDRESS", "MHA_NAMESPACE", "MHA_GRPC_COMPRESSION"}

// parse registers the common flags with env set (and every other connection variable
// cleared) and parses args.
func parse(t *testing.T, env map[string]string, args ...string) (*Common, *pflag.FlagSet) {
	t.Helper()
	for _, name := range connEnv {
		t.Setenv(name, env[name])
	}
	var c Common
	fs := pflag.NewFlagSet("test", pflag.ContinueOnError)
	fs.SetOutput(io.Discard)
	c.Register(fs)
	if err := fs.Parse(args); err != nil {
		t.Fatal(err)
	}
	return &c, fs
}

func options(t *testing.T, c *Common) client.Options {
	t.Helper()
	opts, err := c.ClientOptions(client.Options{})
	if err != nil {
		t.Fatal(err)
	}
	return opts
}

// apiKeyOf is the key the credentials send, read through the SDK's callback (an SDK detail:
// reported as unknown when its shape changes).
func apiKeyOf(t *testing.T, cred client.Credentials) (string, bool) {
	t.Helper()
	v := reflect.ValueOf(cred)
	if v.Kind() != reflect.Func || v.Type().NumIn() != 1 || v.Type().NumOut() != 2 {
		return "", false
	}
	out := v.Call([]reflect.Value{reflect.ValueOf(context.Background())})
	key, ok := out[0].Interface().(string)
	return key, ok
}

func TestAPlainConnectionByDefault(t *testing.T) {
	c, _ := parse(t, nil, "--temporal-address", "temporal:7233", "--namespace", "ns")
	opts := options(t, c)
	if opts.HostPort != "temporal:7233" || opts.Namespace != "ns" || opts.ConnectionOptions.TLS != nil || opts.Credentials != nil {
		t.Fatalf("options %+v; want the address and namespace, no TLS, no credentials", opts)
	}
}

func TestGRPCCompressionIsOffUnlessAskedFor(t *testing.T) {
	c, _ := parse(t, nil)
	if _, ok := options(t, c).ConnectionOptions.GrpcCompression.(*client.GrpcCompressionNone); !ok {
		t.Fatalf("default compression %T; want none", options(t, c).ConnectionOptions.GrpcCompression)
	}
	c, _ = parse(t, map[string]string{"MHA_GRPC_COMPRESSION": "gzip"})
	if _, ok := options(t, c).ConnectionOptions.GrpcCompression.(*client.GrpcCompressionGzip); !ok {
		t.Fatalf("MHA_GRPC_COMPRESSION=gzip gave %T; want gzip", options(t, c).ConnectionOptions.GrpcCompression)
	}
	c, _ = parse(t, nil, "--grpc-compression", "brotli")
	if _, err := c.ClientOptions(client.Options{}); err == nil || !strings.Contains(err.Error(), "--grpc-compression") || !strings.Contains(err.Error(), "brotli") {
		t.Fatalf("--grpc-compression brotli: error %v; want one naming the flag and the value", err)
	}
}

func TestTLSWithTheSystemRoots(t *testing.T) {
	for _, c := range []*Common{
		func() *Common { c, _ := parse(t, nil, "--tls"); return c }(),
		func() *Common { c, _ := parse(t, map[string]string{"MHA_TEMPORAL_TLS": "true"}); return c }(),
		func() *Common { c, _ := parse(t, nil, "--tls-server-name", "temporal.internal"); return c }(),
	} {
		cfg := options(t, c).ConnectionOptions.TLS
		if cfg == nil || cfg.RootCAs != nil || len(cfg.Certificates) != 0 || cfg.MinVersion != tls.VersionTLS12 {
			t.Fatalf("TLS config %+v; want TLS 1.2+ with the system roots and no client certificate", cfg)
		}
		if cfg.ServerName != c.TLSServerName {
			t.Fatalf("server name %q, want %q", cfg.ServerName, c.TLSServerName)
		}
	}
	c, _ := parse(t, map[string]string{"MHA_TEMPORAL_TLS": "yes please"})
	if _, err := c.ClientOptions(client.Options{}); err == nil || !strings.Contains(err.Error(), "MHA_TEMPORAL_TLS") {
		t.Fatalf("a malformed MHA_TEMPORAL_TLS: err = %v; want it named", err)
	}
}

func TestAnAPIKeyImpliesTLSAndNeverShows(t *testing.T) {
	const key = "tcld-secret-api-key-0123456789"
	c, fs := parse(t, map[string]string{APIKeyEnv: key})
	opts := options(t, c)
	if opts.Credentials == nil || opts.ConnectionOptions.TLS == nil {
		t.Fatalf("options %+v; want API key credentials over TLS", opts)
	}
	if got, ok := apiKeyOf(t, opts.Credentials); ok && got != key {
		t.Fatalf("credentials send %q; want the key from %s", got, APIKeyEnv)
	}
	if usage := fs.FlagUsages(); strings.Contains(usage, key) || !strings.Contains(usage, "--api-key") {
		t.Fatalf("usage shows the key or lacks --api-key:\n%s", usage)
	}

	c, fs = parse(t, map[string]string{APIKeyEnv: key}, "--api-key", "flag-key-9876543210")
	opts = options(t, c)
	if got, ok := apiKeyOf(t, opts.Credentials); ok && got != "flag-key-9876543210" {
		t.Fatalf("credentials send %q; want the key of --api-key over the environment's", got)
	}
	for _, shown := range []string{fmt.Sprintf("%+v", *c), fmt.Sprintf("%#v", *c), fs.Lookup("api-key").Value.String(), fs.FlagUsages()} {
		if strings.Contains(shown, "flag-key") {
			t.Fatalf("the key shows: %s", shown)
		}
	}
	var logged strings.Builder
	logger := slog.New(slog.NewTextHandler(&logged, &slog.HandlerOptions{Level: slog.LevelDebug}))
	c.TemporalAddress = "127.0.0.1:1" // nothing listens: the dial fails at once
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Second)
	defer cancel()
	if _, err := c.Dial(ctx, logger, client.Options{}); err == nil || strings.Contains(err.Error(), "flag-key") || !strings.Contains(err.Error(), "TLS") {
		t.Fatalf("dial error %v; want a TLS hint without the key", err)
	}
	if strings.Contains(logged.String(), "flag-key") || !strings.Contains(logged.String(), "api_key=true") {
		t.Fatalf("log shows the key, or not that one is used:\n%s", logged.String())
	}
}

func TestBadTLSSettingsAreNamed(t *testing.T) {
	dir := t.TempDir()
	pki := newPKI(t, dir)
	garbage := filepath.Join(dir, "garbage.pem")
	if err := os.WriteFile(garbage, []byte("not a certificate"), 0o600); err != nil {
		t.Fatal(err)
	}
	missing := filepath.Join(dir, "missing.pem")
	for _, c := range []struct {
		args []string
		want []string
	}{
		{[]string{"--tls-cert", pki.clientCert}, []string{"--tls-cert", "--tls-key"}},
		{[]string{"--tls-key", pki.clientKey}, []string{"--tls-cert", "--tls-key"}},
		{[]string{"--tls-ca", missing}, []string{"--tls-ca", missing}},
		{[]string{"--tls-ca", garbage}, []string{"--tls-ca", garbage, "no PEM certificate"}},
		{[]string{"--tls-cert", missing, "--tls-key", pki.clientKey}, []string{"--tls-cert", missing}},
		{[]string{"--tls-cert", pki.clientCert, "--tls-key", missing}, []string{"--tls-key", missing}},
		{[]string{"--tls-cert", pki.clientCert, "--tls-key", pki.serverKey}, []string{"--tls-cert", "--tls-key", pki.clientCert, pki.serverKey}},
	} {
		cm, _ := parse(t, nil, c.args...)
		_, err := cm.ClientOptions(client.Options{})
		if err == nil {
			t.Errorf("%v: no error", c.args)
			continue
		}
		for _, w := range c.want {
			if !strings.Contains(err.Error(), w) {
				t.Errorf("%v: error %q does not name %q", c.args, err, w)
			}
		}
		// Dial reports the same problem before connecting anywhere.
		if _, derr := cm.Dial(context.Background(), slog.New(slog.NewTextHandler(io.Discard, nil)), client.Options{}); derr == nil || derr.Error() != err.Error() {
			t.Errorf("%v: Dial error %v; want %v", c.args, derr, err)
		}
	}
}

// TestMTLSConfigLoadsAndHandshakes checks the config built from a CA, a client certificate
// and a server name against a TLS listener that requires a client certificate of that CA.
func TestMTLSConfigLoadsAndHandshakes(t *testing.T) {
	dir := t.TempDir()
	pki := newPKI(t, dir)
	c, _ := parse(t, map[string]string{"MHA_TEMPORAL_TLS_CA": pki.caCert, "MHA_TEMPORAL_TLS_SERVER_NAME": "temporal.example"},
		"--tls-cert", pki.clientCert, "--tls-key", pki.clientKey)
	cfg := options(t, c).ConnectionOptions.TLS
	if cfg == nil || cfg.RootCAs == nil || len(cfg.Certificates) != 1 || cfg.ServerName != "temporal.example" {
		t.Fatalf("TLS config %+v; want the CA, the client certificate and the server name", cfg)
	}

	serverCert, err := tls.LoadX509KeyPair(pki.serverCert, pki.serverKey)
	if err != nil {
		t.Fatal(err)
	}
	ln, err := tls.Listen("tcp", "127.0.0.1:0", &tls.Config{Certificates: []tls.Certificate{serverCert}, ClientCAs: cfg.RootCAs,
		ClientAuth: tls.RequireAndVerifyClientCert, MinVersion: tls.VersionTLS12})
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	accepted := make(chan error, 1)
	go func() {
		conn, err := ln.Accept()
		if err != nil {
			accepted <- err
			return
		}
		defer conn.Close()
		accepted <- conn.(*tls.Conn).Handshake()
	}()
	conn, err := tls.Dial("tcp", ln.Addr().String(), cfg)
	if err != nil {
		t.Fatalf("handshake with the config: %v", err)
	}
	conn.Close()
	if err := <-accepted; err != nil {
		t.Fatalf("the server refused the client certificate: %v", err)
	}

	// The same CA with another server name does not verify.
	other := cfg.Clone()
	other.ServerName = "elsewhere.example"
	go func() {
		if conn, err := ln.Accept(); err == nil {
			_ = conn.(*tls.Conn).Handshake()
			conn.Close()
		}
	}()
	if conn, err := tls.Dial("tcp", ln.Addr().String(), other); err == nil {
		conn.Close()
		t.Fatal("a certificate for temporal.example verified as elsewhere.example")
	}
}

// pki is a CA and a server and a client certificate it signed, as PEM files.
type pki struct {
	caCert, serverCert, serverKey, clientCert, clientKey string
}

func newPKI(t *testing.T, dir string) pki {
	t.Helper()
	caKey := newKey(t)
	ca := &x509.Certificate{SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "test CA"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour),
		IsCA: true, BasicConstraintsValid: true, KeyUsage: x509.KeyUsageCertSign | x509.KeyUsageDigitalSignature}
	caDER, err := x509.CreateCertificate(rand.Reader, ca, ca, &caKey.PublicKey, caKey)
	if err != nil {
		t.Fatal(err)
	}
	if ca, err = x509.ParseCertificate(caDER); err != nil {
		t.Fatal(err)
	}
	p := pki{caCert: writePEM(t, dir, "ca.pem", "CERTIFICATE", caDER)}
	leaf := func(name string, serial int64, usage x509.ExtKeyUsage, dns []string) (string, string) {
		key := newKey(t)
		tmpl := &x509.Certificate{SerialNumber: big.NewInt(serial), Subject: pkix.Name{CommonName: name}, DNSNames: dns,
			NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour),
			KeyUsage: x509.KeyUsageDigitalSignature, ExtKeyUsage: []x509.ExtKeyUsage{usage}}
		der, err := x509.CreateCertificate(rand.Reader, tmpl, ca, &key.PublicKey, caKey)
		if err != nil {
			t.Fatal(err)
		}
		keyDER, err := x509.MarshalPKCS8PrivateKey(key)
		if err != nil {
			t.Fatal(err)
		}
		return writePEM(t, dir, name+".pem", "CERTIFICATE", der), writePEM(t, dir, name+"-key.pem", "PRIVATE KEY", keyDER)
	}
	p.serverCert, p.serverKey = leaf("server", 2, x509.ExtKeyUsageServerAuth, []string{"temporal.example"})
	p.clientCert, p.clientKey = leaf("client", 3, x509.ExtKeyUsageClientAuth, nil)
	return p
}

func newKey(t *testing.T) *ecdsa.PrivateKey {
	t.Helper()
	k, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	return k
}

func writePEM(t *testing.T, dir, name, typ string, der []byte) string {
	t.Helper()
	path := filepath.Join(dir, name)
	if err := os.WriteFile(path, pem.EncodeToMemory(&pem.Block{Type: typ, Bytes: der}), 0o600); err != nil {
		t.Fatal(err)
	}
	return path
}

func TestDBForLogsMasksAPassword(t *testing.T) {
	for dsn, want := range map[string]string{
		"postgres://mha:s3cret@db:5432/mha?sslmode=disable": "postgres://mha:xxxxx@db:5432/mha?sslmode=disable",
		"postgres://mha@db/mha":                             "postgres://mha@db/mha",
		"data/mha.db":                                       "data/mha.db",
	} {
		c := Common{DB: dsn}
		if got := c.DBForLogs(); got != want || strings.Contains(got, "s3cret") {
			t.Errorf("DBForLogs(%q) = %q, want %q", dsn, got, want)
		}
	}
}
