// Package appenv holds what every binary shares: the common flags with their MHA_*
// environment defaults, the logger, and opening the config, the store and a Temporal client.
package appenv

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"os"
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
	DB              string
	TemporalAddress string
	Namespace       string
	TaskQueue       string
	LogLevel        string
	LogFormat       string
}

// Register adds the common flags to fs, with defaults taken from the environment.
func (c *Common) Register(fs *pflag.FlagSet) {
	fs.StringVar(&c.ConfigDir, "config", env("MHA_CONFIG", config.DefaultDir), "config directory (settings.json, api_keys.json, prompts/) [MHA_CONFIG]")
	fs.StringVar(&c.DB, "db", env("MHA_DB", store.DefaultDSN), "store DSN: an SQLite file path or sqlite:PATH [MHA_DB]")
	fs.StringVar(&c.TemporalAddress, "temporal-address", env("MHA_TEMPORAL_ADDRESS", "127.0.0.1:7233"), "Temporal frontend host:port [MHA_TEMPORAL_ADDRESS]")
	fs.StringVar(&c.Namespace, "namespace", env("MHA_NAMESPACE", "default"), "Temporal namespace [MHA_NAMESPACE]")
	fs.StringVar(&c.TaskQueue, "task-queue", env("MHA_TASK_QUEUE", contract.TaskQueue), "Temporal task queue [MHA_TASK_QUEUE]")
	fs.StringVar(&c.LogLevel, "log-level", env("MHA_LOG_LEVEL", "info"), "log level: debug, info, warn, error [MHA_LOG_LEVEL]")
	fs.StringVar(&c.LogFormat, "log-format", env("MHA_LOG_FORMAT", "text"), "log format: text or json [MHA_LOG_FORMAT]")
}

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
	return config.Load(config.Options{Dir: c.ConfigDir})
}

// OpenStore opens the store the --db flag names.
func (c *Common) OpenStore(ctx context.Context) (store.Store, error) {
	return store.Open(ctx, c.DB)
}

// dialTimeout bounds how long a binary waits for an unreachable server before saying so.
const dialTimeout = 10 * time.Second

// Dial connects to Temporal, failing with a clear message when the server does not answer.
func (c *Common) Dial(ctx context.Context, logger *slog.Logger, opts client.Options) (client.Client, error) {
	opts.HostPort = c.TemporalAddress
	opts.Namespace = c.Namespace
	if opts.Logger == nil {
		opts.Logger = tlog.NewStructuredLogger(logger)
	}
	ctx, cancel := context.WithTimeout(ctx, dialTimeout)
	defer cancel()
	cl, err := client.DialContext(ctx, opts)
	if err != nil {
		return nil, fmt.Errorf("cannot reach the Temporal server at %s (namespace %s): %w; is it running? `make run` starts one",
			c.TemporalAddress, c.Namespace, err)
	}
	return cl, nil
}
