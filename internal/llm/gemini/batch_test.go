package gemini

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

// setVar sets *p to v for the test.
func setVar[T any](t *testing.T, p *T, v T) {
	old := *p
	*p = v
	t.Cleanup(func() { *p = old })
}

func TestABatchRunsToSuccessAndAnswersEachLineAsACallWould(t *testing.T) {
	cases := []struct {
		name     string
		set      func(t *testing.T)
		fromFile bool
	}{
		{"inline", func(*testing.T) {}, false},
		{"through a file, for too many lines", func(t *testing.T) {
			setVar(t, &maxInlineRequests, 3)
			setVar(t, &uploadChunk, 700) // several chunks
		}, true},
		{"through a file, for too many bytes", func(t *testing.T) { setVar(t, &maxInlineBytes, 1000) }, true},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			tc.set(t)
			srv := startBatchFake(t, fake.Options{})
			c := newClient(t, srv.URL(), false)
			reqs := samples(5)
			b, err := c.SubmitBatch(context.Background(), "run-1/chunk-1", reqs)
			if err != nil {
				t.Fatalf("SubmitBatch: %v", err)
			}
			if !strings.HasPrefix(b.ID, "batches/") || b.Name != "run-1/chunk-1" || b.State != llm.BatchPending || b.Total != 5 {
				t.Errorf("submitted batch = %+v", b)
			}
			b, states := waitFinal(t, c, b.ID)
			if b.State != llm.BatchSucceeded || b.Completed != 5 || b.Failed != 0 || b.ProviderState != "BATCH_STATE_SUCCEEDED" {
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
			wantUploads, wantFetches := 0, 0
			if tc.fromFile {
				wantUploads, wantFetches = 1, 1
			}
			if st.BatchSubmits != 1 || st.FileUploads != wantUploads || st.BatchFetches != wantFetches || st.BatchPolls < 3 {
				t.Errorf("stats: %d submits, %d uploads, %d fetches, %d polls; want 1, %d, %d, at least 3",
					st.BatchSubmits, st.FileUploads, st.BatchFetches, st.BatchPolls, wantUploads, wantFetches)
			}
			// The sync calls above asked again what the batch had answered: work paid twice.
			if st.Duplicates != len(reqs) {
				t.Errorf("Duplicates = %d, want %d", st.Duplicates, len(reqs))
			}
		})
	}
}

func TestABatchLineCarriesTheRequestACallSends(t *testing.T) {
	var (
		mu     sync.Mutex
		bodies = map[string][]byte{}
	)
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		body, _ := io.ReadAll(r.Body)
		_, method, _ := strings.Cut(r.URL.Path, ":")
		mu.Lock()
		bodies[method] = body
		mu.Unlock()
		if method == "batchGenerateContent" {
			io.WriteString(w, `{"name": "batches/b1", "metadata": {"displayName": "n", "state": "BATCH_STATE_PENDING"}}`)
			return
		}
		io.WriteString(w, okReply)
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
	var batch struct {
		Batch struct {
			DisplayName string `json:"displayName"`
			InputConfig struct {
				Requests struct {
					Requests []struct {
						Request  map[string]any    `json:"request"`
						Metadata map[string]string `json:"metadata"`
					} `json:"requests"`
				} `json:"requests"`
			} `json:"inputConfig"`
		} `json:"batch"`
	}
	if err := json.Unmarshal(bodies["generateContent"], &call); err != nil {
		t.Fatal(err)
	}
	if err := json.Unmarshal(bodies["batchGenerateContent"], &batch); err != nil {
		t.Fatal(err)
	}
	lines := batch.Batch.InputConfig.Requests.Requests
	if batch.Batch.DisplayName != "n" || len(lines) != 1 || lines[0].Metadata["key"] != "k1" {
		t.Fatalf("batch request = %s", bodies["batchGenerateContent"])
	}
	if !reflect.DeepEqual(lines[0].Request, call) {
		t.Errorf("batch line request %v\ndiffers from the call's %v", lines[0].Request, call)
	}
	if _, ok := call["generationConfig"].(map[string]any)["thinkingConfig"]; !ok || call["safetySettings"] == nil {
		t.Errorf("the call sent no thinking budget or safety settings: %v", call)
	}
}

