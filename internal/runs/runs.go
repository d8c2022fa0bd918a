// Package runs starts and steers annotation runs from outside Temporal: selecting runs from
// the config, starting them without ever duplicating one, signalling them and reading their
// status. The starter CLI and the REST API both use it.
package runs

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"time"

	enumspb "go.temporal.io/api/enums/v1"
	"go.temporal.io/api/operatorservice/v1"
	"go.temporal.io/api/serviceerror"
	workflowpb "go.temporal.io/api/workflow/v1"
	"go.temporal.io/sdk/client"
	"go.temporal.io/sdk/converter"
	"go.temporal.io/sdk/temporal"

	"github.com/mhannotator/mha/internal/config"
	"github.com/mhannotator/mha/internal/contract"
	"github.com/mhannotator/mha/internal/labels"
)

// Outcomes of an operation on one run.
const (
	Started        = "started"
	AlreadyRunning = "already_running"
	Disabled       = "disabled"
	Signalled      = "signalled"
	NotRunning     = "not_running"
	Restarted      = "restarted"
	Failed         = "error"
	// Outcomes of a control Update: the run's status once the control took effect.
	Paused     = contract.StatusPaused
	Stopped    = contract.StatusStopped
	Resumed    = "resumed"
	Reset      = "reset"
	Retargeted = "retargeted"
)

// StatusNotStarted is the status of a run that has no workflow yet.
const StatusNotStarted = "not_started"

// Pair names one run.
type Pair struct {
	Annotator string
	Domain    labels.Domain
}

// ID is the run's workflow ID.
func (p Pair) ID() string { return contract.RunID(p.Annotator, p.Domain) }

// Selector chooses runs the way the CLI's flags do.
type Selector struct {
	All       bool
	Annotator string
	Domain    string
}

// Result is what one operation did to one run.
type Result struct {
	Run     string `json:"run"`
	Outcome string `json:"outcome"`
	Detail  string `json:"detail,omitempty"`
}

// Counter reads stored progress, for runs no worker answers for.
type Counter interface {
	CountSamples(ctx context.Context) (int, error)
	CountAnnotations(ctx context.Context, annotator, domain string, limit int) (contract.Counts, error)
}

// Controller steers runs through a Temporal client.
type Controller struct {
	Client    client.Client
	Config    *config.Config
	Store     Counter
	Namespace string
	TaskQueue string
	// SearchAttributes says the namespace has the run search attributes, so runs are started
	// with them (see EnsureSearchAttributes).
	SearchAttributes bool
}

// Select returns the runs sel names, in config order: every (annotator, domain) pair of the
// config that matches, enabled or not.
func (c *Controller) Select(sel Selector) ([]Pair, error) {
	if !sel.All && sel.Annotator == "" && sel.Domain == "" {
		return nil, errors.New("choose runs with --all, --annotator N or --domain D")
	}
	if sel.All && (sel.Annotator != "" || sel.Domain != "") {
		return nil, errors.New("--all cannot be combined with --annotator or --domain")
	}
	var domain labels.Domain
	if sel.Domain != "" {
		d, err := labels.ParseDomain(sel.Domain)
		if err != nil {
			return nil, fmt.Errorf("--domain: %w", err)
		}
		domain = d
	}
	var ids []string
	for _, a := range c.Config.Annotators {
		ids = append(ids, a.ID)
	}
	if sel.Annotator != "" && !slices.Contains(ids, sel.Annotator) {
		return nil, fmt.Errorf("--annotator: %q is not in the config (annotators: %s)", sel.Annotator, strings.Join(ids, ", "))
	}
	var out []Pair
	for _, a := range c.Config.Annotators {
		if sel.Annotator != "" && a.ID != sel.Annotator {
			continue
		}
		for _, d := range labels.Domains {
			if domain == "" || d == domain {
				out = append(out, Pair{a.ID, d})
			}
		}
	}
	return out, nil
}

func (c *Controller) settings(p Pair) (config.DomainSettings, bool) {
	a, ok := c.Config.Annotator(p.Annotator)
	if !ok {
		return config.DomainSettings{}, false
	}
	return a.Domains[p.Domain], true
}

