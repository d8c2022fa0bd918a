package export

import (
	"bytes"
	"math"
	"strconv"
	"strings"
	"testing"

	"github.com/xuri/excelize/v2"

	"github.com/mhannotator/mha/internal/agreement"
	"github.com/mhannotator/mha/internal/analysis"
	"github.com/mhannotator/mha/internal/labels"
	"github.com/mhannotator/mha/internal/store"
)

func TestAgreementWorkbookReadsBack(t *testing.T) {
	rows := []agreement.Label{
		{SampleID: "a", Annotator: "1", Value: "LEVEL_1"}, {SampleID: "a", Annotator: "2", Value: "LEVEL_1"},
		{SampleID: "b", Annotator: "1", Value: "LEVEL_1"}, {SampleID: "b", Annotator: "2", Value: "LEVEL_2"},
		{SampleID: "c", Annotator: "1", Value: "LEVEL_2"}, {SampleID: "c", Annotator: "2", Value: "LEVEL_2"},
		{SampleID: "d", Annotator: "1", Value: "LEVEL_2"}, {SampleID: "d", Annotator: "2", Value: "LEVEL_2"},
	}
	rep, err := agreement.Domain(labels.Urgency, rows, agreement.Options{Resamples: 100, Seed: 1})
	if err != nil {
		t.Fatal(err)
	}
	long := strings.Repeat("é", maxCellUnits) + "tail"
	samples := []analysis.Sample{
		{SampleConsensus: agreement.SampleConsensus{SampleID: "a", Labels: 2, Consensus: "LEVEL_1", Agreement: 1}, Text: long,
			Replies: []analysis.Reply{{Annotator: "1", Status: store.StatusOK, Label: "LEVEL_1"}, {Annotator: "2", Status: store.StatusOK, Label: "LEVEL_1"}}},
		{SampleConsensus: agreement.SampleConsensus{SampleID: "b", Labels: 2, Tie: true, Tied: []string{"LEVEL_1", "LEVEL_2"}, Agreement: 0.5}, Text: "bell\x07",
			Replies: []analysis.Reply{{Annotator: "1", Status: store.StatusOK, Label: "LEVEL_1"}, {Annotator: "2", Status: store.StatusMalformed}}},
	}
	book := AgreementBook{
		Domains: []analysis.Agreement{{Domain: labels.Urgency, Report: &rep}, {Domain: labels.Therapeutic, Error: "nothing pairable"}},
		Samples: map[labels.Domain][]analysis.Sample{labels.Urgency: samples},
	}
	var buf bytes.Buffer
	if err := WriteAgreementXLSX(&buf, book); err != nil {
		t.Fatal(err)
	}
	f, err := excelize.OpenReader(&buf)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	if got := strings.Join(f.GetSheetList(), ","); got != "summary,agreement,urgency" {
		t.Fatalf("sheets %s", got)
	}
	sum, _ := f.GetRows("summary")
	if len(sum) != 3 || sum[1][0] != "urgency" || sum[1][2] != "alpha_ordinal" || sum[2][0] != "therapeutic" || sum[2][10] != "nothing pairable" {
		t.Errorf("summary rows %q", sum)
	}
	raw, _ := f.GetCellValue("summary", "D2", excelize.Options{RawCellValue: true})
	if v, err := strconv.ParseFloat(raw, 64); err != nil || math.Abs(v-rep.AlphaOrdinal.Value) > 1e-12 {
		t.Errorf("headline value %q; want α ordinal %v", raw, rep.AlphaOrdinal.Value)
	}
	ag, _ := f.GetRows("agreement")
	var matrix []string
	for i, r := range ag {
		if len(r) > 0 && r[0] == "Cohen's κ" {
			matrix = append(matrix, strings.Join(r, "|"), strings.Join(ag[i+1], "|"), strings.Join(ag[i+2], "|"))
		}
	}
	// p_o = 3/4, p_e = 1/2: κ = 0.5.
	if len(matrix) != 3 || matrix[0] != "Cohen's κ|1|2" || matrix[1] != "1|1|0.5" || matrix[2] != "2|0.5|1" {
		t.Errorf("κ matrix %q", matrix)
	}
	urg, _ := f.GetRows("urgency")
	if got := strings.Join(urg[0], "|"); got != "sample_id|text|label_1|label_2|consensus|tie|agreement|text (cont. 2)" {
		t.Fatalf("urgency header %s", got)
	}
	if urg[1][1]+urg[1][7] != long {
		t.Errorf("the long text did not survive its split (%d + %d characters)", len(urg[1][1]), len(urg[1][7]))
	}
	if urg[2][1] != "bell\uFFFD" || urg[2][3] != "(malformed)" || urg[2][4] != "LEVEL_1 | LEVEL_2" || urg[2][5] != "TRUE" {
		t.Errorf("tie row %q", urg[2])
	}
}
