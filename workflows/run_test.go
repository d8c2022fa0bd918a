package workflows

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/mock"
	sdkpb "go.temporal.io/api/sdk/v1"
	"go.temporal.io/sdk/activity"
	"go.temporal.io/sdk/converter"
	"go.temporal.io/sdk/temporal"
	"go.temporal.io/sdk/testsuite"
	"go.temporal.io/sdk/workflow"

	"github.com/mhannotator/mha/internal/contract"
	"github.com/mhannotator/mha/internal/labels"
)

// fakeStore stands in for the store behind the activities: which positions are annotated.
type fakeStore struct {
	env     *testsuite.TestWorkflowEnvironment
	size    int
	done    map[int]bool
	ran     []time.Time // workflow time at which each batch did its work
	failFor int         // fail this many batch calls before succeeding
	failErr error
	waits   []*contract.Wait // the next batches end at once asking for these waits
	calls   int
	keys    []string                  // the HaltKey of each batch call
	halts   []contract.HaltBatchInput // the batches the run halted
}

func (f *fakeStore) halt(_ context.Context, in contract.HaltBatchInput) error {
	f.halts = append(f.halts, in)
	return nil
}

func newFakeStore(size int) *fakeStore { return &fakeStore{size: size, done: map[int]bool{}} }

func (f *fakeStore) counts(target int) contract.Counts {
	n := 0
	for p := range f.done {
		if p < min(target, f.size) {
			n++
		}
	}
	return contract.Counts{OK: n}
}

func (f *fakeStore) progress(_ context.Context, in contract.ProgressInput) (contract.ProgressResult, error) {
	res := contract.ProgressResult{Counts: f.counts(in.Target), DatasetSize: f.size, FirstMissing: -1}
	for p := 0; p < min(in.Target, f.size); p++ {
		if !f.done[p] {
			res.FirstMissing = p
			break
		}
	}
	return res, nil
}

func (f *fakeStore) batch(ctx context.Context, in contract.BatchInput) (contract.BatchResult, error) {
	f.calls++
	f.ran = append(f.ran, f.env.Now())
	f.keys = append(f.keys, in.HaltKey)
	if f.failFor > 0 {
		f.failFor--
		return contract.BatchResult{}, f.failErr
	}
	if len(f.waits) > 0 {
		w := f.waits[0]
		f.waits = f.waits[1:]
		return contract.BatchResult{Next: in.From, Counts: f.counts(in.Target), DatasetSize: f.size, Wait: w,
			Attempt: activity.GetInfo(ctx).Attempt}, nil
	}
	stored := 0
	for p := in.From; p < in.From+in.Count; p++ {
		if !f.done[p] {
			f.done[p] = true
			stored++
		}
	}
	return contract.BatchResult{Next: in.From + in.Count, Stored: stored, Counts: f.counts(in.Target),
		DatasetSize: f.size, Attempt: activity.GetInfo(ctx).Attempt}, nil
}

// newEnv sets up a run whose batches each take one minute of workflow time.
func newEnv(t *testing.T, f *fakeStore) *testsuite.TestWorkflowEnvironment {
	t.Helper()
	var suite testsuite.WorkflowTestSuite
	env := suite.NewTestWorkflowEnvironment()
	f.env = env
	env.RegisterWorkflowWithOptions(AnnotationRun, workflow.RegisterOptions{Name: contract.AnnotationRunName})
	env.RegisterActivityWithOptions(f.progress, activity.RegisterOptions{Name: contract.ProgressName})
	env.RegisterActivityWithOptions(f.batch, activity.RegisterOptions{Name: contract.AnnotateBatchName})
	env.RegisterActivityWithOptions(f.halt, activity.RegisterOptions{Name: contract.HaltBatchName})
	env.OnActivity(contract.AnnotateBatchName, mock.Anything, mock.Anything).Return(f.batch).After(time.Minute)
	env.SetTestTimeout(30 * time.Second)
	return env
}

func input(target int) contract.RunInput {
	return contract.RunInput{Annotator: "1", Domain: labels.Urgency, Target: target, Settings: contract.RunSettings{
		BatchSize: 10, HeartbeatTimeout: 10 * time.Second, BatchTimeout: time.Hour, MaxRestartAttempts: 3}}
}

