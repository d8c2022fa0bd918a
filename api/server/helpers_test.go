package server

import (
	"context"
	"fmt"
	"net/http"
	"net/http/httptest"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/mock"
	enumspb "go.temporal.io/api/enums/v1"
	"go.temporal.io/api/operatorservice/v1"
	"go.temporal.io/api/serviceerror"
	workflowpb "go.temporal.io/api/workflow/v1"
	"go.temporal.io/api/workflowservice/v1"
	"go.temporal.io/sdk/client"
	"go.temporal.io/sdk/mocks"
	"google.golang.org/grpc"

	"github.com/mhannotator/mha/api/events"
	"github.com/mhannotator/mha/internal/config"
	"github.com/mhannotator/mha/internal/contract"
	"github.com/mhannotator/mha/internal/runs"
	"github.com/mhannotator/mha/internal/store"
)

// fakeEvents is the live side the handlers read: canned runs, pools and overview. It records
// every run it is asked to refresh.
type fakeEvents struct {
	mu        sync.Mutex
	runs      []events.Run
	quota     []events.QuotaView
	overview  events.Overview
	ready     bool
	refreshed chan string
}

func newFakeEvents(rs ...events.Run) *fakeEvents {
	return &fakeEvents{runs: rs, ready: true, refreshed: make(chan string, 1024)}
}

func (e *fakeEvents) Runs() []events.Run {
	e.mu.Lock()
	defer e.mu.Unlock()
	return slices.Clone(e.runs)
}

func (e *fakeEvents) RunByID(id string) (events.Run, bool) {
	e.mu.Lock()
	defer e.mu.Unlock()
	for _, r := range e.runs {
		if r.WorkflowID == id {
			return r, true
		}
	}
	return events.Run{}, false
}

func (e *fakeEvents) Quota() []events.QuotaView {
	e.mu.Lock()
	defer e.mu.Unlock()
	return slices.Clone(e.quota)
}

func (e *fakeEvents) Overview() events.Overview {
	e.mu.Lock()
	defer e.mu.Unlock()
	return e.overview
}

func (e *fakeEvents) ServeWS(w http.ResponseWriter, _ *http.Request) {
	w.Header().Set("Content-Type", "text/plain")
	fmt.Fprint(w, "the event stream")
}

func (e *fakeEvents) Ready() bool {
	e.mu.Lock()
	defer e.mu.Unlock()
	return e.ready
}

func (e *fakeEvents) setReady(ready bool) {
	e.mu.Lock()
	defer e.mu.Unlock()
	e.ready = ready
}

func (e *fakeEvents) Refresh(ids ...string) {
	for _, id := range ids {
		e.refreshed <- id
	}
}

// takeRefreshed returns the runs refreshed so far, without waiting.
func (e *fakeEvents) takeRefreshed() []string {
	var ids []string
	for {
		select {
		case id := <-e.refreshed:
			ids = append(ids, id)
		default:
			return ids
		}
	}
}

// awaitRefresh waits for the next refresh, which work done after a reply ends with; the
// bound only keeps a broken test from hanging.
func (e *fakeEvents) awaitRefresh(t *testing.T) string {
	t.Helper()
	select {
	case id := <-e.refreshed:
		return id
	case <-time.After(20 * time.Second):
		t.Fatal("no run was refreshed")
		return ""
	}
}

func withEvents(e Events) func(*Options) { return func(o *Options) { o.Events = e } }

func withClient(c client.Client) func(*Options) { return func(o *Options) { o.Client = c } }

// controlSettings has two annotators: 1 with urgency enabled and intensity disabled, 2 (a
// Gemini one, so it has a quota pool) with urgency enabled. Every other run is disabled.
const controlSettings = `{"global": {}, "annotators": {
	"1": {"urgency": {"enabled": true, "target_count": 5}, "intensity": {"enabled": false, "target_count": 3}},
	"2": {"provider": "gemini", "base_url": "http://127.0.0.1:1", "urgency": {"enabled": true, "target_count": 4}}}}`

// newControlFixture is a server over controlSettings with the mocked Temporal client m and
// events ev.
func newControlFixture(t *testing.T, m *temporalMock, ev *fakeEvents, opts ...func(*Options)) *configFixture {
	t.Helper()
	opts = append([]func(*Options){withClient(m), withEvents(ev), func(o *Options) { o.TaskQueue, o.Namespace = "runs-queue", "ns" }}, opts...)
	f := newConfigFixture(t, opts...)
	f.env[config.KeyEnvPrefix+"2"] = f.secret("gemini-key-of-annotator-two")
	f.writeFile(config.SettingsFile, controlSettings)
	f.load()
	return f
}

// resultsReply is the reply of a control.
type resultsReply struct {
	Results []runs.Result `json:"results"`
	Deleted int           `json:"deleted"`
}

// temporalMock is the SDK's mock client, with expectations for what runs.Controller calls.
type temporalMock struct {
	*mocks.Client
	t *testing.T
}

func newTemporalMock(t *testing.T) *temporalMock {
	return &temporalMock{Client: mocks.NewClient(t), t: t}
}

var errNotFound = serviceerror.NewNotFound("workflow not found")

// expectSearchAttributes expects starts to look up the run search attributes, which the
// namespace has.
func (m *temporalMock) expectSearchAttributes() *fakeOperator {
	op := &fakeOperator{}
	m.On("OperatorService").Return(op).Once()
	return op
}

