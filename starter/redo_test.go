package main

import (
	"context"
	"encoding/json"
	"errors"
	"os"
	"slices"
	"strings"
	"testing"

	enumspb "go.temporal.io/api/enums/v1"
	"go.temporal.io/api/serviceerror"
	workflowpb "go.temporal.io/api/workflow/v1"
	"go.temporal.io/api/workflowservice/v1"
	"go.temporal.io/sdk/client"
	"go.temporal.io/sdk/converter"

	"github.com/mhannotator/mha/internal/config"
	"github.com/mhannotator/mha/internal/contract"
	"github.com/mhannotator/mha/internal/labels"
	"github.com/mhannotator/mha/internal/runs"
	"github.com/mhannotator/mha/internal/store"
)

func TestRedoRefusesBadFlagsBeforeOpeningAnything(t *testing.T) {
	allowed := "error, malformed, blocked"
	for _, tc := range []struct {
		args []string
		want []string
	}{
		{[]string{"redo"}, []string{"--all", "--annotator", "--domain"}},
		{[]string{"redo", "--status", "error"}, []string{"--all", "--annotator", "--domain"}},
		{[]string{"redo", "--all", "--status", "ok"}, []string{"--status", `"ok"`, allowed}},
		{[]string{"redo", "--all", "--status", "error,OK"}, []string{"--status", `"ok"`, allowed}},
		{[]string{"redo", "--all", "--status", "error,eror"}, []string{"--status", `"eror"`, allowed}},
		{[]string{"redo", "--all", "--status", "stopped"}, []string{"--status", `"stopped"`, allowed}},
		{[]string{"redo", "--all", "--status", ""}, []string{"--status", "empty status", allowed}},
		{[]string{"redo", "--all", "--status", "error,,blocked"}, []string{"--status", "empty status"}},
		{[]string{"redo", "--all", "--domain", "urgency"}, []string{"--all cannot be combined"}},
		{[]string{"redo", "--annotator", "9"}, []string{"--annotator", `"9"`, "annotators: 1, 2"}},
		{[]string{"redo", "--domain", "mood"}, []string{"--domain", `"mood"`}},
		{[]string{"redo", "--all", "extra"}, []string{`unexpected argument "extra"`}},
	} {
		t.Run(strings.Join(tc.args, " "), func(t *testing.T) {
			f := newFixture(t)
			// A refused command line must not dial (this address would fail with exit 1) and
			// must not even create the store.
			f.run(t, append(tc.args, "--temporal-address", closedAddress(t))...).expect(t, exitUsage, tc.want...)
			if _, err := os.Stat(f.db); !errors.Is(err, os.ErrNotExist) {
				t.Errorf("the store was opened: %v", err)
			}
		})
	}
}

func TestRedoWithoutAServerDeletesNothing(t *testing.T) {
	f := newFixture(t)
	st := f.openStore(t)
	ctx := context.Background()
	if _, err := st.ImportSamples(ctx, []store.Sample{{ID: "a", Text: "one"}, {ID: "b", Text: "two"}}); err != nil {
		t.Fatal(err)
	}
	for _, a := range []store.Annotation{
		{Annotator: "1", Domain: "urgency", SampleID: "a", Status: store.StatusError},
		{Annotator: "1", Domain: "urgency", SampleID: "b", Status: store.StatusMalformed},
	} {
		if err := st.UpsertAnnotation(ctx, a); err != nil {
			t.Fatal(err)
		}
	}
	o := f.run(t, "redo", "--annotator", "1", "--temporal-address", closedAddress(t))
	o.expect(t, exitFail, "cannot reach the Temporal server")
	if c, err := st.CountAnnotations(ctx, "1", "urgency", 0); err != nil || c.Total() != 2 {
		t.Errorf("stored after a redo with no server: %+v, %v; want both rows kept", c, err)
	}
}

func TestParseRedoStatuses(t *testing.T) {
	for _, tc := range []struct {
		list    string
		want    []string
		wantErr string
	}{
		{list: "error,malformed", want: []string{"error", "malformed"}},
		{list: " Blocked , ERROR ", want: []string{"blocked", "error"}},
		{list: "error,malformed,error", want: []string{"error", "malformed"}},
		{list: "ok", wantErr: `"ok" rows are never redone`},
		{list: "errors", wantErr: `"errors" is not a status`},
		{list: ",", wantErr: "empty status"},
	} {
		got, err := runs.ParseRedoStatuses(tc.list)
		switch {
		case tc.wantErr != "" && (err == nil || !strings.Contains(err.Error(), tc.wantErr)):
			t.Errorf("ParseRedoStatuses(%q) = %q, %v; want an error saying %q", tc.list, got, err, tc.wantErr)
		case tc.wantErr == "" && (err != nil || !slices.Equal(got, tc.want)):
			t.Errorf("ParseRedoStatuses(%q) = %q, %v; want %q", tc.list, got, err, tc.want)
		}
	}
}

