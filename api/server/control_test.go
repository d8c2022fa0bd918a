package server

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"reflect"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/mock"
	enumspb "go.temporal.io/api/enums/v1"
	"go.temporal.io/api/serviceerror"
	"go.temporal.io/sdk/client"
	"go.temporal.io/sdk/temporal"

	"github.com/mhannotator/mha/internal/contract"
	"github.com/mhannotator/mha/internal/labels"
	"github.com/mhannotator/mha/internal/runs"
	"github.com/mhannotator/mha/internal/store"
)

// expectQuotaConfigured expects a start to hand annotator 2's pool (the only network one of
// controlSettings) the config's limits.
func (f *configFixture) expectQuotaConfigured(m *temporalMock) {
	f.t.Helper()
	cfg := f.load()
	a, _ := cfg.Annotator("2")
	m.expectSignal(contract.QuotaID(a.QuotaPool), contract.SignalConfigure, a.QuotaLimits(cfg.Global), nil)
}

// allRuns are the run IDs of controlSettings in config order.
func allRuns() []string {
	var ids []string
	for _, a := range []string{"1", "2"} {
		for _, d := range labels.Domains {
			ids = append(ids, contract.RunID(a, d))
		}
	}
	return ids
}

func runIDs(results []runs.Result) []string {
	ids := make([]string, len(results))
	for i, r := range results {
		ids[i] = r.Run
	}
	return ids
}

func TestStartStartsTheSelectedRunWithItsTarget(t *testing.T) {
	m, ev := newTemporalMock(t), newFakeEvents()
	f := newControlFixture(t, m, ev)
	op := m.expectSearchAttributes()
	f.expectQuotaConfigured(m)
	var opts client.StartWorkflowOptions
	var input contract.RunInput
	m.expectStart("annotation-1-urgency", nil).Run(func(args mock.Arguments) {
		opts, input = args.Get(1).(client.StartWorkflowOptions), args.Get(3).(contract.RunInput)
	})

	got := decodeInto[resultsReply](t, f.call(http.MethodPost, "/api/control/start", map[string]any{"annotator": "1", "domain": "urgency"}, http.StatusOK))
	want := []runs.Result{{Run: "annotation-1-urgency", Outcome: runs.Started, Detail: "target 5"}}
	if !reflect.DeepEqual(got.Results, want) {
		t.Errorf("results = %+v, want %+v", got.Results, want)
	}
	if opts.TaskQueue != "runs-queue" || opts.WorkflowIDConflictPolicy != enumspb.WORKFLOW_ID_CONFLICT_POLICY_FAIL ||
		!opts.WorkflowExecutionErrorWhenAlreadyStarted || opts.TypedSearchAttributes.Size() != 4 {
		t.Errorf("start options = %+v", opts)
	}
	if input.Annotator != "1" || input.Domain != labels.Urgency || input.Target != 5 || input.Settings.HeartbeatTimeout != time.Minute {
		t.Errorf("input = %+v", input)
	}
	if ns := op.namespaces(); !slices.Equal(ns, []string{"ns"}) {
		t.Errorf("search attributes looked up in %v", ns)
	}
	if ids := ev.takeRefreshed(); !slices.Equal(ids, []string{"annotation-1-urgency"}) {
		t.Errorf("refreshed %v", ids)
	}
}

func TestStartAnswersPerRunAlreadyRunningAndDisabled(t *testing.T) {
	m, ev := newTemporalMock(t), newFakeEvents()
	f := newControlFixture(t, m, ev)
	m.expectSearchAttributes()
	f.expectQuotaConfigured(m)
	m.expectStart("annotation-1-urgency", serviceerror.NewWorkflowExecutionAlreadyStarted("already started", "", "run-1"))

	got := decodeInto[resultsReply](t, f.call(http.MethodPost, "/api/control/start", map[string]any{"annotator": "1"}, http.StatusOK))
	if ids := runIDs(got.Results); !slices.Equal(ids, allRuns()[:6]) {
		t.Fatalf("runs = %v", ids)
	}
	for _, r := range got.Results {
		want := runs.Result{Run: r.Run, Outcome: runs.Disabled, Detail: "enable it in settings.json to start it"}
		if r.Run == "annotation-1-urgency" {
			want = runs.Result{Run: r.Run, Outcome: runs.AlreadyRunning}
		}
		if r != want {
			t.Errorf("result %+v, want %+v", r, want)
		}
	}
	// Disabled runs are not refreshed; the others are.
	if ids := ev.takeRefreshed(); !slices.Equal(ids, []string{"annotation-1-urgency"}) {
		t.Errorf("refreshed %v", ids)
	}
}

