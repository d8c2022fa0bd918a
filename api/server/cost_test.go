package server

import (
	"net/http"
	"strings"
	"testing"

	"github.com/mhannotator/mha/internal/config"
	"github.com/mhannotator/mha/internal/cost"
	"github.com/mhannotator/mha/internal/store"
)

const costSettings = `{
  "global": {"provider": "gemini", "model_name": "flash", "max_output_tokens": 100},
  "annotators": {"1": {"urgency": {"enabled": true, "target_count": 3}}, "2": {"urgency": {"enabled": false, "target_count": 3}}},
  "prices": {"flash": {"input_per_million": 2.0, "output_per_million": 8.0}}
}`

func TestCostAndEstimate(t *testing.T) {
	f := newConfigFixture(t)
	f.writeFile(config.SettingsFile, costSettings)
	f.writeFile(config.KeysFile, `{"annotator_1": "`+f.secret("key-one-secret")+`", "annotator_2": "`+f.secret("key-two-secret")+`"}`)
	f.importSamples([]string{"s1", "s2", "s3", "s4"}, nil)
	f.annotate(store.Annotation{Annotator: "1", Domain: "urgency", SampleID: "s1", Status: store.StatusOK, Label: "LEVEL_1",
		InputTokens: 500_000, OutputTokens: 25_000, Model: "flash"})

	used := decodeInto[cost.Usage](t, f.get("/api/cost", http.StatusOK))
	// 0.5 M at 2 $ + 0.025 M at 8 $ = 1.20 $.
	if used.Total.Cost == nil || *used.Total.Cost != 1.2 || len(used.Runs) != 1 || used.Runs[0].Model != "flash" {
		t.Fatalf("cost %+v; want 1.20 $ over one run of flash", used)
	}

	est := decodeInto[cost.Estimates](t, f.call(http.MethodPost, "/api/cost/estimate", map[string]any{"all": true}, http.StatusOK))
	// Only the enabled run; two samples left of its target of three; 25 000 output tokens a
	// sample so far.
	if len(est.Runs) != 1 || est.Runs[0].Annotator != "1" || est.Runs[0].Samples != 2 || est.Runs[0].OutputTokens != 50_000 || est.Runs[0].OutputTokensMax != 200 {
		t.Fatalf("estimate %+v", est)
	}
	rec := f.call(http.MethodPost, "/api/cost/estimate", map[string]any{"annotator": "9"}, http.StatusUnprocessableEntity)
	if !strings.Contains(rec.Body.String(), "body.annotator") {
		t.Errorf("an unknown annotator: %s", rec.Body.String())
	}
}
