package activities

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"time"

	"go.temporal.io/api/serviceerror"
	"go.temporal.io/sdk/activity"
	"go.temporal.io/sdk/temporal"

	"github.com/mhannotator/mha/internal/config"
	"github.com/mhannotator/mha/internal/labels"
	"github.com/mhannotator/mha/internal/llm"
	"github.com/mhannotator/mha/internal/llm/offline"
	"github.com/mhannotator/mha/internal/llm/providers"
	"github.com/mhannotator/mha/internal/prompts"
	"github.com/mhannotator/mha/internal/store"
)

// Activities are the annotation activities, bound to one worker's store, config and prompts.
type Activities struct {
	Store   store.Store
	Config  *config.Config
	Prompts prompts.Library
	// Provider builds an annotator's provider; nil picks the one its config names.
	Provider func(config.Annotator) (llm.Provider, error)
	// ControlInterval is how often, at most, a batch asks the server whether it was paused or
	// stopped before starting its next sample (a synchronous heartbeat). Zero turns the check
	// off, for tests without a server; cancellation then arrives with the SDK's heartbeats.
	ControlInterval time.Duration
	// Limiter meters provider calls per quota pool; nil leaves calls unmetered. The offline
	// annotator is never metered.
	Limiter Limiter

	// Reload, when set, re-reads the config before each batch, so a fixed API key or a
	// changed setting reaches runs without a worker restart. A config that fails to load
	// (half edited, say) leaves the last good one in use.
	Reload func() (*config.Config, error)

	mu        sync.Mutex
	providers map[string]llm.Provider // by providerKey
}

// config returns the config for the next batch.
func (a *Activities) config(ctx context.Context) *config.Config {
	a.mu.Lock()
	defer a.mu.Unlock()
	if a.Reload != nil {
		if cfg, err := a.Reload(); err != nil {
			activity.GetLogger(ctx).Warn("Config reload failed; keeping the last good config", "error", err)
		} else {
			a.Config = cfg
		}
	}
	return a.Config
}

// Limiter hands out call slots of a quota pool (runs.QuotaClient over the quota workflow).
type Limiter interface {
	// Reserve returns when one call may start, or a non-zero exhaustedUntil when the pool's
	// day is spent.
	Reserve(ctx context.Context, pool, requester string, tokens int) (start, exhaustedUntil time.Time, err error)
	// Penalize tells the pool the provider answered 429: nothing is granted until until.
	Penalize(ctx context.Context, pool string, until time.Time, by string) error
}

// storeWriteTimeout bounds one store write of an already-paid-for result.
const storeWriteTimeout = 30 * time.Second

// Progress reads a run's counts and its first unannotated sample from the store.
func (a *Activities) Progress(ctx context.Context, in ProgressInput) (ProgressResult, error) {
	size, err := a.Store.CountSamples(ctx)
	if err != nil {
		return ProgressResult{}, err
	}
	end := min(in.Target, size)
	res := ProgressResult{DatasetSize: size, FirstMissing: -1}
	if end <= 0 {
		return res, nil
	}
	if res.Counts, err = a.Store.CountAnnotations(ctx, in.Annotator, string(in.Domain), end); err != nil {
		return ProgressResult{}, err
	}
	if res.Counts.Total() >= end {
		return res, nil
	}
	const page = 1000
	for from := 0; from < end; from += page {
		samples, err := a.Store.Samples(ctx, from, min(page, end-from))
		if err != nil {
			return ProgressResult{}, err
		}
		done, err := a.Store.AnnotatedIDs(ctx, in.Annotator, string(in.Domain), sampleIDs(samples))
		if err != nil {
			return ProgressResult{}, err
		}
		for _, s := range samples {
			if !done[s.ID] {
				res.FirstMissing = s.Position
				return res, nil
			}
		}
	}
	return res, nil
}

