// Package workflows holds the Temporal workflow code and the names people and programs use to
// talk to it: workflow IDs, signals, queries and search attributes. Worker, starter and API
// all take these names from here.
package workflows

import (
	"fmt"
	"strings"

	"go.temporal.io/sdk/temporal"
	"go.temporal.io/sdk/worker"
	"go.temporal.io/sdk/workflow"

	"github.com/mhannotator/mha/internal/labels"
)

// TaskQueue is the default task queue of workers and runs.
const TaskQueue = "annotation"

// AnnotationRunName is the workflow type of a run.
const AnnotationRunName = "AnnotationRun"

// Signals a run accepts (`temporal workflow signal --name pause ...`).
const (
	SignalPause  = "pause"
	SignalResume = "resume"
	SignalStop   = "stop"
	SignalReset  = "reset"
	SignalTarget = "target" // payload: the new target_count
)

// QueryStatus returns a run's Status document.
const QueryStatus = "status"

// Run statuses.
const (
	StatusRunning      = "running"
	StatusPaused       = "paused"
	StatusWaitingQuota = "waiting_quota"
	StatusFailed       = "failed"
	StatusStopped      = "stopped"
	StatusCompleted    = "completed"
)

// Search attributes that make runs filterable in the Web UI and `temporal workflow list`.
var (
	AnnotatorKey = temporal.NewSearchAttributeKeyKeyword("Annotator")
	DomainKey    = temporal.NewSearchAttributeKeyKeyword("Domain")
	RunStatusKey = temporal.NewSearchAttributeKeyKeyword("RunStatus")
)

// SearchAttributeKeys lists the keys above, for registering them.
var SearchAttributeKeys = []temporal.SearchAttributeKeyKeyword{AnnotatorKey, DomainKey, RunStatusKey}

// RunID is the workflow ID of the run of (annotator, domain).
func RunID(annotator string, domain labels.Domain) string {
	return "annotation-" + annotator + "-" + string(domain)
}

// ParseRunID splits a run's workflow ID into annotator and domain.
func ParseRunID(id string) (string, labels.Domain, error) {
	rest, ok := strings.CutPrefix(id, "annotation-")
	i := strings.LastIndex(rest, "-")
	if !ok || i <= 0 {
		return "", "", fmt.Errorf("%q is not a run ID (annotation-<annotator>-<domain>)", id)
	}
	d, err := labels.ParseDomain(rest[i+1:])
	if err != nil {
		return "", "", fmt.Errorf("%q is not a run ID: %w", id, err)
	}
	return rest[:i], d, nil
}

// Register adds the workflows to a worker under their public names.
func Register(r worker.WorkflowRegistry) {
	r.RegisterWorkflowWithOptions(AnnotationRun, workflow.RegisterOptions{Name: AnnotationRunName})
	r.RegisterWorkflowWithOptions(Quota, workflow.RegisterOptions{Name: QuotaName})
}
