package e2e

import (
	"context"
	"fmt"
	"go/ast"
	"go/constant"
	"go/parser"
	"go/token"
	"go/types"
	"net/http"
	"os/exec"
	"path/filepath"
	"slices"
	"sort"
	"strings"
	"testing"
	"time"

	dto "github.com/prometheus/client_model/go"
	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"

	"github.com/mhannotator/mha/deployment"
	"github.com/mhannotator/mha/internal/labels"
	"github.com/mhannotator/mha/internal/llm/fake"
	"github.com/mhannotator/mha/internal/runs"
	"github.com/mhannotator/mha/internal/store"
)

// scrape is one /metrics page, parsed.
type scrape map[string]*dto.MetricFamily

func scrapeMetrics(t testing.TB, url string) scrape {
	t.Helper()
	resp, err := http.Get(url)
	if err != nil {
		t.Fatalf("scrape %s: %v", url, err)
	}
	defer resp.Body.Close()
	p := expfmt.NewTextParser(model.UTF8Validation)
	families, err := p.TextToMetricFamilies(resp.Body)
	if err != nil {
		t.Fatalf("parse %s: %v", url, err)
	}
	return families
}

// sum adds the values of name's series whose labels include every pair of match; a
// histogram counts its observations.
func (s scrape) sum(name string, match map[string]string) (float64, int) {
	f, ok := s[name]
	if !ok {
		return 0, 0
	}
	var total float64
	n := 0
series:
	for _, m := range f.Metric {
		have := map[string]string{}
		for _, l := range m.Label {
			have[l.GetName()] = l.GetValue()
		}
		for k, v := range match {
			if have[k] != v {
				continue series
			}
		}
		n++
		switch {
		case m.Counter != nil:
			total += m.Counter.GetValue()
		case m.Gauge != nil:
			total += m.Gauge.GetValue()
		case m.Histogram != nil:
			total += float64(m.Histogram.GetSampleCount())
		}
	}
	return total, n
}

// mean is the mean of the observations of name's histogram series whose labels include every
// pair of match, as a costPhase.
func (s scrape) mean(label, name string, match map[string]string) costPhase {
	ph := costPhase{name: label}
	f, ok := s[name]
	if !ok {
		return ph
	}
	var sum float64
series:
	for _, m := range f.Metric {
		for k, v := range match {
			if !slices.ContainsFunc(m.Label, func(l *dto.LabelPair) bool { return l.GetName() == k && l.GetValue() == v }) {
				continue series
			}
		}
		sum += m.GetHistogram().GetSampleSum()
		ph.n += int(m.GetHistogram().GetSampleCount())
	}
	if ph.n > 0 {
		ph.mean = time.Duration(sum / float64(ph.n) * float64(time.Second))
	}
	return ph
}

// perOperation adds up name's series by their operation label, each divided by per.
func (s scrape) perOperation(name string, per float64) map[string]float64 {
	out := map[string]float64{}
	for _, m := range s[name].GetMetric() {
		for _, l := range m.Label {
			if l.GetName() == "operation" {
				out[l.GetValue()] += m.GetCounter().GetValue() / per
			}
		}
	}
	return out
}

// names are the series names a query can select: a histogram's _bucket, _sum and _count.
func (s scrape) names() map[string]bool {
	out := map[string]bool{}
	for name, f := range s {
		out[name] = true
		if f.GetType() == dto.MetricType_HISTOGRAM {
			out[name+"_bucket"], out[name+"_sum"], out[name+"_count"] = true, true, true
		}
	}
	return out
}