// Input is the workflow input that starts p with the current config.
func (c *Controller) Input(p Pair) contract.RunInput {
	g := c.Config.Global
	ds, _ := c.settings(p)
	// A sample's calls: its re-asks, each maybe retried in place twice after a short wait,
	// and a short wait for its quota slot before each; longer waits end the batch.
	perSample := (g.RequestTimeout+5*time.Second)*time.Duration(3*(g.MaxRetries+1)) + g.OfflineLatency
	in := contract.RunInput{
		Annotator: p.Annotator,
		Domain:    p.Domain,
		Target:    ds.TargetCount,
		Settings: contract.RunSettings{
			BatchSize:          g.BatchSize,
			HeartbeatTimeout:   g.HeartbeatTimeout,
			BatchTimeout:       time.Duration(g.BatchSize)*perSample + time.Minute,
			MaxRestartAttempts: g.MaxRestartAttempts,
			RetryBackoffCap:    g.MaxRetryBackoff,
		},
	}
	if ann, ok := c.Config.Annotator(p.Annotator); ok && ann.Mode == contract.ModeBatch {
		in.Settings.Mode, in.Settings.ChunkSize, in.Settings.MaxChunks = contract.ModeBatch, g.BatchChunkSize, g.BatchMaxChunks
	}
	return in
}

// Start starts p unless it is disabled or already running. A run's workflow ID is fixed, and
// the server refuses a second start while one runs, so concurrent starts yield one run.
func (c *Controller) Start(ctx context.Context, p Pair) Result {
	res := Result{Run: p.ID()}
	ds, ok := c.settings(p)
	if !ok || !ds.Enabled {
		res.Outcome, res.Detail = Disabled, "enable it in settings.json to start it"
		return res
	}
	opts := client.StartWorkflowOptions{
		ID:                       p.ID(),
		TaskQueue:                c.TaskQueue,
		WorkflowIDConflictPolicy: enumspb.WORKFLOW_ID_CONFLICT_POLICY_FAIL,
		WorkflowIDReusePolicy:    enumspb.WORKFLOW_ID_REUSE_POLICY_ALLOW_DUPLICATE,
		// Without this the client quietly returns the running workflow as if it had started.
		WorkflowExecutionErrorWhenAlreadyStarted: true,
		StaticSummary:                            fmt.Sprintf("annotator %s, %s, target %d", p.Annotator, p.Domain, ds.TargetCount),
	}
	if c.SearchAttributes {
		opts.TypedSearchAttributes = temporal.NewSearchAttributes(
			contract.AnnotatorKey.ValueSet(p.Annotator),
			contract.DomainKey.ValueSet(string(p.Domain)),
			contract.RunStatusKey.ValueSet(contract.StatusRunning),
			contract.RunChangedAtKey.ValueSet(time.Now()))
	}
	_, err := c.Client.ExecuteWorkflow(ctx, opts, contract.AnnotationRunName, c.Input(p))
	var already *serviceerror.WorkflowExecutionAlreadyStarted
	switch {
	case errors.As(err, &already):
		res.Outcome = AlreadyRunning
	case err != nil:
		res.Outcome, res.Detail = Failed, err.Error()
	default:
		res.Outcome, res.Detail = Started, fmt.Sprintf("target %d", ds.TargetCount)
	}
	return res
}

// Signal sends a signal to p's open workflow.
func (c *Controller) Signal(ctx context.Context, p Pair, name string, arg any) Result {
	res := Result{Run: p.ID(), Outcome: Signalled, Detail: name}
	err := c.Client.SignalWorkflow(ctx, p.ID(), "", name, arg)
	var notFound *serviceerror.NotFound
	switch {
	case errors.As(err, &notFound):
		res.Outcome, res.Detail = NotRunning, ""
	case err != nil:
		res.Outcome, res.Detail = Failed, err.Error()
	}
	return res
}

