package workflows

import (
	"errors"
	"fmt"
	"time"

	enumspb "go.temporal.io/api/enums/v1"
	"go.temporal.io/sdk/temporal"
	"go.temporal.io/sdk/workflow"

	"github.com/mhannotator/mha/internal/contract"
)

// legacyRun is the run loop of the previous release, kept so that runs it started replay
// and finish (or continue as new into the current code) unchanged. Do not change it.
func legacyRun(ctx workflow.Context, in contract.RunInput) (contract.Status, error) {
	r := &legacyRunner{newRun(ctx, in)}
	return r.execute(ctx)
}

type legacyRunner struct {
	run // its state, and the steps both loops share
}

func (r *legacyRunner) execute(ctx workflow.Context) (contract.Status, error) {
	if err := workflow.SetQueryHandler(ctx, contract.QueryStatus, func() (contract.Status, error) { return r.status(ctx), nil }); err != nil {
		return contract.Status{}, err
	}
	// Upserting a search attribute the namespace lacks fails the workflow task, so only runs
	// started with them (the starter registers them first) keep RunStatus up to date.
	_, r.searchAttrsOn = workflow.GetTypedSearchAttributes(ctx).GetKeyword(contract.RunStatusKey)
	for {
		r.drainSignals(ctx)
		switch {
		case r.stop:
			r.setStatus(ctx, contract.StatusStopped)
			return r.status(ctx), nil
		case r.st.Status == contract.StatusFailed:
			r.awaitSignal(ctx)
			continue
		case r.st.Paused:
			r.setStatus(ctx, contract.StatusPaused)
			r.awaitSignal(ctx)
			continue
		}
		if r.st.Status != contract.StatusRunning {
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
				r.setStatus(ctx, contract.StatusCompleted)
				return r.status(ctx), nil
			}
		}
		r.runBatch(ctx)

		if continueAsNewDue(ctx, maxHistoryEvents) {
			return r.continueAsNew(ctx)
		}
	}
}

func (r *legacyRunner) runBatch(ctx workflow.Context) {
	bctx, cancel := workflow.WithCancel(ctx)
	bctx = workflow.WithActivityOptions(bctx, workflow.ActivityOptions{
		StartToCloseTimeout: r.in.Settings.BatchTimeout,
		HeartbeatTimeout:    r.in.Settings.HeartbeatTimeout,
		// Pause and stop wait for the sample in flight to be stored before the run settles.
		WaitForCancellation: true,
		RetryPolicy: &temporal.RetryPolicy{
			InitialInterval:        time.Second,
			BackoffCoefficient:     2,
			MaximumInterval:        time.Minute,
			MaximumAttempts:        int32(r.in.Settings.MaxRestartAttempts),
			NonRetryableErrorTypes: contract.NonRetryable,
		},
	})
	in := contract.BatchInput{
		Annotator: r.in.Annotator, Domain: r.in.Domain, Target: r.in.Target,
		From: r.st.Position, Count: min(r.in.Settings.BatchSize, r.end()-r.st.Position),
	}
	fut := workflow.ExecuteActivity(bctx, contract.AnnotateBatchName, in)
	r.cancelBatch = cancel
	for !fut.IsReady() {
		sel := workflow.NewSelector(ctx)
		sel.AddFuture(fut, func(workflow.Future) {})
		r.addSignals(ctx, sel)
		sel.Select(ctx)
	}
	r.cancelBatch = nil
	cancel()

	var res contract.BatchResult
	err := fut.Get(ctx, &res)
	var canceled *temporal.CanceledError
	switch {
	case errors.As(err, &canceled):
		// Paused or stopped mid-batch: the samples stored so far are counted from the store.
		r.st.NeedsProgress = true
	case isDailyQuota(err):
		r.waitForQuota(ctx, err)
	case err != nil:
		r.fail(ctx, err)
	default:
		now := workflow.Now(ctx)
		r.st.Position, r.st.Counts, r.st.DatasetSize = res.Next, res.Counts, res.DatasetSize
		r.st.Restarts += int(res.Attempt) - 1
		r.st.LastProgress = now
		r.st.RateSamples += res.Stored
		if minutes := now.Sub(r.st.RateSince).Minutes(); minutes > 0 {
			r.st.SamplesPerMinute = float64(r.st.RateSamples) / minutes
		}
	}
}

func isDailyQuota(err error) bool {
	var app *temporal.ApplicationError
	return errors.As(err, &app) && app.Type() == contract.ErrDailyQuota
}

// waitForQuota waits on a durable timer until the day's quota returns: no activity and no
// worker slot is held meanwhile, and the wait survives worker and server restarts. Pause and
// stop still work while it waits.
func (r *legacyRunner) waitForQuota(ctx workflow.Context, err error) {
	var app *temporal.ApplicationError
	errors.As(err, &app)
	var reset time.Time
	if app.Details(&reset) != nil || reset.IsZero() {
		reset = workflow.Now(ctx).Add(time.Hour)
	}
	r.st.LastError = fmt.Sprintf("%s; waiting until %s", app.Message(), reset.UTC().Format(time.RFC3339))
	r.st.NeedsProgress = true
	r.setStatus(ctx, contract.StatusWaitingQuota)
	wctx, cancel := workflow.WithCancel(ctx)
	defer cancel()
	timer := workflow.NewTimer(wctx, reset.Sub(workflow.Now(ctx)))
	for !timer.IsReady() && !r.stop && !r.st.Paused {
		sel := workflow.NewSelector(ctx)
		sel.AddFuture(timer, func(workflow.Future) {})
		r.addSignals(ctx, sel)
		sel.Select(ctx)
	}
	if timer.IsReady() {
		r.st.LastError = ""
	}
}

