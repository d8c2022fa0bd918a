package activities

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"sync"
	"time"

	"go.temporal.io/api/serviceerror"
	"go.temporal.io/sdk/activity"
	"go.temporal.io/sdk/temporal"

	"github.com/mhannotator/mha/internal/config"
	"github.com/mhannotator/mha/internal/contract"
	"github.com/mhannotator/mha/internal/llm"
)

// This file is how a batch learns that it must stop (pause, stop, Temporal's own activity
// pause and reset, worker shutdown, an attempt the server gave up on) and how it waits: for a
// quota slot, a 429 penalty or an in-place retry, never longer than a short horizon.

// Error types a batch ends with that are nobody's fault and cost no restart attempt.
const (
	errTypeNoProgress     = "NoProgress"
	errTypeWorkerStopping = "WorkerStopping"
)

var (
	// errCancelled: the server says the batch was cancelled (the run was paused or stopped).
	errCancelled = errors.New("batch cancelled")
	// errNotCurrent: the server no longer knows this attempt (it timed out, or its run closed).
	errNotCurrent = errors.New("this attempt is no longer current (timed out or its run closed)")
	// errNoProgress cancels a batch whose samples stopped progressing.
	errNoProgress = temporal.NewApplicationError("no sample progressed within the heartbeat timeout; the call was cut", errTypeNoProgress)
)

// checkEvery is how often a waiting batch asks whether it was cancelled.
const checkEvery = 500 * time.Millisecond

// slotTolerance is how late a call may start after its quota slot; the pool keeps each slot
// that much longer in its windows.
const slotTolerance = contract.SlotLateness

// horizon is the longest a batch waits inside its worker slot for quota or a retry; longer
// waits end the batch, and the run sleeps on a durable timer instead.
func horizon(g config.Global) time.Duration { return min(5*time.Second, g.HeartbeatTimeout/2) }

// control is how the lanes of a batch learn from the server whether the batch must stop. A
// synchronous heartbeat, which also checkpoints the batch, asks the question. Before a paid
// call a lane needs a "go on" to a question asked after its previous call ended, so a pause
// that reached the server before that question stops the lane's next call; lanes that need an
// answer at the same time share one question, and the question is asked before the lane
// takes a call slot, so the slot is held for the call alone.
type control struct {
	// free is how old an answer may be before a call of the free offline annotator; zero
	// never asks synchronously (tests without a server): the SDK's own heartbeats then bring
	// a cancellation.
	free time.Duration

	mu      sync.Mutex
	asked   time.Time // when the question behind the latest "go on" was asked
	pending *question // a question on its way, if any
}

// question is one synchronous heartbeat and its answer, shared by the lanes that wait for it.
type question struct {
	asked time.Time
	done  chan struct{}
	err   error
}

// check returns once the server has said "go on" to a question asked at or after since,
// asking it if no question that recent is answered or on its way, or the error that ends the
// batch: cancelled (paused, stopped, Temporal's activity pause or reset), the worker shutting
// down, or the attempt no longer current.
func (b *batch) check(since time.Time) error {
	select {
	case <-b.ctx.Done():
		return errCancelled
	case <-activity.GetWorkerStopChannel(b.ctx):
		return temporal.NewApplicationError("worker is shutting down", errTypeWorkerStopping)
	default:
	}
	c := b.gate
	if c.free <= 0 {
		b.mu.Lock()
		cp := b.checkpoint()
		b.mu.Unlock()
		activity.RecordHeartbeat(b.ctx, cp)
		return nil
	}
	for {
		c.mu.Lock()
		if !c.asked.Before(since) {
			c.mu.Unlock()
			return nil
		}
		q, mine := c.pending, false
		if q == nil {
			q, mine = &question{asked: time.Now(), done: make(chan struct{})}, true
			c.pending = q
		}
		c.mu.Unlock()
		if mine {
			b.ask(q)
		} else {
			<-q.done
		}
		if q.err != nil {
			return q.err
		}
	}
}

// ask sends q, the batch's checkpoint in a synchronous heartbeat, and records its answer: the
// server's reply says whether the batch was cancelled, in the round trip that checkpoints it.
func (b *batch) ask(q *question) {
	b.mu.Lock()
	cp := b.checkpoint()
	b.mu.Unlock()
	err := activity.GetClient(b.ctx).RecordActivityHeartbeat(b.ctx, b.info.TaskToken, cp)
	var canceled *temporal.CanceledError
	var notFound *serviceerror.NotFound
	switch {
	case errors.As(err, &canceled), errors.Is(err, activity.ErrActivityPaused), errors.Is(err, activity.ErrActivityReset):
		q.err = b.cancelled()
	case errors.As(err, &notFound):
		q.err = fmt.Errorf("%w: %v", errNotCurrent, err)
	case err != nil:
		activity.GetLogger(b.ctx).Warn("Control heartbeat failed; going on", "error", err)
	}
	c := b.gate
	c.mu.Lock()
	if q.err == nil && q.asked.After(c.asked) {
		c.asked = q.asked
	}
	c.pending = nil
	c.mu.Unlock()
	close(q.done)
}