// Control applies control name (pause, resume, stop, reset, target) to p's run through the
// Update of the same name, which refuses a bad value and answers with the run's status once
// the control took effect (a pause or stop: once the sample in flight is stored). Runs of the
// previous release, which have no such Update, get the signal instead.
func (c *Controller) Control(ctx context.Context, p Pair, name string, arg any) (Result, contract.Status) {
	res := Result{Run: p.ID()}
	var args []any
	if arg != nil {
		args = []any{arg}
	}
	h, err := c.Client.UpdateWorkflow(ctx, client.UpdateWorkflowOptions{
		WorkflowID: p.ID(), UpdateName: name, Args: args, WaitForStage: client.WorkflowUpdateStageCompleted,
	})
	var st contract.Status
	if err == nil {
		err = h.Get(ctx, &st)
	}
	var notFound *serviceerror.NotFound
	var app *temporal.ApplicationError
	switch {
	case errors.As(err, &notFound):
		res.Outcome = NotRunning
	case errors.As(err, &app) && strings.Contains(app.Error(), "unknown update"):
		return c.Signal(ctx, p, name, arg), st
	case ctx.Err() != nil:
		res.Outcome, res.Detail = Pending, "the run has not answered yet; the control takes effect after the call in flight, see status"
	case err != nil:
		res.Outcome, res.Detail = Failed, err.Error()
	default:
		res.Outcome = controlOutcomes[name]
		res.Detail = fmt.Sprintf("now %s, %d/%d done", st.Status, st.Completed, min(st.Target, max(st.DatasetSize, st.Completed)))
	}
	return res, st
}

var controlOutcomes = map[string]string{
	contract.SignalPause: Paused, contract.SignalStop: Stopped, contract.SignalResume: Resumed,
	contract.SignalReset: Reset, contract.SignalTarget: Retargeted,
}

// Restart stops p (waiting up to wait for it to close after the sample in flight), then
// starts it again with the current config, which is how a changed target or batch size
// reaches a run.
func (c *Controller) Restart(ctx context.Context, p Pair, wait time.Duration) Result {
	if r := c.Signal(ctx, p, contract.SignalStop, nil); r.Outcome == Failed {
		return r
	} else if r.Outcome == Signalled {
		wctx, cancel := context.WithTimeout(ctx, wait)
		err := c.Client.GetWorkflow(wctx, p.ID(), "").Get(wctx, nil)
		timedOut := wctx.Err() != nil // before cancel, after which it is always set
		cancel()
		if err != nil && timedOut {
			return Result{Run: p.ID(), Outcome: Failed, Detail: fmt.Sprintf("did not stop within %s", wait)}
		}
	}
	r := c.Start(ctx, p)
	if r.Outcome == Started {
		r.Outcome = Restarted
	}
	return r
}

// queryTimeout bounds a status query, which needs a live worker to answer.
const queryTimeout = 3 * time.Second

// Status reads p's status: from the workflow's query when a worker answers, from its result
// once it has finished, and from the store when no workflow or no worker is there.
func (c *Controller) Status(ctx context.Context, p Pair) (contract.Status, error) {
	desc, err := c.Client.DescribeWorkflowExecution(ctx, p.ID(), "")
	var notFound *serviceerror.NotFound
	if errors.As(err, &notFound) {
		return c.storedStatus(ctx, p, StatusNotStarted)
	}
	if err != nil {
		return contract.Status{}, fmt.Errorf("describe %s: %w", p.ID(), err)
	}
	info := desc.GetWorkflowExecutionInfo()
	var st contract.Status
	switch info.GetStatus() {
	case enumspb.WORKFLOW_EXECUTION_STATUS_RUNNING:
		qctx, cancel := context.WithTimeout(ctx, queryTimeout)
		v, qerr := c.Client.QueryWorkflow(qctx, p.ID(), "", contract.QueryStatus)
		cancel()
		if qerr == nil {
			qerr = v.Get(&st)
		}
		if qerr != nil {
			st, err = c.storedStatus(ctx, p, recordedStatus(info))
			st.LastError = "no worker answered the status query; the status is the one the run last recorded, the counts are from the store"
		}
		for _, pa := range desc.GetPendingActivities() {
			if hb := pa.GetLastHeartbeatTime().AsTime(); pa.GetLastHeartbeatTime() != nil && hb.After(st.LastHeartbeat) {
				st.LastHeartbeat = hb
			}
		}
		return st, err
	case enumspb.WORKFLOW_EXECUTION_STATUS_COMPLETED:
		if err := c.Client.GetWorkflow(ctx, p.ID(), info.GetExecution().GetRunId()).Get(ctx, &st); err == nil {
			return st, nil
		}
	}
	closed := strings.ToLower(strings.TrimPrefix(info.GetStatus().String(), "WORKFLOW_EXECUTION_STATUS_"))
	closed = strings.ReplaceAll(closed, "_", "")
	return c.storedStatus(ctx, p, closed)
}