// AnnotateBatch annotates the samples of one batch that have no annotation yet, storing each
// as soon as it is parsed and heartbeating its position, so a retried attempt resumes where
// the last one stopped and never annotates a sample twice.
func (a *Activities) AnnotateBatch(ctx context.Context, in BatchInput) (BatchResult, error) {
	info := activity.GetInfo(ctx)
	cfg := a.config(ctx)
	g := cfg.Global
	ann, ok := cfg.Annotator(in.Annotator)
	if !ok {
		return BatchResult{}, temporal.NewNonRetryableApplicationError(
			fmt.Sprintf("annotator %q is not in the config", in.Annotator), ErrBadConfig, nil)
	}
	provider, err := a.provider(ann, g)
	if err != nil {
		return BatchResult{}, temporal.NewNonRetryableApplicationError(err.Error(), ErrBadConfig, nil)
	}
	prompt, err := a.Prompts.Active(in.Annotator, in.Domain)
	if err != nil {
		return BatchResult{}, temporal.NewNonRetryableApplicationError(err.Error(), ErrPromptMissing, err)
	}

	from, end := in.From, in.From+in.Count
	if activity.HasHeartbeatDetails(ctx) {
		var last int
		if err := activity.GetHeartbeatDetails(ctx, &last); err == nil && last+1 > from {
			from = last + 1
		}
	}
	var samples []store.Sample
	var done map[string]bool
	if from < end {
		if samples, err = a.Store.Samples(ctx, from, end-from); err != nil {
			return BatchResult{}, err
		}
		if done, err = a.Store.AnnotatedIDs(ctx, in.Annotator, string(in.Domain), sampleIDs(samples)); err != nil {
			return BatchResult{}, err
		}
	}

	deadline := newProgressDeadline(ctx, info.HeartbeatTimeout)
	defer deadline.stop()
	// A paid call is checked every time, so none starts after a pause; free offline samples
	// are checked at most every ControlInterval.
	gate := control{interval: a.ControlInterval, always: ann.Provider != config.ProviderOffline}
	stored := 0
	for _, s := range samples {
		if done[s.ID] {
			continue
		}
		if err := gate.mayStart(ctx, s.Position-1); err != nil {
			return BatchResult{}, err
		}
		alive := func() {
			deadline.progress()
			activity.RecordHeartbeat(ctx, s.Position-1)
		}
		result, err := a.annotate(deadline.ctx, g, provider, ann, prompt, in.Domain, s, alive)
		if err != nil {
			if cause := context.Cause(deadline.ctx); cause != nil {
				return BatchResult{}, cause
			}
			return BatchResult{}, batchError(s.ID, err)
		}
		// The call is paid for: store it even if the batch was cancelled meanwhile.
		wctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), storeWriteTimeout)
		err = a.Store.UpsertAnnotation(wctx, result)
		cancel()
		if err != nil {
			return BatchResult{}, fmt.Errorf("store annotation of sample %s: %w", s.ID, err)
		}
		stored++
		deadline.progress()
		activity.RecordHeartbeat(ctx, s.Position)
	}

	size, err := a.Store.CountSamples(ctx)
	if err != nil {
		return BatchResult{}, err
	}
	counts, err := a.Store.CountAnnotations(ctx, in.Annotator, string(in.Domain), min(in.Target, size))
	if err != nil {
		return BatchResult{}, err
	}
	return BatchResult{Next: end, Stored: stored, Counts: counts, DatasetSize: size, Attempt: info.Attempt}, nil
}