// cancelled hands a cancellation learned from the client's heartbeat to the SDK, whose own
// heartbeat cancels the activity's context with the server's reason, so the attempt is
// reported as cancelled (or paused, or reset) and not as failed.
func (b *batch) cancelled() error {
	b.mu.Lock()
	cp := b.checkpoint()
	b.mu.Unlock()
	activity.RecordHeartbeat(b.ctx, cp)
	t := time.NewTimer(5 * time.Second)
	defer t.Stop()
	select {
	case <-b.ctx.Done():
	case <-t.C:
	}
	return errCancelled
}

// checkpoint is a copy of the batch's checkpoint, for a heartbeat. Called with mu held.
func (b *batch) checkpoint() checkpoint {
	cp := b.cp
	cp.Carry.Reasks = maps.Clone(cp.Carry.Reasks)
	return cp
}

// sleep waits d while the batch is still wanted, asking the server every checkEvery.
func (b *batch) sleep(d time.Duration) error {
	// Asked first, too: a wait that follows a call cut at its deadline starts late in the
	// heartbeat timeout, and the server must hear from the batch before it runs out.
	b.deadline.progress()
	if err := b.check(time.Now()); err != nil {
		return err
	}
	until := time.Now().Add(d)
	for left := d; left > 0; left = time.Until(until) {
		t := time.NewTimer(min(left, checkEvery))
		select {
		case <-b.ctx.Done():
			t.Stop()
			return errCancelled
		case <-t.C:
		}
		b.deadline.progress() // waiting is not being stuck
		if err := b.check(time.Now()); err != nil {
			return err
		}
	}
	return nil
}

// reservation is the answer to a Reserve, and when it was asked for.
type reservation struct {
	slots     []time.Time
	exhausted time.Time
	asked     time.Time
	err       error
}

// reserve asks the pool for count slots, in the background.
func (b *batch) reserve(req llm.Request, count int) <-chan reservation {
	ch := make(chan reservation, 1)
	ask := contract.Ask{Requester: b.info.WorkflowExecution.ID, Count: count,
		Tokens: llm.ApproxTokens(req.Prompt) + b.g.MaxOutputTokens} // the prompt and the reply budget
	asked := time.Now()
	go func() {
		limits := b.ann.QuotaLimits(b.g)
		slots, exhausted, err := b.a.Limiter.Reserve(b.ctx, b.ann.QuotaPool, ask, horizon(b.g), limits)
		if err == nil {
			b.a.meter().quotaGranted(b.ann.QuotaPool, len(slots), limits.RequestsPerMinute)
		}
		ch <- reservation{slots: slots, exhausted: exhausted, asked: asked, err: err}
	}()
	return ch
}

// awaitSlot takes the call's slot from the batch's reservation, reserving more when it is
// used up, and waits until the slot starts. A slot beyond the horizon ends the batch: the
// run sleeps until shortly before it, and the pool keeps it for the run meanwhile.
func (b *batch) awaitSlot(req llm.Request, left int) (time.Time, *contract.Wait, error) {
	began := time.Now()
	b.slotMu.Lock()
	at, wait, err := b.takeSlot(req, left)
	b.slotMu.Unlock()
	if err != nil || wait != nil {
		return at, wait, err
	}
	if d := time.Until(at); d > 0 {
		if err := b.sleep(d); err != nil {
			return time.Time{}, nil, err
		}
	}
	b.a.meter().quotaWaited(b.ann.QuotaPool, time.Since(began))
	return at, nil, nil
}

// takeSlot takes the next slot that is not stale, waiting for a reservation if there is none.
// Called with slotMu held: the lanes of a batch share its reservation.
func (b *batch) takeSlot(req llm.Request, left int) (time.Time, *contract.Wait, error) {
	h := horizon(b.g)
	for {
		if len(b.slots) == 0 {
			if b.next == nil {
				b.next = b.reserve(req, b.slotsToAsk(left))
			}
			var r reservation
			select {
			case r = <-b.next:
			case <-b.ctx.Done():
				return time.Time{}, nil, errCancelled
			}
			b.next = nil
			if r.err != nil {
				if b.ctx.Err() != nil {
					return time.Time{}, nil, errCancelled
				}
				return time.Time{}, nil, r.err
			}
			if len(r.slots) == 0 {
				if r.exhausted.IsZero() {
					return time.Time{}, nil, fmt.Errorf("quota pool %s granted no slot", b.ann.QuotaPool)
				}
				return time.Time{}, &contract.Wait{Until: r.exhausted, Status: contract.StatusWaitingQuota,
					Reason: fmt.Sprintf("requests_per_day of quota pool %s are spent until %s", b.ann.QuotaPool, r.exhausted.UTC().Format(time.RFC3339))}, nil
			}
			// A slot beyond the horizon (by the clock the pool answered from) is held for
			// this run; the pool hands it back on the run's next request, so it is never
			// used from this reservation.
			if at := r.slots[0]; at.After(r.asked.Add(h)) {
				return time.Time{}, &contract.Wait{Until: at.Add(-h / 2), Status: contract.StatusWaitingQuota,
					Reason: fmt.Sprintf("quota pool %s is busy; next call at %s", b.ann.QuotaPool, at.UTC().Format(time.RFC3339))}, nil
			}
			b.slots, b.granted = r.slots, len(r.slots)
		}
		at := b.slots[0]
		b.slots = b.slots[1:]
		if time.Since(at) > slotTolerance {
			continue // too late to use without crowding a later minute
		}
		// The next slots are asked for while the last half are used, so the reservation's
		// round trip is not paid between two calls, even by a batch whose lanes take
		// several slots in that time.
		if len(b.slots) <= max(1, b.granted/2) && b.next == nil && left > 1 && time.Since(b.started) < minBatchSpan {
			b.next = b.reserve(req, b.slotsToAsk(left-1))
		}
		return at, nil, nil
	}
}

