package workflows

import (
	"encoding/json"
	"errors"
	"fmt"
	"time"

	"go.temporal.io/sdk/temporal"
	"go.temporal.io/sdk/workflow"

	"github.com/mhannotator/mha/internal/contract"
)

// maxHistoryEvents bounds one run's history well below the server's limits; each batch adds
// about ten events, so a run continues as new every couple of hundred batches.
const maxHistoryEvents = 2000

// coreVersion marks runs started by this release's run loop; runs of the previous release
// (no marker in their history) keep the loop they started with until they continue as new.
const coreVersion = "core-v2"

// cancelledBatchVersion marks runs that take a batch they cancelled for a pause or stop as
// cancelled even when the pause was taken back before the batch ended: its attempt may end
// timed out (its worker died) after the resume, and the server does not retry an activity
// whose cancellation it was asked for. Runs without the marker failed there.
const cancelledBatchVersion = "cancelled-batch-not-failed"

// haltVersion marks runs whose batches hear of a pause or stop from the store: the run records
// the halted batch (local activity HaltBatch) before it asks the server to cancel it, and the
// batch's lanes read that record before each call instead of asking the server each time.
const haltVersion = "halt-in-store"

// firstRetryBackoff is the first wait after a batch ended on a failing provider; each
// further one doubles, up to RunSettings.RetryBackoffCap.
const firstRetryBackoff = 2 * time.Second

// AnnotationRun works through the first Target samples of the dataset for one (annotator,
// domain), a batch per activity, until done or stopped. Waiting is a state, not a held
// worker slot: for quota, for a failing provider, or, when something no retry fixes went
// wrong, for `reset` or `resume`, always with the run's progress.
func AnnotationRun(ctx workflow.Context, in contract.RunInput) (contract.Status, error) {
	if workflow.GetVersion(ctx, coreVersion, workflow.DefaultVersion, 1) == workflow.DefaultVersion {
		return legacyRun(ctx, in)
	}
	r := newRun(ctx, in)
	return r.execute(ctx)
}

// newRun takes the state a continued run hands over, or starts afresh.
func newRun(ctx workflow.Context, in contract.RunInput) run {
	r := run{in: in}
	if in.State != nil {
		r.st = *in.State
	} else {
		now := workflow.Now(ctx)
		r.st = contract.RunState{NeedsProgress: true, StartedAt: now, RateSince: now}
	}
	return r
}

type run struct {
	in            contract.RunInput
	st            contract.RunState
	stop          bool
	stopped       bool                // the loop has ended on stop
	cancelBatch   workflow.CancelFunc // set while a batch runs: pause and stop cancel it
	cancelWait    workflow.CancelFunc // set while the run waits on a timer: any control ends it
	batches       int                 // batches this run (since its last continue-as-new) started
	searchAttrsOn bool
	changedAtOn   bool                // started with RunChangedAt (runs of older releases were not)
	building      *contract.ChunkView // a batch-mode run's chunk being built and submitted
}

func (r *run) execute(ctx workflow.Context) (contract.Status, error) {
	if err := workflow.SetQueryHandler(ctx, contract.QueryStatus, func() (contract.Status, error) { return r.status(ctx), nil }); err != nil {
		return contract.Status{}, err
	}
	if err := r.handleControls(ctx); err != nil {
		return contract.Status{}, err
	}
	// Upserting a search attribute the namespace lacks fails the workflow task, so only runs
	// started with them (the starter registers them first) keep RunStatus up to date.
	_, r.searchAttrsOn = workflow.GetTypedSearchAttributes(ctx).GetKeyword(contract.RunStatusKey)
	_, r.changedAtOn = workflow.GetTypedSearchAttributes(ctx).GetTime(contract.RunChangedAtKey)
	if r.in.Settings.Mode == contract.ModeBatch {
		return r.executeBatch(ctx)
	}
	for {
		switch {
		case r.stop:
			return r.finish(ctx, contract.StatusStopped)
		case r.st.Status == contract.StatusFailed:
			if r.idle(ctx, func() bool { return r.st.Status != contract.StatusFailed }) {
				return r.continueAsNew(ctx)
			}
			continue
		case r.st.Paused:
			r.setStatus(ctx, contract.StatusPaused)
			if r.idle(ctx, func() bool { return !r.st.Paused }) {
				return r.continueAsNew(ctx)
			}
			continue
		}
		if r.st.Status == contract.StatusPaused || r.st.Status == contract.StatusFailed || r.st.Status == "" {
			r.st.RateSince, r.st.RateSamples = workflow.Now(ctx), 0
		}
		r.setStatus(ctx, contract.StatusRunning)

		if r.st.NeedsProgress || r.st.Position >= r.end() {
			done, err := r.readProgress(ctx)
			if err != nil {
				r.fail(ctx, err)
				continue
			}
			if done {
				return r.finish(ctx, contract.StatusCompleted)
			}
			if r.stop || r.st.Paused {
				continue
			}
		}
		if wait := r.runBatch(ctx); wait != nil {
			r.wait(ctx, wait)
		}
		if r.continueAsNewDue(ctx) {
			return r.continueAsNew(ctx)
		}
	}
}

