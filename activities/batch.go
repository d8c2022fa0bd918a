package activities

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"sync/atomic"
	"time"

	"go.temporal.io/sdk/activity"
	"go.temporal.io/sdk/temporal"

	"github.com/mhannotator/mha/internal/config"
	"github.com/mhannotator/mha/internal/contract"
	"github.com/mhannotator/mha/internal/labels"
	"github.com/mhannotator/mha/internal/llm"
	"github.com/mhannotator/mha/internal/prompts"
	"github.com/mhannotator/mha/internal/store"
)

// checkpoint is what a batch attempt records in its heartbeat details, so the next attempt
// of the same batch goes on from there.
type checkpoint struct {
	Last    int // position of the last sample stored by this batch, -1 for none
	Carry   contract.Carry
	Strikes int // attempts in a row that failed without storing anything, for other reasons
}

// batch is one attempt of one batch. Its samples are worked on by lanes: one always, and
// more while the worker has idle call slots, so a run whose batch is among the last ones
// running uses the call slots the others left. Lanes share the fields below mu.
type batch struct {
	a        *Activities
	ctx      context.Context
	info     activity.Info
	in       contract.BatchInput
	g        config.Global
	ann      config.Annotator
	provider llm.Provider
	prompt   prompts.Prompt
	deadline *progressDeadline
	started  time.Time
	size     int // samples in the store
	end      int // the position after the run's last sample

	slotMu  sync.Mutex         // held while a lane takes a quota slot, maybe waiting for it
	slots   []time.Time        // granted quota slots not used yet
	granted int                // how many slots the last reservation granted
	next    <-chan reservation // the next slots, asked for meanwhile

	mu        sync.Mutex
	cp        checkpoint
	gate      *control
	stored    int
	queue     []store.Sample // loaded and not taken yet
	loadedTo  int            // the position after the last loaded sample
	unsettled map[int]bool   // positions loaded and not stored yet
	lanes     atomic.Int32   // lanes opened; read without mu when sizing a reservation
	halt      bool           // a lane ended the batch: take nothing more
	wait      *contract.Wait
	err       error
}

// minBatchSpan: quick samples are grouped until a batch has lasted about this long, so a fast
// provider does not pay a workflow round trip for every few samples.
const minBatchSpan = 2 * time.Second

func (a *Activities) newBatch(ctx context.Context, in contract.BatchInput) (*batch, error) {
	info := activity.GetInfo(ctx)
	cfg := a.config(ctx)
	b := &batch{a: a, ctx: ctx, info: info, in: in, g: cfg.Global, cp: checkpoint{Last: in.From - 1, Carry: in.Carry}, started: time.Now(),
		unsettled: map[int]bool{}}
	var err error
	if b.ann, b.provider, err = a.annotator(ctx, cfg, in.Annotator); err != nil {
		return nil, err
	}
	if b.prompt, err = a.Prompts.Active(in.Annotator, in.Domain); err != nil {
		return nil, nonRetryable(err.Error(), contract.ErrPromptMissing, info.Attempt)
	}
	b.resume()
	a.meter().prepare(b.ann.ID, string(in.Domain), b.ann.Provider, b.ann.ModelName)
	b.gate = &control{free: a.ControlInterval}
	b.deadline = newProgressDeadline(ctx, info.HeartbeatTimeout, func() { a.meter().deadlineCut(in.Annotator, string(in.Domain)) })
	return b, nil
}

// resume takes the checkpoint of the previous attempt of this batch, if there was one. The
// previous release heartbeated the last stored position alone.
func (b *batch) resume() {
	if !activity.HasHeartbeatDetails(b.ctx) {
		return
	}
	var cp checkpoint
	if err := activity.GetHeartbeatDetails(b.ctx, &cp); err == nil {
		if cp.Last >= b.cp.Last {
			b.cp = cp
		}
		return
	}
	var last int
	if err := activity.GetHeartbeatDetails(b.ctx, &last); err == nil && last > b.cp.Last {
		b.cp.Last = last
	}
}

