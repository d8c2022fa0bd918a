package export

// Consensus datasets and Label Studio tasks: one domain's samples with every annotator's label
// and the consensus, for researchers to take elsewhere.

import (
	"encoding/csv"
	"encoding/json"
	"fmt"
	"html"
	"io"
	"strconv"
	"strings"

	"github.com/mhannotator/mha/internal/analysis"
	"github.com/mhannotator/mha/internal/labels"
	"github.com/mhannotator/mha/internal/store"
)

// ConsensusRecord is one sample of a consensus dataset (one JSONL line).
type ConsensusRecord struct {
	SampleID  string            `json:"sample_id"`
	Domain    labels.Domain     `json:"domain"`
	Text      string            `json:"text"`
	Consensus string            `json:"consensus"`
	Tie       bool              `json:"tie"`
	Tied      []string          `json:"tied,omitempty"`
	Agreement float64           `json:"agreement"`
	Labels    map[string]string `json:"labels"` // ok labels by annotator
}

// WriteConsensus writes samples as JSONL or CSV. The CSV has a label column per annotator of
// annotators, in that order; a missing or not-ok label is empty.
func WriteConsensus(w io.Writer, format Format, d labels.Domain, annotators []string, samples []analysis.Sample) error {
	switch format {
	case JSONL:
		enc := json.NewEncoder(w)
		enc.SetEscapeHTML(false)
		for _, s := range samples {
			if err := enc.Encode(consensusRecord(d, s)); err != nil {
				return err
			}
		}
		return nil
	case CSV:
		cw := csv.NewWriter(w)
		header := []string{"sample_id", "domain", "text", "consensus", "tie", "tied", "agreement"}
		for _, a := range annotators {
			header = append(header, "label_"+a)
		}
		if err := cw.Write(header); err != nil {
			return err
		}
		for _, s := range samples {
			r := consensusRecord(d, s)
			rec := []string{r.SampleID, string(d), r.Text, r.Consensus, strconv.FormatBool(r.Tie), strings.Join(r.Tied, " | "),
				strconv.FormatFloat(r.Agreement, 'f', 4, 64)}
			for _, a := range annotators {
				rec = append(rec, r.Labels[a])
			}
			if err := cw.Write(rec); err != nil {
				return err
			}
		}
		cw.Flush()
		return cw.Error()
	}
	return fmt.Errorf("a consensus dataset is jsonl or csv, not %s", format)
}

func consensusRecord(d labels.Domain, s analysis.Sample) ConsensusRecord {
	r := ConsensusRecord{SampleID: s.SampleID, Domain: d, Text: s.Text, Consensus: s.Consensus, Tie: s.Tie, Tied: s.Tied,
		Agreement: s.Agreement, Labels: map[string]string{}}
	for _, reply := range s.Replies {
		if reply.Status == store.StatusOK {
			r.Labels[reply.Annotator] = reply.Label
		}
	}
	return r
}

// Label Studio names: the labeling config's text object and its control.
const (
	lsText    = "text"
	lsControl = "label"
)

// LabelStudioTask is one task of Label Studio's JSON import format: the sample in data, and
// each annotator's label as a prediction whose model_version names the annotator.
type LabelStudioTask struct {
	Data        LabelStudioData         `json:"data"`
	Predictions []LabelStudioPrediction `json:"predictions"`
}

// LabelStudioData is a task's data; $text in the labeling config refers to Text.
type LabelStudioData struct {
	Text      string        `json:"text"`
	SampleID  string        `json:"sample_id"`
	Domain    labels.Domain `json:"domain"`
	Consensus string        `json:"consensus"`
	Agreement float64       `json:"agreement"`
}

// LabelStudioPrediction is one annotator's label.
type LabelStudioPrediction struct {
	ModelVersion string              `json:"model_version"`
	Result       []LabelStudioResult `json:"result"`
}