func TestStartAllStartsOnlyTheEnabledRuns(t *testing.T) {
	m, ev := newTemporalMock(t), newFakeEvents()
	f := newControlFixture(t, m, ev)
	m.expectSearchAttributes()
	f.expectQuotaConfigured(m)
	m.expectStart("annotation-1-urgency", nil)
	m.expectStart("annotation-2-urgency", nil)

	got := decodeInto[resultsReply](t, f.call(http.MethodPost, "/api/control/start", map[string]any{"all": true}, http.StatusOK))
	want := []runs.Result{
		{Run: "annotation-1-urgency", Outcome: runs.Started, Detail: "target 5"},
		{Run: "annotation-2-urgency", Outcome: runs.Started, Detail: "target 4"},
	}
	if !reflect.DeepEqual(got.Results, want) {
		t.Errorf("results = %+v, want %+v", got.Results, want)
	}
}

func TestControlsAnswerWithTheRunsStatusOnceItTookEffect(t *testing.T) {
	for _, tt := range []struct{ action, status, outcome string }{
		{"pause", contract.StatusPaused, runs.Paused},
		{"resume", contract.StatusRunning, runs.Resumed},
		{"stop", contract.StatusStopped, runs.Stopped},
		{"reset", contract.StatusRunning, runs.Reset},
	} {
		t.Run(tt.action, func(t *testing.T) {
			m, ev := newTemporalMock(t), newFakeEvents()
			f := newControlFixture(t, m, ev)
			m.expectUpdate("annotation-1-urgency", tt.action, answerStatus(contract.Status{Status: tt.status, Completed: 3, Target: 5, DatasetSize: 10}))
			m.expectUpdateError("annotation-2-urgency", tt.action, errNotFound)

			got := decodeInto[resultsReply](t, f.call(http.MethodPost, "/api/control/"+tt.action, map[string]any{"domain": "urgency"}, http.StatusOK))
			want := []runs.Result{
				{Run: "annotation-1-urgency", Outcome: tt.outcome, Detail: fmt.Sprintf("now %s, 3/5 done", tt.status)},
				{Run: "annotation-2-urgency", Outcome: runs.NotRunning},
			}
			if !reflect.DeepEqual(got.Results, want) {
				t.Errorf("results = %+v, want %+v", got.Results, want)
			}
			if ids := ev.takeRefreshed(); !slices.Equal(ids, []string{"annotation-1-urgency", "annotation-2-urgency"}) {
				t.Errorf("refreshed %v", ids)
			}
		})
	}
}

func TestControlAllReachesEveryRunOfTheConfig(t *testing.T) {
	m, ev := newTemporalMock(t), newFakeEvents()
	f := newControlFixture(t, m, ev)
	m.On("UpdateWorkflow", mock.Anything, mock.MatchedBy(func(o client.UpdateWorkflowOptions) bool { return o.UpdateName == "stop" })).
		Return(nil, errNotFound).Times(12)

	got := decodeInto[resultsReply](t, f.call(http.MethodPost, "/api/control/stop", map[string]any{"all": true}, http.StatusOK))
	if ids := runIDs(got.Results); !slices.Equal(ids, allRuns()) {
		t.Errorf("runs = %v", ids)
	}
	for _, r := range got.Results {
		if r.Outcome != runs.NotRunning {
			t.Errorf("%+v", r)
		}
	}
	var updated []string
	for _, c := range m.Calls {
		updated = append(updated, c.Arguments.Get(1).(client.UpdateWorkflowOptions).WorkflowID)
	}
	slices.Sort(updated)
	want := allRuns()
	slices.Sort(want)
	if !slices.Equal(updated, want) {
		t.Errorf("updated %v", updated)
	}
}

