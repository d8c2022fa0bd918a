package openai

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"reflect"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/mhannotator/mha/internal/llm"
	"github.com/mhannotator/mha/internal/llm/fake"
	"github.com/mhannotator/mha/internal/llm/providertest"
)

// The batch mode against the in-repo fake, which runs batches by its clock and answers their
// lines with the replies calls get.

func startBatchFake(t *testing.T, opts fake.Options) *fake.Server {
	return providertest.StartBatchFake(t, testKey, opts)
}

var (
	samples   = providertest.BatchSamples
	waitFinal = providertest.WaitFinal
	byKey     = providertest.ByKey
)

func isKind(err error, k llm.Kind) bool {
	got, ok := llm.KindOf(err)
	return ok && got == k
}

func TestABatchRunsToSuccessAndAnswersEachLineAsACallWould(t *testing.T) {
	srv := startBatchFake(t, fake.Options{})
	c := newClient(t, srv.URL(), false)
	reqs := samples(5)
	b, err := c.SubmitBatch(context.Background(), "run-1/chunk-1", reqs)
	if err != nil {
		t.Fatalf("SubmitBatch: %v", err)
	}
	if !strings.HasPrefix(b.ID, "batch_") || b.Name != "run-1/chunk-1" || b.State != llm.BatchPending || b.ProviderState != "validating" {
		t.Errorf("submitted batch = %+v", b)
	}
	b, states := waitFinal(t, c, b.ID)
	if b.State != llm.BatchSucceeded || b.Total != 5 || b.Completed != 5 || b.Failed != 0 || b.ProviderState != "completed" {
		t.Errorf("final batch = %+v", b)
	}
	// Polled on the real clock, a state may be missed, but none may come back.
	order := []llm.BatchState{llm.BatchPending, llm.BatchRunning, llm.BatchSucceeded}
	idx := func(s llm.BatchState) int { return slices.Index(order, s) }
	if slices.ContainsFunc(states, func(s llm.BatchState) bool { return idx(s) < 0 }) ||
		!slices.IsSortedFunc(states, func(a, b llm.BatchState) int { return idx(a) - idx(b) }) {
		t.Errorf("states %v, want them in the order pending, running, succeeded", states)
	}
	results, err := c.BatchResults(context.Background(), b)
	if err != nil {
		t.Fatalf("BatchResults: %v", err)
	}
	got := byKey(t, results)
	if len(got) != len(reqs) {
		t.Fatalf("%d results, want %d", len(got), len(reqs))
	}
	for _, r := range reqs {
		want, err := c.Complete(context.Background(), r.Request)
		want.CachedTokens = 0 // the calls after the first find the prompt's prefix in the cache; a batch line does not
		if err != nil {
			t.Fatalf("Complete: %v", err)
		}
		if res := got[r.Key]; res.Err != nil || !reflect.DeepEqual(res.Response, want) {
			t.Errorf("%s: batch answer %+v (err %v), call answer %+v", r.Key, res.Response, res.Err, want)
		}
	}
	st := srv.Stats()
	// One upload, one submit, the polls, and the output file (no line failed: no error file).
	if st.FileUploads != 1 || st.BatchSubmits != 1 || st.BatchFetches != 1 || st.BatchPolls < 3 {
		t.Errorf("stats: %d uploads, %d submits, %d fetches, %d polls; want 1, 1, 1, at least 3",
			st.FileUploads, st.BatchSubmits, st.BatchFetches, st.BatchPolls)
	}
	if st.Duplicates != len(reqs) {
		t.Errorf("Duplicates = %d, want %d: the calls asked again what the batch had answered", st.Duplicates, len(reqs))
	}
}

