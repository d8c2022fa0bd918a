package activities

import (
	"context"
	"fmt"
	"sync"
	"sync/atomic"
	"time"

	"github.com/uber-go/tally/v4"
	"go.temporal.io/sdk/activity"
	"go.temporal.io/sdk/temporal"

	"github.com/mhannotator/mha/internal/config"
	"github.com/mhannotator/mha/internal/contract"
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
	// stopped when it hears of that from the store (a batch with a HaltKey) or its calls are
	// free (the offline annotator); other batches ask before every paid call. Zero turns the
	// synchronous question off, for tests without a server; cancellation then arrives with
	// the SDK's own heartbeats.
	ControlInterval time.Duration
	// Limiter meters provider calls per quota pool; nil leaves calls unmetered. The offline
	// annotator is never metered.
	Limiter Limiter
	// CallSlots bounds the calls in flight on this worker (a send takes a slot, a receive
	// frees it); nil leaves them unbounded. The worker runs more batches than it has call
	// slots, so a batch between two calls (storing, reserving, starting) never leaves a
	// call slot idle.
	CallSlots chan struct{}

	// Reload, when set, re-reads the config before each batch, so a fixed API key or a
	// changed setting reaches runs without a worker restart. A config that fails to load
	// (half edited, say) leaves the last good one in use.
	Reload func() (*config.Config, error)

	// Metrics receives the platform's series (calls, outcomes, stored annotations, quota
	// waits); nil records none.
	Metrics tally.Scope

	meterOnce sync.Once
	meters    *meters

	mu        sync.Mutex
	providers map[string]llm.Provider  // by providerKey
	latency   map[string]time.Duration // by annotator: recent call duration, for sizing reservations
	slots     slotTracker              // call slots held, for the health check
	lanes     atomic.Int32             // lanes working on this worker, of all batches
}

// Limiter hands out call slots of quota pools (runs.QuotaClient over the quota workflows).
type Limiter interface {
	// Reserve asks pool for up to ask.Count call slots starting within horizon. An ask that
	// gets none within the horizon gets one held slot beyond it; when the day's budget is
	// spent, exhaustedUntil says until when.
	Reserve(ctx context.Context, pool string, ask contract.Ask, horizon time.Duration, limits contract.QuotaLimits) (slots []time.Time, exhaustedUntil time.Time, err error)
	// Penalize tells the pool the provider answered 429: nothing is granted until until.
	Penalize(ctx context.Context, pool string, until time.Time, by string) error
	// AdmitBatch asks the pool to let a chunk of a batch-mode run go to the provider, within
	// the pool's batch limits; ReleaseBatch says it is final. Both are idempotent by name.
	AdmitBatch(ctx context.Context, pool, name string, tokens int, limits contract.QuotaLimits) (contract.BatchAdmission, error)
	ReleaseBatch(ctx context.Context, pool, name string) error
}

