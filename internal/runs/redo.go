package runs

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"

	enumspb "go.temporal.io/api/enums/v1"
	"go.temporal.io/api/serviceerror"

	"github.com/mhannotator/mha/internal/contract"
)

// Redone is the outcome of a redo that cleared what it had to and told the run (or found
// nothing to clear).
const Redone = "redo"

// RedoStatuses are the stored annotation statuses a redo may clear: the rows that ended badly. A good label ("ok")
// is never thrown away by a redo.
var RedoStatuses = []string{"error", "malformed", "blocked"}

// DefaultRedoStatuses are what a redo clears when no status is named: the rows a better
// prompt or a fixed provider can turn into labels. Blocked rows usually stay blocked.
var DefaultRedoStatuses = []string{"error", "malformed"}

// Deleter clears a run's stored annotations of some statuses and says how many it cleared.
// The store implements it.
type Deleter interface {
	DeleteAnnotations(ctx context.Context, annotator, domain string, statuses []string) (int, error)
}

// ParseRedoStatuses reads a comma list of statuses to redo, in any letter case. It refuses
// an empty list, "ok" and any status not in RedoStatuses, naming the value and the allowed
// ones; a status named twice counts once.
func ParseRedoStatuses(list string) ([]string, error) {
	var out []string
	for item := range strings.SplitSeq(list, ",") {
		s := strings.ToLower(strings.TrimSpace(item))
		if s == "" {
			return nil, fmt.Errorf("empty status in %q; choose among %s", list, strings.Join(RedoStatuses, ", "))
		}
		if !slices.Contains(out, s) {
			out = append(out, s)
		}
	}
	if err := CheckRedoStatuses(out); err != nil {
		return nil, err
	}
	return out, nil
}

// CheckRedoStatuses refuses a status a redo cannot clear, saying which can.
func CheckRedoStatuses(statuses []string) error {
	allowed := strings.Join(RedoStatuses, ", ")
	if len(statuses) == 0 {
		return fmt.Errorf("no status to redo; choose among %s", allowed)
	}
	for _, s := range statuses {
		switch {
		case s == "ok":
			return fmt.Errorf("%q rows are never redone, only rows that ended badly: choose among %s", s, allowed)
		case !slices.Contains(RedoStatuses, s):
			return fmt.Errorf("%q is not a status a redo clears; choose among %s", s, allowed)
		}
	}
	return nil
}

// Redo has p annotate again, with the prompt active now, the samples whose stored annotation
// has one of statuses: it deletes those rows, then makes the run go back to them. An open
// run gets the reset control, which makes it re-read its progress from the store and go on
// from the first sample without an annotation (a paused run stays paused, and the detail
// says so); a closed run is started again if it is enabled. The rows of a disabled run are
// cleared all the same and wait for the run to be enabled and started.
//
// A failure after the rows were cleared says how many were; the run annotates them as soon
// as it is reset or started.
func (c *Controller) Redo(ctx context.Context, p Pair, d Deleter, statuses []string) Result {
	res := Result{Run: p.ID()}
	if err := CheckRedoStatuses(statuses); err != nil {
		res.Outcome, res.Detail = Failed, err.Error()
		return res
	}
	n, err := d.DeleteAnnotations(ctx, p.Annotator, string(p.Domain), statuses)
	if err != nil {
		res.Outcome, res.Detail = Failed, fmt.Sprintf("nothing was cleared: %v", err)
		return res
	}
	if n == 0 {
		res.Outcome, res.Detail = Redone, "nothing to redo"
		return res
	}
	rows := "rows"
	if n == 1 {
		rows = "row"
	}
	cleared := fmt.Sprintf("%d %s (%s) cleared", n, rows, strings.Join(statuses, ", "))
	then, err := c.reannotate(ctx, p)
	if err != nil {
		res.Outcome, res.Detail = Failed, fmt.Sprintf("%s; %v; the run annotates them once it is reset or started", cleared, err)
		return res
	}
	res.Outcome, res.Detail = Redone, cleared+"; "+then
	return res
}

// reannotate makes p go back to the samples it lacks, and says how.
func (c *Controller) reannotate(ctx context.Context, p Pair) (string, error) {
	open, err := c.open(ctx, p)
	if err != nil {
		return "", err
	}
	if open {
		then, err := c.redoReset(ctx, p)
		if !errors.Is(err, errClosed) {
			return then, err
		}
		// It closed since it was described: start it again.
	}
	r := c.Start(ctx, p)
	switch r.Outcome {
	case Started:
		return "started", nil
	case Disabled:
		return "run is disabled, enable it to annotate them", nil
	case AlreadyRunning:
		// Started by someone else meanwhile, perhaps before the rows were cleared.
		then, err := c.redoReset(ctx, p)
		if errors.Is(err, errClosed) {
			return "", errors.New("start: the run was started and closed again meanwhile")
		}
		return then, err
	}
	return "", fmt.Errorf("start: %s", r.Detail)
}

// errClosed: the run has no open workflow (any more).
var errClosed = errors.New("run is not open")

// open says whether p's workflow is open.
func (c *Controller) open(ctx context.Context, p Pair) (bool, error) {
	desc, err := c.Client.DescribeWorkflowExecution(ctx, p.ID(), "")
	var notFound *serviceerror.NotFound
	if errors.As(err, &notFound) {
		return false, nil
	}
	if err != nil {
		return false, fmt.Errorf("describe: %w", err)
	}
	return desc.GetWorkflowExecutionInfo().GetStatus() == enumspb.WORKFLOW_EXECUTION_STATUS_RUNNING, nil
}

// redoReset sends the reset control to p's open run.
func (c *Controller) redoReset(ctx context.Context, p Pair) (string, error) {
	r, st := c.Control(ctx, p, contract.SignalReset, nil)
	switch r.Outcome {
	case NotRunning:
		return "", errClosed
	case Signalled:
		// A run of the previous release: it re-reads its progress too, but does not answer.
		return "reset signalled", nil
	case Reset:
		if st.Status == contract.StatusPaused && c.stillPaused(ctx, p) {
			return "reset; run is paused, resume it to annotate them", nil
		}
		return "reset", nil
	}
	return "", fmt.Errorf("reset: %s", r.Detail)
}

// stillPaused asks p's run whether it is paused. The reset Update answers "paused" for a run
// that was failed, too: that is the status it gives a cleared failure until its loop runs
// on, which the same workflow task does, so a query after the answer tells the two apart.
// When the query fails, the Update's answer stands.
func (c *Controller) stillPaused(ctx context.Context, p Pair) bool {
	qctx, cancel := context.WithTimeout(ctx, queryTimeout)
	defer cancel()
	v, err := c.Client.QueryWorkflow(qctx, p.ID(), "", contract.QueryStatus)
	var st contract.Status
	if err == nil {
		err = v.Get(&st)
	}
	return err != nil || st.Status == contract.StatusPaused
}