// run works through the batch's samples, and on through the run's next ones while the batch
// is younger than minBatchSpan; it ends early with a Wait when the run has to wait longer
// than a worker slot should be held.
func (b *batch) run() (contract.BatchResult, error) {
	var err error
	if b.size, err = b.a.Store.CountSamples(b.ctx); err != nil {
		return contract.BatchResult{}, err
	}
	b.end = min(b.in.Target, b.size)
	b.loadedTo = b.cp.Last + 1
	if err := b.load(b.in.From + b.in.Count); err != nil {
		return contract.BatchResult{}, err
	}
	var lanes sync.WaitGroup
	b.lanes.Store(1)
	lanes.Add(1)
	b.lane(&lanes)
	lanes.Wait()
	return contract.BatchResult{Next: b.resumeAt(), Wait: b.wait}, b.err
}

// lane takes samples one after another until none is left or the batch halts. Between two
// samples it opens another lane when a call slot of the worker is idle.
func (b *batch) lane(lanes *sync.WaitGroup) {
	defer lanes.Done()
	b.a.lanes.Add(1)
	defer b.a.lanes.Add(-1)
	ln := &laneState{called: time.Now()}
	for {
		t0 := time.Now()
		s, left, ok := b.take()
		b.a.meter().phase(phaseLoad, t0)
		if !ok {
			return
		}
		wait, err := b.settleSample(s, left, ln)
		b.mu.Lock()
		if (wait != nil || err != nil) && !b.halt {
			b.halt, b.wait, b.err = true, wait, err
		}
		// No second lane while samples keep failing: a request that is wrong for every
		// sample should cost max_consecutive_errors calls, not more.
		spare := !b.halt && len(b.queue) > 0 && int(b.lanes.Load()) < b.maxLanes() && b.idleCallSlot() && b.cp.Carry.StreakCount == 0 &&
			int(b.a.lanes.Load()) < lanesPerCallSlot*cap(b.a.CallSlots)
		if spare {
			b.lanes.Add(1)
			lanes.Add(1)
		}
		b.mu.Unlock()
		if wait != nil || err != nil {
			return
		}
		if spare {
			go b.lane(lanes)
		}
	}
}

// lanesPerCallSlot bounds the lanes of all batches on a worker: a lane spends about half its
// time outside its call (storing, asking, reserving), so two per call slot keep the slots
// busy, and more only crowd the worker's CPU, which a fast provider's calls wait for.
const lanesPerCallSlot = 2

// maxLanes is how many samples of one batch may be in the works at once: as many as the
// worker has call slots (one without call slots, as in tests).
func (b *batch) maxLanes() int {
	if b.a.CallSlots == nil {
		return 1
	}
	return cap(b.a.CallSlots)
}

func (b *batch) idleCallSlot() bool { return len(b.a.CallSlots) < cap(b.a.CallSlots) }

// take hands a lane the next sample, loading the run's next ones while the batch is young.
func (b *batch) take() (store.Sample, int, bool) {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.halt {
		return store.Sample{}, 0, false
	}
	for len(b.queue) == 0 {
		// A batch with quota slots left goes on to use them: nobody else can.
		if b.loadedTo >= b.end || (time.Since(b.started) >= minBatchSpan && !b.holdsSlots()) {
			return store.Sample{}, 0, false
		}
		if err := b.load(b.loadedTo + max(1, b.in.Count)); err != nil {
			b.halt, b.err = true, err
			return store.Sample{}, 0, false
		}
	}
	s := b.queue[0]
	b.queue = b.queue[1:]
	left := len(b.queue) + 1
	if time.Since(b.started) < minBatchSpan {
		left += b.end - b.loadedTo // the batch may go on into these
	}
	return s, left, true
}

// holdsSlots reports whether the batch has quota slots it has not used yet, or asked for.
// It stops asking once it is minBatchSpan old, so it ends soon after.
func (b *batch) holdsSlots() bool {
	b.slotMu.Lock()
	defer b.slotMu.Unlock()
	return len(b.slots) > 0 || b.next != nil
}