func TestABatchLineCarriesTheBodyACallSends(t *testing.T) {
	var (
		mu     sync.Mutex
		bodies = map[string][]byte{}
	)
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		switch r.URL.Path {
		case "/v1/chat/completions":
			body, _ := io.ReadAll(r.Body)
			mu.Lock()
			bodies["call"] = body
			mu.Unlock()
			io.WriteString(w, `{"model": "gpt-4o-mini", "choices": [{"message": {"content": "<<LEVEL_2>>"}, "finish_reason": "stop"}]}`)
		case "/v1/files":
			if r.FormValue("purpose") != "batch" {
				http.Error(w, "purpose", http.StatusBadRequest)
				return
			}
			f, _, err := r.FormFile("file")
			if err != nil {
				http.Error(w, err.Error(), http.StatusBadRequest)
				return
			}
			body, _ := io.ReadAll(f)
			mu.Lock()
			bodies["file"] = body
			mu.Unlock()
			io.WriteString(w, `{"id": "file-1", "object": "file", "purpose": "batch"}`)
		case "/v1/batches":
			body, _ := io.ReadAll(r.Body)
			mu.Lock()
			bodies["batch"] = body
			mu.Unlock()
			io.WriteString(w, `{"id": "batch_1", "status": "validating", "metadata": {"name": "n", "model": "gpt-4o-mini"}}`)
		}
	}))
	t.Cleanup(srv.Close)
	c := newClient(t, srv.URL, false)
	req := llm.Request{Prompt: "Label this: I feel low."}
	if _, err := c.Complete(context.Background(), req); err != nil {
		t.Fatal(err)
	}
	if _, err := c.SubmitBatch(context.Background(), "n", []llm.BatchRequest{{Key: "k1", Request: req}}); err != nil {
		t.Fatal(err)
	}
	var call map[string]any
	var line struct {
		CustomID string         `json:"custom_id"`
		Method   string         `json:"method"`
		URL      string         `json:"url"`
		Body     map[string]any `json:"body"`
	}
	var batch map[string]any
	for name, v := range map[string]any{"call": &call, "file": &line, "batch": &batch} {
		if err := json.Unmarshal(bodies[name], v); err != nil {
			t.Fatalf("%s: %v: %s", name, err, bodies[name])
		}
	}
	if line.CustomID != "k1" || line.Method != "POST" || line.URL != "/v1/chat/completions" {
		t.Errorf("batch line = %s", bodies["file"])
	}
	if !reflect.DeepEqual(line.Body, call) {
		t.Errorf("batch line body %v\ndiffers from the call's %v", line.Body, call)
	}
	want := map[string]any{"input_file_id": "file-1", "endpoint": "/v1/chat/completions", "completion_window": "24h",
		"metadata": map[string]any{"name": "n", "model": "gpt-4o-mini"}}
	if !reflect.DeepEqual(batch, want) {
		t.Errorf("create request = %v, want %v", batch, want)
	}
}

func TestAFailingLineIsClassifiedLikeACall(t *testing.T) {
	srv := startBatchFake(t, fake.Options{})
	for _, f := range []fake.Fault{
		{Kind: fake.SafetyBlockPrompt, Match: "(sample-01)"},
		{Kind: fake.ServerError, Match: "(sample-02)"},
		{Kind: fake.BadRequest, Match: "(sample-03)"},
		{Kind: fake.MaxTokensEmpty, Match: "(sample-04)"},
		{Kind: fake.Malformed, Match: "(sample-05)"},
		{Kind: fake.RateLimitMinute, Match: "(sample-06)", RetryAfter: 3 * time.Second},
	} {
		f.Times = 1
		srv.Inject(f)
	}
	c := newClient(t, srv.URL(), false)
	b, err := c.SubmitBatch(context.Background(), "faults", samples(7))
	if err != nil {
		t.Fatal(err)
	}
	b, _ = waitFinal(t, c, b.ID)
	if b.State != llm.BatchSucceeded || b.Completed != 4 || b.Failed != 3 {
		t.Errorf("batch = %+v, want succeeded with 3 failed lines", b)
	}
	results, err := c.BatchResults(context.Background(), b)
	if err != nil {
		t.Fatal(err)
	}
	got := byKey(t, results)
	want := map[string]llm.Kind{"sample-01": llm.Blocked, "sample-02": llm.Unavailable, "sample-03": llm.BadRequest,
		"sample-04": llm.MaxTokensEmpty, "sample-05": "", "sample-06": llm.RateLimited, "sample-07": ""}
	for key, kind := range want {
		res, ok := got[key]
		if !ok {
			t.Errorf("%s: no result", key)
			continue
		}
		if k, _ := llm.KindOf(res.Err); k != kind {
			t.Errorf("%s: err = %v, want kind %q", key, res.Err, kind)
		}
	}
	if text := got["sample-05"].Response.Text; text == "" || strings.Contains(text, "<<") {
		t.Errorf("the malformed line's text %q should lack its tag", text)
	}
	if st := srv.Stats(); st.BatchFetches != 2 {
		t.Errorf("BatchFetches = %d, want 2: the output file and the error file", st.BatchFetches)
	}
}

func TestALineRefusingMaxTokensIsSentAgainWithMaxCompletionTokens(t *testing.T) {
	srv := startBatchFake(t, fake.Options{RejectMaxTokens: []string{"o3"}})
	c := newClient(t, srv.URL(), false, func(o *Options) { o.Model = "o3" })
	reqs := samples(2)
	b, err := c.SubmitBatch(context.Background(), "o3-first", reqs)
	if err != nil {
		t.Fatal(err)
	}
	b, _ = waitFinal(t, c, b.ID)
	results, err := c.BatchResults(context.Background(), b)
	if err != nil || len(results) != 0 {
		t.Fatalf("results of lines refusing max_tokens = %+v, %v; want none (they are sent again)", results, err)
	}
	b, err = c.SubmitBatch(context.Background(), "o3-again", reqs)
	if err != nil {
		t.Fatal(err)
	}
	b, _ = waitFinal(t, c, b.ID)
	results, err = c.BatchResults(context.Background(), b)
	if got := byKey(t, results); err != nil || len(got) != 2 || got["sample-01"].Err != nil || got["sample-02"].Response.Text == "" {
		t.Errorf("results sent again = %+v, %v; want two answers", results, err)
	}
}

