package server

import (
	"fmt"
	"net/http"
	"reflect"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/mhannotator/mha/api/events"
	"github.com/mhannotator/mha/internal/contract"
	"github.com/mhannotator/mha/internal/labels"
	"github.com/mhannotator/mha/internal/store"
)

// runOf is an enabled run of annotator in domain with status.
func runOf(annotator, domain, status string) events.Run {
	return events.Run{Enabled: true, Status: contract.Status{
		WorkflowID: contract.RunID(annotator, labels.Domain(domain)), Annotator: annotator, Domain: domain, Status: status, Target: 5, DatasetSize: 10,
	}}
}

func workflowIDs(rs []events.Run) []string {
	ids := make([]string, len(rs))
	for i, r := range rs {
		ids[i] = r.WorkflowID
	}
	return ids
}

type runsReply struct {
	Runs []events.Run `json:"runs"`
}

func TestOverviewIsTheEventsOverview(t *testing.T) {
	ev := newFakeEvents()
	ev.overview = events.Overview{Runs: 30, ByStatus: map[string]int{"running": 28, "paused": 2}, Completed: 812, Target: 1800,
		SamplesPerMinute: 95.5, ETASeconds: 620, LastEventID: "0000000000000007-0000000000000001"}
	f := newConfigFixture(t, withEvents(ev))
	if got := decodeInto[events.Overview](t, f.get("/api/overview", http.StatusOK)); !reflect.DeepEqual(got, ev.overview) {
		t.Errorf("overview = %+v, want %+v", got, ev.overview)
	}
	ev.overview = events.Overview{Runs: 30, ByStatus: map[string]int{"paused": 30}, Completed: 812, Target: 1800}
	if body := f.get("/api/overview", http.StatusOK).Body.String(); strings.Contains(body, "eta_seconds") || !strings.Contains(body, `"by_status":{"paused":30}`) {
		t.Errorf("overview with nothing progressing: %s", body)
	}
}

func TestListRunsAppliesEveryFilter(t *testing.T) {
	lastProgress := time.Date(2026, 3, 1, 10, 0, 0, 0, time.UTC)
	running := runOf("1", "urgency", contract.StatusRunning)
	running.LastProgress, running.WebUI = lastProgress, "http://temporal:8233/namespaces/default/workflows/annotation-1-urgency"
	running.StartedAt, running.Completed, running.OK, running.SamplesPerMinute = lastProgress.Add(-time.Hour), 3, 2, 12.5
	notStarted := runOf("2", "intensity", "not_started")
	notStarted.Enabled = false
	ev := newFakeEvents(running, runOf("1", "intensity", contract.StatusPaused), runOf("2", "urgency", contract.StatusFailed), notStarted)
	f := newConfigFixture(t, withEvents(ev))

	for query, want := range map[string][]string{
		"":                            {"annotation-1-urgency", "annotation-1-intensity", "annotation-2-urgency", "annotation-2-intensity"},
		"?annotator=1":                {"annotation-1-urgency", "annotation-1-intensity"},
		"?domain=urgency":             {"annotation-1-urgency", "annotation-2-urgency"},
		"?status=paused":              {"annotation-1-intensity"},
		"?status=not_started":         {"annotation-2-intensity"},
		"?annotator=2&domain=urgency": {"annotation-2-urgency"},
		"?annotator=2&status=paused":  {},
		"?status=completed":           {},
		"?annotator=9":                {},
	} {
		rec := f.get("/api/runs"+query, http.StatusOK)
		if got := workflowIDs(decodeInto[runsReply](t, rec).Runs); !slices.Equal(got, want) {
			t.Errorf("/api/runs%s = %v, want %v", query, got, want)
		}
		if len(want) == 0 && !strings.Contains(rec.Body.String(), `"runs":[]`) {
			t.Errorf("/api/runs%s: %s", query, rec.Body.String())
		}
	}
	got := decodeInto[runsReply](t, f.get("/api/runs?annotator=1&domain=urgency", http.StatusOK)).Runs
	if len(got) != 1 || !reflect.DeepEqual(got[0], running) {
		t.Errorf("run = %+v, want %+v", got, running)
	}
	body := f.get("/api/runs?status=not_started", http.StatusOK).Body.String()
	if !strings.Contains(body, `"enabled":false`) || strings.Contains(body, "web_ui") || strings.Contains(body, "last_progress") {
		t.Errorf("a run without a workflow: %s", body)
	}
}