// load queues the samples up to position to that have no annotation yet. Called with mu held
// (or before the lanes start).
func (b *batch) load(to int) error {
	to = min(to, max(b.end, b.in.From+b.in.Count))
	if b.loadedTo >= to {
		return nil
	}
	samples, err := b.a.Store.Samples(b.ctx, b.loadedTo, to-b.loadedTo)
	if err != nil {
		return err
	}
	done, err := b.a.Store.AnnotatedIDs(b.ctx, b.in.Annotator, string(b.in.Domain), sampleIDs(samples))
	if err != nil {
		return err
	}
	for _, s := range samples {
		if !done[s.ID] {
			b.queue = append(b.queue, s)
			b.unsettled[s.Position] = true
		}
	}
	b.loadedTo = to
	return nil
}

// resumeAt is where the batch's work goes on: the first position loaded and not stored, or
// the end of what was loaded. Called with mu held, or once the lanes are done.
func (b *batch) resumeAt() int {
	at := b.loadedTo
	for p := range b.unsettled {
		at = min(at, p)
	}
	return at
}

// laneState is what one lane knows of its own past.
type laneState struct {
	// called is when the lane's last call ended: the next one needs a "go on" to a later
	// question. heard is when the lane's last store write, which read the batch's halt
	// record and found none, began.
	called, heard time.Time
}

// settleSample annotates one sample and stores the result, or says why the run must wait.
func (b *batch) settleSample(s store.Sample, left int, ln *laneState) (*contract.Wait, error) {
	result, wait, err := b.annotate(s, left, ln)
	if err != nil || wait != nil {
		return wait, err
	}
	// The call is paid for: store it even if the batch was cancelled meanwhile.
	wctx, cancel := context.WithTimeout(context.WithoutCancel(b.ctx), storeWriteTimeout)
	t0 := time.Now()
	halted, err := b.a.Store.UpsertAnnotationCheckingHalt(wctx, result, b.info.WorkflowExecution.ID, b.in.HaltKey)
	b.a.meter().phase(phaseStore, t0)
	cancel()
	if err != nil {
		return nil, fmt.Errorf("store annotation of sample %s: %w", s.ID, err)
	}
	if !halted {
		ln.heard = t0
	}
	b.deadline.progress()
	b.a.meter().stored(result)
	b.mu.Lock()
	b.stored++
	delete(b.unsettled, s.Position)
	delete(b.cp.Carry.Reasks, s.ID)
	b.cp.Last, b.cp.Strikes = b.resumeAt()-1, 0
	err = b.streak(result)
	b.mu.Unlock()
	if err != nil || !halted {
		return nil, err
	}
	return nil, b.awaitCancel()
}

// streak fails the run when max_consecutive_errors samples in a row ended with the same
// non-transient error: the request is wrong, not the samples (those rows stay visible).
// Called with mu held.
func (b *batch) streak(a store.Annotation) error {
	c := &b.cp.Carry
	if a.Status != store.StatusError {
		c.StreakError, c.StreakCount = "", 0
		return nil
	}
	if a.Error == c.StreakError {
		c.StreakCount++
	} else {
		c.StreakError, c.StreakCount = a.Error, 1
	}
	if c.StreakCount < b.g.MaxConsecutiveErrors {
		return nil
	}
	msg := fmt.Sprintf("%d samples in a row failed with the same error (%s); fix the request or the config, then reset the run", c.StreakCount, c.StreakError)
	c.StreakError, c.StreakCount = "", 0
	return nonRetryable(msg, contract.ErrSystematic, b.info.Attempt)
}

// settle turns the error that ends an attempt into what the server should see: a
// cancellation as a cancellation, a wedge or a worker shutdown as a retryable failure that
// costs no restart attempt, and anything else as a strike; max_restart_attempts strikes in a
// row give up.
func (b *batch) settle(err error) error {
	var app *temporal.ApplicationError
	switch {
	case errors.Is(err, errCancelled):
		if cause := context.Cause(b.ctx); cause != nil {
			return cause
		}
		// The SDK has not cancelled the context yet: still never report success.
		return temporal.NewCanceledError()
	case errors.As(err, &app) && (app.NonRetryable() || app.Type() == errTypeNoProgress || app.Type() == errTypeWorkerStopping):
		return err
	case errors.Is(err, errNotCurrent):
		return err
	}
	if b.stored == 0 {
		b.cp.Strikes++
	}
	if b.cp.Strikes >= b.g.MaxRestartAttempts {
		return nonRetryable(fmt.Sprintf("%d attempts in a row failed without storing anything: %v", b.cp.Strikes, err), contract.ErrGaveUp, b.info.Attempt)
	}
	_ = b.check(time.Now()) // the next attempt reads the strikes from here
	return err
}