func result(t *testing.T, env *testsuite.TestWorkflowEnvironment) contract.Status {
	t.Helper()
	if !env.IsWorkflowCompleted() {
		t.Fatal("workflow did not complete")
	}
	if err := env.GetWorkflowError(); err != nil {
		t.Fatalf("workflow error: %v", err)
	}
	var st contract.Status
	if err := env.GetWorkflowResult(&st); err != nil {
		t.Fatal(err)
	}
	return st
}

func query(t *testing.T, env *testsuite.TestWorkflowEnvironment) contract.Status {
	t.Helper()
	v, err := env.QueryWorkflow(contract.QueryStatus)
	if err != nil {
		t.Fatalf("query: %v", err)
	}
	var st contract.Status
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
	if st.Status != contract.StatusCompleted || st.Completed != 35 || st.Target != 35 || st.DatasetSize != 100 {
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
	if st := result(t, env); st.Status != contract.StatusCompleted || st.Completed != 12 || f.calls != 2 {
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
	var paused contract.Status
	env.RegisterDelayedCallback(func() { env.SignalWorkflow(contract.SignalPause, nil) }, 150*time.Second)
	env.RegisterDelayedCallback(func() { paused = query(t, env) }, 30*time.Minute)
	env.RegisterDelayedCallback(func() { env.SignalWorkflow(contract.SignalResume, nil) }, time.Hour)
	env.ExecuteWorkflow(AnnotationRun, input(50))
	st := result(t, env)
	if paused.Status != contract.StatusPaused {
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
	if st.Status != contract.StatusCompleted || st.Completed != 50 {
		t.Fatalf("final status = %+v, want completed 50", st)
	}
}

// A pause taken back before the batch it cancelled has ended (sent together here; in the soak,
// a pause, a killed worker and a resume, the attempt ending timed out after the resume) is no
// failure: the run goes on.
func TestPauseThenResumeBeforeTheBatchEndsGoesOn(t *testing.T) {
	f := newFakeStore(100)
	env := newEnv(t, f)
	env.RegisterDelayedCallback(func() {
		env.SignalWorkflow(contract.SignalPause, nil)
		env.SignalWorkflow(contract.SignalResume, nil)
	}, 150*time.Second)
	env.ExecuteWorkflow(AnnotationRun, input(50))
	if st := result(t, env); st.Status != contract.StatusCompleted || st.Completed != 50 || st.LastError != "" {
		t.Fatalf("final status = %+v, want completed 50 with no error", st)
	}
}

// A pause mid-batch records that batch as halted, under the key the batch was given, before
// the batch is cancelled; every batch has a key of its own.
func TestPauseRecordsTheRunningBatchAsHalted(t *testing.T) {
	f := newFakeStore(100)
	env := newEnv(t, f)
	env.RegisterDelayedCallback(func() { env.SignalWorkflow(contract.SignalPause, nil) }, 150*time.Second)
	env.RegisterDelayedCallback(func() { env.SignalWorkflow(contract.SignalStop, nil) }, 10*time.Minute)
	env.ExecuteWorkflow(AnnotationRun, input(100))
	if st := result(t, env); st.Status != contract.StatusStopped {
		t.Fatalf("status = %q, want stopped", st.Status)
	}
	distinct := slices.Compact(slices.Sorted(slices.Values(f.keys)))
	if len(f.keys) != 3 || len(distinct) != 3 || distinct[0] == "" {
		t.Fatalf("batch keys = %q; want three distinct ones (two batches done, the third paused)", f.keys)
	}
	want := []contract.HaltBatchInput{{WorkflowID: "default-test-workflow-id", Key: f.keys[2]}}
	if !slices.Equal(f.halts, want) {
		t.Fatalf("halted batches = %+v, want %+v", f.halts, want)
	}
}

func TestStopWhilePausedStopsTheRun(t *testing.T) {
	f := newFakeStore(100)
	env := newEnv(t, f)
	env.RegisterDelayedCallback(func() { env.SignalWorkflow(contract.SignalPause, nil) }, 90*time.Second)
	env.RegisterDelayedCallback(func() { env.SignalWorkflow(contract.SignalStop, nil) }, 10*time.Minute)
	env.ExecuteWorkflow(AnnotationRun, input(100))
	st := result(t, env)
	if st.Status != contract.StatusStopped {
		t.Fatalf("status = %q, want stopped", st.Status)
	}
	if st.Completed >= 100 || f.calls > 2 {
		t.Fatalf("stopped run did %d batches and %d samples; want it to stop early", f.calls, st.Completed)
	}
}

func TestStopEndsARunningRun(t *testing.T) {
	f := newFakeStore(100)
	env := newEnv(t, f)
	env.RegisterDelayedCallback(func() { env.SignalWorkflow(contract.SignalStop, nil) }, 150*time.Second)
	env.ExecuteWorkflow(AnnotationRun, input(100))
	// The third batch was in flight at the stop and was cancelled; no fourth one started.
	if st := result(t, env); st.Status != contract.StatusStopped || f.calls != 2 || st.Completed != 20 {
		t.Fatalf("status = %+v after %d batches, want stopped during batch 3", st, f.calls)
	}
}

func TestABatchThatGivesUpLeavesTheRunFailedWithItsProgressUntilReset(t *testing.T) {
	f := newFakeStore(40)
	env := newEnv(t, f)
	var failed contract.Status
	env.RegisterDelayedCallback(func() {
		// The second batch gives up after its third attempt.
		f.failFor = 1
		f.failErr = temporal.NewApplicationErrorWithOptions("3 attempts in a row failed without storing anything: disk full",
			contract.ErrGaveUp, temporal.ApplicationErrorOptions{NonRetryable: true, Details: []any{int32(3)}})
	}, 90*time.Second)
	env.RegisterDelayedCallback(func() { failed = query(t, env) }, 2*time.Hour)
	env.RegisterDelayedCallback(func() { env.SignalWorkflow(contract.SignalReset, nil) }, 3*time.Hour)
	env.ExecuteWorkflow(AnnotationRun, input(40))
	st := result(t, env)
	if failed.Status != contract.StatusFailed || failed.Completed != 10 || failed.Restarts != 2 {
		t.Fatalf("status after giving up = %+v, want failed with the first batch's 10 samples and 2 restarts", failed)
	}
	if !strings.Contains(failed.LastError, "disk full") {
		t.Fatalf("failed status says %q, want the cause", failed.LastError)
	}
	if st.Status != contract.StatusCompleted || st.Completed != 40 || st.LastError != "" || st.Restarts != 3 {
		t.Fatalf("final status = %+v, want completed with the failure cleared and the reset counted", st)
	}
}

func TestNonRetryableErrorsFailAtOnce(t *testing.T) {
	f := newFakeStore(40)
	f.failFor = 1
	f.failErr = temporal.NewNonRetryableApplicationError("API key not valid", contract.ErrInvalidKey, nil)
	env := newEnv(t, f)
	var failed contract.Status
	env.RegisterDelayedCallback(func() { failed = query(t, env) }, time.Hour)
	env.RegisterDelayedCallback(func() { env.SignalWorkflow(contract.SignalStop, nil) }, 2*time.Hour)
	env.ExecuteWorkflow(AnnotationRun, input(40))
	result(t, env)
	if f.calls != 1 || failed.Status != contract.StatusFailed || failed.LastError != "API key not valid" {
		t.Fatalf("after %d calls status = %+v; want failed after one attempt with the key error", f.calls, failed)
	}
}

func TestTargetSignalChangesWhereTheRunEnds(t *testing.T) {
	f := newFakeStore(100)
	env := newEnv(t, f)
	env.RegisterDelayedCallback(func() { env.SignalWorkflow(contract.SignalTarget, 55) }, 90*time.Second)
	env.ExecuteWorkflow(AnnotationRun, input(30))
	if st := result(t, env); st.Target != 55 || st.Completed != 55 {
		t.Fatalf("status = %+v, want completed at the new target 55", st)
	}
}

func TestContinueAsNewCarriesCountsAndPendingSignals(t *testing.T) {
	f := newFakeStore(100)
	env := newEnv(t, f)
	env.SetContinueAsNewSuggested(true)
	env.RegisterDelayedCallback(func() { env.SignalWorkflow(contract.SignalTarget, 70) }, 30*time.Second)
	env.ExecuteWorkflow(AnnotationRun, input(50))
	err := env.GetWorkflowError()
	var can *workflow.ContinueAsNewError
	if !errors.As(err, &can) {
		t.Fatalf("workflow ended with %v, want continue-as-new", err)
	}
	var next contract.RunInput
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
	id := contract.RunID("annotator-7", labels.Redressal)
	a, d, err := contract.ParseRunID(id)
	if id != "annotation-annotator-7-redressal" || err != nil || a != "annotator-7" || d != labels.Redressal {
		t.Fatalf("contract.RunID/contract.ParseRunID = %q -> %q %q %v", id, a, d, err)
	}
	if _, _, err := contract.ParseRunID("annotation-1-mood"); err == nil {
		t.Fatal("contract.ParseRunID accepted an unknown domain")
	}
}

func TestAWaitForQuotaSleepsOnATimerWithCurrentCounts(t *testing.T) {
	f := newFakeStore(30)
	env := newEnv(t, f)
	var reset time.Time
	env.RegisterDelayedCallback(func() {
		reset = env.Now().Add(5 * time.Hour)
		f.waits = []*contract.Wait{{Until: reset, Status: contract.StatusWaitingQuota, Reason: "requests_per_day spent"}}
	}, 90*time.Second)
	var waiting contract.Status
	env.RegisterDelayedCallback(func() { waiting = query(t, env) }, 3*time.Hour)
	env.ExecuteWorkflow(AnnotationRun, input(30))
	st := result(t, env)
	if waiting.Status != contract.StatusWaitingQuota || waiting.Completed != 10 || !waiting.NextTry.Equal(reset) {
		t.Fatalf("status during the wait = %+v, want waiting_quota with 10 done and the next try at %s", waiting, reset)
	}
	if st.Status != contract.StatusCompleted || st.Completed != 30 {
		t.Fatalf("final status = %+v, want completed", st)
	}
	if last := f.ran[len(f.ran)-1]; last.Before(reset) {
		t.Fatalf("last batch worked at %s, before the quota reset at %s", last, reset)
	}
}

func TestAFailingProviderIsRetriedWithCappedBackoffAndNeverFailsTheRun(t *testing.T) {
	f := newFakeStore(20)
	env := newEnv(t, f)
	for range 8 {
		f.waits = append(f.waits, &contract.Wait{Status: contract.StatusWaitingRetry, Reason: "provider: unavailable (HTTP 503)"})
	}
	var waiting contract.Status
	env.RegisterDelayedCallback(func() { waiting = query(t, env) }, 61*time.Second) // during the first 2 s wait
	in := input(20)
	in.Settings.RetryBackoffCap = 30 * time.Second
	env.ExecuteWorkflow(AnnotationRun, in)
	st := result(t, env)
	if waiting.Status != contract.StatusWaitingRetry || !strings.Contains(waiting.LastError, "503") || waiting.NextTry.IsZero() {
		t.Fatalf("status during the outage = %+v, want waiting_retry with the error and the next try", waiting)
	}
	if st.Status != contract.StatusCompleted || st.Completed != 20 || st.Restarts != 8 || st.LastError != "" {
		t.Fatalf("final status = %+v, want completed after 8 retries", st)
	}
	// Back-off 2, 4, 8, 16, then capped at 30 s: the gaps between tries never exceed the cap.
	for i := 1; i < len(f.ran); i++ {
		if gap := f.ran[i].Sub(f.ran[i-1]); gap > 30*time.Second+time.Minute {
			t.Fatalf("gap of %s between tries %d and %d, above the 30 s cap (+1 min batch)", gap, i-1, i)
		}
	}
}

func TestBadTargetPayloadsChangeNothingAndALaterStopWorks(t *testing.T) {
	for _, payload := range []any{nil, "forty", -5, map[string]int{"n": 3}} {
		t.Run(fmt.Sprint(payload), func(t *testing.T) {
			f := newFakeStore(100)
			env := newEnv(t, f)
			var after contract.Status
			env.RegisterDelayedCallback(func() { env.SignalWorkflow(contract.SignalTarget, payload) }, 30*time.Second)
			env.RegisterDelayedCallback(func() { after = query(t, env) }, 40*time.Second)
			env.RegisterDelayedCallback(func() { env.SignalWorkflow(contract.SignalStop, nil) }, 150*time.Second)
			env.ExecuteWorkflow(AnnotationRun, input(60))
			st := result(t, env)
			if after.Target != 60 || after.Status != contract.StatusRunning {
				t.Fatalf("after target %v: %+v, want target 60 and running", payload, after)
			}
			if st.Status != contract.StatusStopped || st.Completed != 20 {
				t.Fatalf("final status = %+v, want stopped during batch 3", st)
			}
		})
	}
}

func TestANumericStringTargetIsTaken(t *testing.T) {
	f := newFakeStore(100)
	env := newEnv(t, f)
	env.RegisterDelayedCallback(func() { env.SignalWorkflow(contract.SignalTarget, "25") }, 30*time.Second)
	env.ExecuteWorkflow(AnnotationRun, input(60))
	if st := result(t, env); st.Status != contract.StatusCompleted || st.Target != 25 || st.Completed != 25 {
		t.Fatalf("status = %+v, want completed at target 25", st)
	}
}

func TestResumeThenPauseInOneTaskEndsPaused(t *testing.T) {
	f := newFakeStore(100)
	env := newEnv(t, f)
	var st contract.Status
	env.RegisterDelayedCallback(func() { env.SignalWorkflow(contract.SignalPause, nil) }, 30*time.Second)
	env.RegisterDelayedCallback(func() {
		env.SignalWorkflow(contract.SignalResume, nil)
		env.SignalWorkflow(contract.SignalPause, nil)
	}, 10*time.Minute)
	env.RegisterDelayedCallback(func() { st = query(t, env) }, 20*time.Minute)
	env.RegisterDelayedCallback(func() { env.SignalWorkflow(contract.SignalStop, nil) }, 30*time.Minute)
	env.ExecuteWorkflow(AnnotationRun, input(100))
	result(t, env)
	if st.Status != contract.StatusPaused {
		t.Fatalf("after resume then pause: %q, want paused", st.Status)
	}
}

// update sends a control Update; its answer or refusal lands in st and outcome when the
// workflow gives it.
func update(env *testsuite.TestWorkflowEnvironment, name string, arg any, st *contract.Status, outcome *error) {
	var args []any
	if arg != nil {
		args = []any{arg}
	}
	env.UpdateWorkflow(name, fmt.Sprint(name, "-", arg), &testsuite.TestUpdateCallback{
		OnReject: func(err error) { *outcome = err },
		OnAccept: func() {},
		OnComplete: func(v any, err error) {
			if err != nil {
				*outcome = err
				return
			}
			if p, ok := v.(contract.Status); ok {
				*st = p
			}
		},
	}, args...)
}

func TestControlUpdatesValidateAndAnswerWithTheSettledStatus(t *testing.T) {
	f := newFakeStore(100)
	env := newEnv(t, f)
	var refused, target, pause error
	var ignored, paused, retargeted contract.Status
	env.RegisterDelayedCallback(func() { update(env, contract.SignalTarget, "lots", &ignored, &refused) }, 30*time.Second)
	env.RegisterDelayedCallback(func() { update(env, contract.SignalTarget, 45, &retargeted, &target) }, 40*time.Second)
	env.RegisterDelayedCallback(func() { update(env, contract.SignalPause, nil, &paused, &pause) }, 90*time.Second)
	env.RegisterDelayedCallback(func() { env.SignalWorkflow(contract.SignalResume, nil) }, time.Hour)
	env.ExecuteWorkflow(AnnotationRun, input(60))
	st := result(t, env)
	if refused == nil || !strings.Contains(refused.Error(), "not a whole number") {
		t.Fatalf("target \"lots\" was not refused with the reason: %v", refused)
	}
	if target != nil || retargeted.Target != 45 {
		t.Fatalf("target 45 answered %+v, %v", retargeted, target)
	}
	if pause != nil || paused.Status != contract.StatusPaused {
		t.Fatalf("pause answered %+v, want the settled status paused", paused)
	}
	if st.Status != contract.StatusCompleted || st.Completed != 45 {
		t.Fatalf("final status = %+v, want completed at 45", st)
	}
}

func TestTheWebUIShowsARunsProgressWithoutAQuery(t *testing.T) {
	f := newFakeStore(100)
	env := newEnv(t, f)
	var details string
	env.RegisterDelayedCallback(func() {
		v, err := env.QueryWorkflow("__temporal_workflow_metadata")
		if err != nil {
			t.Errorf("metadata query: %v", err)
			return
		}
		var md sdkpb.WorkflowMetadata
		if err := v.Get(&md); err != nil {
			t.Errorf("metadata: %v", err)
		}
		details = md.GetCurrentDetails()
	}, 150*time.Second)
	env.ExecuteWorkflow(AnnotationRun, input(35))
	result(t, env)
	// Two batches of ten are done by then, the third is under way.
	if !strings.Contains(details, "**running** · 20/35 done · 0 malformed · 0 errors") {
		t.Fatalf("current details %q; want the status and the progress", details)
	}
}
