// Package workflows holds the Temporal workflow code of annotation runs and quota pools. The
// names other programs use to talk to it live in internal/contract.
package workflows

import (
	"go.temporal.io/sdk/worker"
	"go.temporal.io/sdk/workflow"

	"github.com/mhannotator/mha/internal/contract"
)

// VersioningBehavior is how AnnotationRun and Quota move between builds on a worker that runs
// with Worker Versioning (worker --deployment-name and --build-id); it is ignored otherwise.
//
// AutoUpgrade: a running workflow moves to the deployment's new current build at its next
// workflow task, and the new build replays its history. Runs last days and a quota pool never
// ends; both continue as new. Pinned would keep each of them on the build it started on, and
// on this server a continue-as-new inherits the pin, so a run or pool would never leave its
// first build, whose workers could not be stopped until every run of theirs had completed
// (and a pool's never do). Under AutoUpgrade the old build drains within a batch: once the new
// build is current, the old one gets no more workflow tasks, only the batches it is running
// finish there, and a continue-as-new starts its new run on the current build too, already
// with the new code's GetVersion branches.
//
// The price is that every change to workflow code must replay the histories of workflows
// that started on the previous build: a change to what a workflow does goes behind
// workflow.GetVersion (as coreVersion does), and TestRecordedHistoriesReplay replays histories
// recorded by earlier releases, so an unguarded change fails `make test` before it ships.
const VersioningBehavior = workflow.VersioningBehaviorAutoUpgrade

// Register adds the workflows to a worker under their public names, with their versioning
// behaviour.
func Register(r worker.WorkflowRegistry) {
	r.RegisterWorkflowWithOptions(AnnotationRun, workflow.RegisterOptions{Name: contract.AnnotationRunName, VersioningBehavior: VersioningBehavior})
	r.RegisterWorkflowWithOptions(Quota, workflow.RegisterOptions{Name: contract.QuotaName, VersioningBehavior: VersioningBehavior})
}