// annotate asks for one sample's label, re-asking while the reply is malformed, and returns
// the annotation to store, or a Wait when the run should wait outside the worker. ln.called is
// when the lane's last call ended, kept up to date.
func (b *batch) annotate(s store.Sample, left int, ln *laneState) (store.Annotation, *contract.Wait, error) {
	req := request(b.ann, b.prompt, b.in.Domain, s)
	result := store.Annotation{Annotator: b.ann.ID, Domain: string(b.in.Domain), SampleID: s.ID, Model: b.ann.ModelName, PromptHash: b.prompt.Hash}
	b.mu.Lock()
	reasks := b.cp.Carry.Reasks[s.ID] // spent by an earlier attempt of this batch
	b.mu.Unlock()
	start := time.Now()
	quick := 0
	for {
		cycle := time.Now()
		slot, wait, err := b.beforeCall(req, left, ln)
		if err != nil || wait != nil {
			return store.Annotation{}, wait, err
		}
		b.deadline.progress()
		m := b.a.meter()
		m.callStarted(b.ann.Provider)
		sent := time.Now()
		// Each streamed chunk is progress: the call is alive even before the sample is stored.
		resp, err := complete(llm.WithProgress(b.deadline.ctx, b.deadline.progress), b.provider, req, callTimeout(b.g), slot)
		slot.release()
		ln.called = time.Now()
		took := ln.called.Sub(sent)
		if err != nil {
			m.callEnded(b.ann.Provider, b.ann.ModelName, took, outcomeOf(err))
		}
		// From one slot to the next: the call, and the wait for a call slot before it.
		b.a.observe(b.ann.ID, time.Since(cycle))
		if cause := context.Cause(b.deadline.ctx); cause != nil && err != nil {
			return store.Annotation{}, nil, cause
		}
		switch kind := classify(err); kind {
		case llm.RateLimited:
			if wait, err := b.penalize(err); err != nil || wait != nil {
				return store.Annotation{}, wait, err
			}
			continue
		case llm.DailyQuota:
			return store.Annotation{}, dailyQuotaWait(err), nil
		case llm.Unavailable:
			if quick < len(quickRetries) {
				quick++
				if err := b.sleep(quickRetries[quick-1]); err != nil {
					return store.Annotation{}, nil, err
				}
				continue
			}
			return store.Annotation{}, &contract.Wait{Status: contract.StatusWaitingRetry, Reason: err.Error()}, nil
		}
		if status, recorded := sampleOutcome(err); recorded {
			result.Status, result.Error, result.Attempt = status, err.Error(), reasks+1
			result.LatencyMS = time.Since(start).Milliseconds()
			return result, nil, nil
		}
		if err != nil {
			return store.Annotation{}, nil, batchError(s.ID, err, b.info.Attempt)
		}
		outcome := labels.Parse(b.in.Domain, resp.Text)
		m.callEnded(b.ann.Provider, b.ann.ModelName, took, replyOutcome(outcome))
		result.RawReply, result.Label = resp.Text, outcome.Label
		result.ParseError, result.ValidityError = outcome.ParseError, outcome.ValidityError
		result.InputTokens += resp.InputTokens
		result.OutputTokens += resp.OutputTokens
		result.CachedTokens += resp.CachedTokens
		result.Attempt = reasks + 1
		if resp.Model != "" {
			result.Model = resp.Model
		}
		if outcome.OK() || reasks >= b.g.MaxRetries {
			result.Status = store.StatusOK
			if !outcome.OK() {
				result.Status = store.StatusMalformed
			}
			result.LatencyMS = time.Since(start).Milliseconds()
			return result, nil, nil
		}
		reasks++
		m.reask(b.ann.ID, string(b.in.Domain))
		b.mu.Lock()
		if b.cp.Carry.Reasks == nil {
			b.cp.Carry.Reasks = map[string]int{}
		}
		b.cp.Carry.Reasks[s.ID] = reasks // checkpointed by the check before the re-ask
		b.mu.Unlock()
	}
}

