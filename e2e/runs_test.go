package e2e

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	enumspb "go.temporal.io/api/enums/v1"
	historypb "go.temporal.io/api/history/v1"
	"go.temporal.io/api/workflowservice/v1"
	"go.temporal.io/sdk/worker"
	"google.golang.org/protobuf/encoding/protojson"

	"github.com/mhannotator/mha/activities"
	"github.com/mhannotator/mha/internal/config"
	"github.com/mhannotator/mha/internal/contract"
	"github.com/mhannotator/mha/internal/labels"
	"github.com/mhannotator/mha/internal/llm"
	"github.com/mhannotator/mha/internal/llm/offline"
	"github.com/mhannotator/mha/internal/prompts"
	"github.com/mhannotator/mha/internal/runs"
	"github.com/mhannotator/mha/workflows"
)

func TestTwoRunsCompleteToTheirTargets(t *testing.T) {
	s := newStack(t, nil, map[string]map[labels.Domain]int{
		"a1": {labels.Urgency: 23},
		"a2": {labels.Adjunct: 17},
	}, 40)
	s.startWorker()
	out, code := s.starter("start", "--all")
	if code != 0 {
		t.Fatalf("start --all exited %d: %s", code, out)
	}
	first, second := runs.Pair{Annotator: "a1", Domain: labels.Urgency}, runs.Pair{Annotator: "a2", Domain: labels.Adjunct}
	for _, p := range []runs.Pair{first, second} {
		st := s.waitStatus(p, contract.StatusCompleted, time.Minute)
		if st.Completed != st.Target || s.stored(p) != st.Target {
			t.Fatalf("%s: status %+v, store holds %d; want exactly the target", p.ID(), st, s.stored(p))
		}
		replay(t, p.ID())
	}
	// status --json reads the finished runs from their results.
	out, code = s.starter("status", "--json")
	var docs []contract.Status
	if err := json.Unmarshal([]byte(out), &docs); code != 0 || err != nil {
		t.Fatalf("status --json exited %d (%v): %s", code, err, out)
	}
	done := map[string]int{}
	for _, d := range docs {
		if d.Status == contract.StatusCompleted {
			done[d.WorkflowID] = d.Completed
		}
	}
	if done[first.ID()] != 23 || done[second.ID()] != 17 {
		t.Fatalf("status --json = %s; want both runs completed with 23 and 17", out)
	}
	// Starting again finds nothing to do: the store already holds every annotation.
	if out, code = s.starter("start", "--all"); code != 0 {
		t.Fatalf("second start exited %d: %s", code, out)
	}
	st := s.waitStatus(first, contract.StatusCompleted, time.Minute)
	if s.stored(first) != 23 || st.Completed != 23 {
		t.Fatalf("after a second start, store holds %d (status %+v); want still 23", s.stored(first), st)
	}
}

