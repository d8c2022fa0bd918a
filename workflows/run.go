package workflows

import (
	"errors"
	"fmt"
	"time"

	enumspb "go.temporal.io/api/enums/v1"
	"go.temporal.io/sdk/temporal"
	"go.temporal.io/sdk/workflow"

	"github.com/mhannotator/mha/activities"
	"github.com/mhannotator/mha/internal/labels"
	"github.com/mhannotator/mha/internal/store"
)

// maxHistoryEvents bounds one run's history well below the server's limits; each batch adds
// about ten events, so a run continues as new every couple of hundred batches.
const maxHistoryEvents = 2000

// RunSettings are the config values the workflow itself needs; everything else (provider,
// model, key, re-asks) is read by the activities, so no secret enters history.
type RunSettings struct {
	BatchSize          int
	HeartbeatTimeout   time.Duration
	BatchTimeout       time.Duration // StartToClose of one batch attempt
	MaxRestartAttempts int
}

// RunInput starts a run, and carries its state across continue-as-new.
type RunInput struct {
	Annotator string
	Domain    labels.Domain
	Target    int
	Settings  RunSettings
	State     *RunState // nil on a fresh start
}

// RunState is everything a run knows that the store does not.
type RunState struct {
	Status           string
	Paused           bool
	Position         int // next dataset position to work on
	Counts           store.Counts
	DatasetSize      int
	NeedsProgress    bool // re-read counts and position from the store before the next batch
	Restarts         int
	LastError        string
	StartedAt        time.Time
	LastProgress     time.Time
	RateSince        time.Time // start of the current running stretch, for samples per minute
	RateSamples      int
	SamplesPerMinute float64
}

// Status is the document the `status` query returns.
type Status struct {
	WorkflowID       string    `json:"workflow_id"`
	Annotator        string    `json:"annotator"`
	Domain           string    `json:"domain"`
	Status           string    `json:"status"`
	Target           int       `json:"target"`
	Completed        int       `json:"completed"` // stored annotations of any status, within target
	OK               int       `json:"ok"`
	Malformed        int       `json:"malformed"`
	Errors           int       `json:"errors"`
	Blocked          int       `json:"blocked"`
	DatasetSize      int       `json:"dataset_size"`
	SamplesPerMinute float64   `json:"samples_per_minute"`
	LastError        string    `json:"last_error,omitempty"`
	Restarts         int       `json:"restarts"`
	StartedAt        time.Time `json:"started_at"`
	LastHeartbeat    time.Time `json:"last_heartbeat"` // when the last batch reported progress
}

// AnnotationRun works through the first Target samples of the dataset for one (annotator,
// domain), a batch per activity, until done or stopped. Failure is a state: when a batch's
// retries are spent the run waits, with its progress, for `reset` or `resume`.
func AnnotationRun(ctx workflow.Context, in RunInput) (Status, error) {
	r := &run{in: in}
	if in.State != nil {
		r.st = *in.State
	} else {
		now := workflow.Now(ctx)
		r.st = RunState{NeedsProgress: true, StartedAt: now, RateSince: now}
	}
	return r.execute(ctx)
}

type run struct {
	in            RunInput
	st            RunState
	stop          bool
	cancelBatch   workflow.CancelFunc // set while a batch runs
	searchAttrsOn bool
}

func (r *run) execute(ctx workflow.Context) (Status, error) {
	if err := workflow.SetQueryHandler(ctx, QueryStatus, func() (Status, error) { return r.status(ctx), nil }); err != nil {
		return Status{}, err
	}
	// Upserting a search attribute the namespace lacks fails the workflow task, so only runs
	// started with them (the starter registers them first) keep RunStatus up to date.
	_, r.searchAttrsOn = workflow.GetTypedSearchAttributes(ctx).GetKeyword(RunStatusKey)
	for {
		r.drainSignals(ctx)
		switch {
		case r.stop:
			r.setStatus(ctx, StatusStopped)
			return r.status(ctx), nil
		case r.st.Status == StatusFailed:
			r.awaitSignal(ctx)
			continue
		case r.st.Paused:
			r.setStatus(ctx, StatusPaused)
			r.awaitSignal(ctx)
			continue
		}
		if r.st.Status != StatusRunning {
			r.st.RateSince, r.st.RateSamples = workflow.Now(ctx), 0
		}
		r.setStatus(ctx, StatusRunning)

		if r.st.NeedsProgress || r.st.Position >= r.end() {
			done, err := r.readProgress(ctx)
			if err != nil {
				r.fail(ctx, err)
				continue
			}
			if done {
				r.setStatus(ctx, StatusCompleted)
				return r.status(ctx), nil
			}
		}
		r.runBatch(ctx)

		if continueAsNewDue(ctx, maxHistoryEvents) {
			return r.continueAsNew(ctx)
		}
	}
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
	var p activities.ProgressResult
	err := workflow.ExecuteActivity(actx, activities.ProgressName,
		activities.ProgressInput{Annotator: r.in.Annotator, Domain: r.in.Domain, Target: r.in.Target}).Get(ctx, &p)
	if err != nil {
		return false, err
	}
	r.st.Counts, r.st.DatasetSize, r.st.NeedsProgress = p.Counts, p.DatasetSize, false
	if p.DatasetSize == 0 {
		return false, temporal.NewNonRetryableApplicationError("no samples in the store: import a dataset, then reset the run", activities.ErrNoSamples, nil)
	}
	if p.FirstMissing < 0 {
		r.st.Position = r.end()
		return true, nil
	}
	r.st.Position = p.FirstMissing
	return false, nil
}