// beforeCall waits for the call's quota slot, asks whether the run was paused or stopped since
// the lane's last call ended (ln.called), then waits for one of the worker's call slots, asking
// again every checkEvery while it waits: no lane starts a call after a pause it could have
// heard since its last call, nor on an answer older than checkEvery. The question goes to the
// server, or, for a batch with a HaltKey, to the store, and to the server only every control
// interval (for Temporal's own activity pause and reset, and to checkpoint). Both are asked
// before the call slot is taken, so the slot is held for the call alone. It returns the call
// slot, which the caller releases.
func (b *batch) beforeCall(req llm.Request, left int, ln *laneState) (slot *hold, wait *contract.Wait, err error) {
	since := b.answerSince(ln.called)
	for {
		var at time.Time
		if b.a.metered(b.ann) {
			if at, wait, err = b.awaitSlot(req, left); err != nil || wait != nil {
				return nil, wait, err
			}
		}
		asked := time.Now()
		if err := b.check(since); err != nil {
			return nil, nil, err
		}
		// The lane's last store write read the halt record after its last call ended, unless
		// that call stored nothing (a re-ask, a retry).
		if !ln.heard.After(ln.called) {
			if err := b.halted(); err != nil {
				return nil, nil, err
			}
		}
		b.a.meter().phase(phaseControl, asked)
		waited := time.Now()
		if slot, err = b.acquire(); err != nil {
			return nil, nil, err
		}
		b.a.meter().phase(phaseCallSlot, waited)
		if !at.IsZero() && time.Since(at) > slotTolerance {
			slot.release()
			continue // the slot went stale while the worker's calls were all busy
		}
		return slot, nil, nil
	}
}

// answerSince is how recent the server's "go on" must be for a lane that would otherwise
// need one from want on. A batch that the store tells of pauses (it has a HaltKey), or whose
// calls are free (the offline annotator), asks the server only every control interval; the
// batches of runs started by an earlier release need want.
func (b *batch) answerSince(want time.Time) time.Time {
	if b.in.HaltKey != "" || b.ann.Provider == config.ProviderOffline {
		return time.Now().Add(-b.gate.free)
	}
	return want
}

// halted reads from the store whether the run halted this batch (paused or stopped it). The
// run records that before it asks the server to cancel the batch, so a halted batch waits for
// the cancellation, which ends it as the server wants. A batch the server still wants a
// heartbeat timeout later goes on: the server, not the store, has the last word.
func (b *batch) halted() error {
	if b.in.HaltKey == "" {
		return nil
	}
	halted, err := b.a.Store.BatchHalted(b.ctx, b.info.WorkflowExecution.ID, b.in.HaltKey)
	if err != nil {
		return b.check(time.Now()) // without the store's answer, the server's
	}
	if !halted {
		return nil
	}
	return b.awaitCancel()
}

// awaitCancel waits for the server's cancellation of a batch the run halted.
func (b *batch) awaitCancel() error {
	for until := time.Now().Add(b.info.HeartbeatTimeout); time.Now().Before(until); {
		b.deadline.progress() // waiting is not being stuck
		if err := b.check(time.Now()); err != nil {
			return err
		}
		t := time.NewTimer(haltPoll)
		select {
		case <-b.ctx.Done():
			t.Stop()
			return errCancelled
		case <-t.C:
		}
	}
	activity.GetLogger(b.ctx).Warn("The run halted this batch, but the server did not cancel it; going on", "batch", b.in.HaltKey)
	return nil
}

// haltPoll is how often a halted batch asks the server for its cancellation.
const haltPoll = 50 * time.Millisecond