// fakeDeleter stands for the store.
type fakeDeleter struct {
	n     int
	err   error
	calls [][]string
}

func (d *fakeDeleter) DeleteAnnotations(_ context.Context, _, _ string, statuses []string) (int, error) {
	d.calls = append(d.calls, statuses)
	return d.n, d.err
}

// fakeTemporal answers the calls Redo makes; any other call panics on the nil Client.
type fakeTemporal struct {
	client.Client
	status      enumspb.WorkflowExecutionStatus // 0: no workflow
	describeErr error
	update      contract.Status // the reset Update's answer
	updateErr   error
	query       contract.Status // the status query's answer
	calls       []string
}

func (c *fakeTemporal) DescribeWorkflowExecution(context.Context, string, string) (*workflowservice.DescribeWorkflowExecutionResponse, error) {
	c.calls = append(c.calls, "describe")
	if c.describeErr != nil {
		return nil, c.describeErr
	}
	if c.status == enumspb.WORKFLOW_EXECUTION_STATUS_UNSPECIFIED {
		return nil, serviceerror.NewNotFound("workflow not found")
	}
	return &workflowservice.DescribeWorkflowExecutionResponse{
		WorkflowExecutionInfo: &workflowpb.WorkflowExecutionInfo{Status: c.status},
	}, nil
}

func (c *fakeTemporal) UpdateWorkflow(_ context.Context, o client.UpdateWorkflowOptions) (client.WorkflowUpdateHandle, error) {
	c.calls = append(c.calls, "update "+o.UpdateName)
	if c.updateErr != nil {
		return nil, c.updateErr
	}
	return fakeHandle{c.update}, nil
}

func (c *fakeTemporal) QueryWorkflow(context.Context, string, string, string, ...any) (converter.EncodedValue, error) {
	c.calls = append(c.calls, "query")
	return fakeValue{c.query}, nil
}

func (c *fakeTemporal) ExecuteWorkflow(context.Context, client.StartWorkflowOptions, any, ...any) (client.WorkflowRun, error) {
	c.calls = append(c.calls, "start")
	return nil, nil
}

type fakeHandle struct{ st contract.Status }

func (h fakeHandle) WorkflowID() string { return "" }
func (h fakeHandle) RunID() string      { return "" }
func (h fakeHandle) UpdateID() string   { return "" }
func (h fakeHandle) Get(_ context.Context, v any) error {
	return roundTrip(h.st, v)
}

type fakeValue struct{ st contract.Status }

func (v fakeValue) HasValue() bool    { return true }
func (v fakeValue) Get(ptr any) error { return roundTrip(v.st, ptr) }

func roundTrip(in, out any) error {
	b, err := json.Marshal(in)
	if err != nil {
		return err
	}
	return json.Unmarshal(b, out)
}