// expectStart expects id to be started once, answering err.
func (m *temporalMock) expectStart(id string, err error) *mock.Call {
	return m.On("ExecuteWorkflow", mock.Anything, mock.MatchedBy(func(o client.StartWorkflowOptions) bool { return o.ID == id }),
		contract.AnnotationRunName, mock.Anything).Return(nil, err).Once()
}

// expectUpdate expects the Update name of run id, answered by get (see answerStatus and
// untilDone).
func (m *temporalMock) expectUpdate(id, name string, get func(context.Context, any) error) *mock.Call {
	h := mocks.NewWorkflowUpdateHandle(m.t)
	h.On("Get", mock.Anything, mock.Anything).Return(get).Once()
	return m.On("UpdateWorkflow", mock.Anything, updateOf(id, name)).Return(h, nil).Once()
}

// expectUpdateError expects the Update name of run id to be refused with err.
func (m *temporalMock) expectUpdateError(id, name string, err error) *mock.Call {
	return m.On("UpdateWorkflow", mock.Anything, updateOf(id, name)).Return(nil, err).Once()
}

func updateOf(id, name string) any {
	return mock.MatchedBy(func(o client.UpdateWorkflowOptions) bool {
		return o.WorkflowID == id && o.UpdateName == name && o.WaitForStage == client.WorkflowUpdateStageCompleted
	})
}

// expectSignal expects the signal name with arg to run id, answering err.
func (m *temporalMock) expectSignal(id, name string, arg any, err error) *mock.Call {
	return m.On("SignalWorkflow", mock.Anything, id, "", name, arg).Return(err).Once()
}

// expectWaitForClose expects a wait for run id to close, answered by get.
func (m *temporalMock) expectWaitForClose(id string, get func(context.Context, any) error) *mock.Call {
	run := mocks.NewWorkflowRun(m.t)
	run.On("Get", mock.Anything, nil).Return(get).Once()
	return m.On("GetWorkflow", mock.Anything, id, "").Return(run).Once()
}

// expectDescribe expects run id to be described, as open or closed, or not found (err).
func (m *temporalMock) expectDescribe(id string, status enumspb.WorkflowExecutionStatus, err error) *mock.Call {
	var resp *workflowservice.DescribeWorkflowExecutionResponse
	if err == nil {
		resp = &workflowservice.DescribeWorkflowExecutionResponse{WorkflowExecutionInfo: &workflowpb.WorkflowExecutionInfo{Status: status}}
	}
	return m.On("DescribeWorkflowExecution", mock.Anything, id, "").Return(resp, err).Once()
}

// answerStatus answers an Update or a wait with st.
func answerStatus(st contract.Status) func(context.Context, any) error {
	return func(_ context.Context, v any) error {
		if p, ok := v.(*contract.Status); ok {
			*p = st
		}
		return nil
	}
}

// untilDone is a run that does not answer before the caller gives up.
func untilDone(ctx context.Context, _ any) error {
	<-ctx.Done()
	return ctx.Err()
}

// fakeOperator is the operator service of a namespace that has the run search attributes.
type fakeOperator struct {
	operatorservice.OperatorServiceClient
	mu     sync.Mutex
	listed []string // namespaces
}

func (o *fakeOperator) ListSearchAttributes(_ context.Context, req *operatorservice.ListSearchAttributesRequest, _ ...grpc.CallOption) (*operatorservice.ListSearchAttributesResponse, error) {
	o.mu.Lock()
	defer o.mu.Unlock()
	o.listed = append(o.listed, req.GetNamespace())
	attrs := map[string]enumspb.IndexedValueType{contract.RunChangedAtKey.GetName(): enumspb.INDEXED_VALUE_TYPE_DATETIME}
	for _, k := range contract.SearchAttributeKeys {
		attrs[k.GetName()] = enumspb.INDEXED_VALUE_TYPE_KEYWORD
	}
	return &operatorservice.ListSearchAttributesResponse{CustomAttributes: attrs}, nil
}

func (o *fakeOperator) namespaces() []string {
	o.mu.Lock()
	defer o.mu.Unlock()
	return slices.Clone(o.listed)
}

// importSamples stores samples with the given IDs, each with the text "text of <id>" unless
// texts gives one.
func (f *configFixture) importSamples(ids []string, texts map[string]string) {
	f.t.Helper()
	samples := make([]store.Sample, len(ids))
	for i, id := range ids {
		text := texts[id]
		if text == "" {
			text = "text of " + id
		}
		samples[i] = store.Sample{ID: id, Text: text}
	}
	if _, err := f.st.ImportSamples(f.t.Context(), samples); err != nil {
		f.t.Fatal(err)
	}
}

// annotate stores a and returns its seq.
func (f *configFixture) annotate(a store.Annotation) int64 {
	f.t.Helper()
	if a.Model == "" {
		a.Model = "gemma-3-27b-it"
	}
	if err := f.st.UpsertAnnotation(f.t.Context(), a); err != nil {
		f.t.Fatal(err)
	}
	seq, err := f.st.LastSeq(f.t.Context())
	if err != nil {
		f.t.Fatal(err)
	}
	return seq
}

// annotationCount counts the stored annotations of a run, of every status.
func (f *configFixture) annotationCount(annotator, domain string) int {
	f.t.Helper()
	c, err := f.st.CountAnnotations(f.t.Context(), annotator, domain, 0)
	if err != nil {
		f.t.Fatal(err)
	}
	return c.Total()
}

// get sends a GET and expects status.
func (f *configFixture) get(target string, status int) *httptest.ResponseRecorder {
	f.t.Helper()
	return f.call(http.MethodGet, target, nil, status)
}
