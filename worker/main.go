// Command worker is the Temporal worker process: it runs annotation workflows and their
// activities against the store and the configured providers.
package main

import (
	"context"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"time"

	"github.com/spf13/pflag"
	"go.temporal.io/sdk/client"
	"go.temporal.io/sdk/worker"

	"github.com/mhannotator/mha/activities"
	"github.com/mhannotator/mha/internal/appenv"
	"github.com/mhannotator/mha/internal/prompts"
	"github.com/mhannotator/mha/internal/runs"
	"github.com/mhannotator/mha/workflows"
)

// controlInterval is how often a batch asks the server whether it was paused or stopped.
const controlInterval = 250 * time.Millisecond

func main() {
	if err := run(os.Args[1:]); err != nil {
		fmt.Fprintln(os.Stderr, "worker:", err)
		os.Exit(1)
	}
}

func run(args []string) error {
	var common appenv.Common
	fs := pflag.NewFlagSet("worker", pflag.ContinueOnError)
	common.Register(fs)
	maxActivities := fs.Int("max-concurrent-activities", 0, "provider calls in flight on this worker; 0 = global.max_concurrent_activities of the config [MHA_MAX_CONCURRENT_ACTIVITIES]")
	if err := fs.Parse(args); err != nil {
		return err
	}
	if !fs.Changed("max-concurrent-activities") {
		if v := os.Getenv("MHA_MAX_CONCURRENT_ACTIVITIES"); v != "" {
			if _, err := fmt.Sscan(v, maxActivities); err != nil {
				return fmt.Errorf("MHA_MAX_CONCURRENT_ACTIVITIES=%q is not a number", v)
			}
		}
	}
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

	ctx := context.Background()
	st, err := common.OpenStore(ctx)
	if err != nil {
		return err
	}
	defer st.Close()
	c, err := common.Dial(ctx, logger, client.Options{})
	if err != nil {
		return err
	}
	defer c.Close()

	w := worker.New(c, common.TaskQueue, worker.Options{
		// More batches than call slots: a batch that is storing, reserving quota or just
		// starting leaves its call slot to another.
		MaxConcurrentActivityExecutionSize: 3 * *maxActivities,
		// On shutdown, samples in flight get their request timeout to finish and be stored.
		WorkerStopTimeout: cfg.Global.RequestTimeout + 5*time.Second,
		// A killed worker's sticky workflow tasks (a quota pool's answer to the next
		// reservation, among them) move to other workers after this, not after 5 s.
		StickyScheduleToStartTimeout: time.Second,
	})
	workflows.Register(w)
	activities.Register(w, &activities.Activities{
		Store:           st,
		Config:          cfg,
		Reload:          common.LoadConfig,
		Prompts:         prompts.Library{Dir: filepath.Join(common.ConfigDir, "prompts")},
		ControlInterval: controlInterval,
		CallSlots:       make(chan struct{}, *maxActivities),
		Limiter:         &runs.QuotaClient{Client: c, TaskQueue: common.TaskQueue},
	})
	logger.Info("Worker starting", slog.String("temporal", common.TemporalAddress), slog.String("namespace", common.Namespace),
		slog.String("task_queue", common.TaskQueue), slog.String("db", common.DB), slog.Int("max_concurrent_activities", *maxActivities))
	if err := w.Run(worker.InterruptCh()); err != nil {
		return err
	}
	logger.Info("Worker stopped")
	return nil
}