func TestAnExpiredBatchReturnsTheLinesItAnswered(t *testing.T) {
	srv := startBatchFake(t, fake.Options{})
	srv.InjectBatch(fake.BatchFault{Kind: fake.BatchExpire, Done: 2})
	c := newClient(t, srv.URL(), false)
	b, err := c.SubmitBatch(context.Background(), "expiring", samples(5))
	if err != nil {
		t.Fatal(err)
	}
	b, _ = waitFinal(t, c, b.ID)
	if b.State != llm.BatchExpired || b.Completed != 2 {
		t.Errorf("batch = %+v, want expired with 2 lines answered", b)
	}
	results, err := c.BatchResults(context.Background(), b)
	if err != nil {
		t.Fatal(err)
	}
	// The three lines not run are in the error file as batch_expired: no result.
	got := byKey(t, results)
	if len(got) != 2 || got["sample-01"].Err != nil || got["sample-02"].Err != nil || got["sample-01"].Response.Text == "" {
		t.Errorf("results = %+v, want the answers of sample-01 and sample-02 only", results)
	}
}

func TestACancelledBatchKeepsTheLinesAnsweredBeforeTheCancel(t *testing.T) {
	clk := providertest.NewClock(time.Date(2026, 11, 3, 12, 0, 0, 0, time.UTC))
	const day = 24 * time.Hour
	srv := startBatchFake(t, fake.Options{Now: clk.Now, BatchTurnaround: day})
	c := newClient(t, srv.URL(), false)
	ctx := context.Background()
	b, err := c.SubmitBatch(ctx, "to-cancel", samples(4))
	if err != nil {
		t.Fatal(err)
	}
	// Pending for 6h, then the four lines are answered by 21h36m, one every 3h54m: by 14h,
	// two of them.
	clk.Add(14 * time.Hour)
	if b, err = c.GetBatch(ctx, b.ID); err != nil || b.State != llm.BatchRunning || b.Completed != 2 {
		t.Fatalf("at 14h: %+v, %v; want running with 2 lines done", b, err)
	}
	if err := c.CancelBatch(ctx, b.ID); err != nil {
		t.Fatalf("CancelBatch: %v", err)
	}
	if b, err = c.GetBatch(ctx, b.ID); err != nil || b.State != llm.BatchCancelling {
		t.Fatalf("right after the cancel: %+v, %v; want cancelling", b, err)
	}
	clk.Add(day)
	if b, err = c.GetBatch(ctx, b.ID); err != nil || b.State != llm.BatchCancelled {
		t.Fatalf("a day after the cancel: %+v, %v; want cancelled", b, err)
	}
	results, err := c.BatchResults(ctx, b)
	if err != nil {
		t.Fatal(err)
	}
	if got := byKey(t, results); len(got) != 2 || got["sample-01"].Err != nil || got["sample-02"].Err != nil {
		t.Errorf("results = %+v, want the answers of the first two lines", results)
	}
	if err := c.CancelBatch(ctx, b.ID); err != nil {
		t.Errorf("cancelling an ended batch: %v, want nil", err)
	}
}

func TestFindBatchAdoptsABatchWhoseSubmitReplyWasLost(t *testing.T) {
	srv := startBatchFake(t, fake.Options{})
	c := newClient(t, srv.URL(), false)
	ctx := context.Background()
	srv.InjectBatch(fake.BatchFault{Kind: fake.BatchLostReply, Times: 1})
	_, err := c.SubmitBatch(ctx, "lost", samples(3))
	if !isKind(err, llm.Unavailable) {
		t.Fatalf("a submit whose reply is lost: %v, want Unavailable", err)
	}
	for i := range 3 {
		if _, err := c.SubmitBatch(ctx, fmt.Sprintf("other-%d", i), samples(1)); err != nil {
			t.Fatal(err)
		}
	}
	b, ok, err := c.FindBatch(ctx, "lost")
	if err != nil || !ok || b.Name != "lost" || !strings.HasPrefix(b.ID, "batch_") || b.Total != 3 {
		t.Fatalf("FindBatch = %+v, %v, %v", b, ok, err)
	}
	b, _ = waitFinal(t, c, b.ID)
	if results, err := c.BatchResults(ctx, b); err != nil || len(results) != 3 {
		t.Errorf("results of the adopted batch: %d, %v", len(results), err)
	}
	if _, ok, err := c.FindBatch(ctx, "never-submitted"); ok || err != nil {
		t.Errorf("FindBatch of an unknown name = %v, %v; want false, nil", ok, err)
	}
	// Submitting under the name again, as a caller that did not look first would.
	if _, err := c.SubmitBatch(ctx, "lost", samples(3)); err != nil {
		t.Fatal(err)
	}
	if st := srv.Stats(); st.BatchSubmits != 5 || st.BatchDuplicates != 1 || st.BatchLists != 2 {
		t.Errorf("stats: %d submits, %d duplicates, %d list pages; want 5, 1, 2", st.BatchSubmits, st.BatchDuplicates, st.BatchLists)
	}
}

