package agreement

import (
	"errors"
	"math"
	"reflect"
	"strings"
	"testing"

	"github.com/mhannotator/mha/internal/labels"
)

// sample lists one sample's labels, annotators a1, a2, ... in order; "." is no label.
func sample(id string, values ...string) []Label {
	var rows []Label
	for i, v := range values {
		if v != "." {
			rows = append(rows, Label{id, "a" + string(rune('1'+i)), v})
		}
	}
	return rows
}

func consensusOf(t *testing.T, d labels.Domain, samples ...[]Label) map[string]SampleConsensus {
	t.Helper()
	var rows []Label
	for _, s := range samples {
		rows = append(rows, s...)
	}
	out := map[string]SampleConsensus{}
	for _, c := range must(Consensus(d, rows)) {
		out[c.SampleID] = c
	}
	return out
}

func TestConsensusSingleLabel(t *testing.T) {
	got := consensusOf(t, labels.Urgency,
		sample("majority", "LEVEL_2", "LEVEL_2", "LEVEL_0", "LEVEL_2"),
		sample("tie", "LEVEL_3", "LEVEL_1", "LEVEL_3", "LEVEL_1"),
		sample("all differ", "LEVEL_4", "LEVEL_0", "."),
		sample("lonely", ".", "LEVEL_1"),
	)
	want := map[string]SampleConsensus{
		"majority":   {SampleID: "majority", Labels: 4, Consensus: "LEVEL_2", Agreement: 0.75},
		"tie":        {SampleID: "tie", Labels: 4, Tie: true, Tied: []string{"LEVEL_1", "LEVEL_3"}, Agreement: 0.5},
		"all differ": {SampleID: "all differ", Labels: 2, Tie: true, Tied: []string{"LEVEL_0", "LEVEL_4"}, Agreement: 0.5},
	}
	if !reflect.DeepEqual(got, want) {
		t.Fatalf("consensus\n got %+v\nwant %+v", got, want)
	}
}

func TestConsensusMultiLabelTakesCodesAtHalfOrMore(t *testing.T) {
	got := consensusOf(t, labels.Therapeutic,
		// TA-1 and TA-3 are chosen by exactly half (2 of 4) and count; TA-2 by 1 of 4 does not.
		sample("half", "TA-1, TA-2", "TA-1", "TA-3", "TA-3"),
		sample("nothing shared", "TA-1", "TA-2", "TA-3"),
		sample("unanimous", "TA-4, TA-9", "TA-9, TA-4"),
	)
	half := got["half"]
	// Jaccard similarity to {TA-1, TA-3}: 1/3, 1/2, 1/2, 1/2.
	if half.Consensus != "TA-1, TA-3" || half.Tie || math.Abs(half.Agreement-11.0/24) > 1e-15 {
		t.Fatalf("half: %+v", half)
	}
	if c := got["nothing shared"]; c.Consensus != "" || c.Tie || c.Agreement != 0 {
		t.Fatalf("no code reaches half: %+v", c)
	}
	if c := got["unanimous"]; c.Consensus != "TA-4, TA-9" || c.Agreement != 1 {
		t.Fatalf("unanimous: %+v", c)
	}
}

func TestConsensusAdjunctNONE(t *testing.T) {
	got := consensusOf(t, labels.Adjunct,
		sample("none", "NONE", "NONE", "ADJ-1"),
		sample("all none", "NONE", "NONE"),
		sample("some", "ADJ-2", "ADJ-2, ADJ-5", "NONE", "ADJ-5"),
	)
	if c := got["none"]; c.Consensus != "NONE" || math.Abs(c.Agreement-2.0/3) > 1e-15 {
		t.Fatalf("none: %+v", c)
	}
	if c := got["all none"]; c.Consensus != "NONE" || c.Agreement != 1 {
		t.Fatalf("all none: %+v", c)
	}
	// ADJ-2 and ADJ-5 have 2 of 4 each; similarities 1/2, 1, 0, 1/2.
	if c := got["some"]; c.Consensus != "ADJ-2, ADJ-5" || c.Agreement != 0.5 {
		t.Fatalf("some: %+v", c)
	}
}

func TestDisputedOrdersByAgreementThenSample(t *testing.T) {
	cs := must(Consensus(labels.Intensity, concat(
		sample("s5", "INT-1", "INT-1", "INT-1"),
		sample("s4", "INT-1", "INT-2", "INT-3"),
		sample("s3", "INT-2", "INT-2", "INT-3"),
		sample("s2", "INT-4", "INT-5", "INT-4"),
		sample("s1", "INT-5", "INT-3", "INT-1"),
	)))
	var ids []string
	for _, c := range Disputed(cs, 4) {
		ids = append(ids, c.SampleID)
	}
	if want := []string{"s1", "s4", "s2", "s3"}; !reflect.DeepEqual(ids, want) {
		t.Fatalf("disputed %v, want %v", ids, want)
	}
	if cs[0].SampleID != "s1" {
		t.Fatal("Disputed must not reorder its input")
	}
	if len(Disputed(cs, 100)) != 5 || len(Disputed(cs, 0)) != 0 || len(Disputed(cs, -1)) != 0 || len(Disputed(nil, 3)) != 0 {
		t.Fatal("Disputed should clamp n")
	}
}

func concat(parts ...[]Label) []Label {
	var out []Label
	for _, p := range parts {
		out = append(out, p...)
	}
	return out
}

func TestConsensusEdges(t *testing.T) {
	if _, err := Consensus(labels.Redressal, sample("s", `["a","b"]`, `["c","d"]`)); !errors.Is(err, ErrFreeText) {
		t.Fatalf("redressal: err = %v", err)
	}
	if cs, err := Consensus(labels.Urgency, sample("s", "LEVEL_1")); err != nil || len(cs) != 0 {
		t.Fatalf("a single label: %v, %v", cs, err)
	}
	if _, err := Consensus(labels.Modality, sample("s", "MOD-1", "MOD-9")); err == nil || !strings.Contains(err.Error(), "MOD-9") {
		t.Fatalf("a value outside the catalog: err = %v", err)
	}
}
