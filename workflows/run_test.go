package workflows

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/stretchr/testify/mock"
	"go.temporal.io/sdk/activity"
	"go.temporal.io/sdk/converter"
	"go.temporal.io/sdk/temporal"
	"go.temporal.io/sdk/testsuite"
	"go.temporal.io/sdk/workflow"

	"github.com/mhannotator/mha/activities"
	"github.com/mhannotator/mha/internal/labels"
	"github.com/mhannotator/mha/internal/store"
)

// fakeStore stands in for the store behind the activities: which positions are annotated.
type fakeStore struct {
	env     *testsuite.TestWorkflowEnvironment
	size    int
	done    map[int]bool
	ran     []time.Time // workflow time at which each batch did its work
	failFor int         // fail this many batch calls before succeeding
	failErr error
	calls   int
}

func newFakeStore(size int) *fakeStore { return &fakeStore{size: size, done: map[int]bool{}} }

func (f *fakeStore) counts(target int) store.Counts {
	n := 0
	for p := range f.done {
		if p < min(target, f.size) {
			n++
		}
	}
	return store.Counts{OK: n}
}

func (f *fakeStore) progress(_ context.Context, in activities.ProgressInput) (activities.ProgressResult, error) {
	res := activities.ProgressResult{Counts: f.counts(in.Target), DatasetSize: f.size, FirstMissing: -1}
	for p := 0; p < min(in.Target, f.size); p++ {
		if !f.done[p] {
			res.FirstMissing = p
			break
		}
	}
	return res, nil
}

func (f *fakeStore) batch(ctx context.Context, in activities.BatchInput) (activities.BatchResult, error) {
	f.calls++
	f.ran = append(f.ran, f.env.Now())
	if f.failFor > 0 {
		f.failFor--
		return activities.BatchResult{}, f.failErr
	}
	stored := 0
	for p := in.From; p < in.From+in.Count; p++ {
		if !f.done[p] {
			f.done[p] = true
			stored++
		}
	}
	return activities.BatchResult{Next: in.From + in.Count, Stored: stored, Counts: f.counts(in.Target),
		DatasetSize: f.size, Attempt: activity.GetInfo(ctx).Attempt}, nil
}

// newEnv sets up a run whose batches each take one minute of workflow time.
func newEnv(t *testing.T, f *fakeStore) *testsuite.TestWorkflowEnvironment {
	t.Helper()
	var suite testsuite.WorkflowTestSuite
	env := suite.NewTestWorkflowEnvironment()
	f.env = env
	env.RegisterWorkflowWithOptions(AnnotationRun, workflow.RegisterOptions{Name: AnnotationRunName})
	env.RegisterActivityWithOptions(f.progress, activity.RegisterOptions{Name: activities.ProgressName})
	env.RegisterActivityWithOptions(f.batch, activity.RegisterOptions{Name: activities.AnnotateBatchName})
	env.OnActivity(activities.AnnotateBatchName, mock.Anything, mock.Anything).Return(f.batch).After(time.Minute)
	env.SetTestTimeout(30 * time.Second)
	return env
}

func input(target int) RunInput {
	return RunInput{Annotator: "1", Domain: labels.Urgency, Target: target, Settings: RunSettings{
		BatchSize: 10, HeartbeatTimeout: 10 * time.Second, BatchTimeout: time.Hour, MaxRestartAttempts: 3}}
}

func result(t *testing.T, env *testsuite.TestWorkflowEnvironment) Status {
	t.Helper()
	if !env.IsWorkflowCompleted() {
		t.Fatal("workflow did not complete")
	}
	if err := env.GetWorkflowError(); err != nil {
		t.Fatalf("workflow error: %v", err)
	}
	var st Status
	if err := env.GetWorkflowResult(&st); err != nil {
		t.Fatal(err)
	}
	return st
}

func query(t *testing.T, env *testsuite.TestWorkflowEnvironment) Status {
	t.Helper()
	v, err := env.QueryWorkflow(QueryStatus)
	if err != nil {
		t.Fatalf("query: %v", err)
	}
	var st Status
	if err := v.Get(&st); err != nil {
		t.Fatal(err)
	}
	return st
}

func TestRunWorksThroughTheTargetInBatchesAndCompletes(t *testing.T) {
	f := newFakeStore(100)
	env := newEnv(t, f)
	env.ExecuteWorkflow(AnnotationRun, input(35))
	st := result(t, env)
	if st.Status != StatusCompleted || st.Completed != 35 || st.Target != 35 || st.DatasetSize != 100 {
		t.Fatalf("status = %+v, want completed 35/35", st)
	}
	if f.calls != 4 {
		t.Fatalf("batches = %d, want 4 (10+10+10+5)", f.calls)
	}
	if st.SamplesPerMinute < 8 || st.SamplesPerMinute > 10 {
		t.Fatalf("samples per minute = %.2f, want about 35 per 4 minutes", st.SamplesPerMinute)
	}
}

