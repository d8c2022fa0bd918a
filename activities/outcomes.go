package activities

import (
	"context"
	"errors"
	"fmt"
	"time"

	"go.temporal.io/sdk/temporal"

	"github.com/mhannotator/mha/internal/llm"
	"github.com/mhannotator/mha/internal/store"
)

// This file is the one place that decides what each class of provider failure does to a
// sample, a batch and a run.

// maxRateLimitWaits bounds how often one sample waits out a per-minute 429 inside the
// activity before the batch gives the problem back to the retry policy.
const maxRateLimitWaits = 10

// defaultRateLimitWait is used when a 429 names no retry delay.
const defaultRateLimitWait = 5 * time.Second

// quickRetries are the waits before asking again in place after a transient failure
// (overloaded, 5xx, reset, timeout); a longer outage goes to the retry policy's backoff.
var quickRetries = []time.Duration{500 * time.Millisecond, time.Second}

// quickRetry is the wait before the n-th (0-based) in-place retry of err, if it gets one.
func quickRetry(err error, n int) (time.Duration, bool) {
	if kind, _ := llm.KindOf(err); kind != llm.Unavailable || n >= len(quickRetries) {
		return 0, false
	}
	return quickRetries[n], true
}

// sampleOutcome decides whether a failed call is recorded on the sample (true) with the
// status to store, so the run moves on; other failures end the batch.
func sampleOutcome(err error) (string, bool) {
	switch kind, _ := llm.KindOf(err); kind {
	case llm.Blocked:
		return store.StatusBlocked, true
	case llm.MaxTokensEmpty, llm.BadRequest:
		return store.StatusError, true
	}
	return "", false
}

// rateLimitWait is how long to wait before asking again, when err is a per-minute limit.
func rateLimitWait(err error) (time.Duration, bool) {
	var e *llm.Error
	if !errors.As(err, &e) || e.Kind != llm.RateLimited {
		return 0, false
	}
	if e.RetryAfter > 0 {
		return e.RetryAfter, true
	}
	return defaultRateLimitWait, true
}

// batchError turns a failure that ends the batch into the error the workflow's retry policy
// acts on: fixed by no retry (fail the run, visibly), retried with backoff, or the durable
// wait for the daily quota.
func batchError(sampleID string, err error) error {
	var e *llm.Error
	if !errors.As(err, &e) {
		return fmt.Errorf("annotate sample %s: %w", sampleID, err)
	}
	switch e.Kind {
	case llm.InvalidKey:
		return temporal.NewNonRetryableApplicationError("the API key was refused: "+e.Error()+"; fix the key, then reset the run", ErrInvalidKey, nil)
	case llm.NoQuota, llm.ModelNotFound:
		return temporal.NewNonRetryableApplicationError(e.Error()+"; fix the config, then reset the run", ErrBadConfig, nil)
	case llm.DailyQuota:
		reset := e.ResetAt
		if reset.IsZero() {
			reset = time.Now().Add(time.Hour)
		}
		return temporal.NewApplicationErrorWithOptions("daily quota spent: "+e.Error(), ErrDailyQuota,
			temporal.ApplicationErrorOptions{NonRetryable: true, Details: []any{reset}})
	case llm.RateLimited:
		wait, _ := rateLimitWait(err)
		return temporal.NewApplicationErrorWithOptions(e.Error(), string(e.Kind), temporal.ApplicationErrorOptions{NextRetryDelay: wait})
	}
	return temporal.NewApplicationError(e.Error(), string(e.Kind))
}

// waitOut sleeps d while the batch is still wanted, keeping the progress deadline and the
// server's heartbeat alive: waiting for a rate limit is not being stuck.
func waitOut(ctx context.Context, d time.Duration, alive func()) error {
	const beat = 2 * time.Second
	for d > 0 {
		step := min(d, beat)
		t := time.NewTimer(step)
		select {
		case <-ctx.Done():
			t.Stop()
			return ctx.Err()
		case <-t.C:
		}
		d -= step
		alive()
	}
	return nil
}