func TestControlsOfOneAnnotatorReachItsRunsOnly(t *testing.T) {
	m, ev := newTemporalMock(t), newFakeEvents()
	f := newControlFixture(t, m, ev)
	for _, id := range allRuns()[6:] {
		m.expectUpdate(id, "resume", answerStatus(contract.Status{Status: contract.StatusRunning, Target: 4, DatasetSize: 2}))
	}
	got := decodeInto[resultsReply](t, f.call(http.MethodPost, "/api/control/resume", map[string]any{"annotator": "2"}, http.StatusOK))
	if ids := runIDs(got.Results); !slices.Equal(ids, allRuns()[6:]) {
		t.Errorf("runs = %v", ids)
	}
	if r := got.Results[0]; r.Outcome != runs.Resumed || r.Detail != "now running, 0/2 done" {
		t.Errorf("%+v", r)
	}
}

func TestAControlTheRunDoesNotAnswerWithinTheWaitIsPending(t *testing.T) {
	m, ev := newTemporalMock(t), newFakeEvents()
	f := newControlFixture(t, m, ev, func(o *Options) { o.ControlWait = 100 * time.Millisecond })
	m.expectUpdate("annotation-1-urgency", "pause", untilDone)
	start := time.Now()
	got := decodeInto[resultsReply](t, f.call(http.MethodPost, "/api/control/pause", map[string]any{"annotator": "1", "domain": "urgency"}, http.StatusOK))
	if took := time.Since(start); took < 100*time.Millisecond || took >= controlWait {
		t.Errorf("the request took %s", took)
	}
	if len(got.Results) != 1 || got.Results[0].Outcome != runs.Pending || !strings.Contains(got.Results[0].Detail, "has not answered yet") {
		t.Errorf("results = %+v", got.Results)
	}
	if ids := ev.takeRefreshed(); !slices.Equal(ids, []string{"annotation-1-urgency"}) {
		t.Errorf("refreshed %v", ids)
	}
}

func TestTheControlWaitIsThreeSecondsByDefault(t *testing.T) {
	if got := New(Options{}).o.ControlWait; got != 3*time.Second {
		t.Errorf("ControlWait = %s", got)
	}
	if got := New(Options{ControlWait: time.Second}).o.ControlWait; got != time.Second {
		t.Errorf("ControlWait = %s", got)
	}
}

func TestAControlTemporalRefusesIsAnErrorAndARunOfThePreviousReleaseIsSignalled(t *testing.T) {
	m, ev := newTemporalMock(t), newFakeEvents()
	f := newControlFixture(t, m, ev)
	m.expectUpdateError("annotation-1-urgency", "pause", errors.New("the frontend is unavailable"))
	m.expectUpdate("annotation-2-urgency", "pause", func(context.Context, any) error {
		return temporal.NewApplicationError(`unknown update "pause". KnownUpdates=[]`, "")
	})
	m.expectSignal("annotation-2-urgency", "pause", nil, nil)

	got := decodeInto[resultsReply](t, f.call(http.MethodPost, "/api/control/pause", map[string]any{"domain": "urgency"}, http.StatusOK))
	want := []runs.Result{
		{Run: "annotation-1-urgency", Outcome: runs.Failed, Detail: "the frontend is unavailable"},
		{Run: "annotation-2-urgency", Outcome: runs.Signalled, Detail: "pause"},
	}
	if !reflect.DeepEqual(got.Results, want) {
		t.Errorf("results = %+v, want %+v", got.Results, want)
	}
	if ids := ev.takeRefreshed(); !slices.Equal(ids, []string{"annotation-2-urgency"}) {
		t.Errorf("refreshed %v (a failed run is not)", ids)
	}
}