// TestMetricsAfterAShortRun runs one annotator against the fake provider with a fault of
// each kind, then reads the worker's and the api's /metrics: every named series is there,
// with the values the run's ledger says it must have.
func TestMetricsAfterAShortRun(t *testing.T) {
	t.Parallel()
	f := startFake(t, fake.Options{Keys: map[string]fake.Key{"key-m": {}}, ChunkCount: 4})
	f.Inject(fake.Fault{Kind: fake.ServerError, Status: 500, Times: 2, Match: match(2)})
	f.Inject(fake.Fault{Kind: fake.StallStream, Times: 1, Match: match(3), After: 2})
	f.Inject(fake.Fault{Kind: fake.Malformed, Times: 1, Match: match(5)})
	f.Inject(fake.Fault{Kind: fake.RateLimitMinute, Times: 1, Match: match(7)})
	const n = 12
	s := newStackWith(t, netGlobal(f.URL(), map[string]any{"model_name": "gemini-metrics"}),
		map[string]map[labels.Domain]int{"mt": {labels.Urgency: n}}, n, nil, map[string]string{"mt": "key-m"})
	p := runs.Pair{Annotator: "mt", Domain: labels.Urgency}
	w := s.startWorkerWith(filepath.Join(binDir, "worker"), nil, "--health-listen", "127.0.0.1:0")
	api, _ := s.startAPIProcess()
	s.runToCompletion(p)

	var tokensIn, tokensOut float64
	err := s.store.Export(context.Background(), store.Filter{Annotator: "mt"}, func(r store.ExportRow) error {
		tokensIn += float64(r.InputTokens)
		tokensOut += float64(r.OutputTokens)
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	calls := float64(f.Stats().Requests)
	run := map[string]string{"annotator": "mt", "domain": "urgency"}
	model := map[string]string{"provider": "gemini", "model": "gemini-metrics"}
	outcome := func(o string) map[string]string {
		return map[string]string{"provider": "gemini", "model": "gemini-metrics", "outcome": o}
	}

	// tally hands values to the page every second: wait until the last store is on it.
	var wm scrape
	waitFor(t, 10*time.Second, "the worker's /metrics to count every stored annotation and the run's end", func() (bool, string) {
		wm = scrapeMetrics(t, w.health+"/metrics")
		got, _ := wm.sum("mha_annotations_stored_total", run)
		ended, _ := wm.sum("temporal_workflow_completed_total", map[string]string{"workflow_type": "AnnotationRun"})
		return got == n && ended > 0, fmt.Sprintf("%v stored, %v runs ended", got, ended)
	})
	for _, c := range []struct {
		name  string
		match map[string]string
		want  float64
	}{
		{"mha_annotations_stored_total", map[string]string{"annotator": "mt", "domain": "urgency", "status": "ok"}, n},
		{"mha_provider_outcomes_total", outcome("ok"), n},
		{"mha_provider_outcomes_total", outcome("server_error"), 2},
		{"mha_provider_outcomes_total", outcome("stalled_stream"), 1},
		{"mha_provider_outcomes_total", outcome("malformed"), 1},
		{"mha_provider_outcomes_total", outcome("rate_limited_minute"), 1},
		{"mha_provider_outcomes_total", outcome("timeout"), 0},
		{"mha_provider_outcomes_total", model, calls}, // every call the fake saw has a class
		{"mha_provider_request_duration_seconds", model, calls},
		{"mha_reasks_total", run, 1},
		{"mha_deadline_cuts_total", run, 0},
		{"mha_tokens_input_total", map[string]string{"annotator": "mt"}, tokensIn},
		{"mha_tokens_output_total", map[string]string{"annotator": "mt"}, tokensOut},
		{"mha_quota_limit_requests_per_minute", map[string]string{"pool": "annotator-mt"}, 100000},
		{"mha_provider_calls_in_flight", map[string]string{"provider": "gemini"}, 0},
		{"mha_worker_wedged_slots", nil, 0},
	} {
		got, series := wm.sum(c.name, c.match)
		if series == 0 || got != c.want {
			t.Errorf("worker %s%v = %v over %d series; want %v", c.name, c.match, got, series, c.want)
		}
	}
	if calls < n+5 || tokensIn == 0 {
		t.Errorf("the fake saw %v calls and the store holds %v input tokens; want at least %d calls and some tokens", calls, tokensIn, n+5)
	}
	// A 429 ends a reservation's use, so the pool grants at least one slot per call.
	if got, _ := wm.sum("mha_quota_granted_total", map[string]string{"pool": "annotator-mt"}); got < calls {
		t.Errorf("quota granted %v slots; want at least the %v calls made", got, calls)
	}
	if got, _ := wm.sum("mha_quota_wait_seconds", map[string]string{"pool": "annotator-mt"}); got < calls {
		t.Errorf("quota waits recorded %v; want one per call (%v)", got, calls)
	}
	// The SDK's own series, under the names Temporal's dashboards query. A run's activities
	// come back eagerly in the answer to the workflow task that schedules them, without an
	// activity poll, so temporal_activity_schedule_to_start_latency_seconds appears only for
	// polled ones (retries, other workers); the dashboard check below covers its name.
	for _, c := range []struct {
		name  string
		match map[string]string
	}{
		{"temporal_worker_task_slots_available", map[string]string{"worker_type": "ActivityWorker"}},
		{"temporal_workflow_task_schedule_to_start_latency_seconds", nil},
		{"temporal_activity_execution_latency_seconds", nil},
		{"temporal_workflow_completed_total", map[string]string{"workflow_type": "AnnotationRun"}},
	} {
		if got, series := wm.sum(c.name, c.match); series == 0 || got == 0 {
			t.Errorf("worker %s%v = %v over %d series; want a positive value", c.name, c.match, got, series)
		}
	}

	var am scrape
	waitFor(t, 15*time.Second, "the api's run gauges to show the finished run", func() (bool, string) {
		am = scrapeMetrics(t, api+"/metrics")
		done, _ := am.sum("mha_run_done", run)
		completed, _ := am.sum("mha_runs", map[string]string{"status": "completed"})
		return done == n && completed >= 1, fmt.Sprintf("done %v, completed runs %v", done, completed)
	})
	if got, series := am.sum("mha_run_target", run); series != 1 || got != n {
		t.Errorf("api mha_run_target%v = %v over %d series; want %d", run, got, series, n)
	}

	// Every metric the Grafana dashboard queries is on one of the two pages, or is one of the
	// SDK's that only a failure creates (checked against the SDK's own list of names).
	queried, err := deployment.DashboardMetricNames()
	if err != nil {
		t.Fatal(err)
	}
	exported := wm.names()
	for name := range am.names() {
		exported[name] = true
	}
	sdk := sdkMetricNames(t)
	for _, name := range queried {
		if !exported[name] && !sdk[name] {
			t.Errorf("the dashboard queries %s, which neither /metrics page has and the SDK does not define", name)
		}
	}

	// No series names a sample or carries a key.
	for _, page := range []scrape{wm, am} {
		for name, fam := range page {
			for _, m := range fam.Metric {
				for _, l := range m.Label {
					if strings.Contains(l.GetValue(), "key-m") || strings.Contains(l.GetName(), "sample") {
						t.Errorf("%s has label %s=%q", name, l.GetName(), l.GetValue())
					}
				}
			}
		}
	}
	if t.Failed() {
		var names []string
		for name := range wm.names() {
			if strings.HasPrefix(name, "mha_") || strings.HasPrefix(name, "temporal_") {
				names = append(names, name)
			}
		}
		sort.Strings(names)
		t.Logf("worker series: %s", strings.Join(names, " "))
	}
}

// sdkMetricNames are the Prometheus names of every metric the Temporal Go SDK defines (its
// internal/common/metrics/constants.go, type-checked here for the constants' values): counters
// with _total, latencies with _seconds and a histogram's series, gauges as they are.
func sdkMetricNames(t *testing.T) map[string]bool {
	t.Helper()
	out, err := exec.Command("go", "list", "-m", "-f", "{{.Dir}}", "go.temporal.io/sdk").Output()
	if err != nil {
		t.Fatalf("locate the SDK module: %v", err)
	}
	path := filepath.Join(strings.TrimSpace(string(out)), "internal", "common", "metrics", "constants.go")
	fset := token.NewFileSet()
	file, err := parser.ParseFile(fset, path, nil, 0)
	if err != nil {
		t.Fatal(err)
	}
	pkg, err := (&types.Config{}).Check("metrics", fset, []*ast.File{file}, nil)
	if err != nil {
		t.Fatalf("type-check %s: %v", path, err)
	}
	names := map[string]bool{}
	for _, id := range pkg.Scope().Names() {
		c, ok := pkg.Scope().Lookup(id).(*types.Const)
		if !ok || c.Val().Kind() != constant.String {
			continue
		}
		v := constant.StringVal(c.Val())
		if !strings.HasPrefix(v, "temporal_") {
			continue
		}
		names[v], names[v+"_total"] = true, true
		if strings.HasSuffix(v, "_latency") {
			for _, suffix := range []string{"", "_bucket", "_sum", "_count"} {
				names[v+"_seconds"+suffix] = true
			}
		}
	}
	if !names["temporal_request_failure_total"] || !names["temporal_activity_schedule_to_start_latency_seconds_bucket"] {
		t.Fatalf("the SDK's metric names were not read from %s", path)
	}
	return names
}
