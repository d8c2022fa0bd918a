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
	"go.temporal.io/sdk/client"
	"go.temporal.io/sdk/temporal"

	"github.com/mhannotator/mha/internal/config"
	"github.com/mhannotator/mha/internal/labels"
	"github.com/mhannotator/mha/internal/store"
	"github.com/mhannotator/mha/workflows"
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
)

// StatusNotStarted is the status of a run that has no workflow yet.
const StatusNotStarted = "not_started"

// Pair names one run.
type Pair struct {
	Annotator string
	Domain    labels.Domain
}

// ID is the run's workflow ID.
func (p Pair) ID() string { return workflows.RunID(p.Annotator, p.Domain) }

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

// Controller steers runs through a Temporal client.
type Controller struct {
	Client    client.Client
	Config    *config.Config
	Store     store.Store
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
func (c *Controller) Input(p Pair) workflows.RunInput {
	g := c.Config.Global
	ds, _ := c.settings(p)
	perSample := g.RequestTimeout*time.Duration(g.MaxRetries+1) + g.OfflineLatency
	return workflows.RunInput{
		Annotator: p.Annotator,
		Domain:    p.Domain,
		Target:    ds.TargetCount,
		Settings: workflows.RunSettings{
			BatchSize:          g.BatchSize,
			HeartbeatTimeout:   g.HeartbeatTimeout,
			BatchTimeout:       time.Duration(g.BatchSize)*perSample + time.Minute,
			MaxRestartAttempts: g.MaxRestartAttempts,
		},
	}
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
			workflows.AnnotatorKey.ValueSet(p.Annotator),
			workflows.DomainKey.ValueSet(string(p.Domain)),
			workflows.RunStatusKey.ValueSet(workflows.StatusRunning))
	}
	_, err := c.Client.ExecuteWorkflow(ctx, opts, workflows.AnnotationRunName, c.Input(p))
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

// Restart stops p (waiting up to wait for it to close after the sample in flight), then
// starts it again with the current config, which is how a changed target or batch size
// reaches a run.
func (c *Controller) Restart(ctx context.Context, p Pair, wait time.Duration) Result {
	if r := c.Signal(ctx, p, workflows.SignalStop, nil); r.Outcome == Failed {
		return r
	} else if r.Outcome == Signalled {
		wctx, cancel := context.WithTimeout(ctx, wait)
		err := c.Client.GetWorkflow(wctx, p.ID(), "").Get(wctx, nil)
		cancel()
		if err != nil && wctx.Err() != nil {
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
func (c *Controller) Status(ctx context.Context, p Pair) (workflows.Status, error) {
	desc, err := c.Client.DescribeWorkflowExecution(ctx, p.ID(), "")
	var notFound *serviceerror.NotFound
	if errors.As(err, &notFound) {
		return c.storedStatus(ctx, p, StatusNotStarted)
	}
	if err != nil {
		return workflows.Status{}, fmt.Errorf("describe %s: %w", p.ID(), err)
	}
	info := desc.GetWorkflowExecutionInfo()
	var st workflows.Status
	switch info.GetStatus() {
	case enumspb.WORKFLOW_EXECUTION_STATUS_RUNNING:
		qctx, cancel := context.WithTimeout(ctx, queryTimeout)
		v, qerr := c.Client.QueryWorkflow(qctx, p.ID(), "", workflows.QueryStatus)
		cancel()
		if qerr == nil {
			qerr = v.Get(&st)
		}
		if qerr != nil {
			st, err = c.storedStatus(ctx, p, workflows.StatusRunning)
			st.LastError = "no worker answered the status query; counts are from the store"
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

func (c *Controller) storedStatus(ctx context.Context, p Pair, status string) (workflows.Status, error) {
	ds, _ := c.settings(p)
	st := workflows.Status{WorkflowID: p.ID(), Annotator: p.Annotator, Domain: string(p.Domain), Status: status, Target: ds.TargetCount}
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
	for _, k := range workflows.SearchAttributeKeys {
		if _, ok := resp.GetCustomAttributes()[k.GetName()]; !ok {
			missing[k.GetName()] = enumspb.INDEXED_VALUE_TYPE_KEYWORD
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
