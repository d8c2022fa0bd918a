package e2e

import (
	"context"
	"fmt"
	"os/exec"
	"path/filepath"
	"syscall"
	"testing"
	"time"

	enumspb "go.temporal.io/api/enums/v1"
	historypb "go.temporal.io/api/history/v1"
	"go.temporal.io/sdk/client"
	"go.temporal.io/sdk/converter"

	"github.com/mhannotator/mha/internal/contract"
	"github.com/mhannotator/mha/internal/labels"
	"github.com/mhannotator/mha/internal/runs"
)

// patchChange is the change ID of workflows/patch_e2e.go, the workflow change that worker B
// (built with -tags mha_e2e_patched) ships behind workflow.GetVersion.
const patchChange = "e2e-finish-note"

// TestRunsStartedOnBuildAFinishOnBuildB follows the README's upgrade procedure: runs start on
// build A of a worker deployment; build B, whose workflow code has a change behind
// GetVersion, starts and is made current with the temporal CLI; A is stopped with SIGTERM
// mid-run. Every run finishes on B, with each sample annotated exactly once, and each run's
// history shows workflow tasks completed by A, then by B, and the marker of B's change.
func TestRunsStartedOnBuildAFinishOnBuildB(t *testing.T) {
	patched := filepath.Join(t.TempDir(), "worker-b")
	if out, err := exec.Command("go", "build", "-tags", "mha_e2e_patched", "-o", patched, "../worker").CombinedOutput(); err != nil {
		t.Fatalf("build worker B: %v\n%s", err, out)
	}
	const n = 120
	s := newStack(t, map[string]any{"offline_latency_seconds": 0.1, "max_concurrent_activities": 2},
		map[string]map[labels.Domain]int{"u1": {labels.Urgency: n}, "u2": {labels.Therapeutic: n}}, n)
	pairs := []runs.Pair{{Annotator: "u1", Domain: labels.Urgency}, {Annotator: "u2", Domain: labels.Therapeutic}}
	deployment := s.taskQueue // unique on the shared server; no '.' or ':'

	a := s.startWorkerWith(filepath.Join(binDir, "worker"), nil, "--deployment-name", deployment, "--build-id", "a")
	setCurrentVersion(t, deployment, "a")
	if out, code := s.starter("start", "--all"); code != 0 {
		t.Fatalf("start --all exited %d: %s", code, out)
	}
	waitFor(t, 30*time.Second, "10 annotations per run on build A", func() (bool, string) {
		n1, n2 := s.stored(pairs[0]), s.stored(pairs[1])
		return n1 >= 10 && n2 >= 10, fmt.Sprint(n1, n2)
	})

	s.startWorkerWith(patched, nil, "--deployment-name", deployment, "--build-id", "b")
	setCurrentVersion(t, deployment, "b")
	switched := map[runs.Pair]int{}
	for _, p := range pairs {
		if switched[p] = s.stored(p); switched[p] >= n {
			t.Fatalf("%s finished (%d) before build B became current; the test proves nothing", p.ID(), switched[p])
		}
	}
	if err := a.cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	select {
	case <-a.exited:
		if a.err != nil {
			t.Fatalf("worker A exited with %v after SIGTERM", a.err)
		}
	case <-time.After(30 * time.Second):
		t.Fatal("worker A did not exit within 30 s of SIGTERM")
	}
	t.Logf("build B current and A stopped at %v of %d stored", switched, n)

	for _, p := range pairs {
		ctx, cancel := context.WithTimeout(context.Background(), 45*time.Second)
		var st contract.Status
		err := server.Client().GetWorkflow(ctx, p.ID(), "").Get(ctx, &st)
		cancel()
		if err != nil {
			t.Fatalf("%s did not complete on build B: %v", p.ID(), err)
		}
		if st.Status != contract.StatusCompleted || st.Completed != n || s.stored(p) != n {
			t.Fatalf("%s: result %+v, store holds %d; want completed with exactly %d", p.ID(), st, s.stored(p), n)
		}
		builds, marker := upgradeTrace(t, history(t, p.ID()))
		if len(builds) != 2 || builds[0] != "a" || builds[1] != "b" {
			t.Fatalf("%s: workflow tasks completed by builds %v; want a, then b", p.ID(), builds)
		}
		if !marker {
			t.Fatalf("%s: no version marker of %q in the history: B's patched code did not run", p.ID(), patchChange)
		}
		// The release's own code (this test binary's) replays it too: the marker of a change
		// it does not make is skipped.
		replay(t, p.ID())
	}
	// One row per sample, each made by a single call: the switch repeated no stored work.
	seen := map[string]bool{}
	for _, r := range exportRows(t, s) {
		key := fmt.Sprint(r["annotator"], "/", r["domain"], "/", r["sample_id"])
		if seen[key] || r["attempt"] != 1.0 {
			t.Fatalf("export row %v is a duplicate or was asked more than once", r)
		}
		seen[key] = true
	}
	if len(seen) != 2*n {
		t.Fatalf("export has %d rows, want %d", len(seen), 2*n)
	}

	d, err := server.Client().WorkerDeploymentClient().GetHandle(deployment).Describe(context.Background(), client.WorkerDeploymentDescribeOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if cur := d.Info.RoutingConfig.CurrentVersion; cur == nil || cur.BuildID != "b" {
		t.Fatalf("deployment %s: current version %+v; want build b", deployment, cur)
	}
}

// setCurrentVersion makes buildID the current version of deployment with the temporal CLI,
// as the README's upgrade procedure does, once the server has seen that build's workers poll.
func setCurrentVersion(t *testing.T, deployment, buildID string) {
	t.Helper()
	var out []byte
	waitFor(t, 30*time.Second, "build "+buildID+" to become current", func() (bool, string) {
		var err error
		out, err = exec.Command(cliPath, "worker", "deployment", "set-current-version", "--address", server.FrontendHostPort(),
			"--deployment-name", deployment, "--build-id", buildID, "--yes").CombinedOutput()
		return err == nil, fmt.Sprintf("%v: %s", err, out)
	})
}

// upgradeTrace reads a run's history: the build IDs that completed its workflow tasks, in
// order and without repeats, and whether B's change recorded its version marker. It also
// checks that every versioned workflow task declared the AutoUpgrade behaviour.
func upgradeTrace(t *testing.T, events []*historypb.HistoryEvent) (builds []string, marker bool) {
	t.Helper()
	for _, e := range events {
		switch e.GetEventType() {
		case enumspb.EVENT_TYPE_WORKFLOW_TASK_COMPLETED:
			at := e.GetWorkflowTaskCompletedEventAttributes()
			if at.GetVersioningBehavior() != enumspb.VERSIONING_BEHAVIOR_AUTO_UPGRADE {
				t.Fatalf("workflow task %d completed with versioning behaviour %v; want AutoUpgrade", e.GetEventId(), at.GetVersioningBehavior())
			}
			b := at.GetDeploymentVersion().GetBuildId()
			if len(builds) == 0 || builds[len(builds)-1] != b {
				builds = append(builds, b)
			}
		case enumspb.EVENT_TYPE_MARKER_RECORDED:
			at := e.GetMarkerRecordedEventAttributes()
			if at.GetMarkerName() != "Version" {
				continue
			}
			var id string
			if err := converter.GetDefaultDataConverter().FromPayloads(at.GetDetails()["change-id"], &id); err != nil {
				t.Fatal(err)
			}
			marker = marker || id == patchChange
		}
	}
	return builds, marker
}