func TestRedoClearsThenResetsOrStartsTheRun(t *testing.T) {
	f := newFixture(t)
	cfg, err := config.Load(config.Options{Dir: f.config})
	if err != nil {
		t.Fatal(err)
	}
	enabledRun := runs.Pair{Annotator: "1", Domain: labels.Urgency}
	disabledRun := runs.Pair{Annotator: "2", Domain: labels.Urgency}
	statuses := []string{"error", "malformed"}
	const running, completed = enumspb.WORKFLOW_EXECUTION_STATUS_RUNNING, enumspb.WORKFLOW_EXECUTION_STATUS_COMPLETED
	paused := contract.Status{Status: contract.StatusPaused}
	for _, tc := range []struct {
		name        string
		pair        runs.Pair
		statuses    []string
		deleted     int
		deleteErr   error
		temporal    fakeTemporal
		wantOutcome string
		wantDetail  string
		wantCalls   []string
	}{
		{name: "a run with nothing to redo is left alone", pair: enabledRun, deleted: 0,
			wantOutcome: runs.Redone, wantDetail: "nothing to redo"},
		{name: "an open run is reset", pair: enabledRun, deleted: 3,
			temporal:    fakeTemporal{status: running, update: contract.Status{Status: contract.StatusRunning}},
			wantOutcome: runs.Redone, wantDetail: "3 rows (error, malformed) cleared; reset",
			wantCalls: []string{"describe", "update reset"}},
		{name: "a paused run is reset and stays paused", pair: enabledRun, deleted: 1,
			temporal:    fakeTemporal{status: running, update: paused, query: paused},
			wantOutcome: runs.Redone, wantDetail: "1 row (error, malformed) cleared; reset; run is paused, resume it to annotate them",
			wantCalls: []string{"describe", "update reset", "query"}},
		{name: "a failed run that answers paused to the reset is running by the next query", pair: enabledRun, deleted: 2,
			temporal:    fakeTemporal{status: running, update: paused, query: contract.Status{Status: contract.StatusRunning}},
			wantOutcome: runs.Redone, wantDetail: "2 rows (error, malformed) cleared; reset",
			wantCalls: []string{"describe", "update reset", "query"}},
		{name: "a run never started is started", pair: enabledRun, deleted: 2,
			wantOutcome: runs.Redone, wantDetail: "2 rows (error, malformed) cleared; started",
			wantCalls: []string{"describe", "start"}},
		{name: "a completed run is started again", pair: enabledRun, deleted: 2,
			temporal:    fakeTemporal{status: completed},
			wantOutcome: runs.Redone, wantDetail: "cleared; started", wantCalls: []string{"describe", "start"}},
		{name: "a run that closed after it was described is started", pair: enabledRun, deleted: 2,
			temporal:    fakeTemporal{status: running, updateErr: serviceerror.NewNotFound("workflow execution already completed")},
			wantOutcome: runs.Redone, wantDetail: "cleared; started", wantCalls: []string{"describe", "update reset", "start"}},
		{name: "a disabled closed run keeps its cleared rows", pair: disabledRun, deleted: 2,
			temporal:    fakeTemporal{status: completed},
			wantOutcome: runs.Redone, wantDetail: "2 rows (error, malformed) cleared; run is disabled, enable it to annotate them",
			wantCalls: []string{"describe"}},
		{name: "a disabled run still open is reset", pair: disabledRun, deleted: 2,
			temporal:    fakeTemporal{status: running, update: contract.Status{Status: contract.StatusRunning}},
			wantOutcome: runs.Redone, wantDetail: "cleared; reset", wantCalls: []string{"describe", "update reset"}},
		{name: "a server error after the delete says the rows were cleared", pair: enabledRun, deleted: 4,
			temporal:    fakeTemporal{describeErr: serviceerror.NewUnavailable("connection refused")},
			wantOutcome: runs.Failed, wantDetail: "4 rows (error, malformed) cleared; describe: connection refused; the run annotates them once it is reset or started",
			wantCalls: []string{"describe"}},
		{name: "a refused reset says the rows were cleared", pair: enabledRun, deleted: 4,
			temporal:    fakeTemporal{status: running, updateErr: serviceerror.NewPermissionDenied("no", "")},
			wantOutcome: runs.Failed, wantDetail: "4 rows (error, malformed) cleared; reset: no",
			wantCalls: []string{"describe", "update reset"}},
		{name: "a failed delete touches no run", pair: enabledRun, deleteErr: errors.New("disk full"),
			wantOutcome: runs.Failed, wantDetail: "nothing was cleared: disk full"},
		{name: "ok rows are refused before the store is asked", pair: enabledRun, statuses: []string{"error", "ok"}, deleted: 5,
			wantOutcome: runs.Failed, wantDetail: `"ok" rows are never redone`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			tmp := tc.temporal
			ctl := &runs.Controller{Client: &tmp, Config: cfg, TaskQueue: contract.TaskQueue}
			d := &fakeDeleter{n: tc.deleted, err: tc.deleteErr}
			sts := statuses
			if tc.statuses != nil {
				sts = tc.statuses
			}
			r := ctl.Redo(context.Background(), tc.pair, d, sts)
			if r.Run != tc.pair.ID() || r.Outcome != tc.wantOutcome || !strings.Contains(r.Detail, tc.wantDetail) {
				t.Errorf("Redo = %+v; want outcome %q with a detail saying %q", r, tc.wantOutcome, tc.wantDetail)
			}
			if !slices.Equal(tmp.calls, tc.wantCalls) {
				t.Errorf("calls to Temporal %q, want %q", tmp.calls, tc.wantCalls)
			}
			if tc.statuses == nil && (len(d.calls) != 1 || !slices.Equal(d.calls[0], statuses)) {
				t.Errorf("deletes %q, want one of %q", d.calls, statuses)
			}
			if tc.statuses != nil && len(d.calls) != 0 {
				t.Errorf("refused statuses reached the store: %q", d.calls)
			}
		})
	}
}