func TestRestartAnswersAtOnceAndRestartsTheEnabledRunsInTheBackground(t *testing.T) {
	m, ev := newTemporalMock(t), newFakeEvents()
	f := newControlFixture(t, m, ev)
	m.expectSearchAttributes()
	f.expectQuotaConfigured(m)
	for _, id := range []string{"annotation-1-urgency", "annotation-2-urgency"} {
		m.expectSignal(id, contract.SignalStop, nil, nil)
		m.expectWaitForClose(id, answerStatus(contract.Status{}))
		m.expectStart(id, nil)
	}

	got := decodeInto[resultsReply](t, f.call(http.MethodPost, "/api/control/restart", map[string]any{"all": true}, http.StatusOK))
	want := []runs.Result{{Run: "annotation-1-urgency", Outcome: Restarting}, {Run: "annotation-2-urgency", Outcome: Restarting}}
	if !reflect.DeepEqual(got.Results, want) {
		t.Errorf("results = %+v, want %+v", got.Results, want)
	}
	refreshed := []string{ev.awaitRefresh(t), ev.awaitRefresh(t)}
	slices.Sort(refreshed)
	if !slices.Equal(refreshed, []string{"annotation-1-urgency", "annotation-2-urgency"}) {
		t.Errorf("refreshed %v", refreshed)
	}
	for _, id := range refreshed {
		if line := "msg=restart run=" + id + " outcome=restarted"; !strings.Contains(f.logs.String(), line) {
			t.Errorf("the logs lack %q:\n%s", line, f.logs.String())
		}
	}
}

func TestRestartOfOneAnnotatorReportsItsDisabledRunsAndStartsARunThatWasNotRunning(t *testing.T) {
	m, ev := newTemporalMock(t), newFakeEvents()
	f := newControlFixture(t, m, ev)
	m.expectSearchAttributes()
	f.expectQuotaConfigured(m)
	m.expectSignal("annotation-1-urgency", contract.SignalStop, nil, errNotFound)
	m.expectStart("annotation-1-urgency", nil)

	got := decodeInto[resultsReply](t, f.call(http.MethodPost, "/api/control/restart", map[string]any{"annotator": "1"}, http.StatusOK))
	if ids := runIDs(got.Results); !slices.Equal(ids, allRuns()[:6]) {
		t.Fatalf("runs = %v", ids)
	}
	for _, r := range got.Results {
		want := runs.Result{Run: r.Run, Outcome: runs.Disabled, Detail: "enable it in the config to start it"}
		if r.Run == "annotation-1-urgency" {
			want = runs.Result{Run: r.Run, Outcome: Restarting}
		}
		if r != want {
			t.Errorf("result %+v, want %+v", r, want)
		}
	}
	if id := ev.awaitRefresh(t); id != "annotation-1-urgency" {
		t.Errorf("refreshed %s", id)
	}
	if line := "msg=restart run=annotation-1-urgency outcome=restarted"; !strings.Contains(f.logs.String(), line) {
		t.Errorf("the logs lack %q:\n%s", line, f.logs.String())
	}
}

func TestRestartStartsARunWhoseWorkflowClosedWithAnError(t *testing.T) {
	// A run that fails or is terminated while it stops has closed all the same.
	m, ev := newTemporalMock(t), newFakeEvents()
	f := newControlFixture(t, m, ev)
	m.expectSearchAttributes()
	f.expectQuotaConfigured(m)
	m.expectSignal("annotation-2-urgency", contract.SignalStop, nil, nil)
	m.expectWaitForClose("annotation-2-urgency", func(context.Context, any) error { return errors.New("workflow execution error: terminated") })
	m.expectStart("annotation-2-urgency", nil)

	f.call(http.MethodPost, "/api/control/restart", map[string]any{"annotator": "2", "domain": "urgency"}, http.StatusOK)
	if id := ev.awaitRefresh(t); id != "annotation-2-urgency" {
		t.Errorf("refreshed %s", id)
	}
	if line := "msg=restart run=annotation-2-urgency outcome=restarted"; !strings.Contains(f.logs.String(), line) {
		t.Errorf("the logs lack %q:\n%s", line, f.logs.String())
	}
}

func TestControlRefusesAnUnknownAction(t *testing.T) {
	m := newTemporalMock(t)
	f := newControlFixture(t, m, newFakeEvents())
	for _, action := range []string{"jump", "Pause", "signalled"} {
		rec := f.call(http.MethodPost, "/api/control/"+action, map[string]any{"all": true}, http.StatusUnprocessableEntity)
		wantProblem(t, rec, "path.action", "start", "restart")
	}
}

