// Package activities holds the activity code of annotation runs: reading progress from the
// store and annotating a batch of samples. It has no workflow imports; workflows call it by the
// names and types declared in internal/contract.
package activities

import (
	"go.temporal.io/sdk/activity"
	"go.temporal.io/sdk/worker"

	"github.com/mhannotator/mha/internal/contract"
)

// Register adds a's activities to a worker under their contract names.
func Register(r worker.ActivityRegistry, a *Activities) {
	r.RegisterActivityWithOptions(a.AnnotateBatch, activity.RegisterOptions{Name: contract.AnnotateBatchName})
	r.RegisterActivityWithOptions(a.Progress, activity.RegisterOptions{Name: contract.ProgressName})
	r.RegisterActivityWithOptions(a.HaltBatch, activity.RegisterOptions{Name: contract.HaltBatchName})
	r.RegisterActivityWithOptions(a.SubmitChunk, activity.RegisterOptions{Name: contract.SubmitChunkName})
	r.RegisterActivityWithOptions(a.PollChunk, activity.RegisterOptions{Name: contract.PollChunkName})
	r.RegisterActivityWithOptions(a.CollectChunk, activity.RegisterOptions{Name: contract.CollectChunkName})
	r.RegisterActivityWithOptions(a.CancelChunk, activity.RegisterOptions{Name: contract.CancelChunkName})
}
