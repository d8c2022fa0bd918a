// Command worker is the Temporal worker process: it runs annotation workflows and their
// activities against the store and the configured providers.
package main

import (
	"context"
	"fmt"
	"log/slog"
	"net/http"
	"os"
	"path/filepath"
	"runtime/debug"
	"strings"
	"time"

	"github.com/spf13/pflag"
	"go.temporal.io/sdk/client"
	"go.temporal.io/sdk/worker"

	"github.com/mhannotator/mha/activities"
	"github.com/mhannotator/mha/internal/appenv"
	"github.com/mhannotator/mha/internal/config"
	"github.com/mhannotator/mha/internal/health"
	"github.com/mhannotator/mha/internal/llm"
	"github.com/mhannotator/mha/internal/metrics"
	"github.com/mhannotator/mha/internal/prompts"
	"github.com/mhannotator/mha/internal/runs"
	"github.com/mhannotator/mha/workflows"
)

// controlInterval is how often a batch asks the server whether Temporal's own activity pause
// or reset applies to it, and checkpoints its progress; a pause or stop reaches a current
// run's batches through the store before every call. At 500 ms these heartbeats were a tenth
// of the dev server's work with a fast provider.
const controlInterval = time.Second

// stopMargin is what the default stop grace adds to the request timeout: time to store the
// last samples and report the batches' end.
const stopMargin = 5 * time.Second

// gcPercent is the worker's GOGC unless the environment sets one: a busy worker's heap is
// small and short-lived (requests, replies, heartbeats), and at Go's default of 100 the
// collector took a fifth of its CPU with a fast provider.
const gcPercent = 400

func main() {
	if os.Getenv("GOGC") == "" {
		debug.SetGCPercent(gcPercent)
	}
	if err := run(os.Args[1:]); err != nil {
		fmt.Fprintln(os.Stderr, "worker:", err)
		os.Exit(1)
	}
}

// providerHook, when set (by a test build), builds annotators' providers instead of the
// activities' own choice.
var providerHook func(cfg *config.Config) func(config.Annotator) (llm.Provider, error)

// flags are the worker's settings.
type flags struct {
	common        appenv.Common
	maxActivities int
	healthListen  string
	stopGrace     time.Duration
	// Worker Versioning: both set, the worker polls as this version of the deployment.
	deploymentName string
	buildID        string
}

// parseFlags reads the command line, with MHA_* environment variables as defaults.
func parseFlags(args []string) (*flags, error) {
	f := &flags{}
	fs := pflag.NewFlagSet("worker", pflag.ContinueOnError)
	f.common.Register(fs)
	fs.IntVar(&f.maxActivities, "max-concurrent-activities", 0, "provider calls in flight on this worker; 0 = global.max_concurrent_activities of the config [MHA_MAX_CONCURRENT_ACTIVITIES]")
	fs.StringVar(&f.healthListen, "health-listen", os.Getenv("MHA_HEALTH_LISTEN"), "host:port to serve /healthz, /readyz (for orchestrators) and /metrics (Prometheus) on (port 0 picks a free one); empty serves none [MHA_HEALTH_LISTEN]")
	fs.DurationVar(&f.stopGrace, "stop-grace", 0, "on SIGTERM or Ctrl-C, how long the samples in flight get to finish and be stored before the worker exits; 0 = request_timeout + 5s [MHA_STOP_GRACE]")
	fs.StringVar(&f.deploymentName, "deployment-name", os.Getenv("MHA_DEPLOYMENT_NAME"), "Worker Versioning: the Temporal worker deployment this worker belongs to, with --build-id; unset, the worker is unversioned [MHA_DEPLOYMENT_NAME]")
	fs.StringVar(&f.buildID, "build-id", os.Getenv("MHA_BUILD_ID"), "Worker Versioning: this build's ID within --deployment-name (such as a release tag or commit); a new build gets workflows once made current [MHA_BUILD_ID]")
	if err := fs.Parse(args); err != nil {
		return nil, err
	}
	if !fs.Changed("max-concurrent-activities") {
		if v := os.Getenv("MHA_MAX_CONCURRENT_ACTIVITIES"); v != "" {
			if _, err := fmt.Sscan(v, &f.maxActivities); err != nil {
				return nil, fmt.Errorf("MHA_MAX_CONCURRENT_ACTIVITIES=%q is not a number", v)
			}
		}
	}
	if !fs.Changed("stop-grace") {
		if v := os.Getenv("MHA_STOP_GRACE"); v != "" {
			d, err := time.ParseDuration(v)
			if err != nil {
				return nil, fmt.Errorf("MHA_STOP_GRACE=%q: want a duration such as 50s", v)
			}
			f.stopGrace = d
		}
	}
	if f.stopGrace < 0 {
		return nil, fmt.Errorf("--stop-grace %s: want 0 or more", f.stopGrace)
	}
	if err := f.validateVersioning(); err != nil {
		return nil, err
	}
	return f, nil
}

