package workflows

import (
	"errors"
	"slices"
	"strings"
	"time"

	"go.temporal.io/sdk/temporal"
	"go.temporal.io/sdk/workflow"

	"github.com/mhannotator/mha/internal/contract"
)

// A batch-mode run submits chunks of its samples as provider batches and follows them on
// durable timers: waiting for a batch that takes hours holds no worker slot and costs a poll
// now and then, whose interval grows with the batch's age.

// Poll intervals: half the chunk's age, between these bounds. A batch that takes a day is
// polled about 30 times and collected within the hour of its end; a short one within half its
// age.
const (
	minPollInterval = 5 * time.Second
	maxPollInterval = time.Hour
)

// Chunk defaults, for runs whose settings leave them out.
const (
	defaultChunkSize = 500
	defaultMaxChunks = 2
)

// executeBatch is the run loop of a batch-mode run. Pause stops submitting (chunks at the
// provider are still collected); stop cancels them at the provider and stores what came back.
func (r *run) executeBatch(ctx workflow.Context) (contract.Status, error) {
	for {
		if r.continueAsNewDue(ctx) {
			return r.continueAsNew(ctx)
		}
		if r.stop {
			r.cancelChunks(ctx)
		}
		following := len(r.st.Chunks) > 0
		switch {
		case r.stop && !following:
			return r.finish(ctx, contract.StatusStopped)
		case r.st.Status == contract.StatusFailed && !following:
			if r.idle(ctx, func() bool { return r.st.Status != contract.StatusFailed }) {
				return r.continueAsNew(ctx)
			}
			continue
		case r.st.Paused && !following:
			r.setStatus(ctx, contract.StatusPaused)
			if r.idle(ctx, func() bool { return !r.st.Paused }) {
				return r.continueAsNew(ctx)
			}
			continue
		}
		switch {
		case r.stop || r.st.Status == contract.StatusFailed:
		case r.st.Paused:
			r.setStatus(ctx, contract.StatusPaused)
		default:
			r.setStatus(ctx, contract.StatusRunning)
			// The store is read only while no chunk is out: a sample at the provider has no
			// annotation yet and would be submitted again.
			if !following && (r.st.NeedsProgress || r.st.Position >= r.end()) {
				done, err := r.readProgress(ctx)
				if err != nil {
					r.fail(ctx, err)
					continue
				}
				if done {
					return r.finish(ctx, contract.StatusCompleted)
				}
			}
			if len(r.st.Chunks) < r.maxChunks() && r.st.Position < r.end() && !workflow.Now(ctx).Before(r.st.SubmitAfter) {
				r.submitChunk(ctx)
				continue
			}
		}
		if len(r.st.Chunks) > 0 {
			r.followChunks(ctx)
		}
	}
}

func (r *run) maxChunks() int {
	if n := r.in.Settings.MaxChunks; n > 0 {
		return n
	}
	return defaultMaxChunks
}

func (r *run) chunkSize() int {
	if n := r.in.Settings.ChunkSize; n > 0 {
		return n
	}
	return defaultChunkSize
}

// providerCallOptions retry transient trouble for as long as it lasts, with the run's back-off
// cap, and give up at once on what no retry fixes.
func (r *run) providerCallOptions(ctx workflow.Context, timeout time.Duration) workflow.Context {
	return workflow.WithActivityOptions(ctx, workflow.ActivityOptions{
		StartToCloseTimeout: timeout,
		// The activities heartbeat while they work: a killed worker's submit or collect is
		// retried elsewhere after this, not after the whole StartToClose.
		HeartbeatTimeout: r.in.Settings.HeartbeatTimeout,
		RetryPolicy: &temporal.RetryPolicy{
			InitialInterval:        time.Second,
			BackoffCoefficient:     2,
			MaximumInterval:        r.backoffCap(),
			NonRetryableErrorTypes: contract.NonRetryable,
		},
	})
}

