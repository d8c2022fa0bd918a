package analysis

import (
	"context"
	"fmt"
	"math"
	"path/filepath"
	"testing"

	"github.com/mhannotator/mha/internal/labels"
	"github.com/mhannotator/mha/internal/store"
)

// krippendorff2011 is the 4 coders × 12 units example of Krippendorff (2011), values 1..5,
// 0 missing. Stored as urgency LEVEL_<v-1>: a shift changes neither α nominal nor ordinal.
var krippendorff2011 = map[string][12]int{
	"A": {1, 2, 3, 3, 2, 1, 4, 1, 2, 0, 0, 0},
	"B": {1, 2, 3, 3, 2, 2, 4, 1, 2, 5, 0, 3},
	"C": {0, 3, 3, 3, 2, 3, 4, 2, 2, 5, 1, 0},
	"D": {1, 2, 3, 3, 2, 4, 4, 1, 2, 5, 1, 0},
}

func seeded(t *testing.T) store.Store {
	t.Helper()
	ctx := context.Background()
	st, err := store.Open(ctx, filepath.Join(t.TempDir(), "mha.db"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	var samples []store.Sample
	for u := range 12 {
		samples = append(samples, store.Sample{ID: fmt.Sprintf("u%02d", u+1), Text: fmt.Sprintf("text %d", u+1), Position: u})
	}
	if _, err := st.ImportSamples(ctx, samples); err != nil {
		t.Fatal(err)
	}
	for coder, values := range krippendorff2011 {
		for u, v := range values {
			a := store.Annotation{Annotator: coder, Domain: string(labels.Urgency), SampleID: samples[u].ID, Status: store.StatusOK,
				Label: fmt.Sprintf("LEVEL_%d", v-1), RawReply: fmt.Sprintf("<<LEVEL_%d>>", v-1)}
			if v == 0 {
				// A malformed reply is a missing value, never a category.
				a.Status, a.Label, a.RawReply = store.StatusMalformed, "", "I am not sure."
			}
			if err := st.UpsertAnnotation(ctx, a); err != nil {
				t.Fatal(err)
			}
		}
	}
	return st
}

func TestAgreementReadsOkLabelsOnly(t *testing.T) {
	st := seeded(t)
	a := &Analyzer{Store: st, Resamples: 200}
	got, err := a.Agreement(context.Background(), []labels.Domain{labels.Urgency, labels.Intensity})
	if err != nil {
		t.Fatal(err)
	}
	r := got[0].Report
	if r == nil {
		t.Fatalf("urgency: %s", got[0].Error)
	}
	if math.Abs(r.AlphaNominal.Value-0.7434) > 5e-5 || math.Abs(r.AlphaOrdinal.Value-0.8154) > 5e-5 {
		t.Errorf("α nominal %.4f, ordinal %.4f; want 0.7434 and 0.8154", r.AlphaNominal.Value, r.AlphaOrdinal.Value)
	}
	if r.Coverage.Pairable != 11 || r.AlphaOrdinal.CI == nil {
		t.Errorf("pairable samples %d (want 11: unit 12 has one value), CI %v", r.Coverage.Pairable, r.AlphaOrdinal.CI)
	}
	// Nothing stored for intensity: an error that says so, not figures.
	if got[1].Report != nil || got[1].Error == "" {
		t.Errorf("intensity: %+v; want an error", got[1])
	}
}

func TestDisputedCarriesTextAndEveryReply(t *testing.T) {
	st := seeded(t)
	a := &Analyzer{Store: st}
	top, err := a.Disputed(context.Background(), labels.Urgency, 2)
	if err != nil {
		t.Fatal(err)
	}
	// Unit 6 (1, 2, 3, 4): four different levels, the least agreement of all.
	if len(top) != 2 || top[0].SampleID != "u06" || top[0].Text != "text 6" || len(top[0].Replies) != 4 || top[0].Agreement != 0.25 {
		t.Fatalf("disputed %+v", top)
	}
	if r := top[0].Replies[0]; r.Annotator != "A" || r.RawReply != "<<LEVEL_0>>" {
		t.Errorf("first reply %+v; want annotator A's raw reply", r)
	}
	all, err := a.Consensus(context.Background(), labels.Urgency)
	if err != nil {
		t.Fatal(err)
	}
	// In dataset order; unit 1 is LEVEL_0 (three said 1; C's reply was malformed).
	if len(all) != 11 || all[0].SampleID != "u01" || all[0].Consensus != "LEVEL_0" {
		t.Errorf("consensus %+v", all[:2])
	}
	if _, err := a.Consensus(context.Background(), labels.Redressal); !IsFreeText(err) {
		t.Errorf("redressal consensus error %v; want free text", err)
	}
}

// A new annotation empties the cache: the figures follow the store.
func TestAgreementFollowsTheStore(t *testing.T) {
	st := seeded(t)
	a := &Analyzer{Store: st, Resamples: -1}
	before, _ := a.Agreement(context.Background(), []labels.Domain{labels.Urgency})
	if err := st.UpsertAnnotation(context.Background(), store.Annotation{Annotator: "A", Domain: "urgency", SampleID: "u12",
		Status: store.StatusOK, Label: "LEVEL_0"}); err != nil {
		t.Fatal(err)
	}
	after, _ := a.Agreement(context.Background(), []labels.Domain{labels.Urgency})
	if before[0].Report.Coverage.Pairable != 11 || after[0].Report.Coverage.Pairable != 12 {
		t.Errorf("pairable before %d, after %d; want 11 then 12", before[0].Report.Coverage.Pairable, after[0].Report.Coverage.Pairable)
	}
}