func TestPausedRunMakesNoProgressUntilResumed(t *testing.T) {
	// One batch for the whole run, so the pause surely cuts one short.
	s := newStack(t, map[string]any{"offline_latency_seconds": 0.05, "batch_size": 60, "max_concurrent_activities": 1}, map[string]map[labels.Domain]int{
		"p1": {labels.Intensity: 60},
	}, 60)
	p := runs.Pair{Annotator: "p1", Domain: labels.Intensity}
	w := s.startWorker()
	if out, code := s.starter("start", "--annotator", "p1", "--domain", "intensity"); code != 0 {
		t.Fatalf("start exited %d: %s", code, out)
	}
	waitFor(t, time.Minute, "10 stored annotations", func() (bool, string) { n := s.stored(p); return n >= 10, fmt.Sprint(n) })
	if out, code := s.starter("pause", "--annotator", "p1", "--domain", "intensity"); code != 0 {
		t.Fatalf("pause exited %d: %s", code, out)
	}
	paused := s.waitStatus(p, contract.StatusPaused, 30*time.Second)
	atPause := s.stored(p)
	if paused.Completed != atPause || atPause >= 60 {
		t.Fatalf("paused status %+v but store holds %d; want the run paused part way with matching counts", paused, atPause)
	}
	// A full status round trip later, nothing more has been stored.
	if out, code := s.starter("status", "--annotator", "p1"); code != 0 {
		t.Fatalf("status exited %d: %s", code, out)
	}
	if n := s.stored(p); n != atPause {
		t.Fatalf("store grew from %d to %d while paused", atPause, n)
	}
	// With no worker to answer the status query, the run still shows paused (the status it
	// recorded last), not running.
	_ = w.Process.Kill()
	_ = w.Wait()
	if st := s.status(p); st.Status != contract.StatusPaused || st.Completed != atPause || !strings.Contains(st.LastError, "no worker answered") {
		t.Fatalf("status without a worker: %+v; want paused with %d done, from the store", st, atPause)
	}
	s.startWorker()
	if out, code := s.starter("resume", "--annotator", "p1", "--domain", "intensity"); code != 0 {
		t.Fatalf("resume exited %d: %s", code, out)
	}
	st := s.waitStatus(p, contract.StatusCompleted, time.Minute)
	if st.Completed != 60 || s.stored(p) != 60 {
		t.Fatalf("after resume: status %+v, store %d; want 60", st, s.stored(p))
	}
	// History proves it: no batch was scheduled between the pause and the resume Updates, and
	// the batch the pause cut short was reported cancelled, not failed.
	events := history(t, p.ID())
	var pausedAt, resumedAt int64
	cancelled, halts := 0, 0
	for _, e := range events {
		// The run recorded the batch as halted in the store, for its lanes to read before a call.
		if m := e.GetMarkerRecordedEventAttributes(); m != nil && m.GetMarkerName() == "LocalActivity" &&
			strings.Contains(m.GetDetails()["data"].String(), contract.HaltBatchName) {
			halts++
		}
		if u := e.GetWorkflowExecutionUpdateAcceptedEventAttributes(); u != nil {
			switch u.GetAcceptedRequest().GetInput().GetName() {
			case contract.SignalPause:
				pausedAt = e.GetEventId()
			case contract.SignalResume:
				resumedAt = e.GetEventId()
			}
		}
		if e.GetEventType() == enumspb.EVENT_TYPE_ACTIVITY_TASK_FAILED {
			t.Fatalf("event %d: a batch attempt failed; a pause must cancel it", e.GetEventId())
		}
		if e.GetEventType() == enumspb.EVENT_TYPE_ACTIVITY_TASK_CANCELED {
			cancelled++
		}
	}
	if pausedAt == 0 || resumedAt <= pausedAt {
		t.Fatalf("history lacks pause (%d) then resume (%d) Updates", pausedAt, resumedAt)
	}
	if cancelled != 1 || halts != 1 {
		t.Fatalf("%d cancelled batches and %d halts recorded, want the one the pause cut short", cancelled, halts)
	}
	for _, e := range events {
		a := e.GetActivityTaskScheduledEventAttributes()
		if a != nil && a.GetActivityType().GetName() == contract.AnnotateBatchName && e.GetEventId() > pausedAt && e.GetEventId() < resumedAt {
			t.Fatalf("batch scheduled at event %d, between pause (%d) and resume (%d)", e.GetEventId(), pausedAt, resumedAt)
		}
	}
	replay(t, p.ID())
}

// startHangingWorker runs an in-process worker whose offline provider wedges, ignoring its
// context, on the first call for the sample with text. A zero requestTimeout lifts the request
// timeout past the heartbeat timeout (no valid config does; an unbounded client would), so
// that only the heartbeat machinery can end the hang; otherwise the call is cut at the request
// timeout. stop stops the worker.
func (s *stack) startHangingWorker(text string, requestTimeout time.Duration) (prov *hangingProvider, stop func()) {
	s.t.Helper()
	cfg := *s.cfg
	cfg.Global.RequestTimeout = time.Hour
	if requestTimeout > 0 {
		cfg.Global.RequestTimeout = requestTimeout
	}
	prov = &hangingProvider{Provider: offline.Annotator{}, hangText: text, hung: make(chan struct{})}
	w := worker.New(server.Client(), s.taskQueue, worker.Options{})
	workflows.Register(w)
	activities.Register(w, &activities.Activities{Store: s.store, Config: &cfg, Prompts: prompts.Library{Dir: filepath.Join(s.cfgDir, "prompts")},
		Provider: func(config.Annotator) (llm.Provider, error) { return prov, nil }, ControlInterval: 250 * time.Millisecond})
	if err := w.Start(); err != nil {
		s.t.Fatal(err)
	}
	return prov, w.Stop
}

