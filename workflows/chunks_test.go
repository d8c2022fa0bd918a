package workflows

import (
	"context"
	"fmt"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/mock"
	"go.temporal.io/sdk/activity"
	"go.temporal.io/sdk/testsuite"
	"go.temporal.io/sdk/workflow"

	"github.com/mhannotator/mha/internal/contract"
)

// fakeProvider is the store and a provider's batch service behind the chunk activities: each
// batch finishes turnaround after it was submitted (workflow time), answering every line except
// those listed in retry (once each) and, when expire is set, with only its first half done.
type fakeProvider struct {
	*fakeStore
	turnaround time.Duration
	retry      map[string]int // sample → times its line comes back malformed
	expire     bool
	failOnce   string // the next batch to end fails with this reason
	batches    map[string]*fakeBatch
	names      map[string]string // chunk name → batch ID
	submits    int
	polls      int
	cancels    int
}

type fakeBatch struct {
	keys      []string
	submitted time.Time
	cancelled bool
	failed    string
}

func newFakeProvider(size int, turnaround time.Duration) *fakeProvider {
	return &fakeProvider{fakeStore: newFakeStore(size), turnaround: turnaround, retry: map[string]int{},
		batches: map[string]*fakeBatch{}, names: map[string]string{}}
}

func pos(key string) int {
	var p int
	fmt.Sscanf(key, "s%d", &p)
	return p
}

func (f *fakeProvider) submit(_ context.Context, in contract.SubmitChunkInput) (contract.SubmitChunkResult, error) {
	res := contract.SubmitChunkResult{Next: in.From, PromptHash: "h1"}
	for p := in.From; p < min(in.Target, f.size) && len(res.Keys) < in.Count; p++ {
		res.Next = p + 1
		if !f.done[p] {
			res.Keys = append(res.Keys, fmt.Sprintf("s%d", p))
		}
	}
	if len(res.Keys) == 0 {
		return res, nil
	}
	if id, ok := f.names[in.Name]; ok {
		res.BatchID, res.Adopted = id, true
		return res, nil
	}
	f.submits++
	id := fmt.Sprintf("batch-%d", f.submits)
	f.names[in.Name] = id
	f.batches[id] = &fakeBatch{keys: res.Keys, submitted: f.env.Now(), failed: f.failOnce}
	f.failOnce = ""
	res.BatchID, res.State = id, "pending"
	return res, nil
}

func (f *fakeProvider) state(b *fakeBatch) string {
	switch {
	case b.cancelled:
		return "cancelled"
	case b.failed != "" && f.env.Now().Sub(b.submitted) >= f.turnaround:
		return "failed"
	case f.env.Now().Sub(b.submitted) < f.turnaround:
		return "running"
	case f.expire:
		return "expired"
	}
	return "succeeded"
}

func (f *fakeProvider) poll(_ context.Context, in contract.ChunkRef) (contract.PollChunkResult, error) {
	f.polls++
	b := f.batches[in.BatchID]
	return contract.PollChunkResult{State: f.state(b), Total: len(b.keys), Error: b.failed}, nil
}

func (f *fakeProvider) cancel(_ context.Context, in contract.ChunkRef) error {
	f.cancels++
	f.batches[in.BatchID].cancelled = true
	return nil
}

func (f *fakeProvider) collect(_ context.Context, in contract.CollectChunkInput) (contract.CollectChunkResult, error) {
	b := f.batches[in.BatchID]
	var res contract.CollectChunkResult
	answered := b.keys
	if f.state(b) != "succeeded" {
		answered = b.keys[:len(b.keys)/2]
	}
	for _, k := range in.Keys {
		switch {
		case !slices.Contains(answered, k):
			res.Missing++
			res.Retry = append(res.Retry, k)
		case f.retry[k] > 0 && in.Reasks[k] < 3:
			f.retry[k]--
			res.Retry = append(res.Retry, k)
		default:
			f.done[pos(k)] = true
			res.Stored++
		}
	}
	res.Counts = f.counts(in.Target)
	return res, nil
}

func newBatchEnv(t *testing.T, f *fakeProvider) *testsuite.TestWorkflowEnvironment {
	t.Helper()
	var suite testsuite.WorkflowTestSuite
	env := suite.NewTestWorkflowEnvironment()
	f.env = env
	env.RegisterWorkflowWithOptions(AnnotationRun, workflow.RegisterOptions{Name: contract.AnnotationRunName})
	env.RegisterActivityWithOptions(f.progress, activity.RegisterOptions{Name: contract.ProgressName})
	env.RegisterActivityWithOptions(f.submit, activity.RegisterOptions{Name: contract.SubmitChunkName})
	env.RegisterActivityWithOptions(f.poll, activity.RegisterOptions{Name: contract.PollChunkName})
	env.RegisterActivityWithOptions(f.collect, activity.RegisterOptions{Name: contract.CollectChunkName})
	env.RegisterActivityWithOptions(f.cancel, activity.RegisterOptions{Name: contract.CancelChunkName})
	env.SetTestTimeout(30 * time.Second)
	return env
}