func TestListRunsRefusesBadFilters(t *testing.T) {
	f := newConfigFixture(t, withEvents(newFakeEvents(runOf("1", "urgency", contract.StatusRunning))))
	for query, location := range map[string]string{
		"domain=mood":                          "query.domain",
		"domain=Urgency":                       "query.domain",
		"status=sleeping":                      "query.status",
		"annotator=" + strings.Repeat("1", 65): "query.annotator",
	} {
		wantProblem(t, f.get("/api/runs?"+query, http.StatusUnprocessableEntity), location)
	}
}

// runWithErrors stores 30 annotations of 1/urgency, 25 of them bad, plus bad ones of other
// runs, and returns the seqs of 1/urgency's bad ones, newest first.
func runWithErrors(f *configFixture) []int64 {
	var ids []string
	for i := range 30 {
		ids = append(ids, fmt.Sprintf("s%02d", i))
	}
	f.importSamples(ids, nil)
	var bad []int64
	for i, id := range ids {
		a := store.Annotation{Annotator: "1", Domain: "urgency", SampleID: id, Status: store.StatusOK, Label: "LEVEL_1"}
		switch i % 6 {
		case 1, 4:
			a.Status, a.Error, a.Label = store.StatusError, "503 from the provider", ""
		case 2:
			a.Status, a.ParseError, a.Label = store.StatusMalformed, "no JSON object in the reply", ""
		case 3, 5:
			a.Status, a.Label = store.StatusBlocked, ""
		}
		seq := f.annotate(a)
		if a.Status != store.StatusOK {
			bad = append(bad, seq)
		}
		// Bad rows of other runs, interleaved, never show.
		f.annotate(store.Annotation{Annotator: "2", Domain: "urgency", SampleID: id, Status: store.StatusError})
		f.annotate(store.Annotation{Annotator: "1", Domain: "intensity", SampleID: id, Status: store.StatusMalformed})
	}
	slices.Reverse(bad)
	return bad
}

type runReply struct {
	events.Run
	RecentErrors []Annotation `json:"recent_errors"`
}

func TestGetRunShowsItsNewestTwentyErrorsFromTheStore(t *testing.T) {
	run := runOf("1", "urgency", contract.StatusRunning)
	f := newConfigFixture(t, withEvents(newFakeEvents(runOf("2", "urgency", contract.StatusRunning), run)))
	bad := runWithErrors(f)
	if len(bad) != 25 {
		t.Fatalf("%d bad rows", len(bad))
	}
	got := decodeInto[runReply](t, f.get("/api/runs/annotation-1-urgency", http.StatusOK))
	if !reflect.DeepEqual(got.Run, run) {
		t.Errorf("run = %+v, want %+v", got.Run, run)
	}
	var seqs []int64
	for _, a := range got.RecentErrors {
		seqs = append(seqs, a.Seq)
		if a.Annotator != "1" || a.Domain != "urgency" || a.Status == store.StatusOK || a.Text != "text of "+a.SampleID {
			t.Errorf("recent error %+v", a)
		}
		if a.Status == store.StatusError && a.Error != "503 from the provider" || a.Status == store.StatusMalformed && a.ParseError == "" {
			t.Errorf("recent error lacks its reason: %+v", a)
		}
	}
	if !slices.Equal(seqs, bad[:20]) {
		t.Errorf("recent errors %v, want %v", seqs, bad[:20])
	}

	// A run with no bad annotation has an empty list, not null.
	body := f.get("/api/runs/annotation-2-urgency", http.StatusOK).Body.String()
	if !strings.Contains(body, `"recent_errors":[{`) {
		t.Errorf("2/urgency: %s", body)
	}
	g := newConfigFixture(t, withEvents(newFakeEvents(run)))
	if body := g.get("/api/runs/annotation-1-urgency", http.StatusOK).Body.String(); !strings.Contains(body, `"recent_errors":[]`) {
		t.Errorf("a run without errors: %s", body)
	}
}

func TestGetRunAnswers404ForARunNotInTheConfigAnd422ForABadID(t *testing.T) {
	f := newConfigFixture(t, withEvents(newFakeEvents(runOf("1", "urgency", contract.StatusRunning))))
	p := decodeInto[problemReply](t, f.get("/api/runs/annotation-9-urgency", http.StatusNotFound))
	if p.Detail != `no run "annotation-9-urgency" in the config` {
		t.Errorf("404 = %+v", p)
	}
	for _, id := range []string{"run-1", "annotation-1-Urgency", "annotation--urgency", "annotation-1-urgency2", "quota-annotator-1"} {
		wantProblem(t, f.get("/api/runs/"+id, http.StatusUnprocessableEntity), "path.id")
	}
}