// annotate asks for one sample's label, re-asking up to max_retries times while the reply is
// malformed, and returns the annotation to store. A per-minute rate limit is waited out here
// (calling alive meanwhile); failures the sample itself carries (blocked, empty output, a
// refused request) are recorded on it; any other failure is returned.
func (a *Activities) annotate(ctx context.Context, g config.Global, p llm.Provider, ann config.Annotator, prompt prompts.Prompt,
	d labels.Domain, s store.Sample, alive func()) (store.Annotation, error) {
	req := llm.Request{Model: ann.ModelName, Prompt: prompts.Render(prompt.Template, s.Text), Domain: d, Text: s.Text}
	result := store.Annotation{Annotator: ann.ID, Domain: string(d), SampleID: s.ID, Model: ann.ModelName, PromptHash: prompt.Hash}
	start := time.Now()
	waits, quick := 0, 0
	for calls := 1; ; calls++ {
		if err := a.awaitSlot(ctx, g, ann, req, alive); err != nil {
			return store.Annotation{}, err
		}
		// Each streamed chunk is progress: the call is alive even before the sample is stored.
		resp, err := complete(llm.WithProgress(ctx, alive), p, req, g.RequestTimeout)
		if wait, limited := rateLimitWait(err); limited && waits < maxRateLimitWaits {
			waits++
			calls--
			if err := a.penalize(ctx, ann, wait, alive); err != nil {
				return store.Annotation{}, err
			}
			continue
		}
		if wait, again := quickRetry(err, quick); again {
			quick++
			calls--
			if err := waitOut(ctx, wait, alive); err != nil {
				return store.Annotation{}, err
			}
			continue
		}
		if status, recorded := sampleOutcome(err); recorded {
			result.Status, result.Error, result.Attempt = status, err.Error(), calls
			result.LatencyMS = time.Since(start).Milliseconds()
			return result, nil
		}
		if err != nil {
			return store.Annotation{}, err
		}
		outcome := labels.Parse(d, resp.Text)
		result.RawReply, result.Label = resp.Text, outcome.Label
		result.ParseError, result.ValidityError = outcome.ParseError, outcome.ValidityError
		result.InputTokens += resp.InputTokens
		result.OutputTokens += resp.OutputTokens
		result.Attempt = calls
		if resp.Model != "" {
			result.Model = resp.Model
		}
		if outcome.OK() || calls > g.MaxRetries {
			result.Status = store.StatusOK
			if !outcome.OK() {
				result.Status = store.StatusMalformed
			}
			result.LatencyMS = time.Since(start).Milliseconds()
			return result, nil
		}
	}
}

// completeMargin lets a provider's own request timeout fire first, so its classified error
// arrives rather than a bare deadline.
const completeMargin = time.Second

// complete makes one call under the request timeout. It returns when ctx ends even if the
// provider does not, so a wedged call can hold a goroutine but never the activity's slot.
func complete(ctx context.Context, p llm.Provider, req llm.Request, timeout time.Duration) (llm.Response, error) {
	ctx, cancel := context.WithTimeout(ctx, timeout+completeMargin)
	defer cancel()
	type reply struct {
		resp llm.Response
		err  error
	}
	ch := make(chan reply, 1)
	go func() {
		resp, err := p.Complete(ctx, req)
		ch <- reply{resp, err}
	}()
	select {
	case r := <-ch:
		return r.resp, r.err
	case <-ctx.Done():
		return llm.Response{}, ctx.Err()
	}
}

// metered reports whether ann's calls draw on a quota pool.
func (a *Activities) metered(ann config.Annotator) bool {
	return a.Limiter != nil && ann.Provider != config.ProviderOffline
}

// awaitSlot waits for the pool's go-ahead for one call. A spent day ends the batch with a
// DailyQuota error, so the run waits on a durable timer rather than in this activity.
func (a *Activities) awaitSlot(ctx context.Context, g config.Global, ann config.Annotator, req llm.Request, alive func()) error {
	if !a.metered(ann) {
		return nil
	}
	// Tokens are estimated at four characters each, plus the reply budget.
	tokens := len(req.Prompt)/4 + g.MaxOutputTokens
	at, exhausted, err := a.Limiter.Reserve(ctx, ann.QuotaPool, activity.GetInfo(ctx).WorkflowExecution.ID, tokens)
	if err != nil {
		return err
	}
	if !exhausted.IsZero() {
		return &llm.Error{Kind: llm.DailyQuota, Provider: "quota pool " + ann.QuotaPool, ResetAt: exhausted,
			Message: "the pool's requests_per_day are spent"}
	}
	return waitOut(ctx, time.Until(at), alive)
}

// penalize handles a 429: with a limiter the whole pool waits (the next reservation lands
// after the penalty); without one, only this call waits.
func (a *Activities) penalize(ctx context.Context, ann config.Annotator, wait time.Duration, alive func()) error {
	if !a.metered(ann) {
		return waitOut(ctx, wait, alive)
	}
	return a.Limiter.Penalize(ctx, ann.QuotaPool, time.Now().Add(wait), activity.GetInfo(ctx).WorkflowExecution.ID)
}