// hangingProvider wedges, ignoring its context, on the first call for one sample.
type hangingProvider struct {
	llm.Provider
	hangText string
	once     sync.Once
	hung     chan struct{}
}

func (h *hangingProvider) Complete(ctx context.Context, req llm.Request) (llm.Response, error) {
	hang := false
	if req.Text == h.hangText {
		h.once.Do(func() { hang = true })
	}
	if hang {
		close(h.hung)
		select {} // a call that never returns, as a silently dropped connection does
	}
	return h.Provider.Complete(ctx, req)
}

func TestHungCallIsRecoveredByTheHeartbeatTimeout(t *testing.T) {
	s := newStack(t, map[string]any{"heartbeat_timeout_seconds": 2, "request_timeout_seconds": 1.5}, map[string]map[labels.Domain]int{
		"h1": {labels.Modality: 30},
	}, 30)
	p := runs.Pair{Annotator: "h1", Domain: labels.Modality}
	prov, stop := s.startHangingWorker(samples(30)[12].Text, 0)
	defer stop()

	if r := s.ctl.Start(context.Background(), p); r.Outcome != runs.Started {
		t.Fatalf("start: %+v", r)
	}
	<-prov.hung
	hungAt := time.Now()
	st := s.waitStatus(p, contract.StatusCompleted, time.Minute)
	if st.Completed != 30 || s.stored(p) != 30 {
		t.Fatalf("status %+v, store %d; want all 30 annotated after the hang", st, s.stored(p))
	}
	if st.Restarts < 1 {
		t.Fatalf("status %+v shows no restart, but the hung batch must have been retried", st)
	}
	t.Logf("hang to completion: %s (heartbeat timeout 2s)", time.Since(hungAt).Round(10*time.Millisecond))
	replay(t, p.ID())
}

