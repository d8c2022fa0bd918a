package cost

import (
	"context"
	"math"
	"path/filepath"
	"strings"
	"testing"

	"github.com/mhannotator/mha/internal/config"
	"github.com/mhannotator/mha/internal/labels"
	"github.com/mhannotator/mha/internal/llm"
	"github.com/mhannotator/mha/internal/prompts"
	"github.com/mhannotator/mha/internal/store"
)

func testConfig(t *testing.T) *config.Config {
	t.Helper()
	cfg, err := config.Parse([]byte(`{
		"global": {"provider": "gemini", "model_name": "flash", "max_output_tokens": 200},
		"annotators": {
			"1": {"urgency": {"enabled": true, "target_count": 3}, "therapeutic": {"enabled": true, "target_count": 3}},
			"2": {"urgency": {"enabled": true, "target_count": 3}, "model_name": "unpriced"},
			"3": {"urgency": {"enabled": true, "target_count": 3}, "provider": "offline"}},
		"prices": {"flash": {"input_per_million": 0.30, "output_per_million": 2.50}}}`),
		[]byte(`{"annotator_1": "k1", "annotator_2": "k2"}`), func(string) string { return "" })
	if err != nil {
		t.Fatal(err)
	}
	return cfg
}

func near(a *float64, want float64) bool { return a != nil && math.Abs(*a-want) < 1e-12 }

func TestUsedPricesEachRunAndSumsThem(t *testing.T) {
	cfg := testConfig(t)
	r := Used(cfg, []store.RunStats{
		{Annotator: "1", Domain: "urgency", Calls: 10, InputTokens: 1_000_000, OutputTokens: 100_000},
		{Annotator: "1", Domain: "therapeutic", Calls: 5, InputTokens: 500_000, OutputTokens: 0},
		{Annotator: "3", Domain: "urgency", Calls: 7, InputTokens: 9_999, OutputTokens: 99},
	})
	// Annotator 1 urgency: 0.30 + 0.25; therapeutic: 0.15; the offline annotator is free.
	if !near(r.Runs[0].Cost, 0.55) || !near(r.Runs[1].Cost, 0.15) || !near(r.Runs[2].Cost, 0) {
		t.Fatalf("run costs %v %v %v; want 0.55 0.15 0", *r.Runs[0].Cost, *r.Runs[1].Cost, *r.Runs[2].Cost)
	}
	if len(r.Annotators) != 2 || r.Annotators[0].Annotator != "1" || !near(r.Annotators[0].Cost, 0.70) || r.Annotators[0].Annotations != 15 {
		t.Errorf("annotators %+v; want annotator 1 at 0.70 over 15 annotations first", r.Annotators)
	}
	if len(r.Domains) != 2 || r.Domains[1].Domain != "urgency" || !near(r.Domains[1].Cost, 0.55) || r.Domains[1].InputTokens != 1_009_999 {
		t.Errorf("domains %+v; want urgency at 0.55 with 1 009 999 input tokens", r.Domains)
	}
	if !near(r.Total.Cost, 0.70) || r.Total.Annotations != 22 || len(r.Unpriced) != 0 {
		t.Errorf("total %+v, unpriced %v; want 0.70 over 22", r.Total, r.Unpriced)
	}

	// A model without a price makes its run's cost, and every sum over it, unknown.
	r = Used(cfg, []store.RunStats{
		{Annotator: "1", Domain: "urgency", Calls: 1, InputTokens: 1000},
		{Annotator: "2", Domain: "urgency", Calls: 1, InputTokens: 1000},
	})
	if r.Runs[1].Cost != nil || r.Total.Cost != nil || r.Domains[0].Cost != nil || !near(r.Annotators[0].Cost, 0.0003) {
		t.Errorf("with an unpriced model: %+v", r)
	}
	if len(r.Unpriced) != 1 || r.Unpriced[0] != "unpriced" {
		t.Errorf("unpriced = %v; want [unpriced]", r.Unpriced)
	}
}

func TestEstimateCountsTheRemainingSamplesPrompts(t *testing.T) {
	ctx := context.Background()
	cfg := testConfig(t)
	st, err := store.Open(ctx, filepath.Join(t.TempDir(), "mha.db"))
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	texts := []string{"I cannot sleep before exams.", strings.Repeat("a long text ", 50), "short", "beyond the target"}
	var samples []store.Sample
	for i, tx := range texts {
		samples = append(samples, store.Sample{ID: string(rune('a' + i)), Text: tx, Position: i})
	}
	if _, err := st.ImportSamples(ctx, samples); err != nil {
		t.Fatal(err)
	}
	// Sample a is done, with a 50-token reply.
	if err := st.UpsertAnnotation(ctx, store.Annotation{Annotator: "1", Domain: "urgency", SampleID: "a", Status: store.StatusOK,
		Label: "LEVEL_1", InputTokens: 300, OutputTokens: 50}); err != nil {
		t.Fatal(err)
	}
	lib := prompts.Library{Dir: t.TempDir()}
	e := Estimator{Config: cfg, Store: st, Prompts: lib}
	got, err := e.Runs(ctx, []Pair{{"1", labels.Urgency}, {"2", labels.Urgency}})
	if err != nil {
		t.Fatal(err)
	}
	tmpl, err := prompts.Builtin(labels.Urgency)
	if err != nil {
		t.Fatal(err)
	}
	wantIn := int64(llm.ApproxTokens(prompts.Render(tmpl, texts[1])) + llm.ApproxTokens(prompts.Render(tmpl, texts[2])))
	one := got.Runs[0]
	if one.Samples != 2 || one.InputTokens != wantIn || one.OutputTokens != 100 || one.OutputTokensMax != 400 {
		t.Fatalf("annotator 1: %+v; want 2 samples, %d input tokens, 100 expected and 400 at most output tokens", one, wantIn)
	}
	if want := (float64(wantIn)*0.30 + 100*2.50) / 1e6; !near(one.Cost, want) {
		t.Errorf("cost %v; want %v", *one.Cost, want)
	}
	if want := (float64(wantIn)*0.30 + 400*2.50) / 1e6; !near(one.CostMax, want) {
		t.Errorf("max cost %v; want %v", *one.CostMax, want)
	}
	// Annotator 2 has stored nothing: the budget is the expectation; its model has no price.
	two := got.Runs[1]
	if two.Samples != 3 || two.OutputTokens != 600 || two.Cost != nil || got.Total.Cost != nil || got.Total.Samples != 5 {
		t.Errorf("annotator 2: %+v, total %+v", two, got.Total)
	}
}

func TestCachedTokensAreCheaperAndReportedAsAShare(t *testing.T) {
	cfg := testConfig(t)
	cached := 0.03
	p := cfg.Prices["flash"]
	p.CachedInputPerMillion = &cached
	cfg.Prices["flash"] = p
	r := Used(cfg, []store.RunStats{{Annotator: "1", Domain: "urgency", Calls: 10, InputTokens: 1_000_000, CachedTokens: 750_000}})
	// 250 000 at 0.30 + 750 000 at 0.03 = 0.075 + 0.0225.
	if !near(r.Runs[0].Cost, 0.0975) || r.Runs[0].CacheHit != 0.75 || r.Total.CacheHit != 0.75 || r.Annotators[0].CachedTokens != 750_000 {
		t.Errorf("run %+v, total %+v", r.Runs[0], r.Total)
	}
}