// submitChunk submits the next chunk of samples from the run's position.
func (r *run) submitChunk(ctx workflow.Context) {
	r.st.ChunkSeq++
	info := workflow.GetInfo(ctx)
	in := contract.SubmitChunkInput{Annotator: r.in.Annotator, Domain: r.in.Domain, Target: r.in.Target,
		From: r.st.Position, Count: r.chunkSize(), Name: contract.ChunkName(info.WorkflowExecution.ID, r.st.StartedAt, r.st.ChunkSeq)}
	var res contract.SubmitChunkResult
	r.building = &contract.ChunkView{Seq: r.st.ChunkSeq, State: contract.ChunkBuilding}
	err := workflow.ExecuteActivity(r.providerCallOptions(ctx, 10*time.Minute), contract.SubmitChunkName, in).Get(ctx, &res)
	r.building = nil
	if err != nil {
		r.fail(ctx, err)
		return
	}
	if res.Wait != nil {
		// The pool's batch limits: nothing was submitted. With chunks out, they are still
		// followed meanwhile.
		if len(r.st.Chunks) > 0 {
			r.st.SubmitAfter, r.st.LastError = res.Wait.Until, res.Wait.Reason
			return
		}
		r.wait(ctx, res.Wait)
		return
	}
	r.st.SubmitAfter = time.Time{}
	r.st.Position = res.Next
	if res.BatchID == "" {
		return // every sample looked at was annotated already
	}
	now := workflow.Now(ctx)
	r.st.Chunks = append(r.st.Chunks, contract.Chunk{
		ChunkView: contract.ChunkView{Seq: r.st.ChunkSeq, BatchID: res.BatchID, State: chunkState(res.State), Lines: len(res.Keys), SubmittedAt: now},
		Name:      in.Name, Keys: res.Keys, PromptHash: res.PromptHash, NextPoll: now.Add(minPollInterval),
	})
	r.st.LastError = ""
	r.showDetails(ctx)
	r.touch(ctx)
}

// touch marks the run changed for those who list changed runs (the api's live view), when a
// chunk moved on but the run's status did not.
func (r *run) touch(ctx workflow.Context) {
	if !r.changedAtOn {
		return
	}
	if err := workflow.UpsertTypedSearchAttributes(ctx, contract.RunChangedAtKey.ValueSet(workflow.Now(ctx))); err != nil {
		workflow.GetLogger(ctx).Warn("Could not update the RunChangedAt search attribute", "error", err)
	}
}

// chunkState is how the status names a provider state.
func chunkState(state string) string {
	switch state {
	case "pending":
		return contract.ChunkSubmitted
	case "running", "cancelling":
		return contract.ChunkRunning
	case "":
		return contract.ChunkSubmitted
	}
	return contract.ChunkCollecting
}

// followChunks waits for the next poll that is due (any control ends the wait), then polls
// the chunks due and collects those the provider has finished.
func (r *run) followChunks(ctx workflow.Context) {
	now := workflow.Now(ctx)
	next := r.st.Chunks[0].NextPoll
	for _, c := range r.st.Chunks[1:] {
		if c.NextPoll.Before(next) {
			next = c.NextPoll
		}
	}
	if r.st.SubmitAfter.After(now) && r.st.SubmitAfter.Before(next) {
		next = r.st.SubmitAfter // time to ask the pool again
	}
	if d := next.Sub(now); d > 0 {
		wctx, cancel := workflow.WithCancel(ctx)
		r.cancelWait = cancel
		_ = workflow.NewTimer(wctx, d).Get(wctx, nil)
		r.cancelWait = nil
		cancel()
		return // the loop looks at controls first, then comes back
	}
	changed := false
	defer func() {
		if changed {
			r.touch(ctx)
		}
	}()
	for i := 0; i < len(r.st.Chunks); i++ {
		c := &r.st.Chunks[i]
		if c.NextPoll.After(now) {
			continue
		}
		before := c.ChunkView
		var p contract.PollChunkResult
		ref := contract.ChunkRef{Annotator: r.in.Annotator, Domain: r.in.Domain, BatchID: c.BatchID, Name: c.Name}
		if err := workflow.ExecuteActivity(r.providerCallOptions(ctx, time.Minute), contract.PollChunkName, ref).Get(ctx, &p); err != nil {
			c.NextPoll = workflow.Now(ctx).Add(maxPollInterval)
			r.fail(ctx, err)
			continue
		}
		c.State, c.ProviderState, c.Completed, c.Failed = chunkState(p.State), p.ProviderState, p.Completed, p.Failed
		if p.Total > 0 {
			c.Lines = p.Total
		}
		changed = changed || c.ChunkView != before
		if !finalState(p.State) {
			age := workflow.Now(ctx).Sub(c.SubmittedAt)
			c.NextPoll = workflow.Now(ctx).Add(min(max(age/2, minPollInterval), maxPollInterval))
			continue
		}
		if p.State == "failed" {
			// The provider refused the batch as a whole: its samples go back to the queue.
			// Over the enqueued-token limit (which OpenAI reports this way, not at submit) the
			// run tries again after a back-off; otherwise it waits, failed with the provider's
			// reason, for a reset.
			id := c.BatchID
			r.dropChunk(i, "failed")
			i--
			r.st.NeedsProgress = true
			reason := "the provider failed batch " + id + ": " + p.Error
			if strings.HasPrefix(p.Error, "token_limit_exceeded") {
				r.wait(ctx, &contract.Wait{Status: contract.StatusWaitingRetry, Reason: reason})
				return
			}
			r.fail(ctx, temporal.NewNonRetryableApplicationError(reason, "BatchFailed", nil))
			continue
		}
		if r.collectChunk(ctx, c) {
			r.dropChunk(i, p.State)
			i--
		}
	}
	r.showDetails(ctx)
}