type healthReply struct {
	OK           bool         `json:"ok"`
	Failed       []events.Run `json:"failed"`
	Stalled      []events.Run `json:"stalled"`
	WaitingQuota []Waiting    `json:"waiting_quota"`
}

func TestHealthNamesFailedStalledAndWaitingRuns(t *testing.T) {
	f := newConfigFixture(t)
	hb := f.load().Global.HeartbeatTimeout
	now := time.Now().UTC()
	at := func(annotator, domain, status string, lastProgress, startedAt time.Time) events.Run {
		r := runOf(annotator, domain, status)
		r.LastProgress, r.StartedAt = lastProgress, startedAt
		return r
	}
	until := now.Add(40 * time.Second).Truncate(time.Second)
	waiting := runOf("3", "urgency", contract.StatusWaitingQuota)
	waiting.NextTry = until
	ev := newFakeEvents(
		at("1", "urgency", contract.StatusRunning, now.Add(-2*hb), now.Add(-time.Hour)),       // stalled
		at("1", "therapeutic", contract.StatusRunning, now.Add(-hb/2), now.Add(-time.Hour)),   // progressing
		at("1", "intensity", contract.StatusRunning, time.Time{}, now.Add(-2*hb)),             // stalled since its start
		at("1", "adjunct", contract.StatusRunning, time.Time{}, now.Add(-hb/2)),               // just started
		at("1", "modality", contract.StatusRunning, time.Time{}, time.Time{}),                 // nothing known
		at("1", "redressal", contract.StatusPaused, now.Add(-10*hb), now.Add(-10*hb)),         // paused, not stalled
		at("2", "urgency", contract.StatusFailed, now.Add(-10*hb), now.Add(-10*hb)),           // failed
		at("2", "therapeutic", contract.StatusWaitingRetry, now.Add(-10*hb), now.Add(-10*hb)), // waits on its own
		waiting,
	)
	f = newConfigFixture(t, withEvents(ev))
	rec := f.get("/api/health", http.StatusOK)
	got := decodeInto[healthReply](t, rec)
	if got.OK || !slices.Equal(workflowIDs(got.Failed), []string{"annotation-2-urgency"}) ||
		!slices.Equal(workflowIDs(got.Stalled), []string{"annotation-1-urgency", "annotation-1-intensity"}) ||
		!reflect.DeepEqual(got.WaitingQuota, []Waiting{{Run: "annotation-3-urgency", Until: until}}) {
		t.Errorf("health = %s", rec.Body.String())
	}

	// Only progressing, paused and waiting runs: healthy, with empty lists.
	ev = newFakeEvents(at("1", "therapeutic", contract.StatusRunning, now.Add(-hb/2), now.Add(-time.Hour)),
		at("1", "redressal", contract.StatusPaused, now.Add(-10*hb), now.Add(-10*hb)))
	body := strings.TrimSpace(newConfigFixture(t, withEvents(ev)).get("/api/health", http.StatusOK).Body.String())
	if body != `{"ok":true,"failed":[],"stalled":[],"waiting_quota":[]}` {
		t.Errorf("healthy: %s", body)
	}
}

func TestHealthUsesTheConfiguredHeartbeatTimeout(t *testing.T) {
	now := time.Now().UTC()
	r := runOf("1", "urgency", contract.StatusRunning)
	r.LastProgress = now.Add(-30 * time.Second)
	f := newConfigFixture(t, withEvents(newFakeEvents(r)))
	if got := decodeInto[healthReply](t, f.get("/api/health", http.StatusOK)); !got.OK {
		t.Errorf("stalled within the default 60 s timeout: %+v", got)
	}
	f.writeFile("settings.json", `{"global": {"heartbeat_timeout_seconds": 20, "request_timeout_seconds": 10}, "annotators": {"1": {}}}`)
	if got := decodeInto[healthReply](t, f.get("/api/health", http.StatusOK)); got.OK || len(got.Stalled) != 1 {
		t.Errorf("not stalled past a 20 s timeout: %+v", got)
	}
	f.writeFile("settings.json", `{"global": {"batch_size": "many"}}`)
	f.get("/api/health", http.StatusServiceUnavailable)
}

