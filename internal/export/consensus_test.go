package export

import (
	"bytes"
	"encoding/csv"
	"encoding/json"
	"encoding/xml"
	"strings"
	"testing"

	"github.com/mhannotator/mha/internal/agreement"
	"github.com/mhannotator/mha/internal/analysis"
	"github.com/mhannotator/mha/internal/labels"
	"github.com/mhannotator/mha/internal/store"
)

func sampleOf(id, text, consensus string, replies ...analysis.Reply) analysis.Sample {
	return analysis.Sample{SampleConsensus: agreement.SampleConsensus{SampleID: id, Labels: len(replies), Consensus: consensus, Agreement: 0.5},
		Text: text, Replies: replies}
}

func TestConsensusDatasetAsJSONLAndCSV(t *testing.T) {
	samples := []analysis.Sample{
		sampleOf("s1", "line one,\n\"quoted\"", "TA-1, TA-3",
			analysis.Reply{Annotator: "1", Status: store.StatusOK, Label: "TA-1, TA-3"},
			analysis.Reply{Annotator: "2", Status: store.StatusMalformed, RawReply: "no tag"},
			analysis.Reply{Annotator: "3", Status: store.StatusOK, Label: "TA-1"}),
	}
	var jl bytes.Buffer
	if err := WriteConsensus(&jl, JSONL, labels.Therapeutic, []string{"1", "2", "3"}, samples); err != nil {
		t.Fatal(err)
	}
	var rec ConsensusRecord
	if err := json.Unmarshal(jl.Bytes(), &rec); err != nil {
		t.Fatal(err)
	}
	if rec.Text != samples[0].Text || rec.Consensus != "TA-1, TA-3" || len(rec.Labels) != 2 || rec.Labels["3"] != "TA-1" {
		t.Errorf("JSONL record %+v", rec)
	}
	var cs bytes.Buffer
	if err := WriteConsensus(&cs, CSV, labels.Therapeutic, []string{"1", "2", "3"}, samples); err != nil {
		t.Fatal(err)
	}
	rows, err := csv.NewReader(&cs).ReadAll()
	if err != nil {
		t.Fatal(err)
	}
	want := []string{"s1", "therapeutic", samples[0].Text, "TA-1, TA-3", "false", "", "0.5000", "TA-1, TA-3", "", "TA-1"}
	if len(rows) != 2 || strings.Join(rows[0], "|") != "sample_id|domain|text|consensus|tie|tied|agreement|label_1|label_2|label_3" ||
		strings.Join(rows[1], "|") != strings.Join(want, "|") {
		t.Errorf("CSV rows %q", rows)
	}
	if err := WriteConsensus(&cs, XLSX, labels.Therapeutic, nil, samples); err == nil {
		t.Error("xlsx is not a consensus dataset format, but no error")
	}
}

// labelingConfig is the part of a Label Studio labeling config the tasks must fit.
type labelingConfig struct {
	Text []struct {
		Name  string `xml:"name,attr"`
		Value string `xml:"value,attr"`
	} `xml:"Text"`
	Choices []struct {
		Name   string `xml:"name,attr"`
		ToName string `xml:"toName,attr"`
		Choice string `xml:"choice,attr"`
		Values []struct {
			Value string `xml:"value,attr"`
		} `xml:"Choice"`
	} `xml:"Choices"`
	TextArea []struct {
		Name   string `xml:"name,attr"`
		ToName string `xml:"toName,attr"`
	} `xml:"TextArea"`
}

