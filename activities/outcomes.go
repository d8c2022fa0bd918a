package activities

import (
	"errors"
	"fmt"
	"time"

	"go.temporal.io/sdk/temporal"

	"github.com/mhannotator/mha/internal/contract"
	"github.com/mhannotator/mha/internal/llm"
	"github.com/mhannotator/mha/internal/store"
)

// This file is the one place that decides what each class of provider failure does to a
// sample, a batch and a run.

// defaultRateLimitWait is used when a 429 names no retry delay.
const defaultRateLimitWait = 5 * time.Second

// quickRetries are the waits before asking again in place after a transient failure
// (overloaded, 5xx, reset, timeout); a longer outage ends the batch and the run retries
// with back-off on a durable timer.
var quickRetries = []time.Duration{500 * time.Millisecond, time.Second}

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

// batchError turns a failure that ends the batch into the error the workflow acts on:
// fixed by no retry (fail the run, visibly), or retried by the batch's retry policy.
func batchError(sampleID string, err error, attempt int32) error {
	var e *llm.Error
	if !errors.As(err, &e) {
		return fmt.Errorf("annotate sample %s: %w", sampleID, err)
	}
	switch e.Kind {
	case llm.InvalidKey:
		return nonRetryable("the API key was refused: "+e.Error()+"; fix the key, then reset the run", contract.ErrInvalidKey, attempt)
	case llm.NoQuota, llm.ModelNotFound:
		return nonRetryable(e.Error()+"; fix the config, then reset the run", contract.ErrBadConfig, attempt)
	}
	return temporal.NewApplicationError(e.Error(), string(e.Kind))
}