func TestAFailingLineIsClassifiedLikeACall(t *testing.T) {
	for _, fromFile := range []bool{false, true} {
		t.Run(map[bool]string{false: "inline", true: "file"}[fromFile], func(t *testing.T) {
			if fromFile {
				setVar(t, &maxInlineRequests, 1)
			}
			srv := startBatchFake(t, fake.Options{})
			for _, f := range []fake.Fault{
				{Kind: fake.SafetyBlockPrompt, Match: "(sample-01)"},
				{Kind: fake.SafetyFinish, Match: "(sample-02)"},
				{Kind: fake.ServerError, Match: "(sample-03)"},
				{Kind: fake.BadRequest, Match: "(sample-04)"},
				{Kind: fake.MaxTokensEmpty, Match: "(sample-05)"},
				{Kind: fake.Malformed, Match: "(sample-06)"},
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
			if b.State != llm.BatchSucceeded || b.Completed+b.Failed != 7 || b.Failed != 2 {
				t.Errorf("batch = %+v, want succeeded with 2 failed lines", b)
			}
			results, err := c.BatchResults(context.Background(), b)
			if err != nil {
				t.Fatal(err)
			}
			got := byKey(t, results)
			want := map[string]llm.Kind{"sample-01": llm.Blocked, "sample-02": llm.Blocked, "sample-03": llm.Unavailable,
				"sample-04": llm.BadRequest, "sample-05": llm.MaxTokensEmpty, "sample-06": "", "sample-07": ""}
			for key, kind := range want {
				res, ok := got[key]
				if !ok {
					t.Errorf("%s: no result", key)
					continue
				}
				if k, _ := llm.KindOf(res.Err); k != kind {
					t.Errorf("%s: err = %v, want kind %q", key, res.Err, kind)
				}
				if strings.Contains(fmt.Sprint(res.Err), testKey) {
					t.Errorf("%s: the error shows the key", key)
				}
			}
			if text := got["sample-06"].Response.Text; text == "" || strings.Contains(text, "<<") {
				t.Errorf("the malformed line's text %q should lack its tag", text)
			}
		})
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
	if b.State != llm.BatchExpired || b.Completed != 2 || b.Error == "" {
		t.Errorf("batch = %+v, want expired with 2 lines answered and a reason", b)
	}
	results, err := c.BatchResults(context.Background(), b)
	if err != nil {
		t.Fatal(err)
	}
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
	b, err := c.SubmitBatch(context.Background(), "to-cancel", samples(4))
	if err != nil {
		t.Fatal(err)
	}
	// Pending for 6h, then the four lines are answered by 21h36m, one every 3h54m: by 14h,
	// two of them.
	clk.Add(14 * time.Hour)
	if b, err = c.GetBatch(context.Background(), b.ID); err != nil || b.State != llm.BatchRunning || b.Completed != 2 {
		t.Fatalf("at 14h: %+v, %v; want running with 2 lines done", b, err)
	}
	if err := c.CancelBatch(context.Background(), b.ID); err != nil {
		t.Fatalf("CancelBatch: %v", err)
	}
	clk.Add(day)
	if b, err = c.GetBatch(context.Background(), b.ID); err != nil || b.State != llm.BatchCancelled {
		t.Fatalf("after the cancel: %+v, %v; want cancelled", b, err)
	}
	results, err := c.BatchResults(context.Background(), b)
	if err != nil {
		t.Fatal(err)
	}
	if got := byKey(t, results); len(got) != 2 || got["sample-01"].Err != nil || got["sample-02"].Err != nil {
		t.Errorf("results = %+v, want the answers of the first two lines", results)
	}
	if err := c.CancelBatch(context.Background(), b.ID); err != nil {
		t.Errorf("cancelling an ended batch: %v, want nil", err)
	}
	if st := srv.Stats(); st.BatchCancels != 1 {
		t.Errorf("BatchCancels = %d, want 1", st.BatchCancels)
	}
}

func TestFindBatchAdoptsABatchWhoseSubmitReplyWasLost(t *testing.T) {
	setVar(t, &listPageSize, 2)
	srv := startBatchFake(t, fake.Options{})
	c := newClient(t, srv.URL(), false)
	ctx := context.Background()
	older, err := c.SubmitBatch(ctx, "lost", samples(3))
	if err != nil {
		t.Fatal(err)
	}
	srv.InjectBatch(fake.BatchFault{Kind: fake.BatchLostReply, Match: "lost", Times: 1})
	_, err = c.SubmitBatch(ctx, "lost", samples(3))
	if k, _ := llm.KindOf(err); k != llm.Unavailable {
		t.Fatalf("a submit whose reply is lost: %v, want Unavailable", err)
	}
	for i := range 4 { // newer batches push the lost one to a later page
		if _, err := c.SubmitBatch(ctx, fmt.Sprintf("other-%d", i), samples(1)); err != nil {
			t.Fatal(err)
		}
	}
	before := srv.Stats()
	b, ok, err := c.FindBatch(ctx, "lost")
	if err != nil || !ok {
		t.Fatalf("FindBatch = %+v, %v, %v", b, ok, err)
	}
	// Of the two batches named "lost", the newest is the one whose reply was lost.
	if b.Name != "lost" || b.ID == older.ID || !strings.HasPrefix(b.ID, "batches/") {
		t.Errorf("found %+v, want the newer of the two named lost (the older is %s)", b, older.ID)
	}
	if lists := srv.Stats().BatchLists - before.BatchLists; lists != 3 {
		t.Errorf("FindBatch read %d pages, want all 3 (6 batches, 2 a page)", lists)
	}
	if st := srv.Stats(); st.BatchSubmits != 6 || st.BatchDuplicates != 1 {
		t.Errorf("stats: %d submits, %d duplicates; want 6 and 1", st.BatchSubmits, st.BatchDuplicates)
	}
	b, _ = waitFinal(t, c, b.ID)
	if results, err := c.BatchResults(ctx, b); err != nil || len(results) != 3 {
		t.Errorf("results of the adopted batch: %d, %v", len(results), err)
	}
	if _, ok, err := c.FindBatch(ctx, "never-submitted"); ok || err != nil {
		t.Errorf("FindBatch of an unknown name = %v, %v; want false, nil", ok, err)
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
	srv.InjectBatch(fake.BatchFault{Kind: fake.BatchFail, Reason: "The input was rejected."})
	c := newClient(t, srv.URL(), false)
	b, err := c.SubmitBatch(context.Background(), "doomed", samples(2))
	if err != nil {
		t.Fatal(err)
	}
	b, _ = waitFinal(t, c, b.ID)
	if b.State != llm.BatchFailed || b.Error != "The input was rejected." {
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
	otherModel[1].Request.Model = "gemini-2.5-pro"
	for name, reqs := range map[string][]llm.BatchRequest{"no requests": nil, "a repeated key": two, "two models": otherModel} {
		if _, err := c.SubmitBatch(ctx, "bad", reqs); !isKind(err, llm.BadRequest) {
			t.Errorf("%s: %v, want BadRequest", name, err)
		}
	}
	if _, err := c.GetBatch(ctx, "batches/nope"); !isKind(err, llm.BadRequest) {
		t.Errorf("an unknown batch: %v, want BadRequest", err)
	}
	bad := newClient(t, srv.URL(), false, func(o *Options) { o.APIKey = "AIzaWRONG-key" })
	if _, err := bad.SubmitBatch(ctx, "n", samples(1)); !isKind(err, llm.InvalidKey) {
		t.Errorf("an unknown key: %v, want InvalidKey", err)
	}
	if st := srv.Stats(); st.BatchSubmits != 0 || st.BatchRejected != 1 {
		t.Errorf("stats: %d submits, %d rejected; want 0 and 1", st.BatchSubmits, st.BatchRejected)
	}
}

func isKind(err error, k llm.Kind) bool {
	got, ok := llm.KindOf(err)
	return ok && got == k
}
