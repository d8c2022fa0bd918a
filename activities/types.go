// Package activities holds the activity code of annotation runs: reading progress from the
// store and annotating a batch of samples. It has no workflow imports; workflows call it by the
// names and types declared here.
package activities

import (
	"go.temporal.io/sdk/activity"
	"go.temporal.io/sdk/worker"

	"github.com/mhannotator/mha/internal/labels"
	"github.com/mhannotator/mha/internal/store"
)

// Activity names, as registered on the worker.
const (
	AnnotateBatchName = "AnnotateBatch"
	ProgressName      = "Progress"
)

// Application error types that no retry can fix; the workflow lists them as non-retryable
// and shows them in the run's status.
const (
	ErrBadConfig     = "BadConfig"
	ErrPromptMissing = "PromptMissing"
	ErrNoSamples     = "NoSamples"
	ErrInvalidKey    = "InvalidAPIKey"
	// ErrDailyQuota ends a batch when the day's quota is spent; its details hold the reset
	// time, and the workflow waits for it on a durable timer instead of holding an activity.
	ErrDailyQuota = "DailyQuota"
)

// NonRetryable lists the error types above.
var NonRetryable = []string{ErrBadConfig, ErrPromptMissing, ErrNoSamples, ErrInvalidKey, ErrDailyQuota}

// ProgressInput asks for a run's stored progress.
type ProgressInput struct {
	Annotator string
	Domain    labels.Domain
	Target    int
}

// ProgressResult is a run's stored progress among its first Target samples.
type ProgressResult struct {
	Counts      store.Counts
	DatasetSize int
	// FirstMissing is the position of the first sample in range without an annotation,
	// or -1 when every sample in range has one.
	FirstMissing int
}

// BatchInput is one batch: dataset positions [From, From+Count) of a run.
type BatchInput struct {
	Annotator string
	Domain    labels.Domain
	From      int
	Count     int
	Target    int
}

// BatchResult is what a batch did.
type BatchResult struct {
	Next        int          // the position after the batch
	Stored      int          // annotations this attempt wrote
	Counts      store.Counts // the run's stored counts after the batch, within target
	DatasetSize int
	Attempt     int32 // the attempt that finished the batch (1 = first)
}

// Register adds a's activities to a worker under the names above.
func Register(r worker.ActivityRegistry, a *Activities) {
	r.RegisterActivityWithOptions(a.AnnotateBatch, activity.RegisterOptions{Name: AnnotateBatchName})
	r.RegisterActivityWithOptions(a.Progress, activity.RegisterOptions{Name: ProgressName})
}
