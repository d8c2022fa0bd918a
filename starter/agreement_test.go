package main

import (
	"context"
	"encoding/csv"
	"encoding/json"
	"path/filepath"
	"strings"
	"testing"

	"github.com/xuri/excelize/v2"

	"github.com/mhannotator/mha/internal/store"
)

// labelled stores two annotators' urgency labels of four samples: κ = 0.5 (p_o 3/4, p_e 1/2).
func labelled(t *testing.T) fixture {
	t.Helper()
	f := newFixture(t)
	st := f.openStore(t)
	ctx := context.Background()
	var samples []store.Sample
	for i, id := range []string{"a", "b", "c", "d"} {
		samples = append(samples, store.Sample{ID: id, Text: "text " + id, Position: i})
	}
	if _, err := st.ImportSamples(ctx, samples); err != nil {
		t.Fatal(err)
	}
	for _, r := range [][3]string{{"1", "a", "LEVEL_1"}, {"1", "b", "LEVEL_1"}, {"1", "c", "LEVEL_2"}, {"1", "d", "LEVEL_2"},
		{"2", "a", "LEVEL_1"}, {"2", "b", "LEVEL_2"}, {"2", "c", "LEVEL_2"}, {"2", "d", "LEVEL_2"}} {
		if err := st.UpsertAnnotation(ctx, store.Annotation{Annotator: r[0], Domain: "urgency", SampleID: r[1], Status: store.StatusOK, Label: r[2]}); err != nil {
			t.Fatal(err)
		}
	}
	return f
}

func TestAgreementPrintsTheFigures(t *testing.T) {
	f := labelled(t)
	out := f.run(t, "agreement", "--domain", "urgency", "--json")
	if out.code != exitOK {
		t.Fatalf("agreement exited %d: %s", out.code, out.stderr)
	}
	var got struct {
		Domains []struct {
			Report struct {
				Cohen struct {
					Pairs []struct {
						Kappa struct{ Value float64 }
					}
				} `json:"cohen_kappa"`
			}
		}
	}
	if err := json.Unmarshal([]byte(out.stdout), &got); err != nil || len(got.Domains) != 1 || got.Domains[0].Report.Cohen.Pairs[0].Kappa.Value != 0.5 {
		t.Fatalf("agreement --json: %v\n%s", err, out.stdout)
	}
	out = f.run(t, "agreement", "--disputed", "1")
	for _, want := range []string{"== urgency", "κ 1–2", "0.5000", "alpha_ordinal (headline)", "most disputed:", "- b (agreement 0.50, consensus tie: LEVEL_1 / LEVEL_2)",
		"== therapeutic", "no sample has ok labels from two annotators yet"} {
		if !strings.Contains(out.stdout, want) {
			t.Errorf("the tables lack %q:\n%s", want, out.stdout)
		}
	}
	path := filepath.Join(f.dir, "agreement.xlsx")
	if out = f.run(t, "agreement", "--xlsx", path); out.code != exitOK {
		t.Fatalf("agreement --xlsx exited %d: %s", out.code, out.stderr)
	}
	book, err := excelize.OpenFile(path)
	if err != nil {
		t.Fatal(err)
	}
	defer book.Close()
	if sheets := strings.Join(book.GetSheetList(), ","); sheets != "summary,agreement,urgency" {
		t.Errorf("workbook sheets %s", sheets)
	}
	if out = f.run(t, "agreement", "--domain", "colour"); out.code != exitUsage || !strings.Contains(out.stderr, "unknown domain") {
		t.Errorf("a bad domain: %d %s", out.code, out.stderr)
	}
}

func TestConsensusWritesTheDataset(t *testing.T) {
	f := labelled(t)
	out := f.run(t, "consensus", "--domain", "urgency")
	rows, err := csv.NewReader(strings.NewReader(out.stdout)).ReadAll()
	if out.code != exitOK || err != nil || len(rows) != 5 || rows[1][3] != "LEVEL_1" || rows[2][4] != "true" {
		t.Fatalf("consensus csv (%d, %v):\n%s%s", out.code, err, out.stdout, out.stderr)
	}
	out = f.run(t, "consensus", "--domain", "urgency", "--format", "labelstudio", "--disputed", "1")
	var tasks []struct {
		Data struct {
			SampleID string `json:"sample_id"`
		}
		Predictions []json.RawMessage
	}
	if err := json.Unmarshal([]byte(out.stdout), &tasks); err != nil || len(tasks) != 1 || tasks[0].Data.SampleID != "b" || len(tasks[0].Predictions) != 2 {
		t.Errorf("labelstudio tasks (%v):\n%s", err, out.stdout)
	}
	if out = f.run(t, "consensus", "--domain", "adjunct", "--labelstudio-config"); !strings.Contains(out.stdout, `<Choice value="NONE"`) {
		t.Errorf("labeling config:\n%s", out.stdout)
	}
	if out = f.run(t, "consensus", "--domain", "redressal"); out.code != exitFail || !strings.Contains(out.stderr, "free text") {
		t.Errorf("redressal: %d %s", out.code, out.stderr)
	}
	if out = f.run(t, "consensus", "--domain", "urgency", "--format", "xml"); out.code != exitUsage {
		t.Errorf("a bad format: %d %s", out.code, out.stderr)
	}
}