// meter returns the worker's series.
func (a *Activities) meter() *meters {
	a.meterOnce.Do(func() { a.meters = newMeters(a.Metrics) })
	return a.meters
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

// storeWriteTimeout bounds one store write of an already-paid-for result.
const storeWriteTimeout = 30 * time.Second

// HaltBatch records that a run's batch must start no more calls; the run executes it as a
// local activity on pause or stop, before it asks the server to cancel the batch.
func (a *Activities) HaltBatch(ctx context.Context, in contract.HaltBatchInput) error {
	return a.Store.HaltBatch(ctx, in.WorkflowID, in.Key)
}

// Progress reads a run's counts and its first unannotated sample from the store.
func (a *Activities) Progress(ctx context.Context, in contract.ProgressInput) (contract.ProgressResult, error) {
	size, err := a.Store.CountSamples(ctx)
	if err != nil {
		return contract.ProgressResult{}, err
	}
	end := min(in.Target, size)
	res := contract.ProgressResult{DatasetSize: size, FirstMissing: -1}
	if end <= 0 {
		return res, nil
	}
	if res.Counts, err = a.Store.CountAnnotations(ctx, in.Annotator, string(in.Domain), end); err != nil {
		return contract.ProgressResult{}, err
	}
	if res.Counts.Total() >= end {
		return res, nil
	}
	const page = 1000
	for from := 0; from < end; from += page {
		samples, err := a.Store.Samples(ctx, from, min(page, end-from))
		if err != nil {
			return contract.ProgressResult{}, err
		}
		done, err := a.Store.AnnotatedIDs(ctx, in.Annotator, string(in.Domain), sampleIDs(samples))
		if err != nil {
			return contract.ProgressResult{}, err
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
// as soon as it is parsed and checkpointing its position in the heartbeat, so a retried
// attempt resumes where the last one stopped and never annotates a sample twice. A batch
// that would have to wait long (for quota, or for a failing provider) ends early and says
// until when in its result, so the run waits on a durable timer and not in a worker slot.
func (a *Activities) AnnotateBatch(ctx context.Context, in contract.BatchInput) (contract.BatchResult, error) {
	b, err := a.newBatch(ctx, in)
	if err != nil {
		return contract.BatchResult{}, err
	}
	defer b.deadline.stop()
	res, err := b.run()
	if err != nil {
		return contract.BatchResult{}, b.settle(err)
	}
	res.Stored, res.Attempt, res.Carry, res.DatasetSize = b.stored, b.info.Attempt, b.cp.Carry, b.size
	if res.Counts, err = a.Store.CountAnnotations(ctx, in.Annotator, string(in.Domain), min(in.Target, res.DatasetSize)); err != nil {
		return contract.BatchResult{}, err
	}
	return res, nil
}

// complete makes one call under the request timeout (plus margin, so the provider's own
// classified timeout fires first). It returns when ctx ends even if the provider does not,
// so a wedged call can hold a goroutine but never the activity's slot; it keeps holding its
// call slot in the health check's eyes until it returns (see slots.go).
func complete(ctx context.Context, p llm.Provider, req llm.Request, timeout time.Duration, slot *hold) (llm.Response, error) {
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	type reply struct {
		resp llm.Response
		err  error
	}
	ch := make(chan reply, 1)
	slot.keep()
	go func() {
		defer slot.done()
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

// callTimeout is the budget of one call: the request timeout plus a margin that keeps a
// call, and the in-place retry after it, inside the heartbeat timeout.
func callTimeout(g config.Global) time.Duration {
	margin := time.Second
	if room := (g.HeartbeatTimeout - g.RequestTimeout) / 4; room < margin {
		margin = max(room, 0)
	}
	return g.RequestTimeout + margin
}

// metered reports whether ann's calls draw on a quota pool.
func (a *Activities) metered(ann config.Annotator) bool {
	return a.Limiter != nil && ann.Provider != config.ProviderOffline
}

// annotator looks id up in cfg and returns it with its provider; either missing is a config
// error no retry fixes.
func (a *Activities) annotator(ctx context.Context, cfg *config.Config, id string) (config.Annotator, llm.Provider, error) {
	attempt := activity.GetInfo(ctx).Attempt
	ann, ok := cfg.Annotator(id)
	if !ok {
		return ann, nil, nonRetryable(fmt.Sprintf("annotator %q is not in the config", id), contract.ErrBadConfig, attempt)
	}
	p, err := a.provider(ann, cfg.Global)
	if err != nil {
		return ann, nil, nonRetryable(err.Error(), contract.ErrBadConfig, attempt)
	}
	return ann, p, nil
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

// observe keeps a smoothed time from one of ann's calls to the next (the call and the wait
// before it); reservations ask for as many slots as a batch can use before one would be
// stale.
func (a *Activities) observe(annotator string, d time.Duration) {
	a.mu.Lock()
	defer a.mu.Unlock()
	if a.latency == nil {
		a.latency = map[string]time.Duration{}
	}
	if old, ok := a.latency[annotator]; ok {
		d = (3*old + d) / 4
	}
	a.latency[annotator] = d
}

func (a *Activities) callDuration(annotator string) (time.Duration, bool) {
	a.mu.Lock()
	defer a.mu.Unlock()
	d, ok := a.latency[annotator]
	return d, ok
}

func sampleIDs(samples []store.Sample) []string {
	ids := make([]string, len(samples))
	for i, s := range samples {
		ids[i] = s.ID
	}
	return ids
}

// nonRetryable is a failure no retry fixes; the run shows it and waits for a person. The
// attempt number rides along so the run can count the attempts spent.
func nonRetryable(msg, kind string, attempt int32) error {
	return temporal.NewApplicationErrorWithOptions(msg, kind, temporal.ApplicationErrorOptions{NonRetryable: true, Details: []any{attempt}})
}

// request builds the call for one sample.
func request(ann config.Annotator, prompt prompts.Prompt, d labels.Domain, s store.Sample) llm.Request {
	return llm.Request{Model: ann.ModelName, Prompt: prompts.Render(prompt.Template, s.Text), Domain: d, Text: s.Text}
}