// idle blocks until resumed or stopped; it reports true when the run should continue as new
// instead, its history having grown long while idle.
func (r *run) idle(ctx workflow.Context, resumed func() bool) bool {
	_ = workflow.Await(ctx, func() bool { return resumed() || r.stop || r.continueAsNewDue(ctx) })
	return !resumed() && !r.stop
}

// continueAsNewDue: the history is long and no control Update is waiting for its answer.
func (r *run) continueAsNewDue(ctx workflow.Context) bool {
	return !r.stop && continueAsNewDue(ctx, maxHistoryEvents) && workflow.AllHandlersFinished(ctx)
}

// patchAtFinish is nil in every release. The upgrade end-to-end test builds a worker with
// -tags mha_e2e_patched, whose patch_e2e.go sets it to a change of workflow code shipped
// behind workflow.GetVersion, the way a real change to the run loop ships; runs that started
// on the previous build reach it when they end on the patched one.
var patchAtFinish func(ctx workflow.Context)

// finish ends the run in a final status, once every control Update has its answer.
func (r *run) finish(ctx workflow.Context, status string) (contract.Status, error) {
	r.setStatus(ctx, status)
	if patchAtFinish != nil {
		patchAtFinish(ctx)
	}
	r.stopped = true
	_ = workflow.Await(ctx, func() bool { return workflow.AllHandlersFinished(ctx) })
	return r.status(ctx), nil
}

// end is the position after the last sample this run covers.
func (r *run) end() int { return min(r.in.Target, r.st.DatasetSize) }

// readProgress takes counts and the next position from the store, and reports whether every
// sample in range is annotated.
func (r *run) readProgress(ctx workflow.Context) (bool, error) {
	actx := workflow.WithActivityOptions(ctx, workflow.ActivityOptions{
		StartToCloseTimeout: time.Minute,
		RetryPolicy:         &temporal.RetryPolicy{MaximumAttempts: 5},
	})
	var p contract.ProgressResult
	err := workflow.ExecuteActivity(actx, contract.ProgressName,
		contract.ProgressInput{Annotator: r.in.Annotator, Domain: r.in.Domain, Target: r.in.Target}).Get(ctx, &p)
	if err != nil {
		return false, err
	}
	r.st.Counts, r.st.DatasetSize, r.st.NeedsProgress = p.Counts, p.DatasetSize, false
	if p.DatasetSize == 0 {
		return false, temporal.NewNonRetryableApplicationError("no samples in the store: import a dataset, then reset the run", contract.ErrNoSamples, nil)
	}
	if p.FirstMissing < 0 {
		r.st.Position = r.end()
		return true, nil
	}
	r.st.Position = p.FirstMissing
	return false, nil
}

