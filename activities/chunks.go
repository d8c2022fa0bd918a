package activities

import (
	"context"
	"fmt"
	"time"

	"go.temporal.io/sdk/activity"

	"github.com/mhannotator/mha/internal/config"
	"github.com/mhannotator/mha/internal/contract"
	"github.com/mhannotator/mha/internal/labels"
	"github.com/mhannotator/mha/internal/llm"
	"github.com/mhannotator/mha/internal/store"
)

// The activities of a batch-mode run: submit a chunk of samples as one provider batch, read its
// state, store its results, cancel it. Each is a few HTTP calls; the waiting in between is the
// workflow's, on durable timers.

// keepAlive heartbeats until the returned func is called, so a worker that dies in the middle of
// an upload or a long collect is noticed within the heartbeat timeout, not the activity's.
func keepAlive(ctx context.Context) (stop func()) {
	every := activity.GetInfo(ctx).HeartbeatTimeout / 3
	if every <= 0 {
		return func() {}
	}
	done := make(chan struct{})
	go func() {
		t := time.NewTicker(every)
		defer t.Stop()
		for {
			select {
			case <-t.C:
				activity.RecordHeartbeat(ctx)
			case <-done:
				return
			}
		}
	}()
	return func() { close(done) }
}

// batcher returns the annotator's provider as a batch client.
func (a *Activities) batcher(ctx context.Context, annotator string) (config.Annotator, config.Global, llm.Batcher, error) {
	cfg := a.config(ctx)
	ann, p, err := a.annotator(ctx, cfg, annotator)
	if err != nil {
		return ann, cfg.Global, nil, err
	}
	b, ok := p.(llm.Batcher)
	if !ok {
		return ann, cfg.Global, nil, nonRetryable(fmt.Sprintf("annotator %s's provider %s has no batch mode; set its mode to sync", annotator, ann.Provider),
			contract.ErrBadConfig, activity.GetInfo(ctx).Attempt)
	}
	return ann, cfg.Global, b, nil
}

// SubmitChunk submits up to Count samples from position From that have no annotation yet as one
// batch named Name. A batch of that name already at the provider (an earlier attempt submitted
// it and then failed) is adopted, never submitted twice.
func (a *Activities) SubmitChunk(ctx context.Context, in contract.SubmitChunkInput) (contract.SubmitChunkResult, error) {
	ann, g, bat, err := a.batcher(ctx, in.Annotator)
	if err != nil {
		return contract.SubmitChunkResult{}, err
	}
	defer keepAlive(ctx)()
	info := activity.GetInfo(ctx)
	prompt, err := a.Prompts.Active(in.Annotator, in.Domain)
	if err != nil {
		return contract.SubmitChunkResult{}, nonRetryable(err.Error(), contract.ErrPromptMissing, info.Attempt)
	}
	size, err := a.Store.CountSamples(ctx)
	if err != nil {
		return contract.SubmitChunkResult{}, err
	}
	end := min(in.Target, size)
	res := contract.SubmitChunkResult{Next: in.From, PromptHash: prompt.Hash}
	var reqs []llm.BatchRequest
	for res.Next < end && len(reqs) < in.Count {
		samples, err := a.Store.Samples(ctx, res.Next, min(in.Count-len(reqs), end-res.Next))
		if err != nil {
			return contract.SubmitChunkResult{}, err
		}
		if len(samples) == 0 {
			break
		}
		done, err := a.Store.AnnotatedIDs(ctx, in.Annotator, string(in.Domain), sampleIDs(samples))
		if err != nil {
			return contract.SubmitChunkResult{}, err
		}
		for _, s := range samples {
			res.Next = s.Position + 1
			if done[s.ID] {
				continue
			}
			req := request(ann, prompt, in.Domain, s)
			reqs = append(reqs, llm.BatchRequest{Key: s.ID, Request: req})
			res.Keys = append(res.Keys, s.ID)
			res.Tokens += llm.ApproxTokens(req.Prompt)
		}
	}
	if len(reqs) == 0 {
		return res, nil
	}
	if a.metered(ann) {
		l := ann.QuotaLimits(g)
		adm, err := a.Limiter.AdmitBatch(ctx, ann.QuotaPool, in.Name, res.Tokens, l)
		if err != nil {
			return contract.SubmitChunkResult{}, err
		}
		if !adm.Admitted {
			return contract.SubmitChunkResult{Next: in.From, Wait: &contract.Wait{Until: time.Now().Add(batchAdmitRetry), Status: contract.StatusWaitingQuota,
				Reason: fmt.Sprintf("quota pool %s has %d batches with %d input tokens at the provider (limits: %d batches, %d tokens); this chunk waits for one to end",
					ann.QuotaPool, adm.Batches, adm.EnqueuedTokens, l.MaxBatches, l.MaxEnqueuedTokens)}}, nil
		}
	}
	found, ok, err := bat.FindBatch(ctx, in.Name)
	if err != nil {
		return contract.SubmitChunkResult{}, batchError("", err, info.Attempt)
	}
	if ok {
		res.BatchID, res.State, res.Adopted = found.ID, string(found.State), true
		activity.GetLogger(ctx).Info("Adopted the batch an earlier attempt submitted", "batch", found.ID, "name", in.Name)
		return res, nil
	}
	b, err := bat.SubmitBatch(ctx, in.Name, reqs)
	if err != nil {
		return contract.SubmitChunkResult{}, batchError("", err, info.Attempt)
	}
	res.BatchID, res.State = b.ID, string(b.State)
	return res, nil
}

// batchAdmitRetry is how long a chunk the pool's batch limits turned away waits to ask again:
// an Update every few seconds per waiting run is cheap, and the place may free up soon.
const batchAdmitRetry = 10 * time.Second

