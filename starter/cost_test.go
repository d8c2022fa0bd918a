package main

import (
	"context"
	"encoding/json"
	"strings"
	"testing"

	"github.com/mhannotator/mha/internal/cost"
	"github.com/mhannotator/mha/internal/store"
)

const pricedSettings = `{
  "global": {"provider": "gemini", "model_name": "flash", "max_output_tokens": 100},
  "annotators": {"1": {"urgency": {"enabled": true, "target_count": 2}}},
  "prices": {"flash": {"input_per_million": 1.0, "output_per_million": 10.0}}
}`

func TestCostPricesTheStoredTokens(t *testing.T) {
	f := newFixture(t)
	f.write(t, "config/settings.json", pricedSettings)
	f.write(t, "config/api_keys.json", `{"annotator_1": "k"}`)
	st := f.openStore(t)
	ctx := context.Background()
	if _, err := st.ImportSamples(ctx, []store.Sample{{ID: "s1", Text: "one", Position: 0}, {ID: "s2", Text: "two", Position: 1}}); err != nil {
		t.Fatal(err)
	}
	if err := st.UpsertAnnotation(ctx, store.Annotation{Annotator: "1", Domain: "urgency", SampleID: "s1", Status: store.StatusOK,
		Label: "LEVEL_2", InputTokens: 200_000, OutputTokens: 30_000}); err != nil {
		t.Fatal(err)
	}
	out := f.run(t, "cost", "--json")
	if out.code != exitOK {
		t.Fatalf("cost exited %d: %s", out.code, out.stderr)
	}
	var r cost.Usage
	if err := json.Unmarshal([]byte(out.stdout), &r); err != nil {
		t.Fatalf("%v in %s", err, out.stdout)
	}
	// 0.2 M input at 1 $ + 0.03 M output at 10 $ = 0.50 $.
	if r.Total.Cost == nil || *r.Total.Cost != 0.5 || r.Total.InputTokens != 200_000 {
		t.Fatalf("total %+v; want 0.50 $ over 200 000 input tokens", r.Total)
	}
	out = f.run(t, "cost")
	if !strings.Contains(out.stdout, "0.50") || !strings.Contains(out.stdout, "flash") {
		t.Errorf("table lacks the cost: %s", out.stdout)
	}

	// The dry run estimates the one sample left and starts nothing (no server is running).
	out = f.run(t, "start", "--all", "--dry-run")
	if out.code != exitOK {
		t.Fatalf("start --dry-run exited %d: %s", out.code, out.stderr)
	}
	lines := strings.Split(strings.TrimSpace(out.stdout), "\n")
	if !strings.Contains(out.stdout, "nothing was started") || !strings.HasPrefix(lines[1], "1") || !strings.Contains(lines[1], " 1 ") {
		t.Errorf("dry run output:\n%s", out.stdout)
	}
}
