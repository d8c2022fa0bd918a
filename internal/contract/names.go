// Package contract is what programs agree on to steer annotation runs: workflow, signal,
// query and update names, workflow and activity inputs and results, the status document and
// the error types. It imports nothing of ours but the label catalogue, so the starter and the
// API steer runs without linking the store or the providers, and workflow code does not
// depend on the activities' implementation.
package contract

import (
	"fmt"
	"strings"

	"go.temporal.io/sdk/temporal"

	"github.com/mhannotator/mha/internal/labels"
)

// TaskQueue is the default task queue of workers and runs.
const TaskQueue = "annotation"

// AnnotationRunName is the workflow type of a run.
const AnnotationRunName = "AnnotationRun"

// Controls a run accepts, each both as a signal (fire and forget, for `temporal workflow
// signal --name pause`) and as an Update of the same name that validates its input and
// answers with the run's resulting Status.
const (
	SignalPause  = "pause"
	SignalResume = "resume"
	SignalStop   = "stop"
	SignalReset  = "reset"
	SignalTarget = "target" // payload: the new target_count, a JSON number >= 0
)

// Controls lists the control names in the order a person reads them.
var Controls = []string{SignalPause, SignalResume, SignalStop, SignalReset, SignalTarget}

// QueryStatus returns a run's Status document.
const QueryStatus = "status"

// Run statuses.
const (
	StatusRunning      = "running"
	StatusPaused       = "paused"
	StatusWaitingQuota = "waiting_quota" // waiting on a durable timer for the pool's next free slot or day
	StatusWaitingRetry = "waiting_retry" // the provider is failing transiently; the run tries again by itself
	StatusFailed       = "failed"
	StatusStopped      = "stopped"
	StatusCompleted    = "completed"
)

// Search attributes that make runs filterable in the Web UI and `temporal workflow list`.
var (
	AnnotatorKey = temporal.NewSearchAttributeKeyKeyword("Annotator")
	DomainKey    = temporal.NewSearchAttributeKeyKeyword("Domain")
	RunStatusKey = temporal.NewSearchAttributeKeyKeyword("RunStatus")
	// RunChangedAtKey is when RunStatus last changed: the api lists only the runs that changed
	// since it last looked, so idle runs cost it nothing.
	RunChangedAtKey = temporal.NewSearchAttributeKeyTime("RunChangedAt")
)

// SearchAttributeKeys lists the keyword keys above, for registering them.
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

// Activity names, as registered on the worker.
const (
	AnnotateBatchName = "AnnotateBatch"
	ProgressName      = "Progress"
	// HaltBatchName is the local activity a run executes on pause or stop, before it asks the
	// server to cancel its batch.
	HaltBatchName = "HaltBatch"
)

// Application error types that no retry can fix; the workflow lists them as non-retryable
// and shows them in the run's status.
const (
	ErrBadConfig     = "BadConfig"
	ErrPromptMissing = "PromptMissing"
	ErrNoSamples     = "NoSamples"
	ErrInvalidKey    = "InvalidAPIKey"
	// ErrDailyQuota ended a batch of the previous release when the day's quota was spent; its
	// details hold the reset time. Batches now report that as BatchResult.Wait.
	ErrDailyQuota = "DailyQuota"
	// ErrSystematic: the same non-transient error on max_consecutive_errors samples in a row;
	// the request itself is wrong (a parameter the model rejects, say), not the samples.
	ErrSystematic = "SystematicError"
	// ErrGaveUp: max_restart_attempts attempts in a row failed without storing anything, for
	// reasons that are neither transient nor a provider's.
	ErrGaveUp = "GaveUp"
)

// NonRetryable lists the error types above.
var NonRetryable = []string{ErrBadConfig, ErrPromptMissing, ErrNoSamples, ErrInvalidKey, ErrDailyQuota, ErrSystematic, ErrGaveUp}
