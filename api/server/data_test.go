package server

import (
	"fmt"
	"net/http"
	"net/url"
	"reflect"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/mhannotator/mha/internal/store"
)

// dataT0 is when the first seeded annotation was stored; each next one is a minute later.
var dataT0 = time.Date(2026, 3, 1, 9, 0, 0, 0, time.UTC)

// seeded is one annotation of seedData, with the seq the store gave it.
type seeded struct {
	store.Annotation
	seq int64
}

// seedData stores five samples and nine annotations of two annotators in two domains, one a
// minute from dataT0, and returns them in the order stored (ascending seq).
func seedData(f *configFixture) []seeded {
	f.t.Helper()
	f.importSamples([]string{"S1", "S2", "S3", "S4", "S5"}, map[string]string{
		"S1": "I feel hopeless and tired", "S2": "Exam stress again", "S3": "Need help with sleep",
		"S4": "Nothing to report", "S5": "Panic attacks at night",
	})
	rows := []store.Annotation{
		{Annotator: "1", Domain: "urgency", SampleID: "S1", Status: store.StatusOK, Label: "LEVEL_3", RawReply: `{"label": "LEVEL_3"}`},
		{Annotator: "1", Domain: "urgency", SampleID: "S2", Status: store.StatusMalformed, RawReply: "maybe panic, LEVEL_2?",
			ParseError: "no JSON object in the reply", Model: "gemma-3-27b-it", PromptHash: "abc123", LatencyMS: 850, InputTokens: 120, OutputTokens: 9, Attempt: 2},
		{Annotator: "1", Domain: "therapeutic", SampleID: "S1", Status: store.StatusOK, Label: "TA-1, TA-3", RawReply: `{"label": "TA-1, TA-3"}`},
		{Annotator: "1", Domain: "therapeutic", SampleID: "S2", Status: store.StatusOK, Label: "TA-30", RawReply: `{"label": "TA-30"}`},
		{Annotator: "2", Domain: "urgency", SampleID: "S1", Status: store.StatusOK, Label: "LEVEL_2", RawReply: `{"label": "LEVEL_2"}`},
		{Annotator: "2", Domain: "urgency", SampleID: "S3", Status: store.StatusError, Error: "429 quota exceeded"},
		{Annotator: "2", Domain: "therapeutic", SampleID: "S3", Status: store.StatusBlocked, ValidityError: "blocked: SAFETY"},
		{Annotator: "2", Domain: "therapeutic", SampleID: "S5", Status: store.StatusOK, Label: "TA-3", RawReply: `{"label": "TA-3", "why": "PANIC noted"}`},
		{Annotator: "1", Domain: "urgency", SampleID: "S3", Status: store.StatusOK, Label: "LEVEL_3", RawReply: `{"label": "LEVEL_3"}`},
	}
	out := make([]seeded, len(rows))
	for i, a := range rows {
		a.CreatedAt = dataT0.Add(time.Duration(i) * time.Minute)
		if a.Attempt == 0 {
			a.Attempt = 1
		}
		out[i] = seeded{Annotation: a, seq: f.annotate(a)}
		out[i].Model = "gemma-3-27b-it"
	}
	return out
}

// newest returns the seqs of rows i..., newest first.
func newest(rows []seeded, is ...int) []int64 {
	var seqs []int64
	for _, i := range is {
		seqs = append(seqs, rows[i].seq)
	}
	slices.Sort(seqs)
	slices.Reverse(seqs)
	return seqs
}

type annotationsReply struct {
	Items      []Annotation `json:"items"`
	NextBefore int64        `json:"next_before"`
}

func seqsOf(items []Annotation) []int64 {
	seqs := make([]int64, len(items))
	for i, a := range items {
		seqs[i] = a.Seq
	}
	return seqs
}

func minute(n int) string {
	return url.QueryEscape(dataT0.Add(time.Duration(n) * time.Minute).Format(time.RFC3339))
}