// acquire waits for one of the worker's call slots, asking meanwhile whether the batch is
// still wanted; the slot's release frees it (a nil slot when calls are unbounded).
func (b *batch) acquire() (*hold, error) {
	calls := b.a.CallSlots
	if calls == nil {
		return nil, nil
	}
	for {
		t := time.NewTimer(checkEvery)
		select {
		case calls <- struct{}{}:
			t.Stop()
			return b.a.slots.take(func() { <-calls }), nil
		case <-b.ctx.Done():
			t.Stop()
			return nil, errCancelled
		case <-t.C:
			b.deadline.progress() // waiting for a call slot is not being stuck
			// The store is read every checkEvery, the server as often as answerSince wants.
			if err := b.check(b.answerSince(time.Now())); err != nil {
				return nil, err
			}
			if err := b.halted(); err != nil {
				return nil, err
			}
		}
	}
}

// slotsToAsk is how many slots to reserve at once: as many as this batch's lanes can start
// before the last of them would be stale, judged by the annotator's recent call duration.
func (b *batch) slotsToAsk(left int) int {
	d, ok := b.a.callDuration(b.ann.ID)
	if !ok {
		return 1
	}
	return max(1, min(left, 1+int(b.lanes.Load())*int(slotTolerance/max(d, time.Millisecond))))
}

// penalize handles a 429: with a limiter the whole pool waits (the next reservation lands
// after the penalty, and the slots reserved before it are given up); without one, only this
// call waits.
func (b *batch) penalize(err error) (*contract.Wait, error) {
	wait, _ := rateLimitWait(err)
	if !b.a.metered(b.ann) {
		if wait > horizon(b.g) {
			return &contract.Wait{Until: time.Now().Add(wait), Status: contract.StatusWaitingQuota, Reason: err.Error()}, nil
		}
		return nil, b.sleep(wait)
	}
	b.slotMu.Lock()
	b.slots, b.next = nil, nil
	b.slotMu.Unlock()
	return nil, b.a.Limiter.Penalize(b.ctx, b.ann.QuotaPool, time.Now().Add(wait), b.info.WorkflowExecution.ID)
}

func dailyQuotaWait(err error) *contract.Wait {
	var e *llm.Error
	reset := time.Now().Add(time.Hour)
	if errors.As(err, &e) && !e.ResetAt.IsZero() {
		reset = e.ResetAt
	}
	return &contract.Wait{Until: reset, Status: contract.StatusWaitingQuota, Reason: "daily quota spent: " + err.Error()}
}

// classify is the class of a call's error; a call that ran out of time without the
// provider saying why is unavailable, like any timeout.
func classify(err error) llm.Kind {
	if kind, ok := llm.KindOf(err); ok {
		return kind
	}
	if errors.Is(err, context.DeadlineExceeded) {
		return llm.Unavailable
	}
	return ""
}

// progressDeadline is the activity's own stuck detector. The SDK does not enforce the
// heartbeat timeout inside the worker: a timed-out attempt keeps running while the server
// retries it elsewhere. So calls run under ctx, which is cancelled when nothing progressed
// (a call started, a chunk streamed, a sample stored) within the heartbeat timeout. It is
// detached from the activity's cancellation on purpose: pause and stop let the call in
// flight finish.
type progressDeadline struct {
	ctx    context.Context
	cancel context.CancelCauseFunc
	timer  *time.Timer
	limit  time.Duration
}

// onCut is called when the deadline cuts the batch's calls.
func newProgressDeadline(parent context.Context, limit time.Duration, onCut func()) *progressDeadline {
	ctx, cancel := context.WithCancelCause(context.WithoutCancel(parent))
	d := &progressDeadline{ctx: ctx, cancel: cancel, limit: limit}
	if limit > 0 {
		d.timer = time.AfterFunc(limit, func() {
			if ctx.Err() == nil {
				onCut()
			}
			cancel(errNoProgress)
		})
	}
	return d
}

func (d *progressDeadline) progress() {
	if d.timer != nil {
		d.timer.Reset(d.limit)
	}
}

func (d *progressDeadline) stop() {
	if d.timer != nil {
		d.timer.Stop()
	}
	d.cancel(nil)
}
