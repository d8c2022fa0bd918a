// Command api serves the platform's REST facade, its live event stream and the dashboard.
// It holds no workflow logic: runs are steered through internal/runs, like the starter, and
// any number of api processes against one Temporal and store serve the same answers.
package main

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/signal"
	"strings"
	"syscall"
	"time"

	"github.com/spf13/pflag"
	"go.temporal.io/sdk/client"

	"github.com/mhannotator/mha/api/events"
	"github.com/mhannotator/mha/api/server"
	"github.com/mhannotator/mha/api/web"
	"github.com/mhannotator/mha/internal/appenv"
	"github.com/mhannotator/mha/internal/config"
	"github.com/mhannotator/mha/internal/metrics"
	"github.com/mhannotator/mha/internal/runs"
)

func main() {
	if err := run(os.Args[1:]); err != nil {
		fmt.Fprintln(os.Stderr, "api:", err)
		os.Exit(1)
	}
}

// flags are the api's own settings beside the common ones.
type flags struct {
	listen  string
	token   string
	origins []string
	webUI   string
}

func (f *flags) register(fs *pflag.FlagSet) {
	fs.StringVar(&f.listen, "listen", envOr("MHA_LISTEN", "127.0.0.1:8080"), "address to serve HTTP on [MHA_LISTEN]")
	fs.StringVar(&f.token, "token", "", "bearer token every route but /healthz requires; needed to listen beyond loopback [MHA_API_TOKEN]")
	fs.StringSliceVar(&f.origins, "cors-origin", splitList(os.Getenv("MHA_CORS_ORIGINS")), "origin allowed to call the api from a browser page of another site; repeatable [MHA_CORS_ORIGINS, comma-separated]")
	fs.StringVar(&f.webUI, "web-ui", envOr("MHA_WEB_UI", "http://127.0.0.1:8233"), "Temporal Web UI address, for links to runs; empty for none [MHA_WEB_UI]")
}

func envOr(name, fallback string) string {
	if v := os.Getenv(name); v != "" {
		return v
	}
	return fallback
}

func splitList(s string) []string {
	var out []string
	for _, v := range strings.Split(s, ",") {
		if v = strings.TrimSpace(v); v != "" {
			out = append(out, v)
		}
	}
	return out
}

// checkListen refuses to serve beyond loopback without a token: the api starts, stops and
// deletes runs, and changes API keys.
func checkListen(listen, token string) error {
	host, _, err := net.SplitHostPort(listen)
	if err != nil {
		return fmt.Errorf("--listen %q: want host:port (%v)", listen, err)
	}
	if token != "" {
		return nil
	}
	if host == "localhost" {
		return nil
	}
	if ip := net.ParseIP(host); ip != nil && ip.IsLoopback() {
		return nil
	}
	return fmt.Errorf("--listen %s reaches beyond this machine: set a bearer token with --token or MHA_API_TOKEN", listen)
}

func run(args []string) error {
	var common appenv.Common
	var f flags
	fs := pflag.NewFlagSet("api", pflag.ContinueOnError)
	common.Register(fs)
	f.register(fs)
	if err := fs.Parse(args); err != nil {
		return err
	}
	if f.token == "" {
		// Taken from the environment only here, so the token's value never shows as a flag default.
		f.token = os.Getenv("MHA_API_TOKEN")
	}
	if err := checkListen(f.listen, f.token); err != nil {
		return err
	}
	logger, err := common.Logger(os.Stderr)
	if err != nil {
		return err
	}
	if _, err := common.LoadConfig(); err != nil {
		return fmt.Errorf("config %s: %w", common.ConfigDir, err)
	}

	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	st, err := common.OpenStore(ctx)
	if err != nil {
		return err
	}
	defer st.Close()
	scope, metricsPage, closeMetrics := metrics.New(logger)
	defer closeMetrics.Close()
	cl, err := common.Dial(ctx, logger, client.Options{MetricsHandler: metrics.SDKHandler(scope)})
	if err != nil {
		return err
	}
	defer cl.Close()
	// The event hub lists changed runs by RunChangedAt, which must exist in the namespace.
	if _, err := runs.EnsureSearchAttributes(ctx, cl, common.Namespace); err != nil {
		logger.Warn("search attributes could not be registered; run states are polled instead", "error", err)
	}

	loadConfig := func() (*config.Config, error) { return common.LoadConfig() }
	hub := events.New(events.Options{
		Store:          st,
		Temporal:       cl,
		Config:         loadConfig,
		Namespace:      common.Namespace,
		TaskQueue:      common.TaskQueue,
		WebUIBase:      f.webUI,
		OriginPatterns: f.origins,
		Logger:         logger,
		Scope:          scope,
	})
	hubDone := make(chan error, 1)
	go func() { hubDone <- hub.Run(ctx) }()

	srv := server.New(server.Options{
		Scope:     scope,
		Metrics:   metricsPage,
		ConfigDir: common.ConfigDir,
		KeysFile:  common.KeysFile,
		Namespace: common.Namespace,
		TaskQueue: common.TaskQueue,
		Client:    cl,
		Store:     st,
		Events:    hub,
		Token:     f.token,
		Origins:   f.origins,
		Dashboard: web.Handler(),
		Logger:    logger,
	})
	httpServer := &http.Server{Addr: f.listen, Handler: srv, ReadHeaderTimeout: 10 * time.Second}
	ln, err := net.Listen("tcp", f.listen)
	if err != nil {
		return fmt.Errorf("listen on %s: %w", f.listen, err)
	}
	logger.Info("api serving", "dashboard", "http://"+ln.Addr().String()+"/", "temporal", common.TemporalAddress, "db", common.DBForLogs())
	served := make(chan error, 1)
	go func() { served <- httpServer.Serve(ln) }()
	select {
	case err := <-served:
		return err
	case err := <-hubDone:
		if err != nil && ctx.Err() == nil {
			return fmt.Errorf("event hub: %w", err)
		}
	case <-ctx.Done():
	}
	logger.Info("api stopping")
	sctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if err := httpServer.Shutdown(sctx); err != nil && !errors.Is(err, http.ErrServerClosed) {
		return err
	}
	return nil
}