func TestListAnnotationsAppliesEveryFilterNewestFirst(t *testing.T) {
	f := newConfigFixture(t)
	rows := seedData(f)
	for _, tt := range []struct {
		query string
		want  []int64
	}{
		{"", newest(rows, 0, 1, 2, 3, 4, 5, 6, 7, 8)},
		{"annotator=2", newest(rows, 4, 5, 6, 7)},
		{"domain=therapeutic", newest(rows, 2, 3, 6, 7)},
		{"status=ok", newest(rows, 0, 2, 3, 4, 7, 8)},
		{"status=blocked", newest(rows, 6)},
		{"label=TA-3", newest(rows, 2, 7)}, // not TA-30
		{"label=TA-30", newest(rows, 3)},
		{"label=LEVEL_3", newest(rows, 0, 8)},
		{"label=TA", nil},
		{"q=HOPELESS", newest(rows, 0, 2, 4)}, // S1's text, any case
		{"q=panic", newest(rows, 1, 7)},       // a raw reply, and S5's text
		{"q=" + url.QueryEscape("help with"), newest(rows, 5, 6, 8)},
		{"from=" + minute(2) + "&to=" + minute(5), newest(rows, 2, 3, 4)}, // from included, to excluded
		{"from=" + minute(7), newest(rows, 7, 8)},
		{"to=" + minute(1), newest(rows, 0)},
		{"annotator=1&domain=therapeutic&status=ok&label=TA-1", newest(rows, 2)},
		{"annotator=3", nil},
	} {
		rec := f.get("/api/annotations?"+tt.query, http.StatusOK)
		got := decodeInto[annotationsReply](t, rec)
		if !slices.Equal(seqsOf(got.Items), tt.want) || got.NextBefore != 0 {
			t.Errorf("?%s: seqs %v (next %d), want %v", tt.query, seqsOf(got.Items), got.NextBefore, tt.want)
		}
		if len(tt.want) == 0 && !strings.Contains(rec.Body.String(), `"items":[]`) {
			t.Errorf("?%s: %s", tt.query, rec.Body.String())
		}
	}
}

func TestListAnnotationsShowsEveryFieldWithItsSampleText(t *testing.T) {
	f := newConfigFixture(t)
	rows := seedData(f)
	got := decodeInto[annotationsReply](t, f.get("/api/annotations?annotator=1&domain=urgency&status=malformed", http.StatusOK))
	want := Annotation{Seq: rows[1].seq, Annotator: "1", Domain: "urgency", SampleID: "S2", Position: 1, Text: "Exam stress again",
		Status: "malformed", RawReply: "maybe panic, LEVEL_2?", ParseError: "no JSON object in the reply", Model: "gemma-3-27b-it",
		PromptHash: "abc123", LatencyMS: 850, InputTokens: 120, OutputTokens: 9, Attempt: 2, CreatedAt: dataT0.Add(time.Minute)}
	if len(got.Items) != 1 || !reflect.DeepEqual(got.Items[0], want) {
		t.Errorf("items = %+v, want %+v", got.Items, want)
	}
	got = decodeInto[annotationsReply](t, f.get("/api/annotations?status=blocked", http.StatusOK))
	if len(got.Items) != 1 || got.Items[0].ValidityError != "blocked: SAFETY" || got.Items[0].Text != "Need help with sleep" || got.Items[0].Position != 2 {
		t.Errorf("blocked = %+v", got.Items)
	}
	got = decodeInto[annotationsReply](t, f.get("/api/annotations?status=error", http.StatusOK))
	if len(got.Items) != 1 || got.Items[0].Error != "429 quota exceeded" {
		t.Errorf("error = %+v", got.Items)
	}
}

func TestListAnnotationsPagesWithNextBefore(t *testing.T) {
	f := newConfigFixture(t)
	rows := seedData(f)
	all := newest(rows, 0, 1, 2, 3, 4, 5, 6, 7, 8)

	first := decodeInto[annotationsReply](t, f.get("/api/annotations?limit=4", http.StatusOK))
	if !slices.Equal(seqsOf(first.Items), all[:4]) || first.NextBefore != all[3] {
		t.Fatalf("first page %v, next %d", seqsOf(first.Items), first.NextBefore)
	}
	second := decodeInto[annotationsReply](t, f.get(fmt.Sprintf("/api/annotations?limit=4&before=%d", first.NextBefore), http.StatusOK))
	if !slices.Equal(seqsOf(second.Items), all[4:8]) || second.NextBefore != all[7] {
		t.Fatalf("second page %v, next %d", seqsOf(second.Items), second.NextBefore)
	}
	last := f.get(fmt.Sprintf("/api/annotations?limit=4&before=%d", second.NextBefore), http.StatusOK)
	if got := decodeInto[annotationsReply](t, last); !slices.Equal(seqsOf(got.Items), all[8:]) || strings.Contains(last.Body.String(), "next_before") {
		t.Fatalf("last page: %s", last.Body.String())
	}

	// A last page that is exactly full says there is no older one.
	exact := f.get(fmt.Sprintf("/api/annotations?limit=%d", len(all)), http.StatusOK)
	if got := decodeInto[annotationsReply](t, exact); len(got.Items) != len(all) || strings.Contains(exact.Body.String(), "next_before") {
		t.Fatalf("a page holding every row: %s", exact.Body.String())
	}

	// Whatever the page size, following next_before yields every row once, newest first;
	// filters hold on every page.
	for limit := 1; limit <= 10; limit++ {
		for _, filter := range []struct {
			query string
			want  []int64
		}{{"", all}, {"&status=ok", newest(rows, 0, 2, 3, 4, 7, 8)}} {
			var seen []int64
			before := int64(0)
			for pages := 0; ; pages++ {
				if pages > 10 {
					t.Fatalf("limit %d: paging does not end", limit)
				}
				target := fmt.Sprintf("/api/annotations?limit=%d%s", limit, filter.query)
				if before > 0 {
					target += fmt.Sprintf("&before=%d", before)
				}
				page := decodeInto[annotationsReply](t, f.get(target, http.StatusOK))
				if len(page.Items) > limit {
					t.Fatalf("%s: %d items", target, len(page.Items))
				}
				seen = append(seen, seqsOf(page.Items)...)
				if page.NextBefore == 0 {
					break
				}
				before = page.NextBefore
			}
			if !slices.Equal(seen, filter.want) {
				t.Errorf("limit %d%s: %v, want %v", limit, filter.query, seen, filter.want)
			}
		}
	}
	// The default page is 50.
	f.importSamples([]string{"S6"}, nil)
	for i := range 60 {
		f.annotate(store.Annotation{Annotator: fmt.Sprint(10 + i), Domain: "urgency", SampleID: "S6", Status: store.StatusOK})
	}
	if got := decodeInto[annotationsReply](t, f.get("/api/annotations", http.StatusOK)); len(got.Items) != 50 || got.NextBefore == 0 {
		t.Errorf("default page: %d items, next %d", len(got.Items), got.NextBefore)
	}
}