func TestWorkerKilledMidBatchIsReplacedWithoutDuplicates(t *testing.T) {
	s := newStack(t, map[string]any{"offline_latency_seconds": 0.02, "batch_size": 20, "heartbeat_timeout_seconds": 15, "max_concurrent_activities": 1,
		"request_timeout_seconds": 2}, map[string]map[labels.Domain]int{"k1": {labels.Therapeutic: 150}}, 150)
	p := runs.Pair{Annotator: "k1", Domain: labels.Therapeutic}
	first := s.startWorker()
	if out, code := s.starter("start", "--annotator", "k1"); code != 0 {
		t.Fatalf("start exited %d: %s", code, out)
	}
	waitFor(t, time.Minute, "30 stored annotations", func() (bool, string) { n := s.stored(p); return n >= 30, fmt.Sprint(n) })
	if err := first.Process.Signal(syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	killed := time.Now()
	_ = first.Wait()
	atKill := s.stored(p)
	if atKill >= 150 {
		t.Fatalf("the run finished (%d) before the worker was killed; the test proves nothing", atKill)
	}
	s.startWorker()
	waitFor(t, time.Minute, "the first annotation after the kill", func() (bool, string) { n := s.stored(p); return n > atKill, fmt.Sprint(n) })
	// The killed attempt is timed out by its heartbeat and retried on the new worker.
	recovery := time.Since(killed)
	t.Logf("kill to next stored annotation: %s = %.2f × the heartbeat timeout", recovery.Round(time.Millisecond), recovery.Seconds()/15)
	if recovery > 18*time.Second {
		t.Fatalf("recovery from the kill took %s; want at most 1.2 × the 15 s heartbeat timeout", recovery)
	}
	st := s.waitStatus(p, contract.StatusCompleted, time.Minute)
	if st.Completed != 150 || s.stored(p) != 150 {
		t.Fatalf("status %+v, store %d; want exactly 150 after the restart", st, s.stored(p))
	}
	// One row per sample, each made by a single call: the crash repeated no stored work.
	rows := exportRows(t, s)
	seen := map[any]bool{}
	for _, r := range rows {
		if seen[r["sample_id"]] || r["attempt"] != 1.0 {
			t.Fatalf("export row %v is a duplicate or was asked more than once", r)
		}
		seen[r["sample_id"]] = true
	}
	if len(rows) != 150 {
		t.Fatalf("export has %d rows, want 150", len(rows))
	}
	t.Logf("killed at %d of 150 stored", atKill)
	replay(t, p.ID())
}

func TestConcurrentStartsYieldOneRun(t *testing.T) {
	s := newStack(t, map[string]any{"offline_latency_seconds": 0.01}, map[string]map[labels.Domain]int{"c1": {labels.Redressal: 20}}, 20)
	p := runs.Pair{Annotator: "c1", Domain: labels.Redressal}
	s.startWorker()
	results := make([]runs.Result, 8)
	var wg sync.WaitGroup
	for i := range results {
		wg.Go(func() { results[i] = s.ctl.Start(context.Background(), p) })
	}
	wg.Wait()
	started := 0
	for _, r := range results {
		switch r.Outcome {
		case runs.Started:
			started++
		case runs.AlreadyRunning:
		default:
			t.Fatalf("concurrent start gave %+v", r)
		}
	}
	if started != 1 {
		t.Fatalf("%d of 8 concurrent starts started a run (%+v); want exactly 1", started, results)
	}
	s.waitStatus(p, contract.StatusCompleted, time.Minute)
	resp, err := server.Client().ListWorkflow(context.Background(), &workflowservice.ListWorkflowExecutionsRequest{
		Namespace: "default", Query: "WorkflowId = '" + p.ID() + "'"})
	if err != nil {
		t.Fatal(err)
	}
	if n := len(resp.GetExecutions()); n != 1 {
		t.Fatalf("visibility lists %d executions of %s, want 1", n, p.ID())
	}
	if s.stored(p) != 20 {
		t.Fatalf("store holds %d, want 20", s.stored(p))
	}
}

// history returns the events of the latest run of workflow id.
func history(t *testing.T, id string) []*historypb.HistoryEvent {
	t.Helper()
	it := server.Client().GetWorkflowHistory(context.Background(), id, "", false, enumspb.HISTORY_EVENT_FILTER_TYPE_ALL_EVENT)
	var events []*historypb.HistoryEvent
	for it.HasNext() {
		e, err := it.Next()
		if err != nil {
			t.Fatal(err)
		}
		events = append(events, e)
	}
	return events
}

// replay runs workflow id's recorded history through the current workflow code: any
// nondeterminism fails the test. With MHA_RECORD_HISTORY=DIR it also saves the history as
// JSON, which is how the histories under workflows/testdata were made.
func replay(t *testing.T, id string) {
	t.Helper()
	h := &historypb.History{Events: history(t, id)}
	r := worker.NewWorkflowReplayer()
	workflows.Register(r)
	if err := r.ReplayWorkflowHistory(nil, h); err != nil {
		t.Fatalf("replaying %s: %v", id, err)
	}
	if dir := os.Getenv("MHA_RECORD_HISTORY"); dir != "" {
		b, err := protojson.MarshalOptions{Indent: "  "}.Marshal(h)
		if err == nil {
			err = os.WriteFile(filepath.Join(dir, id+".json"), b, 0o644)
		}
		if err != nil {
			t.Fatal(err)
		}
	}
}

func exportRows(t *testing.T, s *stack) []map[string]any {
	t.Helper()
	out, code := s.starter("export", "--format", "jsonl")
	if code != 0 {
		t.Fatalf("export exited %d", code)
	}
	var rows []map[string]any
	dec := json.NewDecoder(strings.NewReader(out))
	for {
		var row map[string]any
		if err := dec.Decode(&row); errors.Is(err, io.EOF) {
			return rows
		} else if err != nil {
			t.Fatalf("export output: %v", err)
		}
		rows = append(rows, row)
	}
}
