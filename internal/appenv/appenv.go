// Package appenv holds what every binary shares: the common flags with their MHA_*
// environment defaults, the logger, and opening the config, the store and a Temporal client.
package appenv

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/url"
	"os"
	"strconv"
	"strings"
	"time"

	"github.com/spf13/pflag"
	"go.temporal.io/sdk/client"
	tlog "go.temporal.io/sdk/log"

	"github.com/mhannotator/mha/internal/config"
	"github.com/mhannotator/mha/internal/contract"
	"github.com/mhannotator/mha/internal/store"
)

// Common are the settings of DESIGN's "Interfaces": every binary takes them as flags, and the
// same names as MHA_* environment variables.
type Common struct {
	ConfigDir       string
	KeysFile        string
	DB              string
	TemporalAddress string
	Namespace       string
	TaskQueue       string
	LogLevel        string
	LogFormat       string

	// The connection to a real cluster: TLS (implied by any of the TLS settings and by an
	// API key), a CA instead of the system's, a client certificate for mTLS, the name the
	// server's certificate is checked against, and a Temporal Cloud API key.
	TLS           bool
	TLSCA         string
	TLSCert       string
	TLSKey        string
	TLSServerName string
	// APIKey is --api-key; without it, Dial takes MHA_TEMPORAL_API_KEY, so the key never
	// shows as a flag default. It is never logged.
	APIKey config.Secret
	// Compression is the compression of requests to Temporal: none (the default: a worker's
	// requests are small heartbeats and task results, which gzip makes cost CPU on both
	// ends and saves little) or gzip (for a server far away).
	Compression string

	envErr error // a malformed environment default, reported by ClientOptions
}

// APIKeyEnv is the environment variable of the Temporal API key.
const APIKeyEnv = "MHA_TEMPORAL_API_KEY"

// Register adds the common flags to fs, with defaults taken from the environment.
func (c *Common) Register(fs *pflag.FlagSet) {
	fs.StringVar(&c.ConfigDir, "config", env("MHA_CONFIG", config.DefaultDir), "config directory (settings.json, api_keys.json, prompts/) [MHA_CONFIG]")
	fs.StringVar(&c.KeysFile, "keys-file", env("MHA_KEYS_FILE", ""), "API keys file (a JSON object such as {\"annotator_1\": \"...\"}), for keys kept apart from the config, as a mounted secret; empty = api_keys.json in --config [MHA_KEYS_FILE]")
	fs.StringVar(&c.DB, "db", env("MHA_DB", store.DefaultDSN), "store DSN: an SQLite file path or sqlite:PATH, or a PostgreSQL URL postgres://user@host:5432/db (optional ?search_path=schema) [MHA_DB]")
	fs.StringVar(&c.TemporalAddress, "temporal-address", env("MHA_TEMPORAL_ADDRESS", "127.0.0.1:7233"), "Temporal frontend host:port [MHA_TEMPORAL_ADDRESS]")
	fs.StringVar(&c.Namespace, "namespace", env("MHA_NAMESPACE", "default"), "Temporal namespace [MHA_NAMESPACE]")
	fs.StringVar(&c.TaskQueue, "task-queue", env("MHA_TASK_QUEUE", contract.TaskQueue), "Temporal task queue [MHA_TASK_QUEUE]")
	fs.StringVar(&c.LogLevel, "log-level", env("MHA_LOG_LEVEL", "info"), "log level: debug, info, warn, error [MHA_LOG_LEVEL]")
	fs.StringVar(&c.LogFormat, "log-format", env("MHA_LOG_FORMAT", "text"), "log format: text or json [MHA_LOG_FORMAT]")
	tlsOn := false
	if v := env("MHA_TEMPORAL_TLS", ""); v != "" {
		var err error
		if tlsOn, err = strconv.ParseBool(v); err != nil {
			c.envErr = fmt.Errorf("MHA_TEMPORAL_TLS=%q: want true or false", v)
		}
	}
	fs.BoolVar(&c.TLS, "tls", tlsOn, "connect to Temporal over TLS, trusting the system's CAs; implied by the other --tls-* flags and by an API key [MHA_TEMPORAL_TLS]")
	fs.StringVar(&c.Compression, "grpc-compression", env("MHA_GRPC_COMPRESSION", "none"), "compression of requests to Temporal: none or gzip (worth it only for a distant server) [MHA_GRPC_COMPRESSION]")
	fs.StringVar(&c.TLSCA, "tls-ca", env("MHA_TEMPORAL_TLS_CA", ""), "PEM file of the CA certificates the Temporal server's certificate is checked against, instead of the system's [MHA_TEMPORAL_TLS_CA]")
	fs.StringVar(&c.TLSCert, "tls-cert", env("MHA_TEMPORAL_TLS_CERT", ""), "PEM file of the client certificate for mTLS (Temporal Cloud mTLS), with --tls-key [MHA_TEMPORAL_TLS_CERT]")
	fs.StringVar(&c.TLSKey, "tls-key", env("MHA_TEMPORAL_TLS_KEY", ""), "PEM file of the private key of --tls-cert [MHA_TEMPORAL_TLS_KEY]")
	fs.StringVar(&c.TLSServerName, "tls-server-name", env("MHA_TEMPORAL_TLS_SERVER_NAME", ""), "name the Temporal server's certificate must carry, when not the host of --temporal-address [MHA_TEMPORAL_TLS_SERVER_NAME]")
	fs.Var((*secretFlag)(&c.APIKey), "api-key", "Temporal Cloud API key, sent over TLS; prefer the environment variable, which ps does not show [MHA_TEMPORAL_API_KEY]")
}