func TestTheFakesBatchLimitsAreRateLimits(t *testing.T) {
	cases := []struct {
		name string
		key  fake.Key
	}{
		{"unfinished batches", fake.Key{MaxBatches: 1}},
		{"enqueued tokens", fake.Key{MaxEnqueuedTokens: 40}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			srv := startBatchFake(t, fake.Options{Keys: map[string]fake.Key{testKey: tc.key}, BatchTurnaround: 20 * time.Second})
			c := newClient(t, srv.URL(), false)
			if _, err := c.SubmitBatch(context.Background(), "first", samples(1)); err != nil {
				t.Fatal(err)
			}
			_, err := c.SubmitBatch(context.Background(), "second", samples(2))
			var e *llm.Error
			if !errors.As(err, &e) || e.Kind != llm.RateLimited || e.RetryAfter <= 0 || e.RetryAfter > 20*time.Second {
				t.Fatalf("err = %v, want RateLimited with a retry delay within the turnaround", err)
			}
			if st := srv.Stats(); st.BatchRateLimited != 1 || st.BatchSubmits != 1 {
				t.Errorf("stats: %d rate limited, %d submits; want 1 and 1", st.BatchRateLimited, st.BatchSubmits)
			}
		})
	}
}

func TestAFailedBatchReportsItsReason(t *testing.T) {
	srv := startBatchFake(t, fake.Options{})
	srv.InjectBatch(fake.BatchFault{Kind: fake.BatchFail, Code: "token_limit_exceeded", Reason: "Enqueued token limit reached."})
	c := newClient(t, srv.URL(), false)
	b, err := c.SubmitBatch(context.Background(), "doomed", samples(2))
	if err != nil {
		t.Fatal(err)
	}
	b, _ = waitFinal(t, c, b.ID)
	if b.State != llm.BatchFailed || b.Error != "token_limit_exceeded: Enqueued token limit reached." {
		t.Errorf("batch = %+v, want failed with the reason", b)
	}
	if results, err := c.BatchResults(context.Background(), b); err != nil || len(results) != 0 {
		t.Errorf("results of a failed batch: %v, %v", results, err)
	}
}

func TestBatchCallsRefuseBadInputAndUnknownBatches(t *testing.T) {
	srv := startBatchFake(t, fake.Options{})
	c := newClient(t, srv.URL(), false)
	ctx := context.Background()
	two := samples(2)
	two[1].Key = two[0].Key
	otherModel := samples(2)
	otherModel[1].Request.Model = "gpt-4.1-mini"
	for name, reqs := range map[string][]llm.BatchRequest{"no requests": nil, "a repeated key": two, "two models": otherModel} {
		if _, err := c.SubmitBatch(ctx, "bad", reqs); !isKind(err, llm.BadRequest) {
			t.Errorf("%s: %v, want BadRequest", name, err)
		}
	}
	if _, err := c.SubmitBatch(ctx, strings.Repeat("n", 513), samples(1)); !isKind(err, llm.BadRequest) {
		t.Errorf("a name too long for the metadata: %v, want BadRequest", err)
	}
	if _, err := c.GetBatch(ctx, "batch_nope"); !isKind(err, llm.BadRequest) {
		t.Errorf("an unknown batch: %v, want BadRequest", err)
	}
	bad := newClient(t, srv.URL(), false, func(o *Options) { o.APIKey = "sk-WRONG-key-000000" })
	if _, err := bad.SubmitBatch(ctx, "n", samples(1)); !isKind(err, llm.InvalidKey) {
		t.Errorf("an unknown key: %v, want InvalidKey", err)
	}
	if st := srv.Stats(); st.BatchSubmits != 0 || st.FileUploads != 0 {
		t.Errorf("stats: %d submits, %d uploads; want none", st.BatchSubmits, st.FileUploads)
	}
}
