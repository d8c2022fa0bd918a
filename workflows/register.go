// Package workflows holds the Temporal workflow code of annotation runs and quota pools. The
// names other programs use to talk to it live in internal/contract.
package workflows

import (
	"go.temporal.io/sdk/worker"
	"go.temporal.io/sdk/workflow"

	"github.com/mhannotator/mha/internal/contract"
)

// Register adds the workflows to a worker under their public names.
func Register(r worker.WorkflowRegistry) {
	r.RegisterWorkflowWithOptions(AnnotationRun, workflow.RegisterOptions{Name: contract.AnnotationRunName})
	r.RegisterWorkflowWithOptions(Quota, workflow.RegisterOptions{Name: contract.QuotaName})
}