func TestControlsRefuseASelectionThatNamesNoRun(t *testing.T) {
	selections := []struct {
		name     string
		body     map[string]any
		location string
		msgs     []string
	}{
		{"nothing", map[string]any{}, "body", []string{"choose runs with all, annotator or domain"}},
		{"all and a domain", map[string]any{"all": true, "domain": "urgency"}, "body", []string{"all cannot be combined with annotator or domain"}},
		{"all and an annotator", map[string]any{"all": true, "annotator": "1"}, "body", []string{"all cannot be combined"}},
		{"an unknown annotator", map[string]any{"annotator": "9"}, "body.annotator", []string{`"9" is not in the config (annotators: 1, 2)`}},
		{"an unknown domain", map[string]any{"annotator": "1", "domain": "mood"}, "body.domain", nil},
		{"a domain in capitals", map[string]any{"domain": "Urgency"}, "body.domain", nil},
		{"an annotator too long", map[string]any{"annotator": strings.Repeat("1", 65)}, "body.annotator", nil},
		{"a misspelt field", map[string]any{"all": true, "domian": "urgency"}, "body.domian", nil},
	}
	routes := []struct {
		method, target string
		extra          map[string]any
	}{
		{http.MethodPost, "/api/control/pause", nil},
		{http.MethodPost, "/api/control/start", nil},
		{http.MethodPost, "/api/control/target", map[string]any{"target": 3}},
		{http.MethodPost, "/api/control/redo", map[string]any{"statuses": []string{"error"}}},
		{http.MethodDelete, "/api/annotations", map[string]any{"confirm": "delete"}},
	}
	for _, r := range routes {
		parent := newControlFixture(t, newTemporalMock(t), newFakeEvents()) // no Temporal call expected
		parent.importSamples([]string{"s1"}, nil)
		parent.annotate(store.Annotation{Annotator: "1", Domain: "urgency", SampleID: "s1", Status: store.StatusError})
		for _, sel := range selections {
			t.Run(r.target+" with "+sel.name, func(t *testing.T) {
				f := *parent
				f.t = t
				body := map[string]any{}
				for k, v := range sel.body {
					body[k] = v
				}
				for k, v := range r.extra {
					body[k] = v
				}
				wantProblem(t, f.call(r.method, r.target, body, http.StatusUnprocessableEntity), sel.location, sel.msgs...)
				if n := f.annotationCount("1", "urgency"); n != 1 {
					t.Errorf("%d annotations left", n)
				}
			})
		}
	}
}

func TestTargetRetargetsTheSelectedRuns(t *testing.T) {
	m, ev := newTemporalMock(t), newFakeEvents()
	f := newControlFixture(t, m, ev)
	var args []any
	m.expectUpdate("annotation-2-urgency", contract.SignalTarget, answerStatus(contract.Status{Status: contract.StatusRunning, Completed: 2, Target: 40, DatasetSize: 100})).
		Run(func(a mock.Arguments) { args = a.Get(1).(client.UpdateWorkflowOptions).Args })

	got := decodeInto[resultsReply](t, f.call(http.MethodPost, "/api/control/target", map[string]any{"annotator": "2", "domain": "urgency", "target": 40}, http.StatusOK))
	want := []runs.Result{{Run: "annotation-2-urgency", Outcome: runs.Retargeted, Detail: "now running, 2/40 done"}}
	if !reflect.DeepEqual(got.Results, want) {
		t.Errorf("results = %+v, want %+v", got.Results, want)
	}
	if !reflect.DeepEqual(args, []any{40}) {
		t.Errorf("update args = %#v", args)
	}
	if ids := ev.takeRefreshed(); !slices.Equal(ids, []string{"annotation-2-urgency"}) {
		t.Errorf("refreshed %v", ids)
	}

	// Zero is a target, too; a run that does not answer in time is pending.
	g := newControlFixture(t, m, ev, func(o *Options) { o.ControlWait = 50 * time.Millisecond })
	m.expectUpdate("annotation-1-urgency", contract.SignalTarget, untilDone)
	got = decodeInto[resultsReply](t, g.call(http.MethodPost, "/api/control/target", map[string]any{"annotator": "1", "domain": "urgency", "target": 0}, http.StatusOK))
	if len(got.Results) != 1 || got.Results[0].Outcome != runs.Pending {
		t.Errorf("results = %+v", got.Results)
	}
}