// validateVersioning checks --deployment-name and --build-id: both or neither, and names the
// server accepts.
func (f *flags) validateVersioning() error {
	f.deploymentName, f.buildID = strings.TrimSpace(f.deploymentName), strings.TrimSpace(f.buildID)
	if (f.deploymentName == "") != (f.buildID == "") {
		return fmt.Errorf("--deployment-name %q and --build-id %q (MHA_DEPLOYMENT_NAME, MHA_BUILD_ID) go together: "+
			"give both to run versioned, or neither", f.deploymentName, f.buildID)
	}
	if strings.ContainsAny(f.deploymentName, ".:") {
		return fmt.Errorf("--deployment-name %q: a deployment name cannot contain '.' or ':'", f.deploymentName)
	}
	if strings.HasPrefix(f.deploymentName, "__") || strings.HasPrefix(f.buildID, "__") {
		return fmt.Errorf("--deployment-name %q, --build-id %q: neither can start with '__'", f.deploymentName, f.buildID)
	}
	return nil
}

// deploymentOptions turns Worker Versioning on when a deployment name and build ID are set:
// workflows then run on the deployment's current build only, and move to a new one as
// workflows.VersioningBehavior says. Without them the worker is unversioned.
func (f *flags) deploymentOptions() worker.DeploymentOptions {
	if f.deploymentName == "" {
		return worker.DeploymentOptions{}
	}
	return worker.DeploymentOptions{
		UseVersioning:             true,
		Version:                   worker.WorkerDeploymentVersion{DeploymentName: f.deploymentName, BuildID: f.buildID},
		DefaultVersioningBehavior: workflows.VersioningBehavior,
	}
}

// grace is how long a stop waits for the samples in flight: --stop-grace, or by default the
// request timeout and a margin to store the last samples and report the batches' end.
func (f *flags) grace(g config.Global) time.Duration {
	if f.stopGrace > 0 {
		return f.stopGrace
	}
	return g.RequestTimeout + stopMargin
}