func TestQuotaListsEachPoolsState(t *testing.T) {
	slot := time.Date(2026, 3, 1, 10, 0, 4, 0, time.UTC)
	ev := newFakeEvents()
	ev.quota = []events.QuotaView{
		{Started: true, QuotaStatus: contract.QuotaStatus{Pool: "annotator-1", RequestsPerMinute: 15, RequestsPerDay: 1500, TokensPerMinute: 1000,
			DayZone: "America/Los_Angeles", CallsThisMinute: 3, CallsToday: 120, NextFreeSlot: slot, PenaltyUntil: slot.Add(time.Minute), Held: 2}},
		{QuotaStatus: contract.QuotaStatus{Pool: "annotator-2"}},
	}
	f := newConfigFixture(t, withEvents(ev))
	rec := f.get("/api/quota", http.StatusOK)
	got := decodeInto[struct {
		Pools []events.QuotaView `json:"pools"`
	}](t, rec)
	if !reflect.DeepEqual(got.Pools, ev.quota) {
		t.Errorf("pools = %+v, want %+v", got.Pools, ev.quota)
	}
	for _, want := range []string{`"calls_this_minute":3`, `"calls_today":120`, `"held":2`, `"started":true`, `"started":false`, `"penalty_until":"2026-03-01T10:01:04Z"`} {
		if !strings.Contains(rec.Body.String(), want) {
			t.Errorf("the reply lacks %s: %s", want, rec.Body.String())
		}
	}
	ev.quota = nil
	if body := strings.TrimSpace(f.get("/api/quota", http.StatusOK).Body.String()); body != `{"pools":[]}` {
		t.Errorf("no pools: %s", body)
	}
}

type tokensReply struct {
	Annotators []Tokens `json:"annotators"`
}

func TestTokensSumEachAnnotatorsStoredAnnotations(t *testing.T) {
	ev := newFakeEvents()
	ev.setReady(false) // the tokens come from the store alone
	f := newConfigFixture(t, withEvents(ev))
	if body := strings.TrimSpace(f.get("/api/tokens", http.StatusOK).Body.String()); body != `{"annotators":[]}` {
		t.Errorf("an empty store: %s", body)
	}
	f.importSamples([]string{"s1", "s2"}, nil)
	for _, a := range []store.Annotation{
		{Annotator: "1", Domain: "urgency", SampleID: "s1", Status: store.StatusOK, InputTokens: 100, OutputTokens: 7},
		{Annotator: "1", Domain: "urgency", SampleID: "s2", Status: store.StatusMalformed, InputTokens: 110, OutputTokens: 40},
		{Annotator: "1", Domain: "intensity", SampleID: "s1", Status: store.StatusOK, InputTokens: 90, OutputTokens: 5},
		{Annotator: "10", Domain: "urgency", SampleID: "s1", Status: store.StatusOK, InputTokens: 1, OutputTokens: 1},
		{Annotator: "2", Domain: "adjunct", SampleID: "s1", Status: store.StatusError},
		{Annotator: "2", Domain: "urgency", SampleID: "s2", Status: store.StatusOK, InputTokens: 50, OutputTokens: 3},
	} {
		f.annotate(a)
	}
	got := decodeInto[tokensReply](t, f.get("/api/tokens", http.StatusOK))
	want := []Tokens{
		{Annotator: "1", InputTokens: 300, OutputTokens: 52, Calls: 3},
		{Annotator: "10", InputTokens: 1, OutputTokens: 1, Calls: 1},
		{Annotator: "2", InputTokens: 50, OutputTokens: 3, Calls: 2},
	}
	if !reflect.DeepEqual(got.Annotators, want) {
		t.Errorf("tokens = %+v, want %+v", got.Annotators, want)
	}
}

func TestMonitoringAnswers503UntilTheEventsAreReady(t *testing.T) {
	ev := newFakeEvents(runOf("1", "urgency", contract.StatusRunning))
	ev.setReady(false)
	routes := []string{"/api/overview", "/api/runs", "/api/runs/annotation-1-urgency", "/api/health", "/api/quota"}
	for name, f := range map[string]*configFixture{
		"loading":   newConfigFixture(t, withEvents(ev)),
		"no events": newConfigFixture(t),
	} {
		for _, route := range routes {
			p := decodeInto[problemReply](t, f.get(route, http.StatusServiceUnavailable))
			if !strings.Contains(p.Detail, "still being loaded") {
				t.Errorf("%s, %s: %+v", name, route, p)
			}
		}
	}
	ev.setReady(true)
	f := newConfigFixture(t, withEvents(ev))
	for _, route := range routes {
		f.get(route, http.StatusOK)
	}
}