func (r *legacyRunner) fail(ctx workflow.Context, err error) {
	r.st.LastError = errorMessage(err)
	r.st.NeedsProgress = true
	r.st.SamplesPerMinute = 0
	r.setStatus(ctx, contract.StatusFailed)
	workflow.GetLogger(ctx).Warn("Run failed; waiting for reset or resume", "error", r.st.LastError)
}

// errorMessage is the cause a person can act on, without the activity wrapper's noise.
func errorMessage(err error) string {
	var app *temporal.ApplicationError
	if errors.As(err, &app) {
		if app.Type() != "" && !app.NonRetryable() {
			return app.Type() + ": " + app.Message()
		}
		return app.Message()
	}
	var timeout *temporal.TimeoutError
	if errors.As(err, &timeout) {
		if timeout.TimeoutType() == enumspb.TIMEOUT_TYPE_HEARTBEAT {
			return "no progress within the heartbeat timeout (the batch was stuck)"
		}
		return "batch timed out (" + timeout.TimeoutType().String() + ")"
	}
	return err.Error()
}

// awaitSignal blocks until a signal arrives and applies it.
func (r *legacyRunner) awaitSignal(ctx workflow.Context) {
	sel := workflow.NewSelector(ctx)
	r.addSignals(ctx, sel)
	sel.Select(ctx)
}

func (r *legacyRunner) signalNames() []string {
	return []string{contract.SignalPause, contract.SignalResume, contract.SignalStop, contract.SignalReset, contract.SignalTarget}
}

func (r *legacyRunner) addSignals(ctx workflow.Context, sel workflow.Selector) {
	for _, name := range r.signalNames() {
		sel.AddReceive(workflow.GetSignalChannel(ctx, name), func(c workflow.ReceiveChannel, _ bool) {
			r.receive(ctx, c, name)
		})
	}
}

// drainSignals applies every signal already delivered, without blocking.
func (r *legacyRunner) drainSignals(ctx workflow.Context) {
	for _, name := range r.signalNames() {
		c := workflow.GetSignalChannel(ctx, name)
		for r.receiveAsync(ctx, c, name) {
		}
	}
}

func (r *legacyRunner) receive(ctx workflow.Context, c workflow.ReceiveChannel, name string) {
	var target int
	if name == contract.SignalTarget {
		c.Receive(ctx, &target)
	} else {
		c.Receive(ctx, nil)
	}
	r.apply(ctx, name, target)
}

func (r *legacyRunner) receiveAsync(ctx workflow.Context, c workflow.ReceiveChannel, name string) bool {
	var target int
	var ok bool
	if name == contract.SignalTarget {
		ok = c.ReceiveAsync(&target)
	} else {
		ok = c.ReceiveAsync(nil)
	}
	if ok {
		r.apply(ctx, name, target)
	}
	return ok
}

func (r *legacyRunner) apply(ctx workflow.Context, name string, target int) {
	logger := workflow.GetLogger(ctx)
	logger.Info("Signal received", "signal", name)
	switch name {
	case contract.SignalPause:
		r.st.Paused = true
		r.cancelRunningBatch()
	case contract.SignalStop:
		r.stop = true
		r.cancelRunningBatch()
	case contract.SignalResume:
		r.st.Paused = false
		if r.st.Status == contract.StatusFailed {
			r.clearFailure()
		}
	case contract.SignalReset:
		r.clearFailure()
	case contract.SignalTarget:
		if target < 0 {
			logger.Warn("Ignoring negative target", "target", target)
			return
		}
		r.in.Target = target
		r.st.NeedsProgress = true
	}
}

func (r *legacyRunner) cancelRunningBatch() {
	if r.cancelBatch != nil {
		r.cancelBatch()
	}
}

func (r *legacyRunner) clearFailure() {
	if r.st.Status == contract.StatusFailed {
		r.st.Status = contract.StatusPaused // anything but failed; the loop sets the real status next
		r.st.Restarts++
	}
	r.st.LastError = ""
	r.st.NeedsProgress = true
}

// continueAsNew hands the state to a fresh run. Signals still buffered would be lost, so they
// are applied first; a stop among them ends the run here instead.
func (r *legacyRunner) continueAsNew(ctx workflow.Context) (contract.Status, error) {
	r.drainSignals(ctx)
	_ = workflow.Await(ctx, func() bool { return workflow.AllHandlersFinished(ctx) })
	r.drainSignals(ctx)
	if r.stop {
		r.setStatus(ctx, contract.StatusStopped)
		return r.status(ctx), nil
	}
	st := r.st
	in := r.in
	in.State = &st
	return contract.Status{}, workflow.NewContinueAsNewError(ctx, contract.AnnotationRunName, in)
}
