package events

import (
	"context"
	"encoding/json"
	"errors"
	"log/slog"
	"os"
	"strings"
	"sync"
	"testing"
	"time"

	"go.temporal.io/api/serviceerror"
	"go.temporal.io/api/workflowservice/v1"
	"go.temporal.io/sdk/client"
	tlog "go.temporal.io/sdk/log"
	"go.temporal.io/sdk/temporal"
	"go.temporal.io/sdk/testsuite"
	"go.temporal.io/sdk/worker"
	"go.temporal.io/sdk/workflow"
	"google.golang.org/protobuf/types/known/durationpb"

	"github.com/mhannotator/mha/internal/config"
	"github.com/mhannotator/mha/internal/contract"
)

// stubRun stands in for the annotation run: it answers the status query and, on a "set"
// signal, changes its status and records the change in its search attributes as runs do.
func stubRun(ctx workflow.Context, attrs bool) error {
	id := workflow.GetInfo(ctx).WorkflowExecution.ID
	a, d, _ := contract.ParseRunID(id)
	st := contract.Status{WorkflowID: id, Annotator: a, Domain: string(d), Status: contract.StatusRunning, Target: 10,
		DatasetSize: 100, StartedAt: workflow.Now(ctx)}
	if err := workflow.SetQueryHandler(ctx, contract.QueryStatus, func() (contract.Status, error) { return st, nil }); err != nil {
		return err
	}
	ch := workflow.GetSignalChannel(ctx, "set")
	for {
		var s string
		ch.Receive(ctx, &s)
		st.Status = s
		if attrs {
			if err := workflow.UpsertTypedSearchAttributes(ctx, contract.RunStatusKey.ValueSet(s),
				contract.RunChangedAtKey.ValueSet(workflow.Now(ctx))); err != nil {
				return err
			}
		}
	}
}

// describeCounter counts DescribeWorkflowExecution per workflow.
type describeCounter struct {
	client.Client
	mu sync.Mutex
	n  map[string]int
}

func (c *describeCounter) DescribeWorkflowExecution(ctx context.Context, id, runID string) (*workflowservice.DescribeWorkflowExecutionResponse, error) {
	c.mu.Lock()
	c.n[id]++
	c.mu.Unlock()
	return c.Client.DescribeWorkflowExecution(ctx, id, runID)
}

func (c *describeCounter) count(id string) int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.n[id]
}

