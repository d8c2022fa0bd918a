package main

import (
	"context"
	"encoding/json"
	"errors"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"go.temporal.io/sdk/client"
	"go.temporal.io/sdk/testsuite"

	"github.com/mhannotator/mha/activities"
	"github.com/mhannotator/mha/internal/config"
	"github.com/mhannotator/mha/internal/contract"
	"github.com/mhannotator/mha/internal/health"
	"github.com/mhannotator/mha/internal/labels"
	"github.com/mhannotator/mha/internal/llm"
	"github.com/mhannotator/mha/internal/prompts"
	"github.com/mhannotator/mha/internal/store"
)

type checker struct{ err error }

func (c checker) CheckHealth(context.Context, *client.CheckHealthRequest) (*client.CheckHealthResponse, error) {
	return &client.CheckHealthResponse{}, c.err
}

func idle(time.Duration) activities.SlotReport { return activities.SlotReport{Slots: 2} }

func probe(t *testing.T, h http.Handler, path string) (int, health.Report) {
	t.Helper()
	rec := httptest.NewRecorder()
	h.ServeHTTP(rec, httptest.NewRequest(http.MethodGet, path, nil))
	var rep health.Report
	if err := json.Unmarshal(rec.Body.Bytes(), &rep); err != nil {
		t.Fatalf("%s: %q: %v", path, rec.Body.String(), err)
	}
	return rec.Code, rep
}

func TestReadyOnceTemporalAnswersAndTheWorkerPolls(t *testing.T) {
	var life lifecycle
	h := healthHandler(checker{}, idle, &life)
	if code, rep := probe(t, h, "/readyz"); code != http.StatusServiceUnavailable || !strings.Contains(rep.Checks["worker"], "starting") {
		t.Fatalf("/readyz while starting = %d %+v; want 503", code, rep)
	}
	life.set(polling)
	if code, rep := probe(t, h, "/readyz"); code != http.StatusOK {
		t.Fatalf("/readyz while polling = %d %+v; want 200", code, rep)
	}
	life.set(stopping)
	if code, rep := probe(t, h, "/readyz"); code != http.StatusServiceUnavailable || !strings.Contains(rep.Checks["worker"], "stopping") {
		t.Fatalf("/readyz while stopping = %d %+v; want 503", code, rep)
	}
	if code, _ := probe(t, h, "/healthz"); code != http.StatusOK {
		t.Fatalf("/healthz while stopping = %d; a stopping worker is not wedged", code)
	}

	life.set(polling)
	h = healthHandler(checker{err: errors.New("connection refused")}, idle, &life)
	if code, rep := probe(t, h, "/readyz"); code != http.StatusServiceUnavailable || rep.Checks["temporal"] != "connection refused" {
		t.Fatalf("/readyz with Temporal down = %d %+v; want 503 naming temporal", code, rep)
	}
	// A real client whose server does not answer.
	c, err := client.NewLazyClient(client.Options{HostPort: "127.0.0.1:1"})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	start := time.Now()
	if code, rep := probe(t, healthHandler(c, idle, &life), "/readyz"); code != http.StatusServiceUnavailable || rep.Checks["temporal"] == "ok" {
		t.Fatalf("/readyz with no server = %d %+v; want 503", code, rep)
	}
	if d := time.Since(start); d > 4*time.Second {
		t.Fatalf("/readyz with no server took %s; want the probe's timeout at most", d)
	}
}

// hangs never answers and ignores its context.
type hangs struct{ release chan struct{} }

func (h hangs) Complete(context.Context, llm.Request) (llm.Response, error) {
	<-h.release
	return llm.Response{}, errors.New("released")
}