// TestLabelStudioTasksFitTheirLabelingConfig checks the tasks against Label Studio's
// documented import format (data, then predictions with model_version and a result of
// from_name, to_name, type and value) and against the labeling config written for them: every
// name resolves, $text finds its data key, every choice is one the config offers.
func TestLabelStudioTasksFitTheirLabelingConfig(t *testing.T) {
	cases := map[labels.Domain][]analysis.Sample{
		labels.Urgency: {sampleOf("u1", "text one", "LEVEL_3",
			analysis.Reply{Annotator: "1", Status: store.StatusOK, Label: "LEVEL_3"},
			analysis.Reply{Annotator: "2", Status: store.StatusError})},
		labels.Adjunct: {sampleOf("a1", "text two", "NONE",
			analysis.Reply{Annotator: "1", Status: store.StatusOK, Label: "NONE"},
			analysis.Reply{Annotator: "2", Status: store.StatusOK, Label: "ADJ-2, ADJ-8"})},
		labels.Redressal: {sampleOf("r1", "text three", "",
			analysis.Reply{Annotator: "1", Status: store.StatusOK, Label: `["see a GP","sleep hygiene"]`})},
	}
	for d, samples := range cases {
		var cfg labelingConfig
		if err := xml.Unmarshal([]byte(LabelStudioConfig(d)), &cfg); err != nil {
			t.Fatalf("%s: the labeling config is not XML: %v", d, err)
		}
		var buf bytes.Buffer
		if err := WriteLabelStudio(&buf, d, samples); err != nil {
			t.Fatal(err)
		}
		var tasks []map[string]json.RawMessage
		if err := json.Unmarshal(buf.Bytes(), &tasks); err != nil {
			t.Fatalf("%s: not a JSON array of tasks: %v", d, err)
		}
		if len(cfg.Text) != 1 || !strings.HasPrefix(cfg.Text[0].Value, "$") {
			t.Fatalf("%s: config text objects %+v", d, cfg.Text)
		}
		dataKey := strings.TrimPrefix(cfg.Text[0].Value, "$")
		for _, raw := range tasks {
			var data map[string]any
			if err := json.Unmarshal(raw["data"], &data); err != nil || data[dataKey] == "" || data[dataKey] == nil {
				t.Errorf("%s: task data %s lacks %q", d, raw["data"], dataKey)
			}
			var preds []struct {
				ModelVersion string `json:"model_version"`
				Result       []struct {
					FromName string `json:"from_name"`
					ToName   string `json:"to_name"`
					Type     string `json:"type"`
					Value    struct {
						Choices []string `json:"choices"`
						Text    []string `json:"text"`
					} `json:"value"`
				} `json:"result"`
			}
			if err := json.Unmarshal(raw["predictions"], &preds); err != nil {
				t.Fatalf("%s: predictions: %v", d, err)
			}
			okReplies := 0
			for _, r := range samples[0].Replies {
				if r.Status == store.StatusOK {
					okReplies++
				}
			}
			if len(preds) != okReplies {
				t.Errorf("%s: %d predictions; want one per ok label (%d)", d, len(preds), okReplies)
			}
			for _, p := range preds {
				if !strings.HasPrefix(p.ModelVersion, "annotator ") || len(p.Result) != 1 {
					t.Errorf("%s: prediction %+v", d, p)
					continue
				}
				res := p.Result[0]
				if res.ToName != cfg.Text[0].Name {
					t.Errorf("%s: to_name %q is not the text object %q", d, res.ToName, cfg.Text[0].Name)
				}
				switch res.Type {
				case "choices":
					if len(cfg.Choices) != 1 || cfg.Choices[0].Name != res.FromName || len(res.Value.Choices) == 0 {
						t.Errorf("%s: choices result %+v against %+v", d, res, cfg.Choices)
						continue
					}
					offered := map[string]bool{}
					for _, c := range cfg.Choices[0].Values {
						offered[c.Value] = true
					}
					for _, c := range res.Value.Choices {
						if !offered[c] {
							t.Errorf("%s: choice %q is not in the labeling config", d, c)
						}
					}
					if cfg.Choices[0].Choice == "single" && len(res.Value.Choices) != 1 {
						t.Errorf("%s: a single-choice control got %v", d, res.Value.Choices)
					}
				case "textarea":
					if len(cfg.TextArea) != 1 || cfg.TextArea[0].Name != res.FromName || len(res.Value.Text) != 2 {
						t.Errorf("%s: textarea result %+v against %+v", d, res, cfg.TextArea)
					}
				default:
					t.Errorf("%s: result type %q", d, res.Type)
				}
			}
		}
	}
}