func TestTargetRefusesABadTarget(t *testing.T) {
	for name, body := range map[string]string{
		"negative":   `{"all": true, "target": -1}`,
		"too large":  `{"all": true, "target": 10000001}`,
		"a string":   `{"all": true, "target": "40"}`,
		"a fraction": `{"all": true, "target": 4.5}`,
	} {
		t.Run(name, func(t *testing.T) {
			f := newControlFixture(t, newTemporalMock(t), newFakeEvents())
			wantProblem(t, f.call(http.MethodPost, "/api/control/target", body, http.StatusUnprocessableEntity), "body.target")
		})
	}
	f := newControlFixture(t, newTemporalMock(t), newFakeEvents())
	wantProblem(t, f.call(http.MethodPost, "/api/control/target", `{"all": true}`, http.StatusUnprocessableEntity), "body", "target")
}

// seedRuns stores, over samples s1..s4, annotations of 1/urgency (ok, malformed, error,
// blocked), 2/urgency (error, ok) and 1/intensity (malformed).
func seedRuns(f *configFixture) {
	f.importSamples([]string{"s1", "s2", "s3", "s4"}, nil)
	for i, st := range []string{store.StatusOK, store.StatusMalformed, store.StatusError, store.StatusBlocked} {
		f.annotate(store.Annotation{Annotator: "1", Domain: "urgency", SampleID: fmt.Sprintf("s%d", i+1), Status: st, Label: "LEVEL_1"})
	}
	f.annotate(store.Annotation{Annotator: "2", Domain: "urgency", SampleID: "s1", Status: store.StatusError})
	f.annotate(store.Annotation{Annotator: "2", Domain: "urgency", SampleID: "s2", Status: store.StatusOK, Label: "LEVEL_2"})
	f.annotate(store.Annotation{Annotator: "1", Domain: "intensity", SampleID: "s1", Status: store.StatusMalformed})
}

// statuses lists a run's stored statuses by sample.
func (f *configFixture) statuses(annotator, domain string) map[string]string {
	f.t.Helper()
	out := map[string]string{}
	err := f.st.Export(f.t.Context(), store.Filter{Annotator: annotator, Domain: domain}, func(r store.ExportRow) error {
		out[r.SampleID] = r.Status
		return nil
	})
	if err != nil {
		f.t.Fatal(err)
	}
	return out
}

func TestRedoClearsTheBadRowsThenResetsAnOpenRunOrStartsAClosedOne(t *testing.T) {
	m, ev := newTemporalMock(t), newFakeEvents()
	f := newControlFixture(t, m, ev)
	seedRuns(f)
	m.expectDescribe("annotation-1-urgency", enumspb.WORKFLOW_EXECUTION_STATUS_RUNNING, nil)
	m.expectUpdate("annotation-1-urgency", contract.SignalReset, answerStatus(contract.Status{Status: contract.StatusRunning}))
	m.expectDescribe("annotation-2-urgency", 0, errNotFound)
	m.expectStart("annotation-2-urgency", nil)

	got := decodeInto[resultsReply](t, f.call(http.MethodPost, "/api/control/redo", map[string]any{"domain": "urgency", "statuses": []string{"malformed", "error"}}, http.StatusOK))
	want := []runs.Result{
		{Run: "annotation-1-urgency", Outcome: runs.Redone, Detail: "2 rows (malformed, error) cleared; reset"},
		{Run: "annotation-2-urgency", Outcome: runs.Redone, Detail: "1 row (malformed, error) cleared; started"},
	}
	if !reflect.DeepEqual(got.Results, want) {
		t.Errorf("results = %+v, want %+v", got.Results, want)
	}
	if got := f.statuses("1", "urgency"); !reflect.DeepEqual(got, map[string]string{"s1": "ok", "s4": "blocked"}) {
		t.Errorf("1/urgency keeps %v", got)
	}
	if got := f.statuses("2", "urgency"); !reflect.DeepEqual(got, map[string]string{"s2": "ok"}) {
		t.Errorf("2/urgency keeps %v", got)
	}
	if got := f.statuses("1", "intensity"); !reflect.DeepEqual(got, map[string]string{"s1": "malformed"}) {
		t.Errorf("another domain changed: %v", got)
	}
	if ids := ev.takeRefreshed(); !slices.Equal(ids, []string{"annotation-1-urgency", "annotation-2-urgency"}) {
		t.Errorf("refreshed %v", ids)
	}
}