// provider returns ann's provider, built once per worker and settings so its connection
// pool is shared by all the annotator's runs.
func (a *Activities) provider(ann config.Annotator, g config.Global) (llm.Provider, error) {
	if a.Provider != nil {
		return a.Provider(ann)
	}
	if ann.Provider == config.ProviderOffline {
		return offline.Annotator{Latency: g.OfflineLatency}, nil
	}
	key := providerKey(ann, g)
	a.mu.Lock()
	defer a.mu.Unlock()
	if p, ok := a.providers[key]; ok {
		return p, nil
	}
	p, err := providers.New(ann, g)
	if err != nil {
		return nil, err
	}
	if a.providers == nil {
		a.providers = map[string]llm.Provider{}
	}
	a.providers[key] = p
	return p, nil
}

// providerKey names everything a provider is built from, so a changed key or setting gets a
// new provider and an unchanged one keeps its connections.
func providerKey(ann config.Annotator, g config.Global) string {
	budget := "none"
	if g.ThinkingBudget != nil {
		budget = fmt.Sprint(*g.ThinkingBudget)
	}
	return fmt.Sprint(ann.ID, "\x00", ann.Provider, "\x00", ann.BaseURL, "\x00", ann.ModelName, "\x00", ann.APIKey.Reveal(), "\x00",
		g.Stream, g.RequestTimeout, g.StreamIdleTimeout, g.Temperature, g.MaxOutputTokens, budget, g.SafetyThreshold, g.MaxConcurrentActivities)
}

func sampleIDs(samples []store.Sample) []string {
	ids := make([]string, len(samples))
	for i, s := range samples {
		ids[i] = s.ID
	}
	return ids
}

// errNoProgress cancels a batch whose samples stopped progressing.
var errNoProgress = temporal.NewApplicationError("no sample progressed within the heartbeat timeout; the call was cut", "NoProgress")

// progressDeadline is the activity's own stuck detector. The SDK does not enforce the
// heartbeat timeout inside the worker: a timed-out attempt keeps running while the server
// retries it elsewhere. So calls run under ctx, which is cancelled when no sample was stored
// within the heartbeat timeout. It is detached from the activity's cancellation on purpose:
// pause and stop let the call in flight finish.
type progressDeadline struct {
	ctx    context.Context
	cancel context.CancelCauseFunc
	timer  *time.Timer
	limit  time.Duration
}

func newProgressDeadline(parent context.Context, limit time.Duration) *progressDeadline {
	ctx, cancel := context.WithCancelCause(context.WithoutCancel(parent))
	d := &progressDeadline{ctx: ctx, cancel: cancel, limit: limit}
	if limit > 0 {
		d.timer = time.AfterFunc(limit, func() { cancel(errNoProgress) })
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

// control decides whether the next sample may start: not once the batch was cancelled (pause
// or stop), the worker is stopping, or the server no longer knows this attempt.
type control struct {
	interval time.Duration
	always   bool // check before every sample, not only every interval
	last     time.Time
}

func (c *control) mayStart(ctx context.Context, lastPosition int) error {
	select {
	case <-ctx.Done():
		return ctx.Err()
	case <-activity.GetWorkerStopChannel(ctx):
		return temporal.NewApplicationError("worker is shutting down", "WorkerStopping")
	default:
	}
	if c.interval <= 0 || (!c.always && time.Since(c.last) < c.interval) {
		return nil
	}
	c.last = time.Now()
	// The SDK's own heartbeats are throttled and asynchronous, so a pause could take many
	// samples to arrive; this one waits for the server's answer.
	info := activity.GetInfo(ctx)
	err := activity.GetClient(ctx).RecordActivityHeartbeat(ctx, info.TaskToken, lastPosition)
	var canceled *temporal.CanceledError
	var notFound *serviceerror.NotFound
	switch {
	case errors.As(err, &canceled):
		return err
	case errors.As(err, &notFound):
		return fmt.Errorf("this attempt is no longer current (timed out or its run closed): %w", err)
	case err != nil:
		activity.GetLogger(ctx).Warn("Control heartbeat failed; going on", "error", err)
	}
	return nil
}
