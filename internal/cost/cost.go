// Package cost turns token counts into money: what the stored annotations cost, and what a run
// will cost before it starts, at the prices of the config's price table.
package cost

import (
	"context"
	"fmt"
	"math"
	"sort"

	"github.com/mhannotator/mha/internal/config"
	"github.com/mhannotator/mha/internal/labels"
	"github.com/mhannotator/mha/internal/llm"
	"github.com/mhannotator/mha/internal/prompts"
	"github.com/mhannotator/mha/internal/store"
)

// Line is the tokens and cost of one run, or of a sum of runs (Domain or Annotator empty).
// Cost is nil when a model involved has no price in the config.
type Line struct {
	Annotator    string `json:"annotator,omitempty"`
	Domain       string `json:"domain,omitempty"`
	Model        string `json:"model,omitempty"`
	Annotations  int    `json:"annotations"`
	InputTokens  int64  `json:"input_tokens"`
	OutputTokens int64  `json:"output_tokens"`
	CachedTokens int64  `json:"cached_input_tokens"` // of InputTokens, served from the prompt cache
	// CacheHit is CachedTokens / InputTokens: the share of input the prompt cache served.
	CacheHit float64  `json:"cache_hit_share"`
	Cost     *float64 `json:"cost_usd"`
}

// Usage is what the stored annotations cost: per run, per annotator, per domain and in all.
type Usage struct {
	Runs       []Line   `json:"runs"`
	Annotators []Line   `json:"annotators"`
	Domains    []Line   `json:"domains"`
	Total      Line     `json:"total"`
	Unpriced   []string `json:"unpriced_models,omitempty"` // models the price table lacks
	Note       string   `json:"note"`
	Currency   string   `json:"currency"`
}

// note says how the figures were made, for every reply.
const note = "cost = input tokens × input price + output tokens × output price, per million tokens, from the tokens the providers reported for each stored annotation (re-asks included); a model without a price in the config's prices table has no cost"

// Used prices the stored annotations summed up in stats (one entry per run), at the model each
// annotator is configured with.
func Used(cfg *config.Config, stats []store.RunStats) Usage {
	r := Usage{Note: note, Currency: "USD"}
	byAnnotator, byDomain := map[string]*Line{}, map[string]*Line{}
	unpriced := map[string]bool{}
	r.Total.Cost = ptr(0)
	for _, s := range stats {
		ann, _ := cfg.Annotator(s.Annotator)
		model := ann.ModelName
		line := Line{Annotator: s.Annotator, Domain: s.Domain, Model: model, Annotations: s.Calls,
			InputTokens: s.InputTokens, OutputTokens: s.OutputTokens, CachedTokens: s.CachedTokens}
		line.share()
		if p, ok := priceOf(cfg, ann); ok {
			line.Cost = ptr(p.Cost(s.InputTokens, s.OutputTokens, s.CachedTokens))
		} else {
			unpriced[model] = true
		}
		r.Runs = append(r.Runs, line)
		add(bucket(byAnnotator, s.Annotator, Line{Annotator: s.Annotator, Model: model}), line)
		add(bucket(byDomain, s.Domain, Line{Domain: s.Domain}), line)
		add(&r.Total, line)
	}
	r.Total.share()
	r.Annotators, r.Domains = sorted(byAnnotator), sorted(byDomain)
	for m := range unpriced {
		r.Unpriced = append(r.Unpriced, m)
	}
	sort.Strings(r.Unpriced)
	return r
}

// Estimate is the expected tokens and cost of the samples a run has not annotated yet.
type Estimate struct {
	Line
	Samples int `json:"samples"` // samples left to annotate
	// OutputTokensMax is the reply budget (max_output_tokens) for each sample: the most the
	// replies can cost. OutputTokens is the run's mean reply so far, or the budget when it
	// has stored nothing yet.
	OutputTokensMax int64    `json:"output_tokens_max"`
	CostMax         *float64 `json:"cost_usd_max"`
}

// Estimates are the estimates of several runs and their sum.
type Estimates struct {
	Runs  []Estimate `json:"runs"`
	Total Estimate   `json:"total"`
	Note  string     `json:"note"`
}

// estimateNote says how estimates are made.
const estimateNote = "input tokens ≈ the bytes of each remaining sample's prompt (the active template with the sample's text) / 4; " +
	"output tokens: the run's mean reply so far, else the reply budget max_output_tokens; the _max figures assume every reply uses the whole budget and ignore re-asks"

// Estimator estimates runs from the store and the active prompts.
type Estimator struct {
	Config  *config.Config
	Store   store.Store
	Prompts prompts.Library
}