func batchInput(target, chunk, maxChunks int) contract.RunInput {
	in := input(target)
	in.Settings.Mode, in.Settings.ChunkSize, in.Settings.MaxChunks = contract.ModeBatch, chunk, maxChunks
	return in
}

// A chunk's whole life: submitted, a long wait on durable timers whose interval grows with the
// batch's age, results stored, a malformed line asked again in a later chunk, completion.
func TestBatchRunFollowsItsChunksToCompletion(t *testing.T) {
	f := newFakeProvider(10, 6*time.Hour)
	f.retry["s7"] = 1
	env := newBatchEnv(t, f)
	var mid contract.Status
	env.RegisterDelayedCallback(func() { mid = query(t, env) }, time.Hour)
	var building contract.Status
	env.OnActivity(contract.SubmitChunkName, mock.Anything, mock.Anything).Return(
		func(ctx context.Context, in contract.SubmitChunkInput) (contract.SubmitChunkResult, error) {
			if f.submits == 0 {
				building = query(t, env)
			}
			return f.submit(ctx, in)
		})
	start := env.Now()
	env.ExecuteWorkflow(AnnotationRun, batchInput(10, 4, 2))
	st := result(t, env)
	if st.Status != contract.StatusCompleted || st.Completed != 10 {
		t.Fatalf("status %+v; want completed 10/10", st)
	}
	// Chunks s0-s3 and s4-s7 at once; then s7 (asked again) with s8 and s9.
	if f.submits != 3 || len(f.batches["batch-3"].keys) != 3 || f.batches["batch-3"].keys[0] != "s7" {
		t.Errorf("submits %d, third batch %v; want 3, the last with s7, s8, s9", f.submits, f.batches["batch-3"])
	}
	// Two rounds of 6 h each, each found within half the batches' age.
	if took := env.Now().Sub(start); took < 12*time.Hour || took > 18*time.Hour {
		t.Errorf("the run took %s of workflow time; want about two turnarounds (12 h)", took)
	}
	// Polls grow with age: a 6 h batch is polled a few dozen times, not every 5 s (4 320).
	if perChunk := f.polls / f.submits; perChunk > 40 {
		t.Errorf("%d polls for %d chunks; want few", f.polls, f.submits)
	}
	if mid.Batch == nil || len(mid.Batch.Chunks) != 2 || mid.Batch.ByState[contract.ChunkRunning] != 2 || mid.Mode != contract.ModeBatch ||
		mid.Batch.OldestSent.IsZero() {
		t.Errorf("status an hour in: %+v %+v; want two running chunks", mid, mid.Batch)
	}
	if building.Batch == nil || building.Batch.ByState[contract.ChunkBuilding] != 1 || building.Batch.Chunks[0].State != contract.ChunkBuilding {
		t.Errorf("status while the first chunk is submitted: %+v", building.Batch)
	}
	if st.Batch.ByState["done_succeeded"] != 3 || len(st.Batch.Chunks) != 0 {
		t.Errorf("final chunks %+v", st.Batch)
	}
}

// An expired batch: what it answered is stored, the rest goes back to the queue.
func TestExpiredChunkLinesGoBackToTheQueue(t *testing.T) {
	f := newFakeProvider(6, time.Hour)
	f.expire = true
	env := newBatchEnv(t, f)
	env.RegisterDelayedCallback(func() { f.expire = false }, 90*time.Minute)
	env.ExecuteWorkflow(AnnotationRun, batchInput(6, 6, 1))
	st := result(t, env)
	if st.Status != contract.StatusCompleted || st.Completed != 6 || f.submits != 2 {
		t.Fatalf("status %+v after %d submits; want completed after 2 (half of the first expired)", st, f.submits)
	}
	if st.Batch.ByState["done_expired"] != 1 || st.Batch.ByState["done_succeeded"] != 1 {
		t.Errorf("chunks by state %v", st.Batch.ByState)
	}
}