func TestAWorkerWhoseSlotsAreAllWedgedTurnsUnhealthy(t *testing.T) {
	dir := t.TempDir()
	// A call's budget: 0.2 s + 0.2 s.
	cfg, err := config.Parse([]byte(`{"global": {"heartbeat_timeout_seconds": 1, "request_timeout_seconds": 0.2, "stream_idle_timeout_seconds": 0.1},
		"annotators": {"w": {"urgency": {"enabled": true, "target_count": 2}}}}`), nil, func(string) string { return "" })
	if err != nil {
		t.Fatal(err)
	}
	st, err := store.Open(context.Background(), filepath.Join(dir, "mha.db"))
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	if _, err := st.ImportSamples(context.Background(), []store.Sample{{ID: "a", Text: "a"}, {ID: "b", Text: "b"}}); err != nil {
		t.Fatal(err)
	}
	p := hangs{release: make(chan struct{})}
	defer close(p.release)
	acts := &activities.Activities{Store: st, Config: cfg, Prompts: prompts.Library{Dir: filepath.Join(dir, "prompts")},
		Provider: func(config.Annotator) (llm.Provider, error) { return p, nil }, CallSlots: make(chan struct{}, 2)}
	var life lifecycle
	life.set(polling)
	// The worker's margin is seconds; this test's is none, so its slots are stuck as soon as
	// a call outlives its budget.
	h := healthHandler(checker{}, func(time.Duration) activities.SlotReport { return acts.CallSlotReport(0) }, &life)
	if code, _ := probe(t, h, "/healthz"); code != http.StatusOK {
		t.Fatalf("/healthz of an idle worker = %d; want 200", code)
	}
	var suite testsuite.WorkflowTestSuite
	env := suite.NewTestActivityEnvironment()
	env.RegisterActivity(acts.AnnotateBatch)
	// The calls are cut at their budget and asked again twice; then the batch ends.
	if _, err := env.ExecuteActivity(acts.AnnotateBatch, contract.BatchInput{Annotator: "w", Domain: labels.Urgency, Count: 2, Target: 2}); err != nil {
		t.Fatal(err)
	}
	time.Sleep(acts.CallSlotReport(0).Limit)
	code, rep := probe(t, h, "/healthz")
	if code != http.StatusServiceUnavailable || !strings.Contains(rep.Checks["call_slots"], "wedged") || !strings.Contains(rep.Checks["call_slots"], "2 call slots") {
		t.Fatalf("/healthz with every call slot wedged = %d %+v; want 503 saying so", code, rep)
	}
	if code, _ := probe(t, h, "/readyz"); code != http.StatusOK {
		t.Fatalf("/readyz of a wedged worker = %d; readiness is not about wedges", code)
	}
}

func TestStopGraceAndHealthFlags(t *testing.T) {
	t.Setenv("MHA_STOP_GRACE", "")
	t.Setenv("MHA_HEALTH_LISTEN", "")
	g := config.Global{RequestTimeout: 45 * time.Second}
	f, err := parseFlags(nil)
	if err != nil {
		t.Fatal(err)
	}
	if f.grace(g) != 50*time.Second || f.healthListen != "" {
		t.Fatalf("defaults: grace %s, health %q; want request timeout + 5 s and no health endpoints", f.grace(g), f.healthListen)
	}
	t.Setenv("MHA_STOP_GRACE", "90s")
	t.Setenv("MHA_HEALTH_LISTEN", "0.0.0.0:9090")
	if f, err = parseFlags(nil); err != nil || f.grace(g) != 90*time.Second || f.healthListen != "0.0.0.0:9090" {
		t.Fatalf("from the environment: %+v, %v", f, err)
	}
	if f, err = parseFlags([]string{"--stop-grace", "2s", "--health-listen", "127.0.0.1:0"}); err != nil || f.grace(g) != 2*time.Second || f.healthListen != "127.0.0.1:0" {
		t.Fatalf("flags over the environment: %+v, %v", f, err)
	}
	t.Setenv("MHA_STOP_GRACE", "soon")
	if _, err := parseFlags(nil); err == nil || !strings.Contains(err.Error(), "MHA_STOP_GRACE") {
		t.Fatalf("a malformed MHA_STOP_GRACE: %v; want it named", err)
	}
	if _, err := parseFlags([]string{"--stop-grace", "-1s"}); err == nil {
		t.Fatal("a negative --stop-grace: want an error")
	}
}