// runBatch runs one batch and takes in what it did; it returns the wait the batch asked for.
func (r *run) runBatch(ctx workflow.Context) *contract.Wait {
	bctx, cancel := workflow.WithCancel(ctx)
	bctx = workflow.WithActivityOptions(bctx, workflow.ActivityOptions{
		StartToCloseTimeout: r.in.Settings.BatchTimeout,
		HeartbeatTimeout:    r.in.Settings.HeartbeatTimeout,
		// Pause and stop wait for the sample in flight to be stored before the run settles.
		WaitForCancellation: true,
		// Attempts are not limited here: transient trouble (a killed worker, a wedged call,
		// a worker shutdown) is retried for as long as it lasts, and the batch itself gives
		// up after max_restart_attempts attempts that failed for other reasons.
		RetryPolicy: &temporal.RetryPolicy{
			InitialInterval:        200 * time.Millisecond,
			BackoffCoefficient:     2,
			MaximumInterval:        r.backoffCap(),
			NonRetryableErrorTypes: contract.NonRetryable,
		},
	})
	in := contract.BatchInput{
		Annotator: r.in.Annotator, Domain: r.in.Domain, Target: r.in.Target, Carry: r.st.Carry,
		From: r.st.Position, Count: min(r.in.Settings.BatchSize, r.end()-r.st.Position),
	}
	halting := workflow.GetVersion(ctx, haltVersion, workflow.DefaultVersion, 1) == 1
	if halting {
		r.batches++
		in.HaltKey = fmt.Sprintf("%s/%d", workflow.GetInfo(ctx).WorkflowExecution.RunID, r.batches)
	}
	cancelled := false // by a pause or stop, even one taken back since
	r.cancelBatch = func() {
		cancelled = true
		if !halting {
			cancel()
		}
	}
	var res contract.BatchResult
	f := workflow.ExecuteActivity(bctx, contract.AnnotateBatchName, in)
	if halting {
		// The halt is recorded, then the cancellation asked for, in the same workflow task.
		_ = workflow.Await(ctx, func() bool { return cancelled || f.IsReady() })
		if cancelled && !f.IsReady() {
			r.halt(ctx, in.HaltKey)
			cancel()
		}
	}
	err := f.Get(ctx, &res)
	r.cancelBatch = nil
	cancel()

	switch {
	case err != nil && (r.st.Paused || r.stop):
		// Paused or stopped mid-batch, whether the attempt ended cancelled, timed out or
		// failed: the samples stored so far are counted from the store.
		r.refresh(ctx)
	case err != nil && cancelled && workflow.GetVersion(ctx, cancelledBatchVersion, workflow.DefaultVersion, 1) == 1:
		// Paused and resumed while the batch ended: the run goes on with the next batch.
		r.refresh(ctx)
	case err != nil:
		r.refresh(ctx)
		r.fail(ctx, err)
	default:
		now := workflow.Now(ctx)
		r.st.Position, r.st.Counts, r.st.DatasetSize, r.st.Carry = res.Next, res.Counts, res.DatasetSize, res.Carry
		r.st.Restarts += int(res.Attempt) - 1
		r.st.RateSamples += res.Stored
		if minutes := now.Sub(r.st.RateSince).Minutes(); minutes > 0 {
			r.st.SamplesPerMinute = float64(r.st.RateSamples) / minutes
		}
		if res.Stored > 0 {
			r.st.LastProgress = now
		}
		if res.Wait == nil || res.Stored > 0 {
			r.st.Outages = 0
			r.st.LastError = ""
		}
		r.showDetails(ctx)
		return res.Wait
	}
	return nil
}

// halt records in the store that the batch named key must start no more calls. If that
// fails, the batch hears of its cancellation at its next heartbeat instead.
func (r *run) halt(ctx workflow.Context, key string) {
	lctx := workflow.WithLocalActivityOptions(ctx, workflow.LocalActivityOptions{
		StartToCloseTimeout: 5 * time.Second,
		RetryPolicy:         &temporal.RetryPolicy{MaximumAttempts: 3},
	})
	in := contract.HaltBatchInput{WorkflowID: workflow.GetInfo(ctx).WorkflowExecution.ID, Key: key}
	if err := workflow.ExecuteLocalActivity(lctx, contract.HaltBatchName, in).Get(ctx, nil); err != nil {
		workflow.GetLogger(ctx).Warn("Could not record the halted batch; it stops at its next heartbeat", "batch", key, "error", err)
	}
}

// refresh reads the counts a failed or cancelled batch leaves behind, so the status shows
// them in every state; if that fails too, they are read before the next batch.
func (r *run) refresh(ctx workflow.Context) {
	if _, err := r.readProgress(ctx); err != nil {
		r.st.NeedsProgress = true
	}
}

func (r *run) backoffCap() time.Duration {
	if c := r.in.Settings.RetryBackoffCap; c > 0 {
		return c
	}
	return contract.DefaultRetryBackoffCap
}