// Runs estimates each run of pairs.
func (e Estimator) Runs(ctx context.Context, pairs []Pair) (Estimates, error) {
	out := Estimates{Note: estimateNote}
	size, err := e.Store.CountSamples(ctx)
	if err != nil {
		return out, err
	}
	stats, err := e.Store.Stats(ctx, store.Filter{})
	if err != nil {
		return out, err
	}
	seen := map[[2]string]store.RunStats{}
	for _, s := range stats {
		seen[[2]string{s.Annotator, s.Domain}] = s
	}
	out.Total.Cost, out.Total.CostMax = ptr(0), ptr(0)
	for _, p := range pairs {
		est, err := e.run(ctx, p, size, seen[[2]string{p.Annotator, string(p.Domain)}])
		if err != nil {
			return out, err
		}
		out.Runs = append(out.Runs, est)
		t := &out.Total
		t.Samples += est.Samples
		t.InputTokens += est.InputTokens
		t.OutputTokens += est.OutputTokens
		t.OutputTokensMax += est.OutputTokensMax
		t.Cost, t.CostMax = sum(t.Cost, est.Cost), sum(t.CostMax, est.CostMax)
	}
	return out, nil
}

// Pair names one run; runs.Pair converts to it.
type Pair struct {
	Annotator string
	Domain    labels.Domain
}

// page is how many samples are read at once.
const page = 1000

func (e Estimator) run(ctx context.Context, p Pair, size int, so store.RunStats) (Estimate, error) {
	ann, ok := e.Config.Annotator(p.Annotator)
	if !ok {
		return Estimate{}, fmt.Errorf("annotator %q is not in the config", p.Annotator)
	}
	prompt, err := e.Prompts.Active(p.Annotator, p.Domain)
	if err != nil {
		return Estimate{}, err
	}
	est := Estimate{Line: Line{Annotator: p.Annotator, Domain: string(p.Domain), Model: ann.ModelName}}
	end := min(ann.Domains[p.Domain].TargetCount, size)
	for offset := 0; offset < end; offset += page {
		samples, err := e.Store.Samples(ctx, offset, min(page, end-offset))
		if err != nil {
			return Estimate{}, err
		}
		ids := make([]string, len(samples))
		for i, s := range samples {
			ids[i] = s.ID
		}
		done, err := e.Store.AnnotatedIDs(ctx, p.Annotator, string(p.Domain), ids)
		if err != nil {
			return Estimate{}, err
		}
		for _, s := range samples {
			if !done[s.ID] {
				est.Samples++
				est.InputTokens += int64(llm.ApproxTokens(prompts.Render(prompt.Template, s.Text)))
			}
		}
	}
	budget := int64(e.Config.Global.MaxOutputTokens)
	est.OutputTokensMax = int64(est.Samples) * budget
	est.OutputTokens = est.OutputTokensMax
	if so.Calls > 0 {
		est.OutputTokens = int64(math.Round(float64(so.OutputTokens) / float64(so.Calls) * float64(est.Samples)))
	}
	if price, ok := priceOf(e.Config, ann); ok {
		est.Cost = ptr(price.Cost(est.InputTokens, est.OutputTokens, 0))
		est.CostMax = ptr(price.Cost(est.InputTokens, est.OutputTokensMax, 0))
	}
	return est, nil
}

// priceOf is ann's model's price; the offline annotator is free.
func priceOf(cfg *config.Config, ann config.Annotator) (config.Price, bool) {
	if ann.Provider == config.ProviderOffline {
		return config.Price{}, true
	}
	p, ok := cfg.Prices[ann.ModelName]
	return p, ok
}

func bucket(m map[string]*Line, key string, zero Line) *Line {
	l, ok := m[key]
	if !ok {
		zero.Cost = ptr(0)
		l = &zero
		m[key] = l
	}
	return l
}

// add sums line into into; a cost unknown on either side stays unknown.
func add(into *Line, line Line) {
	into.Annotations += line.Annotations
	into.InputTokens += line.InputTokens
	into.OutputTokens += line.OutputTokens
	into.CachedTokens += line.CachedTokens
	into.Cost = sum(into.Cost, line.Cost)
}

// share sets CacheHit from the token counts.
func (l *Line) share() {
	if l.InputTokens > 0 {
		l.CacheHit = float64(l.CachedTokens) / float64(l.InputTokens)
	}
}

func sum(a, b *float64) *float64 {
	if a == nil || b == nil {
		return nil
	}
	return ptr(*a + *b)
}

func sorted(m map[string]*Line) []Line {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	out := make([]Line, len(keys))
	for i, k := range keys {
		out[i] = *m[k]
		out[i].share()
	}
	return out
}

func ptr(f float64) *float64 { return &f }