func finalState(s string) bool {
	return s == "succeeded" || s == "failed" || s == "cancelled" || s == "expired"
}

// collectChunk stores a final chunk's results and queues again the samples to ask again; it
// reports false when the results could not be read (the run waits, failed, and tries again
// after a reset).
func (r *run) collectChunk(ctx workflow.Context, c *contract.Chunk) bool {
	c.State = contract.ChunkCollecting
	reasks := map[string]int{}
	for _, k := range c.Keys {
		if n := r.st.Carry.Reasks[k]; n > 0 {
			reasks[k] = n
		}
	}
	in := contract.CollectChunkInput{ChunkRef: contract.ChunkRef{Annotator: r.in.Annotator, Domain: r.in.Domain, BatchID: c.BatchID},
		Target: r.in.Target, Keys: c.Keys, PromptHash: c.PromptHash, Reasks: reasks}
	var res contract.CollectChunkResult
	if err := workflow.ExecuteActivity(r.providerCallOptions(ctx, 10*time.Minute), contract.CollectChunkName, in).Get(ctx, &res); err != nil {
		c.NextPoll = workflow.Now(ctx).Add(maxPollInterval)
		r.fail(ctx, err)
		return false
	}
	retry := map[string]bool{}
	for _, k := range res.Retry {
		retry[k] = true
		if r.st.Carry.Reasks == nil {
			r.st.Carry.Reasks = map[string]int{}
		}
		r.st.Carry.Reasks[k]++
	}
	for _, k := range c.Keys {
		if !retry[k] {
			delete(r.st.Carry.Reasks, k)
		}
	}
	now := workflow.Now(ctx)
	r.st.Counts = res.Counts
	r.st.NeedsProgress = true
	if res.Stored > 0 {
		r.st.LastProgress = now
		r.st.RateSamples += res.Stored
		if minutes := now.Sub(r.st.RateSince).Minutes(); minutes > 0 {
			r.st.SamplesPerMinute = float64(r.st.RateSamples) / minutes
		}
	}
	return true
}

// dropChunk ends chunk i, counting it by how it ended.
func (r *run) dropChunk(i int, how string) {
	if r.st.ChunksDone == nil {
		r.st.ChunksDone = map[string]int{}
	}
	r.st.ChunksDone[how]++
	r.st.Chunks = slices.Delete(r.st.Chunks, i, i+1)
}

// cancelChunks asks the provider to cancel every chunk it still has, once each; their
// results are collected as they end.
func (r *run) cancelChunks(ctx workflow.Context) {
	actx := workflow.WithActivityOptions(ctx, workflow.ActivityOptions{
		StartToCloseTimeout: time.Minute,
		RetryPolicy:         &temporal.RetryPolicy{MaximumAttempts: 5, NonRetryableErrorTypes: contract.NonRetryable},
	})
	for i := range r.st.Chunks {
		c := &r.st.Chunks[i]
		if c.Cancelling {
			continue
		}
		c.Cancelling = true
		ref := contract.ChunkRef{Annotator: r.in.Annotator, Domain: r.in.Domain, BatchID: c.BatchID}
		if err := workflow.ExecuteActivity(actx, contract.CancelChunkName, ref).Get(ctx, nil); err != nil {
			var app *temporal.ApplicationError
			if !errors.As(err, &app) || !app.NonRetryable() {
				workflow.GetLogger(ctx).Warn("Could not cancel a batch; it is collected when it ends", "batch", c.BatchID, "error", err)
			}
		}
		c.NextPoll = workflow.Now(ctx)
	}
}

// batchStatus is the chunks part of the status.
func (r *run) batchStatus() *contract.BatchStatus {
	if r.in.Settings.Mode != contract.ModeBatch {
		return nil
	}
	b := &contract.BatchStatus{Chunks: []contract.ChunkView{}, ByState: map[string]int{}}
	for how, n := range r.st.ChunksDone {
		b.ByState[contract.ChunkDone+"_"+how] = n
	}
	if r.building != nil {
		b.Chunks = append(b.Chunks, *r.building)
		b.ByState[contract.ChunkBuilding]++
	}
	for _, c := range r.st.Chunks {
		b.Chunks = append(b.Chunks, c.ChunkView)
		b.ByState[c.State]++
		if b.OldestSent.IsZero() || c.SubmittedAt.Before(b.OldestSent) {
			b.OldestSent = c.SubmittedAt
		}
	}
	return b
}