func run(args []string) error {
	f, err := parseFlags(args)
	if err != nil {
		return err
	}
	common := &f.common
	maxActivities := &f.maxActivities
	logger, err := common.Logger(os.Stderr)
	if err != nil {
		return err
	}
	cfg, err := common.LoadConfig()
	if err != nil {
		return fmt.Errorf("config %s: %w", common.ConfigDir, err)
	}
	if *maxActivities <= 0 {
		*maxActivities = cfg.Global.MaxConcurrentActivities
	}
	stopGrace := f.grace(cfg.Global)

	ctx := context.Background()
	st, err := common.OpenStore(ctx)
	if err != nil {
		return err
	}
	defer st.Close()
	scope, metricsPage, closeMetrics := metrics.New(logger)
	defer closeMetrics.Close()
	c, err := common.Dial(ctx, logger, client.Options{MetricsHandler: metrics.SDKHandler(scope)})
	if err != nil {
		return err
	}
	defer c.Close()

	fatal := make(chan error, 1)
	w := worker.New(c, common.TaskQueue, worker.Options{
		// More batches than call slots: a batch that is storing, reserving quota or just
		// starting leaves its call slot to another.
		MaxConcurrentActivityExecutionSize: 3 * *maxActivities,
		// Thirty runs started at once, or a burst of batches ending together, queue their
		// tasks: pollers scale with the backlog instead of two of each.
		WorkflowTaskPollerBehavior: worker.NewPollerBehaviorAutoscaling(worker.PollerBehaviorAutoscalingOptions{}),
		ActivityTaskPollerBehavior: worker.NewPollerBehaviorAutoscaling(worker.PollerBehaviorAutoscalingOptions{}),
		// On shutdown, polling stops and the samples in flight get this long to finish and
		// be stored; the batches then end without costing their runs a restart attempt.
		WorkerStopTimeout: stopGrace,
		// A killed worker's sticky workflow tasks (a quota pool's answer to the next
		// reservation, among them) move to other workers after this, not after 5 s.
		StickyScheduleToStartTimeout: time.Second,
		DeploymentOptions:            f.deploymentOptions(),
		OnFatalError: func(err error) {
			select {
			case fatal <- err:
			default:
			}
		},
	})
	workflows.Register(w)
	acts := &activities.Activities{
		Store:           st,
		Config:          cfg,
		Reload:          common.LoadConfig,
		Prompts:         prompts.Library{Dir: filepath.Join(common.ConfigDir, "prompts")},
		ControlInterval: controlInterval,
		Metrics:         scope,
		CallSlots:       make(chan struct{}, *maxActivities),
		Limiter:         &runs.QuotaClient{Client: c, TaskQueue: common.TaskQueue},
	}
	if providerHook != nil {
		acts.Provider = providerHook(cfg)
	}
	activities.Register(w, acts)

	var life lifecycle
	if f.healthListen != "" {
		mux := http.NewServeMux()
		mux.Handle("/metrics", metricsPage)
		mux.Handle("/", healthHandler(c, acts.CallSlotReport, &life))
		hs, err := health.Serve(f.healthListen, mux, logger)
		if err != nil {
			return err
		}
		defer hs.Close()
		logger.Info("Health endpoints serving", slog.String("healthz", "http://"+hs.Addr().String()+"/healthz"),
			slog.String("readyz", "http://"+hs.Addr().String()+"/readyz"), slog.String("metrics", "http://"+hs.Addr().String()+"/metrics"))
		stopGauge := reportWedged(scope, acts.CallSlotReport)
		defer stopGauge()
	}

	// Signals are caught from here on: a SIGTERM while the worker starts stops it once started.
	interrupt := worker.InterruptCh()
	if err := w.Start(); err != nil {
		return err
	}
	life.set(polling)
	logger.Info("Worker started", slog.String("temporal", common.TemporalAddress), slog.String("namespace", common.Namespace),
		slog.String("task_queue", common.TaskQueue), slog.String("db", common.DBForLogs()), slog.Int("max_concurrent_activities", *maxActivities),
		slog.Duration("stop_grace", stopGrace), slog.String("deployment", f.deploymentName), slog.String("build_id", f.buildID))
	select {
	case sig := <-interrupt:
		life.set(stopping)
		logger.Info("Worker stopping: no new work; samples in flight finish and are stored", slog.Any("signal", sig),
			slog.Duration("grace", stopGrace))
		began := time.Now()
		w.Stop()
		logger.Info("Worker stopped", slog.Duration("after", time.Since(began).Round(time.Millisecond)))
		return nil
	case err := <-fatal:
		life.set(stopping)
		w.Stop()
		return fmt.Errorf("worker stopped on a fatal error: %w", err)
	}
}