// LabelStudioResult is a region of a prediction: choices for coded domains, a textarea for
// redressal.
type LabelStudioResult struct {
	FromName string         `json:"from_name"`
	ToName   string         `json:"to_name"`
	Type     string         `json:"type"`
	Value    map[string]any `json:"value"`
}

// WriteLabelStudio writes samples as a JSON array of Label Studio tasks for the labeling config
// LabelStudioConfig(d) describes. Tasks are ordered as given (the most disputed first, say),
// so a reviewer can start with them.
func WriteLabelStudio(w io.Writer, d labels.Domain, samples []analysis.Sample) error {
	tasks := make([]LabelStudioTask, 0, len(samples))
	for _, s := range samples {
		t := LabelStudioTask{Data: LabelStudioData{Text: s.Text, SampleID: s.SampleID, Domain: d, Consensus: s.Consensus, Agreement: s.Agreement},
			Predictions: []LabelStudioPrediction{}}
		for _, r := range s.Replies {
			if r.Status != store.StatusOK {
				continue
			}
			res, err := labelStudioResult(d, r.Label)
			if err != nil {
				return fmt.Errorf("sample %s, annotator %s: %w", s.SampleID, r.Annotator, err)
			}
			t.Predictions = append(t.Predictions, LabelStudioPrediction{ModelVersion: "annotator " + r.Annotator, Result: []LabelStudioResult{res}})
		}
		tasks = append(tasks, t)
	}
	enc := json.NewEncoder(w)
	enc.SetEscapeHTML(false)
	enc.SetIndent("", " ")
	return enc.Encode(tasks)
}

func labelStudioResult(d labels.Domain, label string) (LabelStudioResult, error) {
	r := LabelStudioResult{FromName: lsControl, ToName: lsText}
	if d == labels.Redressal {
		var points []string
		if err := json.Unmarshal([]byte(label), &points); err != nil {
			return r, fmt.Errorf("redressal label is not a JSON list of points: %w", err)
		}
		r.Type, r.Value = "textarea", map[string]any{"text": points}
		return r, nil
	}
	choices := []string{}
	for c := range strings.SplitSeq(label, ",") {
		if c = strings.TrimSpace(c); c != "" {
			choices = append(choices, c)
		}
	}
	r.Type, r.Value = "choices", map[string]any{"choices": choices}
	return r, nil
}

// LabelStudioConfig is the labeling config the tasks of domain d fit: the text, and a choice
// per catalog code (several for the multi-label domains, NONE among adjunct's), or a text area
// for redressal's points.
func LabelStudioConfig(d labels.Domain) string {
	var b strings.Builder
	b.WriteString("<View>\n")
	fmt.Fprintf(&b, "  <Header value=\"%s\"/>\n", html.EscapeString(string(d)))
	fmt.Fprintf(&b, "  <Text name=\"%s\" value=\"$text\"/>\n", lsText)
	if d == labels.Redressal {
		fmt.Fprintf(&b, "  <TextArea name=\"%s\" toName=\"%s\" rows=\"4\" maxSubmissions=\"10\"/>\n", lsControl, lsText)
	} else {
		choice := "multiple"
		if d == labels.Urgency || d == labels.Intensity {
			choice = "single"
		}
		fmt.Fprintf(&b, "  <Choices name=\"%s\" toName=\"%s\" choice=\"%s\" showInline=\"false\">\n", lsControl, lsText, choice)
		for _, c := range labels.Catalog[d] {
			fmt.Fprintf(&b, "    <Choice value=\"%s\" hint=\"%s\"/>\n", c.Code, html.EscapeString(c.Description))
		}
		if d == labels.Adjunct {
			fmt.Fprintf(&b, "    <Choice value=\"%s\" hint=\"no adjunct service needed\"/>\n", labels.NoAdjunct)
		}
		b.WriteString("  </Choices>\n")
	}
	b.WriteString("</View>\n")
	return b.String()
}
