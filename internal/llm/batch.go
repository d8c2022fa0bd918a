package llm

import (
	"context"
	"time"
)

// Provider batch modes: many requests submitted as one job, answered within hours at a lower
// price and under their own, larger quota. Gemini's batchGenerateContent and OpenAI's Batch API
// both fit the interface below; docs/batch-apis.md records the wire details it relies on.

// BatchRequest is one line of a batch, keyed so its result can be matched (the sample ID).
type BatchRequest struct {
	Key     string
	Request Request
}

// BatchState is a batch's state, the same for every provider.
type BatchState string

const (
	BatchPending    BatchState = "pending"    // accepted, not started (Gemini PENDING; OpenAI validating)
	BatchRunning    BatchState = "running"    // working (RUNNING; in_progress, finalizing)
	BatchSucceeded  BatchState = "succeeded"  // results ready (SUCCEEDED; completed)
	BatchFailed     BatchState = "failed"     // the whole batch failed (FAILED; failed)
	BatchCancelling BatchState = "cancelling" // cancel asked, not final yet (OpenAI cancelling)
	BatchCancelled  BatchState = "cancelled"  // (CANCELLED; cancelled); results of finished lines may exist
	BatchExpired    BatchState = "expired"    // not done within its window (EXPIRED; expired); finished lines may exist
)

// Final reports whether the state can no longer change.
func (s BatchState) Final() bool {
	return s == BatchSucceeded || s == BatchFailed || s == BatchCancelled || s == BatchExpired
}

// Batch is a submitted batch as the provider reports it.
type Batch struct {
	ID            string     // the provider's name for it: "batches/abc" (Gemini), "batch_abc" (OpenAI)
	Name          string     // the name it was submitted under (display name or metadata), for adoption
	State         BatchState // normalised
	ProviderState string     // as the provider wrote it, for people
	Total         int        // lines, when the provider says
	Completed     int        // lines answered
	Failed        int        // lines that failed
	CreatedAt     time.Time
	Error         string // the provider's reason, for a failed batch
}

// BatchResult is one line's outcome: a Response, or Err classified like a synchronous call's
// (*Error with its Kind), so the same handling applies.
type BatchResult struct {
	Key      string
	Response Response
	Err      error
}

// Batcher is a provider that takes batches. Every method is one or a few HTTP calls; waiting is
// the caller's business (durable timers, not a held connection).
type Batcher interface {
	// SubmitBatch creates a batch of reqs under name (unique per workflow and chunk). Small
	// batches go inline, large ones through the provider's file upload.
	SubmitBatch(ctx context.Context, name string, reqs []BatchRequest) (Batch, error)
	// FindBatch returns the batch submitted under name, if there is one, so a retried submit
	// adopts it instead of paying twice.
	FindBatch(ctx context.Context, name string) (Batch, bool, error)
	// GetBatch reads a batch's state and counts.
	GetBatch(ctx context.Context, id string) (Batch, error)
	// BatchResults returns the results of every line that has one (all of them for a
	// succeeded batch; those finished before the end for a cancelled or expired one). Lines
	// without a result are left out: the caller queues them again.
	BatchResults(ctx context.Context, b Batch) ([]BatchResult, error)
	// CancelBatch asks the provider to stop a batch; finished lines keep their results.
	CancelBatch(ctx context.Context, id string) error
}