// TestOnDevServer runs the hub against a real Temporal dev server (the temporal CLI that
// `make temporal` builds, or TEMPORAL_CLI): the visibility query is accepted, a status change
// reaches a client within a second, an unchanged run is not read again, and a namespace
// without RunChangedAt refuses the query as invalid, so the hub falls back.
func TestOnDevServer(t *testing.T) {
	cli := os.Getenv("TEMPORAL_CLI")
	if cli == "" {
		cli = "../../bin/temporal"
	}
	if _, err := os.Stat(cli); err != nil {
		t.Skipf("no temporal CLI at %s (run `make temporal`, or set TEMPORAL_CLI)", cli)
	}
	if testing.Short() {
		t.Skip("starts a Temporal dev server")
	}
	ctx := context.Background()
	quiet := tlog.NewStructuredLogger(slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelWarn})))
	srv, err := testsuite.StartDevServer(ctx, testsuite.DevServerOptions{
		ExistingPath: cli, LogLevel: "error", ClientOptions: &client.Options{Logger: quiet},
		SearchAttributes: temporal.NewSearchAttributes(contract.RunStatusKey.ValueSet(""), contract.RunChangedAtKey.ValueSet(time.Time{})),
	})
	if err != nil {
		t.Fatalf("start dev server: %v", err)
	}
	defer srv.Stop()

	t.Run("feed", func(t *testing.T) {
		cl := &describeCounter{Client: srv.Client(), n: map[string]int{}}
		w := worker.New(srv.Client(), "stub", worker.Options{}) // a worker needs the SDK's own client
		w.RegisterWorkflowWithOptions(stubRun, workflow.RegisterOptions{Name: contract.AnnotationRunName})
		if err := w.Start(); err != nil {
			t.Fatal(err)
		}
		defer w.Stop()
		for _, id := range []string{"annotation-1-urgency", "annotation-1-therapeutic"} {
			_, err := cl.ExecuteWorkflow(ctx, client.StartWorkflowOptions{ID: id, TaskQueue: "stub",
				TypedSearchAttributes: temporal.NewSearchAttributes(contract.RunStatusKey.ValueSet(contract.StatusRunning),
					contract.RunChangedAtKey.ValueSet(time.Now()))}, contract.AnnotationRunName, true)
			if err != nil {
				t.Fatal(err)
			}
		}
		// The exact query the hub sends lists both runs (once visibility has caught up).
		var resp *workflowservice.ListWorkflowExecutionsResponse
		for deadline := time.Now().Add(wait); len(resp.GetExecutions()) != 2; {
			if resp, err = cl.ListWorkflow(ctx, &workflowservice.ListWorkflowExecutionsRequest{Query: VisibilityQuery(time.Now().Add(-time.Minute))}); err != nil {
				t.Fatalf("the dev server refuses %q: %v", VisibilityQuery(time.Now()), err)
			}
			if time.Now().After(deadline) {
				t.Fatalf("the query lists %d runs, want 2", len(resp.GetExecutions()))
			}
		}
		// Nothing changed since now: open runs must not match (SQL visibility's open CloseTime).
		resp, err = cl.ListWorkflow(ctx, &workflowservice.ListWorkflowExecutionsRequest{Query: VisibilityQuery(time.Now().Add(time.Second))})
		if err != nil || len(resp.GetExecutions()) != 0 {
			t.Fatalf("the query from a second ahead lists %d runs (%v), want none", len(resp.GetExecutions()), err)
		}

		e := newEnv(t)
		h := e.hub(func(o *Options) {
			o.Temporal = cl
			o.VisibilityOverlap = time.Second
			o.VisibilityPoll = 0 // the default
		}, nil)
		c := dial(t, h.url, true)
		st := decode[State](t, c.until(TypeState, nil).Data)
		if st.Runs[0].Status.Status != contract.StatusRunning || st.Runs[1].Status.Status != contract.StatusRunning {
			t.Fatalf("initial runs: %s, %s", st.Runs[0].Status.Status, st.Runs[1].Status.Status)
		}
		// Wall time, not synchronisation: the runs' start falls out of the listings' reach.
		time.Sleep(1500 * time.Millisecond)
		before := cl.count("annotation-1-therapeutic")
		sent := time.Now()
		if err := cl.SignalWorkflow(ctx, "annotation-1-urgency", "", "set", contract.StatusPaused); err != nil {
			t.Fatal(err)
		}
		c.until(TypeRun, func(d json.RawMessage) bool { return decode[Run](t, d).Status.Status == contract.StatusPaused })
		took := time.Since(sent)
		t.Logf("a status change reached the client after %s", took)
		if took > 1500*time.Millisecond {
			t.Errorf("a status change took %s to reach the client", took)
		}
		if n := cl.count("annotation-1-therapeutic"); n != before {
			t.Errorf("the unchanged run was read %d more times", n-before)
		}
		calls, idle := h.TemporalCalls(), time.Now()
		time.Sleep(2 * time.Second) // a measurement, not synchronisation
		t.Logf("idle: %d Temporal calls in %s (listings only: one per 500 ms)", h.TemporalCalls()-calls, time.Since(idle).Round(time.Millisecond))
	})

	t.Run("fallback", func(t *testing.T) {
		nc, err := client.NewNamespaceClient(client.Options{HostPort: srv.FrontendHostPort(), Logger: quiet})
		if err != nil {
			t.Fatal(err)
		}
		defer nc.Close()
		if err := nc.Register(ctx, &workflowservice.RegisterNamespaceRequest{Namespace: "bare",
			WorkflowExecutionRetentionPeriod: durationpb.New(24 * time.Hour)}); err != nil {
			t.Fatal(err)
		}
		var cl client.Client
		for deadline := time.Now().Add(wait); ; {
			if cl, err = client.Dial(client.Options{HostPort: srv.FrontendHostPort(), Namespace: "bare", Logger: quiet}); err == nil {
				break
			}
			if time.Now().After(deadline) {
				t.Fatal(err)
			}
		}
		defer cl.Close()
		_, err = cl.ListWorkflow(ctx, &workflowservice.ListWorkflowExecutionsRequest{Query: VisibilityQuery(time.Now())})
		var invalid *serviceerror.InvalidArgument
		if !errors.As(err, &invalid) {
			t.Fatalf("a namespace without RunChangedAt answers the query with %v, want invalid argument", err)
		}
		t.Logf("without RunChangedAt: %v", err)

		w := worker.New(cl, "stub", worker.Options{})
		w.RegisterWorkflowWithOptions(stubRun, workflow.RegisterOptions{Name: contract.AnnotationRunName})
		if err := w.Start(); err != nil {
			t.Fatal(err)
		}
		defer w.Stop()
		if _, err := cl.ExecuteWorkflow(ctx, client.StartWorkflowOptions{ID: "annotation-1-urgency", TaskQueue: "stub"},
			contract.AnnotationRunName, false); err != nil {
			t.Fatal(err)
		}
		var logs syncBuffer
		e := newEnv(t)
		h := e.hub(func(o *Options) {
			o.Temporal, o.Namespace = cl, "bare"
			o.FallbackRefresh = 200 * time.Millisecond
			o.Logger = slog.New(slog.NewTextHandler(&logs, nil))
			o.Config = func() (*config.Config, error) { return testConfig("1"), nil }
		}, nil)
		c := dial(t, h.url, true)
		c.until(TypeState, nil)
		if err := cl.SignalWorkflow(ctx, "annotation-1-urgency", "", "set", contract.StatusPaused); err != nil {
			t.Fatal(err)
		}
		c.until(TypeRun, func(d json.RawMessage) bool { return decode[Run](t, d).Status.Status == contract.StatusPaused })
		if n := strings.Count(logs.String(), "refuses the run change query"); n != 1 {
			t.Errorf("fallback logged %d times:\n%s", n, logs.String())
		}
	})
}