// wait sleeps on a durable timer: no activity and no worker slot is held meanwhile, and the
// wait survives worker and server restarts. Any control ends it early.
func (r *run) wait(ctx workflow.Context, w *contract.Wait) {
	if r.st.Paused || r.stop {
		return // a control arrived while the batch ended; the loop applies it first
	}
	now := workflow.Now(ctx)
	until := w.Until
	if w.Status == contract.StatusWaitingRetry {
		r.st.Outages++
		r.st.Restarts++
		until = now.Add(min(r.backoffCap(), firstRetryBackoff<<min(r.st.Outages-1, 20)))
	}
	r.st.LastError, r.st.NextTry = w.Reason, until
	r.setStatus(ctx, w.Status)
	r.showDetails(ctx)
	wctx, cancel := workflow.WithCancel(ctx)
	r.cancelWait = cancel
	_ = workflow.NewTimer(wctx, until.Sub(now)).Get(wctx, nil)
	r.cancelWait = nil
	cancel()
	r.st.NextTry = time.Time{}
	if w.Status == contract.StatusWaitingQuota {
		r.st.LastError = ""
	}
}

func (r *run) fail(ctx workflow.Context, err error) {
	r.st.LastError = errorMessage(err)
	var app *temporal.ApplicationError
	var attempt int32
	if errors.As(err, &app) && app.Details(&attempt) == nil && attempt > 1 {
		r.st.Restarts += int(attempt) - 1
	}
	r.st.NeedsProgress = true
	r.st.SamplesPerMinute = 0
	r.setStatus(ctx, contract.StatusFailed)
	workflow.GetLogger(ctx).Warn("Run failed; waiting for reset or resume", "error", r.st.LastError)
}

// handleControls takes the controls both as signals (for the temporal CLI) and as Updates
// (for callers that want the outcome). Each is applied the moment it is delivered, by the
// same code, so they take effect in the order they were sent; a signal with a bad payload is
// logged and ignored, an Update with one is refused, and neither changes anything.
func (r *run) handleControls(ctx workflow.Context) error {
	for _, name := range contract.Controls {
		err := workflow.SetUpdateHandlerWithOptions(ctx, name,
			func(ctx workflow.Context, arg json.RawMessage) (contract.Status, error) {
				if err := r.apply(ctx, name, arg); err != nil {
					return contract.Status{}, err
				}
				r.settle(ctx, name)
				return r.status(ctx), nil
			},
			workflow.UpdateHandlerOptions{Validator: func(ctx workflow.Context, arg json.RawMessage) error {
				return r.validate(name, arg)
			}})
		if err != nil {
			return err
		}
	}
	// One selector over every control signal: the first signal of a workflow task reaches it
	// as it is delivered and the rest are picked up right after, so a resume followed by a
	// pause is not applied the other way round, as draining the channels one by one would.
	sel := workflow.NewSelector(ctx)
	for _, name := range contract.Controls {
		sel.AddReceive(workflow.GetSignalChannel(ctx, name), func(c workflow.ReceiveChannel, _ bool) {
			var arg json.RawMessage
			if !c.ReceiveAsync(&arg) {
				return
			}
			if err := r.validate(name, arg); err != nil {
				workflow.GetLogger(ctx).Warn("Ignoring a control signal with a bad payload", "signal", name, "error", err)
				return
			}
			_ = r.apply(ctx, name, arg)
		})
	}
	workflow.Go(ctx, func(ctx workflow.Context) {
		for {
			sel.Select(ctx)
		}
	})
	return nil
}

func (r *run) validate(name string, arg json.RawMessage) error {
	if name == contract.SignalTarget {
		_, err := contract.ParseTarget(arg)
		return err
	}
	return nil
}

// apply changes the run as control name says.
func (r *run) apply(ctx workflow.Context, name string, arg json.RawMessage) error {
	workflow.GetLogger(ctx).Info("Control received", "control", name)
	switch name {
	case contract.SignalPause:
		r.st.Paused = true
		r.interrupt(true)
	case contract.SignalStop:
		r.stop = true
		r.interrupt(true)
	case contract.SignalResume:
		r.st.Paused = false
		if r.st.Status == contract.StatusFailed {
			r.clearFailure()
		}
		r.interrupt(false)
	case contract.SignalReset:
		r.clearFailure()
		r.interrupt(false)
	case contract.SignalTarget:
		target, err := contract.ParseTarget(arg)
		if err != nil {
			return err
		}
		r.in.Target = target
		r.st.NeedsProgress = true
	}
	return nil
}