func TestListAnnotationsRefusesBadParameters(t *testing.T) {
	f := newConfigFixture(t)
	seedData(f)
	for _, tt := range []struct {
		query, location string
		msgs            []string
	}{
		{"from=" + minute(5) + "&to=" + minute(5), "query.to", []string{"must be after from"}},
		{"from=" + minute(5) + "&to=" + minute(2), "query.to", []string{"must be after from"}},
		{"status=pending", "query.status", nil},
		{"status=OK", "query.status", nil},
		{"domain=mood", "query.domain", nil},
		{"limit=0", "query.limit", nil},
		{"limit=501", "query.limit", nil},
		{"limit=many", "query.limit", nil},
		{"before=-1", "query.before", nil},
		{"from=yesterday", "query.from", nil},
		{"to=2026-03-01", "query.to", nil},
		{"label=" + strings.Repeat("L", 201), "query.label", nil},
		{"q=" + strings.Repeat("q", 201), "query.q", nil},
		{"annotator=" + strings.Repeat("1", 65), "query.annotator", nil},
	} {
		wantProblem(t, f.get("/api/annotations?"+tt.query, http.StatusUnprocessableEntity), tt.location, tt.msgs...)
	}
}

type sampleReply struct {
	Sample struct {
		ID       string `json:"id"`
		Text     string `json:"text"`
		Position int    `json:"position"`
	} `json:"sample"`
	Annotations []Annotation `json:"annotations"`
}

func TestGetSampleShowsEveryAnnotatorsRowsSideBySide(t *testing.T) {
	f := newConfigFixture(t)
	rows := seedData(f)
	got := decodeInto[sampleReply](t, f.get("/api/samples/S1", http.StatusOK))
	if got.Sample.ID != "S1" || got.Sample.Text != "I feel hopeless and tired" || got.Sample.Position != 0 {
		t.Errorf("sample = %+v", got.Sample)
	}
	var runs []string
	for _, a := range got.Annotations {
		runs = append(runs, fmt.Sprintf("%s/%s %s", a.Domain, a.Annotator, a.Label))
		if a.SampleID != "S1" || a.Text != got.Sample.Text {
			t.Errorf("annotation %+v", a)
		}
	}
	if want := []string{"therapeutic/1 TA-1, TA-3", "urgency/1 LEVEL_3", "urgency/2 LEVEL_2"}; !slices.Equal(runs, want) {
		t.Errorf("annotations %v, want %v", runs, want)
	}
	if got.Annotations[1].Seq != rows[0].seq || !got.Annotations[1].CreatedAt.Equal(dataT0) {
		t.Errorf("urgency/1 = %+v", got.Annotations[1])
	}

	got = decodeInto[sampleReply](t, f.get("/api/samples/S3", http.StatusOK))
	var statuses []string
	for _, a := range got.Annotations {
		statuses = append(statuses, a.Domain+"/"+a.Annotator+" "+a.Status)
	}
	if want := []string{"therapeutic/2 blocked", "urgency/1 ok", "urgency/2 error"}; got.Sample.Position != 2 || !slices.Equal(statuses, want) {
		t.Errorf("S3: position %d, %v", got.Sample.Position, statuses)
	}

	// A sample nobody annotated yet has an empty list.
	rec := f.get("/api/samples/S4", http.StatusOK)
	if !strings.Contains(rec.Body.String(), `"annotations":[]`) || !strings.Contains(rec.Body.String(), `"position":3`) {
		t.Errorf("S4: %s", rec.Body.String())
	}
}

