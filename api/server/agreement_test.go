package server

import (
	"encoding/csv"
	"encoding/json"
	"net/http"
	"strings"
	"testing"

	"github.com/xuri/excelize/v2"

	"github.com/mhannotator/mha/internal/store"
)

type agreementReply struct {
	Domains []struct {
		Domain string `json:"domain"`
		Error  string `json:"error"`
		Report *struct {
			Cohen struct {
				Pairs []struct {
					A, B  string
					Kappa struct {
						Value *float64 `json:"value"`
						Units int      `json:"units"`
					} `json:"kappa"`
				} `json:"pairs"`
			} `json:"cohen_kappa"`
			AlphaNominal struct {
				Value *float64 `json:"value"`
				CI    *struct{ Low, High float64 }
			} `json:"alpha_nominal"`
		} `json:"report"`
	} `json:"domains"`
}

type consensusReply struct {
	Samples []struct {
		SampleID  string  `json:"sample_id"`
		Consensus string  `json:"consensus"`
		Tie       bool    `json:"tie"`
		Agreement float64 `json:"agreement"`
		Text      string  `json:"text"`
		Replies   []struct{ Annotator, RawReply string }
	} `json:"samples"`
}

func TestAgreementAndConsensusRoutes(t *testing.T) {
	f := newConfigFixture(t)
	f.importSamples([]string{"a", "b", "c", "d"}, nil)
	// Annotator 1: L1 L1 L2 L2 (c malformed once, then asked again: ok); annotator 2: L1 L2 L2 L2.
	for _, r := range []struct{ ann, sample, label string }{
		{"1", "a", "LEVEL_1"}, {"1", "b", "LEVEL_1"}, {"1", "c", "LEVEL_2"}, {"1", "d", "LEVEL_2"},
		{"2", "a", "LEVEL_1"}, {"2", "b", "LEVEL_2"}, {"2", "c", "LEVEL_2"}, {"2", "d", "LEVEL_2"},
	} {
		f.annotate(store.Annotation{Annotator: r.ann, Domain: "urgency", SampleID: r.sample, Status: store.StatusOK, Label: r.label, RawReply: "<<" + r.label + ">>"})
	}
	f.annotate(store.Annotation{Annotator: "3", Domain: "urgency", SampleID: "a", Status: store.StatusError, Error: "HTTP 400"})

	got := decodeInto[agreementReply](t, f.get("/api/agreement?domain=urgency", http.StatusOK))
	if len(got.Domains) != 1 || got.Domains[0].Report == nil {
		t.Fatalf("reply %+v", got)
	}
	// p_o = 3/4; p_e = (2/4)(1/4) + (2/4)(3/4) = 1/2; κ = 1/2. The error row of annotator 3
	// is a missing value, so there is one pair.
	pairs := got.Domains[0].Report.Cohen.Pairs
	if len(pairs) != 1 || pairs[0].Kappa.Value == nil || *pairs[0].Kappa.Value != 0.5 || pairs[0].Kappa.Units != 4 {
		t.Fatalf("pairs %+v; want κ(1,2) = 0.5 over 4 samples", pairs)
	}
	if ci := got.Domains[0].Report.AlphaNominal.CI; ci == nil || ci.Low > ci.High {
		t.Errorf("α nominal interval %+v", ci)
	}

	all := decodeInto[agreementReply](t, f.get("/api/agreement", http.StatusOK))
	if len(all.Domains) != 6 || all.Domains[1].Domain != "therapeutic" || all.Domains[1].Error == "" {
		t.Errorf("every domain: %+v; want six, therapeutic with an error (nothing labelled)", all.Domains)
	}

	cons := decodeInto[consensusReply](t, f.get("/api/consensus/urgency", http.StatusOK))
	if len(cons.Samples) != 4 || cons.Samples[1].SampleID != "b" || !cons.Samples[1].Tie || cons.Samples[0].Consensus != "LEVEL_1" {
		t.Fatalf("consensus %+v; want 4 samples in order, b a tie, a LEVEL_1", cons.Samples)
	}
	top := decodeInto[consensusReply](t, f.get("/api/consensus/urgency?disputed=1", http.StatusOK))
	if len(top.Samples) != 1 || top.Samples[0].SampleID != "b" || top.Samples[0].Text != "text of b" || len(top.Samples[0].Replies) != 2 {
		t.Errorf("most disputed %+v; want b with its text and both replies", top.Samples)
	}
	rec := f.get("/api/consensus/redressal", http.StatusUnprocessableEntity)
	if !strings.Contains(rec.Body.String(), "free text") {
		t.Errorf("redressal: %s", rec.Body.String())
	}
	f.get("/api/agreement?domain=colour", http.StatusUnprocessableEntity)

	// The exports: the workbook, the consensus dataset, Label Studio's tasks and config.
	rec = f.get("/api/agreement/export", http.StatusOK)
	book, err := excelize.OpenReader(rec.Body)
	if err != nil {
		t.Fatalf("the workbook does not open: %v", err)
	}
	if sheets := strings.Join(book.GetSheetList(), ","); sheets != "summary,agreement,urgency" {
		t.Errorf("workbook sheets %s", sheets)
	}
	book.Close()
	rec = f.get("/api/consensus/urgency/export?format=csv", http.StatusOK)
	rows, err := csv.NewReader(rec.Body).ReadAll()
	if err != nil || len(rows) != 5 || strings.Join(rows[0][7:], ",") != "label_1,label_2" || rows[2][4] != "true" {
		t.Errorf("consensus CSV %q (%v)", rows, err)
	}
	rec = f.get("/api/consensus/urgency/export?format=labelstudio&disputed=1", http.StatusOK)
	var tasks []struct {
		Data        struct{ Text string }
		Predictions []struct {
			ModelVersion string `json:"model_version"`
		}
	}
	if err := json.Unmarshal(rec.Body.Bytes(), &tasks); err != nil || len(tasks) != 1 || tasks[0].Data.Text != "text of b" || len(tasks[0].Predictions) != 2 {
		t.Errorf("Label Studio tasks %s (%v)", rec.Body.String(), err)
	}
	rec = f.get("/api/labelstudio/urgency/config", http.StatusOK)
	if !strings.Contains(rec.Body.String(), `<Choice value="LEVEL_4"`) || !strings.HasPrefix(rec.Header().Get("Content-Type"), "application/xml") {
		t.Errorf("labeling config %s", rec.Body.String())
	}
}