// recordedStatus is the status an open run last recorded in its RunStatus search attribute
// (a paused run stays paused while no worker is there to say so), or running when it
// records none (the namespace lacks the attribute).
func recordedStatus(info *workflowpb.WorkflowExecutionInfo) string {
	var status string
	p := info.GetSearchAttributes().GetIndexedFields()[contract.RunStatusKey.GetName()]
	if p == nil || converter.GetDefaultDataConverter().FromPayload(p, &status) != nil || status == "" {
		return contract.StatusRunning
	}
	return status
}

func (c *Controller) storedStatus(ctx context.Context, p Pair, status string) (contract.Status, error) {
	ds, _ := c.settings(p)
	st := contract.Status{WorkflowID: p.ID(), Annotator: p.Annotator, Domain: string(p.Domain), Status: status, Target: ds.TargetCount}
	size, err := c.Store.CountSamples(ctx)
	if err != nil {
		return st, err
	}
	st.DatasetSize = size
	if n := min(ds.TargetCount, size); n > 0 {
		counts, err := c.Store.CountAnnotations(ctx, p.Annotator, string(p.Domain), n)
		if err != nil {
			return st, err
		}
		st.Completed, st.OK, st.Malformed, st.Errors, st.Blocked = counts.Total(), counts.OK, counts.Malformed, counts.Error, counts.Blocked
	}
	return st, nil
}

// EnsureSearchAttributes registers the run search attributes the namespace lacks and
// reports whether they are all there. A server that refuses (no permission) is not an error:
// runs then start without search attributes.
func EnsureSearchAttributes(ctx context.Context, cl client.Client, namespace string) (bool, error) {
	ops := cl.OperatorService()
	resp, err := ops.ListSearchAttributes(ctx, &operatorservice.ListSearchAttributesRequest{Namespace: namespace})
	if err != nil {
		return false, fmt.Errorf("list search attributes: %w", err)
	}
	missing := map[string]enumspb.IndexedValueType{}
	want := map[string]enumspb.IndexedValueType{contract.RunChangedAtKey.GetName(): enumspb.INDEXED_VALUE_TYPE_DATETIME}
	for _, k := range contract.SearchAttributeKeys {
		want[k.GetName()] = enumspb.INDEXED_VALUE_TYPE_KEYWORD
	}
	for name, typ := range want {
		if _, ok := resp.GetCustomAttributes()[name]; !ok {
			missing[name] = typ
		}
	}
	if len(missing) == 0 {
		return true, nil
	}
	_, err = ops.AddSearchAttributes(ctx, &operatorservice.AddSearchAttributesRequest{Namespace: namespace, SearchAttributes: missing})
	var denied *serviceerror.PermissionDenied
	if errors.As(err, &denied) {
		return false, nil
	}
	if err != nil {
		return false, fmt.Errorf("add search attributes: %w", err)
	}
	return true, nil
}

// PoolAnnotators returns, for each quota pool of the config's network annotators, its first
// annotator, whose limits are the pool's (the config refuses a pool whose annotators differ).
func PoolAnnotators(cfg *config.Config) []config.Annotator {
	var out []config.Annotator
	seen := map[string]bool{}
	for _, a := range cfg.Annotators {
		if a.Provider != config.ProviderOffline && !seen[a.QuotaPool] {
			seen[a.QuotaPool] = true
			out = append(out, a)
		}
	}
	return out
}