func TestRedoWithNothingToClearAsksNothingOfTemporal(t *testing.T) {
	m, ev := newTemporalMock(t), newFakeEvents()
	f := newControlFixture(t, m, ev)
	seedRuns(f)
	got := decodeInto[resultsReply](t, f.call(http.MethodPost, "/api/control/redo", map[string]any{"annotator": "2", "domain": "urgency", "statuses": []string{"blocked"}}, http.StatusOK))
	want := []runs.Result{{Run: "annotation-2-urgency", Outcome: runs.Redone, Detail: "nothing to redo"}}
	if !reflect.DeepEqual(got.Results, want) {
		t.Errorf("results = %+v, want %+v", got.Results, want)
	}
}

func TestRedoRefusesAStatusNamingItsPlace(t *testing.T) {
	for _, tt := range []struct {
		name     string
		statuses any
		location string
		msgs     []string
	}{
		{"ok", []string{"error", "ok"}, "body.statuses[1]", []string{`"ok" rows are never redone`, "error, malformed, blocked"}},
		{"an unknown status", []string{"broken"}, "body.statuses[0]", []string{`"broken" is not a status a redo clears`}},
		{"a status in capitals", []string{"malformed", "ERROR"}, "body.statuses[1]", []string{`"ERROR"`}},
		{"none", []string{}, "body.statuses", nil},
		{"a status twice", []string{"error", "error"}, "body.statuses", nil},
		{"a string", "error", "body.statuses", nil},
	} {
		t.Run(tt.name, func(t *testing.T) {
			f := newControlFixture(t, newTemporalMock(t), newFakeEvents())
			seedRuns(f)
			rec := f.call(http.MethodPost, "/api/control/redo", map[string]any{"all": true, "statuses": tt.statuses}, http.StatusUnprocessableEntity)
			wantProblem(t, rec, tt.location, tt.msgs...)
			if n := f.annotationCount("1", "urgency"); n != 4 {
				t.Errorf("%d annotations left of 4", n)
			}
		})
	}
	f := newControlFixture(t, newTemporalMock(t), newFakeEvents())
	wantProblem(t, f.call(http.MethodPost, "/api/control/redo", map[string]any{"all": true}, http.StatusUnprocessableEntity), "body", "statuses")
}

func TestDeleteAnnotationsNeedsTheConfirmationDelete(t *testing.T) {
	for name, body := range map[string]map[string]any{
		"confirm yes":         {"all": true, "confirm": "yes"},
		"confirm in capitals": {"all": true, "confirm": "DELETE"},
		"an empty confirm":    {"all": true, "confirm": ""},
		"without confirm":     {"all": true},
	} {
		t.Run(name, func(t *testing.T) {
			f := newControlFixture(t, newTemporalMock(t), newFakeEvents())
			seedRuns(f)
			rec := f.call(http.MethodDelete, "/api/annotations", body, http.StatusUnprocessableEntity)
			if _, ok := body["confirm"]; ok {
				wantProblem(t, rec, "body.confirm", `must be "delete"`)
			} else {
				wantProblem(t, rec, "body", "confirm")
			}
			if n := f.annotationCount("1", "urgency"); n != 4 {
				t.Errorf("%d annotations left of 4", n)
			}
		})
	}
}