// Stop cancels the chunks at the provider, collects what came back and ends stopped; pause
// submits nothing new but still collects the chunk out.
func TestStopCancelsChunksAndPauseSubmitsNoMore(t *testing.T) {
	f := newFakeProvider(20, 2*time.Hour)
	env := newBatchEnv(t, f)
	env.RegisterDelayedCallback(func() { env.SignalWorkflow(contract.SignalPause, nil) }, 30*time.Minute)
	var paused contract.Status
	env.RegisterDelayedCallback(func() { paused = query(t, env) }, 5*time.Hour)
	env.RegisterDelayedCallback(func() { env.SignalWorkflow(contract.SignalResume, nil) }, 6*time.Hour)
	env.RegisterDelayedCallback(func() { env.SignalWorkflow(contract.SignalStop, nil) }, 7*time.Hour)
	env.ExecuteWorkflow(AnnotationRun, batchInput(20, 5, 1))
	st := result(t, env)
	// Chunk 1 (s0-s4) submitted at 0, collected at 2 h although paused at 0:30; nothing new
	// until the resume at 6 h; chunk 2 (s5-s9) then, cancelled by the stop at 7 h with half
	// answered.
	if paused.Status != contract.StatusPaused || paused.Completed != 5 || len(paused.Batch.Chunks) != 0 {
		t.Errorf("while paused: %+v; want paused with the first chunk collected", paused)
	}
	if st.Status != contract.StatusStopped || f.submits != 2 || f.cancels != 1 {
		t.Fatalf("status %+v after %d submits, %d cancels; want stopped after 2 and 1", st, f.submits, f.cancels)
	}
	if st.Completed != 7 || st.Batch.ByState["done_cancelled"] != 1 {
		t.Errorf("final %+v %v; want the 5 + 2 answered lines stored and one cancelled chunk", st, st.Batch.ByState)
	}
}

// A submit retried after its batch was created (a crash before the reply was recorded)
// adopts the batch of the same name: one batch at the provider.
func TestRetriedSubmitAdoptsTheBatch(t *testing.T) {
	f := newFakeProvider(4, time.Minute)
	env := newBatchEnv(t, f)
	crashed := false
	wrapped := func(ctx context.Context, in contract.SubmitChunkInput) (contract.SubmitChunkResult, error) {
		res, err := f.submit(ctx, in)
		if !crashed {
			crashed = true
			return contract.SubmitChunkResult{}, fmt.Errorf("worker lost before the reply was recorded")
		}
		return res, err
	}
	env.RegisterActivityWithOptions(wrapped, activity.RegisterOptions{Name: contract.SubmitChunkName})
	env.ExecuteWorkflow(AnnotationRun, batchInput(4, 4, 1))
	st := result(t, env)
	if st.Status != contract.StatusCompleted || f.submits != 1 || len(f.batches) != 1 {
		t.Fatalf("status %+v, %d batches; want completed with one batch", st, len(f.batches))
	}
}

// A batch failed for the enqueued-token limit goes back to the queue and is submitted again
// after a back-off; any other failed batch fails the run with the provider's reason.
func TestFailedChunks(t *testing.T) {
	f := newFakeProvider(4, time.Minute)
	f.failOnce = "token_limit_exceeded: Enqueued token limit reached"
	env := newBatchEnv(t, f)
	env.ExecuteWorkflow(AnnotationRun, batchInput(4, 4, 1))
	if st := result(t, env); st.Status != contract.StatusCompleted || f.submits != 2 || st.Batch.ByState["done_failed"] != 1 {
		t.Fatalf("status %+v after %d submits; want completed on the second", st, f.submits)
	}

	f = newFakeProvider(4, time.Minute)
	f.failOnce = "invalid_request: the input file has no lines"
	env = newBatchEnv(t, f)
	var failed contract.Status
	env.RegisterDelayedCallback(func() { failed = query(t, env) }, 10*time.Minute)
	env.RegisterDelayedCallback(func() { env.SignalWorkflow(contract.SignalStop, nil) }, 11*time.Minute)
	env.ExecuteWorkflow(AnnotationRun, batchInput(4, 4, 1))
	if failed.Status != contract.StatusFailed || !strings.Contains(failed.LastError, "the input file has no lines") || f.submits != 1 {
		t.Errorf("status %+v after %d submits; want failed with the provider's reason", failed, f.submits)
	}
}

// A day-long batch costs a few dozen polls: the interval is half the batch's age, at most an
// hour, so the run learns of the end within the hour.
func TestADayLongBatchCostsFewPolls(t *testing.T) {
	f := newFakeProvider(3, 24*time.Hour)
	env := newBatchEnv(t, f)
	start := env.Now()
	env.ExecuteWorkflow(AnnotationRun, batchInput(3, 3, 1))
	st := result(t, env)
	took := env.Now().Sub(start)
	if st.Status != contract.StatusCompleted || f.polls > 45 || took > 24*time.Hour+maxPollInterval {
		t.Fatalf("status %s after %d polls and %s; want completed within the hour after the end, with at most 45 polls", st.Status, f.polls, took)
	}
	t.Logf("a 24 h batch: %d polls, collected %s after its end", f.polls, took-24*time.Hour)
}