// secretFlag is a flag holding a secret: its value never shows in usage or errors.
type secretFlag config.Secret

func (s *secretFlag) String() string     { return "" }
func (s *secretFlag) Type() string       { return "string" }
func (s *secretFlag) Set(v string) error { *s = secretFlag(strings.TrimSpace(v)); return nil }

func env(name, fallback string) string {
	if v, ok := os.LookupEnv(name); ok && v != "" {
		return v
	}
	return fallback
}

// Logger builds the slog logger the flags ask for.
func (c *Common) Logger(w io.Writer) (*slog.Logger, error) {
	var level slog.Level
	if err := level.UnmarshalText([]byte(c.LogLevel)); err != nil {
		return nil, fmt.Errorf("--log-level %q: want debug, info, warn or error", c.LogLevel)
	}
	opts := &slog.HandlerOptions{Level: level}
	switch strings.ToLower(c.LogFormat) {
	case "text":
		return slog.New(slog.NewTextHandler(w, opts)), nil
	case "json":
		return slog.New(slog.NewJSONHandler(w, opts)), nil
	}
	return nil, fmt.Errorf("--log-format %q: want text or json", c.LogFormat)
}

// LoadConfig loads and validates the config directory.
func (c *Common) LoadConfig() (*config.Config, error) {
	return config.Load(config.Options{Dir: c.ConfigDir, Keys: c.KeysFile})
}

// DBForLogs is --db as logs may show it: a URL's password is masked.
func (c *Common) DBForLogs() string {
	if u, err := url.Parse(c.DB); err == nil && u.User != nil {
		return u.Redacted()
	}
	return c.DB
}

// OpenStore opens the store the --db flag names.
func (c *Common) OpenStore(ctx context.Context) (store.Store, error) {
	return store.Open(ctx, c.DB)
}

