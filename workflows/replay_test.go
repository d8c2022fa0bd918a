package workflows

import (
	"log/slog"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"go.temporal.io/sdk/log"
	"go.temporal.io/sdk/worker"
	"go.temporal.io/sdk/workflow"
)

// TestRecordedHistoriesReplay replays histories recorded from real runs on a dev server
// (see e2e's MHA_RECORD_HISTORY): a change to the workflow code that would break running
// workflows fails here.
func TestRecordedHistoriesReplay(t *testing.T) {
	files, err := filepath.Glob("testdata/*.json")
	if err != nil {
		t.Fatal(err)
	}
	if len(files) == 0 {
		t.Fatal("no recorded histories in testdata")
	}
	for _, f := range files {
		t.Run(filepath.Base(f), func(t *testing.T) {
			r := worker.NewWorkflowReplayer()
			Register(r)
			if err := r.ReplayWorkflowHistoryFromJSONFile(nil, f); err != nil {
				t.Fatalf("replay %s: %v", f, err)
			}
		})
	}
}

// TestAnUnguardedChangeFailsReplay shows what the replay test above guards against: a run
// that already passed the end of its loop on the previous build, replayed with code that
// now does more there, fails replay unless the change is behind workflow.GetVersion.
func TestAnUnguardedChangeFailsReplay(t *testing.T) {
	const stopped = "testdata/core_v2_bad_target_stop.json" // a run that reached finish
	defer func(release func(workflow.Context)) { patchAtFinish = release }(patchAtFinish)
	replay := func() error {
		r := worker.NewWorkflowReplayer()
		Register(r)
		// The replayer logs the expected panic; the error says it all.
		return r.ReplayWorkflowHistoryFromJSONFile(log.NewStructuredLogger(slog.New(slog.DiscardHandler)), stopped)
	}
	patchAtFinish = func(ctx workflow.Context) { _ = workflow.Sleep(ctx, time.Second) }
	if err := replay(); err == nil || !strings.Contains(err.Error(), "nondeterministic") {
		t.Fatalf("a timer added at the end of the run without GetVersion: %v; want a nondeterminism error", err)
	}
	patchAtFinish = func(ctx workflow.Context) {
		if workflow.GetVersion(ctx, "test-finish-timer", workflow.DefaultVersion, 1) == 1 {
			_ = workflow.Sleep(ctx, time.Second)
		}
	}
	if err := replay(); err != nil {
		t.Fatalf("the same change behind GetVersion: %v", err)
	}
}