// PollChunk reads a chunk's state at the provider; a final one leaves the pool's batch count.
func (a *Activities) PollChunk(ctx context.Context, in contract.ChunkRef) (contract.PollChunkResult, error) {
	ann, _, bat, err := a.batcher(ctx, in.Annotator)
	if err != nil {
		return contract.PollChunkResult{}, err
	}
	defer keepAlive(ctx)()
	b, err := bat.GetBatch(ctx, in.BatchID)
	if err != nil {
		return contract.PollChunkResult{}, batchError("", err, activity.GetInfo(ctx).Attempt)
	}
	if b.State.Final() && in.Name != "" && a.metered(ann) {
		if err := a.Limiter.ReleaseBatch(ctx, ann.QuotaPool, in.Name); err != nil {
			return contract.PollChunkResult{}, err
		}
	}
	return contract.PollChunkResult{State: string(b.State), ProviderState: b.ProviderState, Total: b.Total, Completed: b.Completed,
		Failed: b.Failed, Error: b.Error}, nil
}

// CancelChunk asks the provider to stop a chunk.
func (a *Activities) CancelChunk(ctx context.Context, in contract.ChunkRef) error {
	_, _, bat, err := a.batcher(ctx, in.Annotator)
	if err != nil {
		return err
	}
	if err := bat.CancelBatch(ctx, in.BatchID); err != nil {
		return batchError("", err, activity.GetInfo(ctx).Attempt)
	}
	return nil
}

// CollectChunk stores a final chunk's results as the synchronous path stores a call's: the same
// parser, statuses, prompt hash and tokens. A line that failed transiently, came back malformed
// or has no result is handed back for a later chunk until it has had max_retries more tries;
// then it is stored as it is (malformed, or an error with the provider's message).
func (a *Activities) CollectChunk(ctx context.Context, in contract.CollectChunkInput) (contract.CollectChunkResult, error) {
	ann, g, bat, err := a.batcher(ctx, in.Annotator)
	if err != nil {
		return contract.CollectChunkResult{}, err
	}
	defer keepAlive(ctx)()
	info := activity.GetInfo(ctx)
	b, err := bat.GetBatch(ctx, in.BatchID)
	if err != nil {
		return contract.CollectChunkResult{}, batchError("", err, info.Attempt)
	}
	results, err := bat.BatchResults(ctx, b)
	if err != nil {
		return contract.CollectChunkResult{}, batchError("", err, info.Attempt)
	}
	var res contract.CollectChunkResult
	got := map[string]bool{}
	for _, r := range results {
		if got[r.Key] {
			continue // a provider that repeats a line stores it once
		}
		got[r.Key] = true
		tries := in.Reasks[r.Key]
		a1 := store.Annotation{Annotator: in.Annotator, Domain: string(in.Domain), SampleID: r.Key, Model: ann.ModelName,
			PromptHash: in.PromptHash, Attempt: tries + 1}
		last := tries >= g.MaxRetries
		if r.Err != nil {
			status, recorded := sampleOutcome(r.Err)
			if !recorded && !last {
				res.Retry = append(res.Retry, r.Key)
				continue
			}
			if !recorded {
				status = store.StatusError
			}
			a1.Status, a1.Error = status, r.Err.Error()
		} else {
			outcome := labels.Parse(in.Domain, r.Response.Text)
			if !outcome.OK() && !last {
				res.Retry = append(res.Retry, r.Key)
				continue
			}
			a1.Status = store.StatusOK
			if !outcome.OK() {
				a1.Status = store.StatusMalformed
			}
			a1.RawReply, a1.Label = r.Response.Text, outcome.Label
			a1.ParseError, a1.ValidityError = outcome.ParseError, outcome.ValidityError
			a1.InputTokens, a1.OutputTokens, a1.CachedTokens = r.Response.InputTokens, r.Response.OutputTokens, r.Response.CachedTokens
			if r.Response.Model != "" {
				a1.Model = r.Response.Model
			}
		}
		if err := a.Store.UpsertAnnotation(ctx, a1); err != nil {
			return contract.CollectChunkResult{}, fmt.Errorf("store annotation of sample %s: %w", r.Key, err)
		}
		a.meter().stored(a1)
		res.Stored++
	}
	for _, k := range in.Keys {
		if got[k] {
			continue
		}
		res.Missing++
		// A line an expired batch never reached counts as a try: a provider that keeps
		// expiring must not keep the run busy for ever. A cancelled batch's lines were
		// stopped by the run itself and wait for its next start.
		if b.State != llm.BatchExpired || in.Reasks[k] < g.MaxRetries {
			res.Retry = append(res.Retry, k)
			continue
		}
		a1 := store.Annotation{Annotator: in.Annotator, Domain: string(in.Domain), SampleID: k, Model: ann.ModelName, PromptHash: in.PromptHash,
			Attempt: in.Reasks[k] + 1, Status: store.StatusError, Error: fmt.Sprintf("%s: batch %s expired before this line was answered", ann.Provider, in.BatchID)}
		if err := a.Store.UpsertAnnotation(ctx, a1); err != nil {
			return contract.CollectChunkResult{}, fmt.Errorf("store annotation of sample %s: %w", k, err)
		}
		a.meter().stored(a1)
		res.Stored++
	}
	size, err := a.Store.CountSamples(ctx)
	if err != nil {
		return contract.CollectChunkResult{}, err
	}
	if res.Counts, err = a.Store.CountAnnotations(ctx, in.Annotator, string(in.Domain), min(in.Target, size)); err != nil {
		return contract.CollectChunkResult{}, err
	}
	return res, nil
}
