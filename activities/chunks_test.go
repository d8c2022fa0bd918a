package activities

import (
	"context"
	"fmt"
	"testing"

	"github.com/mhannotator/mha/internal/config"
	"github.com/mhannotator/mha/internal/contract"
	"github.com/mhannotator/mha/internal/labels"
	"github.com/mhannotator/mha/internal/llm"
	"github.com/mhannotator/mha/internal/prompts"
)

// batchProvider is a provider with a batch mode whose results the test scripts per key.
type batchProvider struct {
	scripted
	submitted map[string][]llm.BatchRequest // by batch ID
	byName    map[string]string
	state     llm.BatchState
	results   map[string]llm.BatchResult // by key; a key without one has no result
}

func (p *batchProvider) SubmitBatch(_ context.Context, name string, reqs []llm.BatchRequest) (llm.Batch, error) {
	id := fmt.Sprintf("batches/%d", len(p.submitted)+1)
	p.submitted[id] = reqs
	p.byName[name] = id
	return llm.Batch{ID: id, Name: name, State: llm.BatchPending}, nil
}

func (p *batchProvider) FindBatch(_ context.Context, name string) (llm.Batch, bool, error) {
	id, ok := p.byName[name]
	return llm.Batch{ID: id, Name: name, State: p.state}, ok, nil
}

func (p *batchProvider) GetBatch(_ context.Context, id string) (llm.Batch, error) {
	return llm.Batch{ID: id, State: p.state, Total: len(p.submitted[id])}, nil
}

func (p *batchProvider) BatchResults(_ context.Context, b llm.Batch) ([]llm.BatchResult, error) {
	var out []llm.BatchResult
	for _, r := range p.submitted[b.ID] {
		if res, ok := p.results[r.Key]; ok {
			res.Key = r.Key
			out = append(out, res)
		}
	}
	return out, nil
}

func (p *batchProvider) CancelBatch(context.Context, string) error { return nil }

func newBatchFixture(t *testing.T, n int) (*fixture, *batchProvider) {
	t.Helper()
	f := newFixture(t, n)
	bp := &batchProvider{submitted: map[string][]llm.BatchRequest{}, byName: map[string]string{}, state: llm.BatchSucceeded,
		results: map[string]llm.BatchResult{}}
	f.acts.Provider = func(config.Annotator) (llm.Provider, error) { return bp, nil }
	f.env.RegisterActivity(f.acts.SubmitChunk)
	f.env.RegisterActivity(f.acts.CollectChunk)
	return f, bp
}

func (f *fixture) submitChunk(t *testing.T, in contract.SubmitChunkInput) contract.SubmitChunkResult {
	t.Helper()
	v, err := f.env.ExecuteActivity(f.acts.SubmitChunk, in)
	if err != nil {
		t.Fatal(err)
	}
	var res contract.SubmitChunkResult
	if err := v.Get(&res); err != nil {
		t.Fatal(err)
	}
	return res
}

func TestSubmitChunkSkipsAnnotatedSamplesAndAdoptsOnRetry(t *testing.T) {
	f, bp := newBatchFixture(t, 6)
	// SB is annotated already: the chunk takes the next unannotated samples instead.
	if _, err := f.batch(t, 1, 1); err != nil {
		t.Fatal(err)
	}
	in := contract.SubmitChunkInput{Annotator: "1", Domain: labels.Urgency, Target: 6, From: 0, Count: 3, Name: "run-1-chunk-1"}
	res := f.submitChunk(t, in)
	if res.BatchID != "batches/1" || fmt.Sprint(res.Keys) != "[SA SC SD]" || res.Next != 4 || res.Adopted {
		t.Fatalf("submit %+v; want SA SC SD in batches/1, next 4", res)
	}
	tmpl, _ := prompts.Builtin(labels.Urgency)
	if got := bp.submitted["batches/1"][1].Request.Prompt; got != prompts.Render(tmpl, "text {with braces} C") || res.PromptHash != prompts.Hash(tmpl) {
		t.Errorf("the request's prompt %q is not the rendered template", got)
	}
	// The same chunk again (the first attempt's reply was lost): adopted, not paid twice.
	again := f.submitChunk(t, in)
	if !again.Adopted || again.BatchID != "batches/1" || len(bp.submitted) != 1 {
		t.Errorf("retried submit %+v with %d batches; want batches/1 adopted", again, len(bp.submitted))
	}
}

func TestCollectChunkStoresLikeTheSynchronousPath(t *testing.T) {
	f, bp := newBatchFixture(t, 5)
	res := f.submitChunk(t, contract.SubmitChunkInput{Annotator: "1", Domain: labels.Urgency, Target: 5, Count: 5, Name: "c"})
	bp.results["SA"] = llm.BatchResult{Response: llm.Response{Text: "Because.\n<<LEVEL_2>>", InputTokens: 40, OutputTokens: 5, Model: "m-1"}}
	bp.results["SB"] = llm.BatchResult{Response: llm.Response{Text: "no tag at all"}}                             // malformed: asked again
	bp.results["SC"] = llm.BatchResult{Err: &llm.Error{Kind: llm.Blocked, Provider: "gemini", Message: "SAFETY"}} // recorded
	bp.results["SD"] = llm.BatchResult{Err: &llm.Error{Kind: llm.Unavailable, Provider: "gemini", StatusCode: 500}}
	// SE has no result (never reached).
	in := contract.CollectChunkInput{ChunkRef: contract.ChunkRef{Annotator: "1", Domain: labels.Urgency, BatchID: res.BatchID},
		Target: 5, Keys: res.Keys, PromptHash: res.PromptHash, Reasks: map[string]int{"SD": 2}}
	v, err := f.env.ExecuteActivity(f.acts.CollectChunk, in)
	if err != nil {
		t.Fatal(err)
	}
	var got contract.CollectChunkResult
	if err := v.Get(&got); err != nil {
		t.Fatal(err)
	}
	// SD had its max_retries (2) already: stored as an error. SB and SE go to a later chunk.
	if got.Stored != 3 || fmt.Sprint(got.Retry) != "[SB SE]" || got.Missing != 1 || got.Counts.OK != 1 || got.Counts.Blocked != 1 || got.Counts.Error != 1 {
		t.Fatalf("collect %+v", got)
	}
	a := f.annotation(t, "SA")
	if a.Label != "LEVEL_2" || a.Status != "ok" || a.PromptHash != res.PromptHash || a.InputTokens != 40 || a.Model != "m-1" || a.Attempt != 1 {
		t.Errorf("SA stored as %+v", a)
	}
	if d := f.annotation(t, "SD"); d.Status != "error" || d.Attempt != 3 || d.Error == "" {
		t.Errorf("SD stored as %+v", d)
	}
}