func TestGetSampleAnswers404ForAnUnknownSample(t *testing.T) {
	f := newConfigFixture(t)
	seedData(f)
	p := decodeInto[problemReply](t, f.get("/api/samples/S9", http.StatusNotFound))
	if p.Detail != `no sample has ID "S9"` {
		t.Errorf("404 = %+v", p)
	}
	f.get("/api/samples/s1", http.StatusNotFound) // IDs are exact
	f.importSamples([]string{"with space"}, nil)
	if got := decodeInto[sampleReply](t, f.get("/api/samples/with%20space", http.StatusOK)); got.Sample.ID != "with space" {
		t.Errorf("sample = %+v", got.Sample)
	}
	wantProblem(t, f.get("/api/samples/"+strings.Repeat("x", 513), http.StatusUnprocessableEntity), "path.id")
}

type statsReply struct {
	Runs []RunStats `json:"runs"`
}

func TestStatsSumsUpEachRunWithMalformedShareAndLabels(t *testing.T) {
	f := newConfigFixture(t)
	if body := strings.TrimSpace(f.get("/api/stats", http.StatusOK).Body.String()); body != `{"runs":[]}` {
		t.Errorf("an empty store: %s", body)
	}
	seedData(f)
	got := decodeInto[statsReply](t, f.get("/api/stats", http.StatusOK))
	want := []RunStats{
		{Annotator: "1", Domain: "therapeutic", Total: 2, OK: 2, Labels: map[string]int{"TA-1, TA-3": 1, "TA-30": 1}, LastAt: dataT0.Add(3 * time.Minute)},
		{Annotator: "1", Domain: "urgency", Total: 3, OK: 2, Malformed: 1, MalformedPercent: 100.0 / 3, Labels: map[string]int{"LEVEL_3": 2},
			InputTokens: 120, OutputTokens: 9, LastAt: dataT0.Add(8 * time.Minute)},
		{Annotator: "2", Domain: "therapeutic", Total: 2, OK: 1, Blocked: 1, Labels: map[string]int{"TA-3": 1}, LastAt: dataT0.Add(7 * time.Minute)},
		{Annotator: "2", Domain: "urgency", Total: 2, OK: 1, Error: 1, Labels: map[string]int{"LEVEL_2": 1}, LastAt: dataT0.Add(5 * time.Minute)},
	}
	if !reflect.DeepEqual(got.Runs, want) {
		t.Errorf("stats =\n%+v\nwant\n%+v", got.Runs, want)
	}

	for query, want := range map[string][]string{
		"annotator=1":                            {"1/therapeutic 2", "1/urgency 3"},
		"domain=urgency":                         {"1/urgency 3", "2/urgency 2"},
		"annotator=2&domain=therapeutic":         {"2/therapeutic 2"},
		"status=malformed":                       {"1/urgency 1"},
		"label=TA-3":                             {"1/therapeutic 1", "2/therapeutic 1"},
		"q=sleep":                                {"1/urgency 1", "2/therapeutic 1", "2/urgency 1"},
		"from=" + minute(4) + "&to=" + minute(8): {"2/therapeutic 2", "2/urgency 2"},
		"annotator=9":                            nil,
	} {
		var runs []string
		for _, r := range decodeInto[statsReply](t, f.get("/api/stats?"+query, http.StatusOK)).Runs {
			runs = append(runs, fmt.Sprintf("%s/%s %d", r.Annotator, r.Domain, r.Total))
		}
		if !slices.Equal(runs, want) {
			t.Errorf("?%s: %v, want %v", query, runs, want)
		}
	}
	// Only malformed rows selected: all of them malformed.
	if got := decodeInto[statsReply](t, f.get("/api/stats?status=malformed", http.StatusOK)); got.Runs[0].MalformedPercent != 100 || len(got.Runs[0].Labels) != 0 {
		t.Errorf("malformed only: %+v", got.Runs)
	}
}

func TestStatsRefusesBadFilters(t *testing.T) {
	f := newConfigFixture(t)
	for query, location := range map[string]string{
		"from=" + minute(3) + "&to=" + minute(1): "query.to",
		"domain=mood":                            "query.domain",
		"status=fine":                            "query.status",
		"from=noon":                              "query.from",
	} {
		wantProblem(t, f.get("/api/stats?"+query, http.StatusUnprocessableEntity), location)
	}
}