func (r *run) runBatch(ctx workflow.Context) {
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
			NonRetryableErrorTypes: activities.NonRetryable,
		},
	})
	in := activities.BatchInput{
		Annotator: r.in.Annotator, Domain: r.in.Domain, Target: r.in.Target,
		From: r.st.Position, Count: min(r.in.Settings.BatchSize, r.end()-r.st.Position),
	}
	fut := workflow.ExecuteActivity(bctx, activities.AnnotateBatchName, in)
	r.cancelBatch = cancel
	for !fut.IsReady() {
		sel := workflow.NewSelector(ctx)
		sel.AddFuture(fut, func(workflow.Future) {})
		r.addSignals(ctx, sel)
		sel.Select(ctx)
	}
	r.cancelBatch = nil
	cancel()

	var res activities.BatchResult
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
	return errors.As(err, &app) && app.Type() == activities.ErrDailyQuota
}

// waitForQuota waits on a durable timer until the day's quota returns: no activity and no
// worker slot is held meanwhile, and the wait survives worker and server restarts. Pause and
// stop still work while it waits.
func (r *run) waitForQuota(ctx workflow.Context, err error) {
	var app *temporal.ApplicationError
	errors.As(err, &app)
	var reset time.Time
	if app.Details(&reset) != nil || reset.IsZero() {
		reset = workflow.Now(ctx).Add(time.Hour)
	}
	r.st.LastError = fmt.Sprintf("%s; waiting until %s", app.Message(), reset.UTC().Format(time.RFC3339))
	r.st.NeedsProgress = true
	r.setStatus(ctx, StatusWaitingQuota)
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

func (r *run) fail(ctx workflow.Context, err error) {
	r.st.LastError = errorMessage(err)
	r.st.NeedsProgress = true
	r.st.SamplesPerMinute = 0
	r.setStatus(ctx, StatusFailed)
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
func (r *run) awaitSignal(ctx workflow.Context) {
	sel := workflow.NewSelector(ctx)
	r.addSignals(ctx, sel)
	sel.Select(ctx)
}

func (r *run) signalNames() []string {
	return []string{SignalPause, SignalResume, SignalStop, SignalReset, SignalTarget}
}

func (r *run) addSignals(ctx workflow.Context, sel workflow.Selector) {
	for _, name := range r.signalNames() {
		sel.AddReceive(workflow.GetSignalChannel(ctx, name), func(c workflow.ReceiveChannel, _ bool) {
			r.receive(ctx, c, name)
		})
	}
}

// drainSignals applies every signal already delivered, without blocking.
func (r *run) drainSignals(ctx workflow.Context) {
	for _, name := range r.signalNames() {
		c := workflow.GetSignalChannel(ctx, name)
		for r.receiveAsync(ctx, c, name) {
		}
	}
}

func (r *run) receive(ctx workflow.Context, c workflow.ReceiveChannel, name string) {
	var target int
	if name == SignalTarget {
		c.Receive(ctx, &target)
	} else {
		c.Receive(ctx, nil)
	}
	r.apply(ctx, name, target)
}

func (r *run) receiveAsync(ctx workflow.Context, c workflow.ReceiveChannel, name string) bool {
	var target int
	var ok bool
	if name == SignalTarget {
		ok = c.ReceiveAsync(&target)
	} else {
		ok = c.ReceiveAsync(nil)
	}
	if ok {
		r.apply(ctx, name, target)
	}
	return ok
}

func (r *run) apply(ctx workflow.Context, name string, target int) {
	logger := workflow.GetLogger(ctx)
	logger.Info("Signal received", "signal", name)
	switch name {
	case SignalPause:
		r.st.Paused = true
		r.cancelRunningBatch()
	case SignalStop:
		r.stop = true
		r.cancelRunningBatch()
	case SignalResume:
		r.st.Paused = false
		if r.st.Status == StatusFailed {
			r.clearFailure()
		}
	case SignalReset:
		r.clearFailure()
	case SignalTarget:
		if target < 0 {
			logger.Warn("Ignoring negative target", "target", target)
			return
		}
		r.in.Target = target
		r.st.NeedsProgress = true
	}
}

func (r *run) cancelRunningBatch() {
	if r.cancelBatch != nil {
		r.cancelBatch()
	}
}

func (r *run) clearFailure() {
	if r.st.Status == StatusFailed {
		r.st.Status = StatusPaused // anything but failed; the loop sets the real status next
		r.st.Restarts++
	}
	r.st.LastError = ""
	r.st.NeedsProgress = true
}

func (r *run) setStatus(ctx workflow.Context, status string) {
	if r.st.Status == status {
		return
	}
	r.st.Status = status
	if r.searchAttrsOn {
		if err := workflow.UpsertTypedSearchAttributes(ctx, RunStatusKey.ValueSet(status)); err != nil {
			workflow.GetLogger(ctx).Warn("Could not update the RunStatus search attribute", "error", err)
		}
	}
}

// continueAsNew hands the state to a fresh run. Signals still buffered would be lost, so they
// are applied first; a stop among them ends the run here instead.
func (r *run) continueAsNew(ctx workflow.Context) (Status, error) {
	r.drainSignals(ctx)
	_ = workflow.Await(ctx, func() bool { return workflow.AllHandlersFinished(ctx) })
	r.drainSignals(ctx)
	if r.stop {
		r.setStatus(ctx, StatusStopped)
		return r.status(ctx), nil
	}
	st := r.st
	in := r.in
	in.State = &st
	return Status{}, workflow.NewContinueAsNewError(ctx, AnnotationRunName, in)
}

func (r *run) status(ctx workflow.Context) Status {
	c := r.st.Counts
	return Status{
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
	}
}