func TestDeleteAnnotationsStopsTheRunsThenDeletesTheirRows(t *testing.T) {
	m, ev := newTemporalMock(t), newFakeEvents()
	f := newControlFixture(t, m, ev)
	seedRuns(f)
	m.expectUpdate("annotation-1-urgency", contract.SignalStop, answerStatus(contract.Status{Status: contract.StatusStopped, Completed: 4, Target: 5, DatasetSize: 4}))
	m.expectUpdateError("annotation-2-urgency", contract.SignalStop, errNotFound)

	got := decodeInto[resultsReply](t, f.call(http.MethodDelete, "/api/annotations", map[string]any{"domain": "urgency", "confirm": "delete"}, http.StatusOK))
	want := resultsReply{Deleted: 6, Results: []runs.Result{
		{Run: "annotation-1-urgency", Outcome: "deleted", Detail: "4 annotations"},
		{Run: "annotation-2-urgency", Outcome: "deleted", Detail: "2 annotations"},
	}}
	if !reflect.DeepEqual(got, want) {
		t.Errorf("reply = %+v, want %+v", got, want)
	}
	if n, m := f.annotationCount("1", "urgency"), f.annotationCount("2", "urgency"); n != 0 || m != 0 {
		t.Errorf("left: 1/urgency %d, 2/urgency %d", n, m)
	}
	if n := f.annotationCount("1", "intensity"); n != 1 {
		t.Errorf("another domain lost its rows: %d left", n)
	}
	if ids := ev.takeRefreshed(); !slices.Equal(ids, []string{"annotation-1-urgency", "annotation-2-urgency"}) {
		t.Errorf("refreshed %v", ids)
	}
}

func TestDeleteAnnotationsKeepsTheRowsOfARunThatDidNotStop(t *testing.T) {
	m, ev := newTemporalMock(t), newFakeEvents()
	f := newControlFixture(t, m, ev)
	seedRuns(f)
	m.expectUpdateError("annotation-1-urgency", contract.SignalStop, errors.New("the frontend is unavailable"))
	got := decodeInto[resultsReply](t, f.call(http.MethodDelete, "/api/annotations", map[string]any{"annotator": "1", "domain": "urgency", "confirm": "delete"}, http.StatusOK))
	want := resultsReply{Results: []runs.Result{
		{Run: "annotation-1-urgency", Outcome: runs.Failed, Detail: "not stopped, so nothing was deleted: the frontend is unavailable"},
	}}
	if !reflect.DeepEqual(got, want) {
		t.Errorf("reply = %+v, want %+v", got, want)
	}
	if n := f.annotationCount("1", "urgency"); n != 4 {
		t.Errorf("%d annotations left of 4", n)
	}
}

func TestDeletingARunStillFinishingItsCallDeletesItsRowsOnceItHasStopped(t *testing.T) {
	m, ev := newTemporalMock(t), newFakeEvents()
	f := newControlFixture(t, m, ev, func(o *Options) { o.ControlWait = 100 * time.Millisecond })
	seedRuns(f)
	m.expectUpdate("annotation-1-urgency", contract.SignalStop, untilDone)
	closed := make(chan struct{})
	m.expectWaitForClose("annotation-1-urgency", func(ctx context.Context, _ any) error {
		select {
		case <-closed:
			return nil
		case <-ctx.Done():
			return ctx.Err()
		}
	})

	got := decodeInto[resultsReply](t, f.call(http.MethodDelete, "/api/annotations", map[string]any{"annotator": "1", "domain": "urgency", "confirm": "delete"}, http.StatusOK))
	if len(got.Results) != 1 || got.Results[0].Outcome != Deleting || got.Deleted != 0 ||
		got.Results[0].Detail != "the run is finishing its call; its annotations are deleted once it has stopped" {
		t.Fatalf("reply = %+v", got)
	}
	if ids := ev.takeRefreshed(); !slices.Equal(ids, []string{"annotation-1-urgency"}) {
		t.Errorf("refreshed %v", ids)
	}
	// Nothing is deleted while the run may still write.
	if n := f.annotationCount("1", "urgency"); n != 4 {
		t.Fatalf("%d annotations left of 4 before the run stopped", n)
	}
	close(closed)
	if id := ev.awaitRefresh(t); id != "annotation-1-urgency" {
		t.Errorf("refreshed %s", id)
	}
	if n := f.annotationCount("1", "urgency"); n != 0 {
		t.Errorf("%d annotations left once the run stopped", n)
	}
	if n := f.annotationCount("2", "urgency"); n != 2 {
		t.Errorf("another run lost its rows: %d left", n)
	}
	if !strings.Contains(f.logs.String(), "delete annotations after stop") {
		t.Errorf("logs:\n%s", f.logs.String())
	}
}
