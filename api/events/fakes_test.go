package events

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"regexp"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/coder/websocket"
	commonpb "go.temporal.io/api/common/v1"
	enumspb "go.temporal.io/api/enums/v1"
	"go.temporal.io/api/serviceerror"
	workflowpb "go.temporal.io/api/workflow/v1"
	"go.temporal.io/api/workflowservice/v1"
	"go.temporal.io/sdk/client"
	"go.temporal.io/sdk/converter"
	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/mhannotator/mha/internal/config"
	"github.com/mhannotator/mha/internal/contract"
	"github.com/mhannotator/mha/internal/labels"
	"github.com/mhannotator/mha/internal/store"
)

// fakeStore is an in-memory change feed shared by any number of hubs.
type fakeStore struct {
	mu      sync.Mutex
	rows    []store.Change
	seq     int64
	samples int
	next    int // sample ids
}

func (s *fakeStore) add(annotator string, d labels.Domain, n int, label string) []int64 {
	s.mu.Lock()
	defer s.mu.Unlock()
	var seqs []int64
	for range n {
		s.seq++
		s.next++
		s.rows = append(s.rows, store.Change{Seq: s.seq, Annotation: store.Annotation{Annotator: annotator, Domain: string(d),
			SampleID: fmt.Sprintf("s%d", s.next), Label: label, Status: store.StatusOK, CreatedAt: time.Now().UTC()}})
		seqs = append(seqs, s.seq)
	}
	return seqs
}

func (s *fakeStore) Changes(_ context.Context, after int64, limit int) ([]store.Change, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	var out []store.Change
	for _, r := range s.rows {
		if r.Seq > after && len(out) < limit {
			out = append(out, r)
		}
	}
	return out, nil
}

func (s *fakeStore) LastSeq(context.Context) (int64, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.seq, nil
}

func (s *fakeStore) CountAnnotations(_ context.Context, annotator, domain string, _ int) (contract.Counts, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	var c contract.Counts
	for _, r := range s.rows {
		if r.Annotator == annotator && r.Domain == domain {
			c.OK++
		}
	}
	return c, nil
}

func (s *fakeStore) CountSamples(context.Context) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.samples, nil
}

// fakeRun is a workflow of the fake Temporal.
type fakeRun struct {
	status    string
	changedAt time.Time
	started   time.Time
}

// fakeTemporal answers what the hub asks of Temporal: the visibility listing and what
// runs.Controller.Status calls. Everything else panics (nil embedded client).
type fakeTemporal struct {
	client.Client
	mu        sync.Mutex
	runs      map[string]*fakeRun
	listErr   error
	lists     int
	describes map[string]int
	listed    chan struct{} // a listing happened
	described chan string   // a run was described
}

func newFakeTemporal() *fakeTemporal {
	return &fakeTemporal{runs: map[string]*fakeRun{}, describes: map[string]int{},
		listed: make(chan struct{}, 1), described: make(chan string, 1000)}
}

// set makes id's workflow run with status, changed at changedAt.
func (f *fakeTemporal) set(id, status string, changedAt time.Time) {
	f.mu.Lock()
	defer f.mu.Unlock()
	r, ok := f.runs[id]
	if !ok {
		r = &fakeRun{started: changedAt}
		f.runs[id] = r
	}
	r.status, r.changedAt = status, changedAt
}

func (f *fakeTemporal) describeCount(id string) int {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.describes[id]
}

func (f *fakeTemporal) listCount() int {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.lists
}

var sinceRE = regexp.MustCompile(`RunChangedAt >= '([^']+)'`)

func (f *fakeTemporal) ListWorkflow(_ context.Context, req *workflowservice.ListWorkflowExecutionsRequest) (*workflowservice.ListWorkflowExecutionsResponse, error) {
	defer signal(f.listed)
	f.mu.Lock()
	defer f.mu.Unlock()
	f.lists++
	if f.listErr != nil {
		return nil, f.listErr
	}
	m := sinceRE.FindStringSubmatch(req.GetQuery())
	if m == nil {
		return nil, serviceerror.NewInvalidArgument("unexpected query " + req.GetQuery())
	}
	since, err := time.Parse(time.RFC3339Nano, m[1])
	if err != nil {
		return nil, serviceerror.NewInvalidArgument(err.Error())
	}
	dc := converter.GetDefaultDataConverter()
	resp := &workflowservice.ListWorkflowExecutionsResponse{}
	for id, r := range f.runs {
		if r.changedAt.Before(since) && r.started.Before(since) {
			continue
		}
		at, _ := dc.ToPayload(r.changedAt)
		st, _ := dc.ToPayload(r.status)
		resp.Executions = append(resp.Executions, &workflowpb.WorkflowExecutionInfo{
			Execution: &commonpb.WorkflowExecution{WorkflowId: id, RunId: "run-" + id},
			Type:      &commonpb.WorkflowType{Name: contract.AnnotationRunName},
			StartTime: timestamppb.New(r.started),
			Status:    enumspb.WORKFLOW_EXECUTION_STATUS_RUNNING,
			SearchAttributes: &commonpb.SearchAttributes{IndexedFields: map[string]*commonpb.Payload{
				contract.RunChangedAtKey.GetName(): at, contract.RunStatusKey.GetName(): st}},
		})
	}
	return resp, nil
}