func TestRunStopsAtTheEndOfAShortDataset(t *testing.T) {
	f := newFakeStore(12)
	env := newEnv(t, f)
	env.ExecuteWorkflow(AnnotationRun, input(50))
	if st := result(t, env); st.Status != StatusCompleted || st.Completed != 12 || f.calls != 2 {
		t.Fatalf("status = %+v after %d batches, want completed with the 12 samples there are", st, f.calls)
	}
}

func TestRunResumesFromStoredProgress(t *testing.T) {
	f := newFakeStore(40)
	for p := 0; p < 20; p++ {
		f.done[p] = true
	}
	env := newEnv(t, f)
	env.ExecuteWorkflow(AnnotationRun, input(40))
	if st := result(t, env); st.Completed != 40 || f.calls != 2 {
		t.Fatalf("status = %+v after %d batches; want the 20 missing samples done in 2 batches", st, f.calls)
	}
}

func TestPauseStartsNoBatchUntilResume(t *testing.T) {
	f := newFakeStore(100)
	env := newEnv(t, f)
	var paused Status
	env.RegisterDelayedCallback(func() { env.SignalWorkflow(SignalPause, nil) }, 150*time.Second)
	env.RegisterDelayedCallback(func() { paused = query(t, env) }, 30*time.Minute)
	env.RegisterDelayedCallback(func() { env.SignalWorkflow(SignalResume, nil) }, time.Hour)
	env.ExecuteWorkflow(AnnotationRun, input(50))
	st := result(t, env)
	if paused.Status != StatusPaused {
		t.Fatalf("status while paused = %q, want paused", paused.Status)
	}
	// Batches work at the end of their minute: the first at 1m, the second at 2m, and the
	// one in flight at the pause at 3m. Nothing may follow until the resume.
	begin := f.ran[0].Add(-time.Minute)
	for _, r := range f.ran {
		if at := r.Sub(begin); at > 3*time.Minute && at < time.Hour {
			t.Fatalf("a batch did work %s into the run, while it was paused (times %v)", at, f.ran)
		}
	}
	if st.Status != StatusCompleted || st.Completed != 50 {
		t.Fatalf("final status = %+v, want completed 50", st)
	}
}

func TestStopWhilePausedStopsTheRun(t *testing.T) {
	f := newFakeStore(100)
	env := newEnv(t, f)
	env.RegisterDelayedCallback(func() { env.SignalWorkflow(SignalPause, nil) }, 90*time.Second)
	env.RegisterDelayedCallback(func() { env.SignalWorkflow(SignalStop, nil) }, 10*time.Minute)
	env.ExecuteWorkflow(AnnotationRun, input(100))
	st := result(t, env)
	if st.Status != StatusStopped {
		t.Fatalf("status = %q, want stopped", st.Status)
	}
	if st.Completed >= 100 || f.calls > 2 {
		t.Fatalf("stopped run did %d batches and %d samples; want it to stop early", f.calls, st.Completed)
	}
}

func TestStopEndsARunningRun(t *testing.T) {
	f := newFakeStore(100)
	env := newEnv(t, f)
	env.RegisterDelayedCallback(func() { env.SignalWorkflow(SignalStop, nil) }, 150*time.Second)
	env.ExecuteWorkflow(AnnotationRun, input(100))
	// The third batch was in flight at the stop and was cancelled; no fourth one started.
	if st := result(t, env); st.Status != StatusStopped || f.calls != 2 || st.Completed != 20 {
		t.Fatalf("status = %+v after %d batches, want stopped during batch 3", st, f.calls)
	}
}

func TestSpentRetriesLeaveARunFailedWithItsProgressUntilReset(t *testing.T) {
	f := newFakeStore(40)
	env := newEnv(t, f)
	var failed Status
	env.RegisterDelayedCallback(func() {
		// From the second batch on, every attempt fails until the retries are spent.
		f.failFor, f.failErr = 3, errors.New("provider overloaded")
	}, 90*time.Second)
	env.RegisterDelayedCallback(func() { failed = query(t, env) }, 2*time.Hour)
	env.RegisterDelayedCallback(func() { env.SignalWorkflow(SignalReset, nil) }, 3*time.Hour)
	env.ExecuteWorkflow(AnnotationRun, input(40))
	st := result(t, env)
	if failed.Status != StatusFailed || failed.Completed != 10 {
		t.Fatalf("status after retries = %+v, want failed with the first batch's 10 samples kept", failed)
	}
	if failed.LastError == "" {
		t.Fatal("failed status has no last error")
	}
	if f.calls != 1+3+3 {
		t.Fatalf("batch calls = %d, want 1 + 3 failing attempts + 3 after reset", f.calls)
	}
	if st.Status != StatusCompleted || st.Completed != 40 || st.LastError != "" || st.Restarts < 1 {
		t.Fatalf("final status = %+v, want completed with the failure cleared and counted as a restart", st)
	}
}