// interrupt ends a wait, and with batch also the batch in flight (after its call in flight
// is stored).
func (r *run) interrupt(batch bool) {
	if r.cancelWait != nil {
		r.cancelWait()
	}
	if batch && r.cancelBatch != nil {
		r.cancelBatch()
	}
}

// settle lets a pause or stop Update answer once it has taken effect: no call is in flight
// any more and none will start.
func (r *run) settle(ctx workflow.Context, name string) {
	switch name {
	case contract.SignalPause:
		_ = workflow.Await(ctx, func() bool {
			return r.st.Status == contract.StatusPaused || !r.st.Paused || r.stop || r.stopped
		})
	case contract.SignalStop:
		_ = workflow.Await(ctx, func() bool { return r.stopped })
	case contract.SignalReset, contract.SignalResume:
		// A failed run's status is cleared; answer with the one it moves on to.
		_ = workflow.Await(ctx, func() bool { return r.st.Status != "" || r.stopped })
	}
}

func (r *run) clearFailure() {
	if r.st.Status == contract.StatusFailed {
		r.st.Status = "" // the loop sets the real status next
		r.st.Restarts++
	}
	r.st.LastError = ""
	r.st.Outages = 0
	r.st.NeedsProgress = true
	for i := range r.st.Chunks {
		r.st.Chunks[i].NextPoll = time.Time{} // a batch-mode run looks at its chunks at once
	}
}

func (r *run) setStatus(ctx workflow.Context, status string) {
	if r.st.Status == status {
		return
	}
	r.st.Status = status
	r.showDetails(ctx)
	if r.searchAttrsOn {
		updates := []temporal.SearchAttributeUpdate{contract.RunStatusKey.ValueSet(status)}
		if r.changedAtOn {
			updates = append(updates, contract.RunChangedAtKey.ValueSet(workflow.Now(ctx)))
		}
		if err := workflow.UpsertTypedSearchAttributes(ctx, updates...); err != nil {
			workflow.GetLogger(ctx).Warn("Could not update the RunStatus search attribute", "error", err)
		}
	}
}

// showDetails is what the Temporal Web UI shows of the run without a query: status, progress,
// rate, and why it waits or failed.
func (r *run) showDetails(ctx workflow.Context) {
	st := r.status(ctx)
	d := fmt.Sprintf("**%s** · %d/%d done · %d malformed · %d errors · %.1f samples/min · %d restarts",
		st.Status, st.Completed, st.Target, st.Malformed, st.Errors, st.SamplesPerMinute, st.Restarts)
	if !st.NextTry.IsZero() {
		d += "\n\nnext try " + st.NextTry.UTC().Format(time.RFC3339)
	}
	if st.LastError != "" {
		d += "\n\nlast error: " + st.LastError
	}
	workflow.SetCurrentDetails(ctx, d)
}

// continueAsNew hands the state to a fresh run; it is called only once every control
// Update has its answer, and signals are applied as they arrive, so nothing is lost.
func (r *run) continueAsNew(ctx workflow.Context) (contract.Status, error) {
	st := r.st
	in := r.in
	in.State = &st
	return contract.Status{}, workflow.NewContinueAsNewError(ctx, contract.AnnotationRunName, in)
}

func (r *run) status(ctx workflow.Context) contract.Status {
	c := r.st.Counts
	return contract.Status{
		WorkflowID:       workflow.GetInfo(ctx).WorkflowExecution.ID,
		Annotator:        r.in.Annotator,
		Domain:           string(r.in.Domain),
		Status:           r.st.Status,
		Target:           r.in.Target,
		Completed:        c.Total(),
		OK:               c.OK,
		Malformed:        c.Malformed,
		Errors:           c.Error,
		Blocked:          c.Blocked,
		DatasetSize:      r.st.DatasetSize,
		SamplesPerMinute: r.st.SamplesPerMinute,
		LastError:        r.st.LastError,
		Restarts:         r.st.Restarts,
		StartedAt:        r.st.StartedAt,
		LastHeartbeat:    r.st.LastProgress,
		NextTry:          r.st.NextTry,
		Mode:             r.in.Settings.Mode,
		Batch:            r.batchStatus(),
	}
}