func (f *fakeTemporal) DescribeWorkflowExecution(_ context.Context, id, _ string) (*workflowservice.DescribeWorkflowExecutionResponse, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.describes[id]++
	select {
	case f.described <- id:
	default:
	}
	if _, ok := f.runs[id]; !ok {
		return nil, serviceerror.NewNotFound("workflow not found")
	}
	return &workflowservice.DescribeWorkflowExecutionResponse{WorkflowExecutionInfo: &workflowpb.WorkflowExecutionInfo{
		Execution: &commonpb.WorkflowExecution{WorkflowId: id, RunId: "run-" + id},
		Status:    enumspb.WORKFLOW_EXECUTION_STATUS_RUNNING,
	}}, nil
}

func (f *fakeTemporal) QueryWorkflow(_ context.Context, id, _, queryType string, _ ...any) (converter.EncodedValue, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	r, ok := f.runs[id]
	if !ok || queryType != contract.QueryStatus {
		return nil, serviceerror.NewNotFound("no such workflow or query")
	}
	a, d, _ := contract.ParseRunID(id)
	p, err := converter.GetDefaultDataConverter().ToPayloads(contract.Status{WorkflowID: id, Annotator: a, Domain: string(d),
		Status: r.status, Target: 10, DatasetSize: 100, StartedAt: r.started})
	if err != nil {
		return nil, err
	}
	return client.NewValue(p), nil
}

// fakeQuota holds pool states.
type fakeQuota struct {
	mu     sync.Mutex
	pools  map[string]contract.QuotaStatus
	calls  int
	called chan struct{}
}

func newFakeQuota() *fakeQuota {
	return &fakeQuota{pools: map[string]contract.QuotaStatus{}, called: make(chan struct{}, 1)}
}

func (q *fakeQuota) State(_ context.Context, pool string) (contract.QuotaStatus, bool, error) {
	defer signal(q.called)
	q.mu.Lock()
	defer q.mu.Unlock()
	q.calls++
	st, ok := q.pools[pool]
	if !ok {
		return contract.QuotaStatus{Pool: pool}, false, nil
	}
	// A free pool's next slot is "now", which moves on every read.
	st.NextFreeSlot = time.Now().Add(-time.Millisecond)
	return st, true, nil
}

func (q *fakeQuota) set(st contract.QuotaStatus) {
	q.mu.Lock()
	defer q.mu.Unlock()
	q.pools[st.Pool] = st
}

func (q *fakeQuota) count() int {
	q.mu.Lock()
	defer q.mu.Unlock()
	return q.calls
}

func testConfig(annotators ...string) *config.Config {
	cfg := &config.Config{}
	for _, id := range annotators {
		a := config.Annotator{ID: id, QuotaPool: "pool-" + id, Provider: config.ProviderGemini, Domains: map[labels.Domain]config.DomainSettings{}}
		for _, d := range labels.Domains {
			a.Domains[d] = config.DomainSettings{Enabled: true, TargetCount: 10}
		}
		cfg.Annotators = append(cfg.Annotators, a)
	}
	return cfg
}

// env is one test's platform: a fake store, Temporal and quota, shared by its hubs.
type env struct {
	t     *testing.T
	store *fakeStore
	tc    *fakeTemporal
	quota *fakeQuota
	cfg   atomic.Pointer[config.Config]
}

func newEnv(t *testing.T) *env {
	e := &env{t: t, store: &fakeStore{samples: 100}, tc: newFakeTemporal(), quota: newFakeQuota()}
	e.cfg.Store(testConfig("1"))
	return e
}