func TestNonRetryableErrorsFailAtOnce(t *testing.T) {
	f := newFakeStore(40)
	f.failFor = 1
	f.failErr = temporal.NewNonRetryableApplicationError("API key not valid", activities.ErrInvalidKey, nil)
	env := newEnv(t, f)
	var failed Status
	env.RegisterDelayedCallback(func() { failed = query(t, env) }, time.Hour)
	env.RegisterDelayedCallback(func() { env.SignalWorkflow(SignalStop, nil) }, 2*time.Hour)
	env.ExecuteWorkflow(AnnotationRun, input(40))
	result(t, env)
	if f.calls != 1 || failed.Status != StatusFailed || failed.LastError != "API key not valid" {
		t.Fatalf("after %d calls status = %+v; want failed after one attempt with the key error", f.calls, failed)
	}
}

func TestTargetSignalChangesWhereTheRunEnds(t *testing.T) {
	f := newFakeStore(100)
	env := newEnv(t, f)
	env.RegisterDelayedCallback(func() { env.SignalWorkflow(SignalTarget, 55) }, 90*time.Second)
	env.ExecuteWorkflow(AnnotationRun, input(30))
	if st := result(t, env); st.Target != 55 || st.Completed != 55 {
		t.Fatalf("status = %+v, want completed at the new target 55", st)
	}
}

func TestContinueAsNewCarriesCountsAndPendingSignals(t *testing.T) {
	f := newFakeStore(100)
	env := newEnv(t, f)
	env.SetContinueAsNewSuggested(true)
	env.RegisterDelayedCallback(func() { env.SignalWorkflow(SignalTarget, 70) }, 30*time.Second)
	env.ExecuteWorkflow(AnnotationRun, input(50))
	err := env.GetWorkflowError()
	var can *workflow.ContinueAsNewError
	if !errors.As(err, &can) {
		t.Fatalf("workflow ended with %v, want continue-as-new", err)
	}
	var next RunInput
	if err := converter.GetDefaultDataConverter().FromPayloads(can.Input, &next); err != nil {
		t.Fatal(err)
	}
	if next.State == nil || next.State.Position != 10 || next.State.Counts.OK != 10 || next.Target != 70 {
		t.Fatalf("carried input = %+v state %+v; want position 10, 10 done and the signalled target 70", next, next.State)
	}

	// The next run picks up from the carried state and finishes.
	env2 := newEnv(t, f)
	env2.ExecuteWorkflow(AnnotationRun, next)
	if st := result(t, env2); st.Completed != 70 || st.StartedAt != next.State.StartedAt {
		t.Fatalf("second run status = %+v, want 70 done and the original start time", st)
	}
}

func TestRunIDsRoundTrip(t *testing.T) {
	id := RunID("annotator-7", labels.Redressal)
	a, d, err := ParseRunID(id)
	if id != "annotation-annotator-7-redressal" || err != nil || a != "annotator-7" || d != labels.Redressal {
		t.Fatalf("RunID/ParseRunID = %q -> %q %q %v", id, a, d, err)
	}
	if _, _, err := ParseRunID("annotation-1-mood"); err == nil {
		t.Fatal("ParseRunID accepted an unknown domain")
	}
}

func TestSpentDailyQuotaWaitsOnATimerUntilTheReset(t *testing.T) {
	f := newFakeStore(30)
	env := newEnv(t, f)
	var reset time.Time
	env.RegisterDelayedCallback(func() {
		reset = env.Now().Add(5 * time.Hour)
		f.failFor = 1
		f.failErr = temporal.NewApplicationErrorWithOptions("quota", activities.ErrDailyQuota,
			temporal.ApplicationErrorOptions{NonRetryable: true, Details: []any{reset}})
	}, 90*time.Second)
	var waiting Status
	env.RegisterDelayedCallback(func() { waiting = query(t, env) }, 3*time.Hour)
	env.ExecuteWorkflow(AnnotationRun, input(30))
	st := result(t, env)
	if waiting.Status != StatusWaitingQuota || waiting.Completed != 10 {
		t.Fatalf("status during the wait = %+v, want waiting_quota with 10 done", waiting)
	}
	if st.Status != StatusCompleted || st.Completed != 30 {
		t.Fatalf("final status = %+v, want completed", st)
	}
	// The batches after the failed one did their work only after the reset.
	if last := f.ran[len(f.ran)-1]; last.Before(reset) {
		t.Fatalf("last batch worked at %s, before the quota reset at %s", last, reset)
	}
	if f.calls != 4 {
		t.Fatalf("batch calls = %d, want 4: one ok, one refused, two after the reset", f.calls)
	}
}
