package e2e

import (
	"context"
	"encoding/json"
	"fmt"
	"math"
	"net/http"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/chromedp/chromedp"

	"github.com/mhannotator/mha/internal/labels"
	"github.com/mhannotator/mha/internal/llm/fake"
	"github.com/mhannotator/mha/internal/runs"
	"github.com/mhannotator/mha/internal/store"
)

// TestAgreementOfARealRun has three annotators label the same samples through the fake
// provider, each with its own prompt wording (so their labels differ), then asks the api for
// the urgency agreement and checks it against κ figures the test computes itself from the
// stored labels.
func TestAgreementOfARealRun(t *testing.T) {
	t.Parallel()
	ids := []string{"ag1", "ag2", "ag3"}
	keys := map[string]string{}
	fakeKeys := map[string]fake.Key{}
	spec := map[string]map[labels.Domain]int{}
	for _, id := range ids {
		keys[id] = "key-" + id
		fakeKeys["key-"+id] = fake.Key{}
		spec[id] = map[labels.Domain]int{labels.Urgency: 40}
	}
	f := startFake(t, fake.Options{Keys: fakeKeys})
	s := newStackWith(t, netGlobal(f.URL(), nil), spec, 40, nil, keys)
	for i, id := range ids {
		dir := filepath.Join(s.cfgDir, "prompts", "overrides", "annotator_"+id)
		if err := os.MkdirAll(dir, 0o755); err != nil {
			t.Fatal(err)
		}
		// The fake answers from a hash of the prompt: a different wording, different labels.
		tmpl := fmt.Sprintf("Wording %d. Rate the urgency from LEVEL_0 to LEVEL_4 and answer <<LEVEL_n>>.\n\n{text}\n", i+1)
		if err := os.WriteFile(filepath.Join(dir, "urgency.txt"), []byte(tmpl), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	s.startWorker()
	var pairs []runs.Pair
	for _, id := range ids {
		pairs = append(pairs, runs.Pair{Annotator: id, Domain: labels.Urgency})
	}
	s.runToCompletion(pairs...)

	// The stored labels, by sample and annotator.
	byAnn := map[string]map[string]string{}
	err := s.store.Export(context.Background(), store.Filter{Domain: "urgency", Status: store.StatusOK}, func(r store.ExportRow) error {
		if byAnn[r.Annotator] == nil {
			byAnn[r.Annotator] = map[string]string{}
		}
		byAnn[r.Annotator][r.SampleID] = r.Label
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}

	base, _ := s.startAPIProcess()
	resp, err := http.Get(base + "/api/agreement?domain=urgency")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var got struct {
		Domains []struct {
			Error  string `json:"error"`
			Report struct {
				Cohen struct {
					Pairs []struct {
						A, B  string
						Kappa struct{ Value *float64 } `json:"kappa"`
					} `json:"pairs"`
					Light struct{ Value *float64 } `json:"light_kappa"`
				} `json:"cohen_kappa"`
				Fleiss struct {
					Value *float64
					Units int
				} `json:"fleiss_kappa"`
			} `json:"report"`
		} `json:"domains"`
	}
	if err := json.NewDecoder(resp.Body).Decode(&got); err != nil || resp.StatusCode != http.StatusOK {
		t.Fatalf("GET /api/agreement: %d %v", resp.StatusCode, err)
	}
	if len(got.Domains) != 1 || got.Domains[0].Error != "" {
		t.Fatalf("reply %+v", got)
	}
	r := got.Domains[0].Report
	if len(r.Cohen.Pairs) != 3 {
		t.Fatalf("pairs %+v; want 3", r.Cohen.Pairs)
	}
	var sum float64
	for _, p := range r.Cohen.Pairs {
		want := cohen(byAnn[p.A], byAnn[p.B])
		sum += want
		if p.Kappa.Value == nil || math.Abs(*p.Kappa.Value-want) > 1e-9 {
			t.Errorf("κ %s–%s = %v; computed here %.6f", p.A, p.B, p.Kappa.Value, want)
		}
	}
	if v := r.Cohen.Light.Value; v == nil || math.Abs(*v-sum/3) > 1e-9 {
		t.Errorf("Light's κ = %v; computed here %.6f", v, sum/3)
	}
	fleissWant, complete := fleiss(byAnn, ids)
	if v := r.Fleiss.Value; v == nil || math.Abs(*v-fleissWant) > 1e-9 || r.Fleiss.Units != complete {
		t.Errorf("Fleiss' κ = %v over %d; computed here %.6f over %d", v, r.Fleiss.Units, fleissWant, complete)
	}
	// Three different wordings answered at random: the labels are not all equal.
	if fleissWant > 0.9 {
		t.Errorf("Fleiss' κ %.3f: the annotators' labels barely differ; the test would not see a wrong formula", fleissWant)
	}

	// The agreement page shows the same figures, and follows new annotations by itself.
	ctx, cancel := context.WithTimeout(browser(t), 60*time.Second)
	defer cancel()
	card := `[data-domain="urgency"]`
	if err := chromedp.Do(ctx,
		chromedp.Navigate(base+"/#/agreement"),
		chromedp.WaitVisible(chromedp.CSS(card+` .heatmap`)),
	); err != nil {
		t.Fatalf("open the agreement page: %v", err)
	}
	shown, err := chromedp.Run(ctx, chromedp.Text(chromedp.CSS(card+` [data-stat="fleiss_kappa"]`)))
	if err != nil || !strings.HasPrefix(shown, fmt.Sprintf("%.3f", fleissWant)) {
		t.Errorf("the page shows Fleiss' κ %q (%v); want %.3f first", shown, err, fleissWant)
	}
	cells, err := chromedp.Run(ctx, chromedp.Evaluate[int](`document.querySelectorAll('[data-domain="urgency"] .heatmap td').length`))
	if err != nil || cells != 9 {
		t.Errorf("heat map cells %d (%v); want 3 × 3", cells, err)
	}
	shot(ctx, t, "agreement.png")
	ctxb := context.Background()
	if _, err := s.store.ImportSamples(ctxb, []store.Sample{{ID: "late-1", Text: "a late sample", Position: 1000}}); err != nil {
		t.Fatal(err)
	}
	for _, id := range ids[:2] {
		if err := s.store.UpsertAnnotation(ctxb, store.Annotation{Annotator: id, Domain: "urgency", SampleID: "late-1", Status: store.StatusOK, Label: "LEVEL_2"}); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := chromedp.Run(ctx, chromedp.Poll[bool](`document.querySelector('[data-domain="urgency"] .kv dd').textContent.startsWith('41 ')`,
		chromedp.WithPollingTimeout(20*time.Second))); err != nil {
		seen, _ := chromedp.Run(ctx, chromedp.Text(chromedp.CSS(card+` .kv dd`)))
		t.Errorf("the page did not count the late sample (it shows %q): %v", seen, err)
	}
}

// cohen is Cohen's κ of two annotators over the samples both labelled, written out plainly.
func cohen(a, b map[string]string) float64 {
	var n float64
	agree := 0.0
	ma, mb := map[string]float64{}, map[string]float64{}
	for id, la := range a {
		lb, ok := b[id]
		if !ok {
			continue
		}
		n++
		if la == lb {
			agree++
		}
		ma[la]++
		mb[lb]++
	}
	pe := 0.0
	for k, v := range ma {
		pe += v / n * mb[k] / n
	}
	return (agree/n - pe) / (1 - pe)
}

// fleiss is Fleiss' κ over the samples every annotator labelled, and their number.
func fleiss(byAnn map[string]map[string]string, ids []string) (float64, int) {
	var samples []string
	for id := range byAnn[ids[0]] {
		all := true
		for _, a := range ids[1:] {
			if _, ok := byAnn[a][id]; !ok {
				all = false
			}
		}
		if all {
			samples = append(samples, id)
		}
	}
	sort.Strings(samples)
	raters := float64(len(ids))
	totals := map[string]float64{}
	pbar := 0.0
	for _, s := range samples {
		counts := map[string]float64{}
		for _, a := range ids {
			counts[byAnn[a][s]]++
			totals[byAnn[a][s]]++
		}
		sq := 0.0
		for _, c := range counts {
			sq += c * c
		}
		pbar += (sq - raters) / (raters * (raters - 1))
	}
	n := float64(len(samples))
	pbar /= n
	pe := 0.0
	for _, c := range totals {
		p := c / (n * raters)
		pe += p * p
	}
	return (pbar - pe) / (1 - pe), len(samples)
}