// ClientOptions fills opts with the address, the namespace and the connection settings of
// the flags: TLS with the CA, client certificate and server name asked for, and the API key
// (--api-key, else MHA_TEMPORAL_API_KEY) as credentials.
func (c *Common) ClientOptions(opts client.Options) (client.Options, error) {
	if c.envErr != nil {
		return opts, c.envErr
	}
	opts.HostPort = c.TemporalAddress
	opts.Namespace = c.Namespace
	switch c.Compression {
	case "", "none":
		opts.ConnectionOptions.GrpcCompression = &client.GrpcCompressionNone{}
	case "gzip":
		opts.ConnectionOptions.GrpcCompression = &client.GrpcCompressionGzip{}
	default:
		return opts, fmt.Errorf("--grpc-compression (MHA_GRPC_COMPRESSION) %q: want none or gzip", c.Compression)
	}
	key := c.APIKey
	if key == "" {
		key = config.Secret(strings.TrimSpace(os.Getenv(APIKeyEnv)))
	}
	tlsCfg, err := c.tlsConfig(key != "")
	if err != nil {
		return opts, err
	}
	if tlsCfg != nil {
		opts.ConnectionOptions.TLS = tlsCfg
	}
	if key != "" {
		opts.Credentials = client.NewAPIKeyStaticCredentials(key.Reveal())
	}
	return opts, nil
}

// tlsConfig is the TLS configuration the flags ask for, nil for a plain connection.
func (c *Common) tlsConfig(apiKey bool) (*tls.Config, error) {
	if (c.TLSCert == "") != (c.TLSKey == "") {
		return nil, errors.New("--tls-cert and --tls-key (MHA_TEMPORAL_TLS_CERT, MHA_TEMPORAL_TLS_KEY) go together: give both for mTLS, or neither")
	}
	if !c.TLS && !apiKey && c.TLSCA == "" && c.TLSCert == "" && c.TLSServerName == "" {
		return nil, nil
	}
	cfg := &tls.Config{MinVersion: tls.VersionTLS12, ServerName: c.TLSServerName}
	if c.TLSCA != "" {
		b, err := os.ReadFile(c.TLSCA)
		if err != nil {
			return nil, fmt.Errorf("--tls-ca: %w", err)
		}
		pool := x509.NewCertPool()
		if !pool.AppendCertsFromPEM(b) {
			return nil, fmt.Errorf("--tls-ca %s: no PEM certificate in the file", c.TLSCA)
		}
		cfg.RootCAs = pool
	}
	if c.TLSCert != "" {
		certPEM, err := os.ReadFile(c.TLSCert)
		if err != nil {
			return nil, fmt.Errorf("--tls-cert: %w", err)
		}
		keyPEM, err := os.ReadFile(c.TLSKey)
		if err != nil {
			return nil, fmt.Errorf("--tls-key: %w", err)
		}
		cert, err := tls.X509KeyPair(certPEM, keyPEM)
		if err != nil {
			return nil, fmt.Errorf("--tls-cert %s with --tls-key %s: %w", c.TLSCert, c.TLSKey, err)
		}
		cfg.Certificates = []tls.Certificate{cert}
	}
	return cfg, nil
}

// dialTimeout bounds how long a binary waits for an unreachable server before saying so.
const dialTimeout = 10 * time.Second

// Dial connects to Temporal, failing with a clear message when the server does not answer.
func (c *Common) Dial(ctx context.Context, logger *slog.Logger, opts client.Options) (client.Client, error) {
	opts, err := c.ClientOptions(opts)
	if err != nil {
		return nil, err
	}
	if opts.Logger == nil {
		opts.Logger = tlog.NewStructuredLogger(logger)
	}
	secure := opts.ConnectionOptions.TLS != nil
	logger.Debug("Connecting to Temporal", slog.String("address", c.TemporalAddress), slog.String("namespace", c.Namespace),
		slog.Bool("tls", secure), slog.Bool("client_certificate", c.TLSCert != ""), slog.Bool("api_key", opts.Credentials != nil))
	ctx, cancel := context.WithTimeout(ctx, dialTimeout)
	defer cancel()
	cl, err := client.DialContext(ctx, opts)
	if err != nil {
		if secure {
			return nil, fmt.Errorf("cannot reach the Temporal server at %s (namespace %s, TLS): %w; check the address, the namespace, "+
				"the TLS settings (--tls-ca, --tls-server-name) and the API key or client certificate", c.TemporalAddress, c.Namespace, err)
		}
		return nil, fmt.Errorf("cannot reach the Temporal server at %s (namespace %s): %w; is it running? `make run` starts one",
			c.TemporalAddress, c.Namespace, err)
	}
	return cl, nil
}