// testHub is a running hub behind an httptest server.
type testHub struct {
	*Hub
	url  string
	stop func() // cancels the hub and waits for Run to return
}

// hub starts a hub with fast test intervals; tweak changes its options before it starts.
func (e *env) hub(tweak func(*Options), hook func(*Hub)) *testHub {
	o := Options{Store: e.store, Temporal: e.tc, Config: func() (*config.Config, error) { return e.cfg.Load(), nil },
		Quota: e.quota.State, Namespace: "default", WebUIBase: "http://ui",
		Logger:    slog.New(slog.NewTextHandler(testWriter{e.t}, &slog.HandlerOptions{Level: slog.LevelWarn})),
		StorePoll: 5 * time.Millisecond, VisibilityPoll: 20 * time.Millisecond, ConfigPoll: 20 * time.Millisecond,
		CountInterval: 20 * time.Millisecond, QuotaPoll: time.Hour}
	if tweak != nil {
		tweak(&o)
	}
	h := New(o)
	if hook != nil {
		hook(h)
	}
	ctx, cancel := context.WithCancel(context.Background())
	ran := make(chan error, 1)
	go func() { ran <- h.Run(ctx) }()
	srv := httptest.NewServer(http.HandlerFunc(h.ServeWS))
	th := &testHub{Hub: h, url: "ws" + strings.TrimPrefix(srv.URL, "http")}
	var once sync.Once
	th.stop = func() {
		once.Do(func() {
			cancel()
			select {
			case err := <-ran:
				if err != nil {
					e.t.Errorf("Run: %v", err)
				}
			case <-time.After(15 * time.Second):
				e.t.Error("Run did not return after its context ended")
			}
			srv.Close()
		})
	}
	e.t.Cleanup(th.stop)
	return th
}

type testWriter struct{ t *testing.T }

func (w testWriter) Write(p []byte) (int, error) {
	w.t.Log(strings.TrimSpace(string(p)))
	return len(p), nil
}

// syncBuffer collects log lines.
type syncBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *syncBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

func (b *syncBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}

// wsClient is a real WebSocket client reading events into a channel.
type wsClient struct {
	t      *testing.T
	conn   *websocket.Conn
	events chan Event
	done   chan struct{}
	err    error // the read error, once done is closed
	last   string
}

const wait = 10 * time.Second // how long an expected event may take, at most

func dial(t *testing.T, url string, read bool) *wsClient {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), wait)
	defer cancel()
	conn, _, err := websocket.Dial(ctx, url, nil)
	if err != nil {
		t.Fatalf("dial %s: %v", url, err)
	}
	conn.SetReadLimit(-1)
	c := &wsClient{t: t, conn: conn, events: make(chan Event, 100000), done: make(chan struct{})}
	t.Cleanup(func() { conn.CloseNow() })
	if read {
		c.startReading()
	}
	return c
}

func (c *wsClient) startReading() {
	go func() {
		defer close(c.done)
		for {
			_, data, err := c.conn.Read(context.Background())
			if err != nil {
				c.err = err
				return
			}
			for _, line := range bytes.Split(data, []byte("\n")) {
				var ev Event
				if err := json.Unmarshal(line, &ev); err != nil {
					c.err = err
					return
				}
				c.events <- ev
			}
		}
	}()
}

// next returns the next event.
func (c *wsClient) next() Event {
	c.t.Helper()
	select {
	case ev := <-c.events:
		if ev.ID <= c.last {
			c.t.Fatalf("event id %s does not sort after the previous one %s", ev.ID, c.last)
		}
		c.last = ev.ID
		return ev
	case <-c.done:
		c.t.Fatalf("connection ended: %v", c.err)
	case <-time.After(wait):
		c.t.Fatal("no event within", wait)
	}
	panic("unreachable")
}

// until skips events until one of type typ that ok accepts (nil: any).
func (c *wsClient) until(typ string, ok func(json.RawMessage) bool) Event {
	c.t.Helper()
	deadline := time.Now().Add(wait)
	for time.Now().Before(deadline) {
		ev := c.next()
		if ev.Type == typ && (ok == nil || ok(ev.Data)) {
			return ev
		}
	}
	c.t.Fatalf("no %s event within %s", typ, wait)
	return Event{}
}

func decode[T any](t *testing.T, data json.RawMessage) T {
	t.Helper()
	var v T
	if err := json.Unmarshal(data, &v); err != nil {
		t.Fatalf("decode %s: %v", data, err)
	}
	return v
}
