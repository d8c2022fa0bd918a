package activities

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"go.temporal.io/sdk/activity"
	"go.temporal.io/sdk/converter"
	"go.temporal.io/sdk/temporal"
	"go.temporal.io/sdk/testsuite"

	"github.com/mhannotator/mha/internal/config"
	"github.com/mhannotator/mha/internal/contract"
	"github.com/mhannotator/mha/internal/labels"
	"github.com/mhannotator/mha/internal/llm"
	"github.com/mhannotator/mha/internal/prompts"
	"github.com/mhannotator/mha/internal/store"
)

// scripted answers each call with the next reply or error of its script, then with a valid
// urgency label.
type scripted struct {
	mu      sync.Mutex
	replies []any // string reply or error
	prompts []string
}

func (s *scripted) Complete(_ context.Context, req llm.Request) (llm.Response, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.prompts = append(s.prompts, req.Prompt)
	if len(s.replies) == 0 {
		return llm.Response{Text: "Fine.\n<<LEVEL_1>>", InputTokens: 10, OutputTokens: 3}, nil
	}
	next := s.replies[0]
	s.replies = s.replies[1:]
	if err, ok := next.(error); ok {
		return llm.Response{}, err
	}
	return llm.Response{Text: next.(string), InputTokens: 10, OutputTokens: 3}, nil
}

func (s *scripted) calls() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return len(s.prompts)
}

type fixture struct {
	acts  *Activities
	store store.Store
	prov  *scripted
	env   *testsuite.TestActivityEnvironment
	beats []int
}

func newFixture(t *testing.T, n int) *fixture {
	t.Helper()
	dir := t.TempDir()
	cfg, err := config.Parse([]byte(`{"global": {"max_retries": 2}, "annotators": {"1": {"urgency": {"enabled": true, "target_count": 100}}}}`), nil, func(string) string { return "" })
	if err != nil {
		t.Fatal(err)
	}
	st, err := store.Open(context.Background(), filepath.Join(dir, "mha.db"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	var smp []store.Sample
	for i := range n {
		smp = append(smp, store.Sample{ID: "S" + string(rune('A'+i)), Text: "text {with braces} " + string(rune('A'+i))})
	}
	if _, err := st.ImportSamples(context.Background(), smp); err != nil {
		t.Fatal(err)
	}
	f := &fixture{store: st, prov: &scripted{}}
	f.acts = &Activities{Store: st, Config: cfg, Prompts: prompts.Library{Dir: filepath.Join(dir, "prompts")},
		Provider: func(config.Annotator) (llm.Provider, error) { return f.prov, nil }}
	var suite testsuite.WorkflowTestSuite
	f.env = suite.NewTestActivityEnvironment()
	f.env.RegisterActivity(f.acts.AnnotateBatch)
	f.env.RegisterActivity(f.acts.Progress)
	f.env.SetOnActivityHeartbeatListener(func(_ *activity.Info, details converter.EncodedValues) {
		var cp checkpoint
		if details.Get(&cp) == nil {
			f.beats = append(f.beats, cp.Last)
		}
	})
	return f
}

func (f *fixture) batch(t *testing.T, from, count int) (contract.BatchResult, error) {
	t.Helper()
	// The run ends with the batch, so the batch does not go on into the next samples.
	v, err := f.env.ExecuteActivity(f.acts.AnnotateBatch, contract.BatchInput{Annotator: "1", Domain: labels.Urgency, From: from, Count: count, Target: from + count})
	if err != nil {
		return contract.BatchResult{}, err
	}
	var res contract.BatchResult
	if err := v.Get(&res); err != nil {
		t.Fatal(err)
	}
	return res, nil
}

func (f *fixture) annotation(t *testing.T, id string) store.Annotation {
	t.Helper()
	var found *store.Annotation
	err := f.store.Export(context.Background(), store.Filter{Annotator: "1", Domain: "urgency"}, func(r store.ExportRow) error {
		if r.SampleID == id {
			a := r.Annotation
			found = &a
		}
		return nil
	})
	if err != nil || found == nil {
		t.Fatalf("no annotation of %s (%v)", id, err)
	}
	return *found
}

func TestBatchStoresEachSampleAndHeartbeatsItsPosition(t *testing.T) {
	f := newFixture(t, 5)
	res, err := f.batch(t, 0, 5)
	if err != nil {
		t.Fatal(err)
	}
	if res.Next != 5 || res.Stored != 5 || res.Counts.OK != 5 || res.DatasetSize != 5 {
		t.Fatalf("result = %+v, want 5 stored", res)
	}
	// Without a server, the SDK's heartbeats carry the checkpoint (throttled: the first
	// reaches the server at once, before any sample is stored).
	if len(f.beats) == 0 || f.beats[0] != -1 {
		t.Fatalf("heartbeats = %v, want the first at position -1", f.beats)
	}
	a := f.annotation(t, "SC")
	tmpl, _ := prompts.Builtin(labels.Urgency)
	if a.Label != "LEVEL_1" || a.Status != store.StatusOK || a.PromptHash != prompts.Hash(tmpl) || a.InputTokens != 10 || a.Attempt != 1 {
		t.Fatalf("annotation = %+v", a)
	}
	if !strings.Contains(f.prov.prompts[0], "text {with braces} A") {
		t.Fatalf("the prompt does not carry the sample text: %q", f.prov.prompts[0])
	}
}

func TestAQuickBatchGoesOnIntoTheRunsNextSamples(t *testing.T) {
	f := newFixture(t, 25)
	v, err := f.env.ExecuteActivity(f.acts.AnnotateBatch, contract.BatchInput{Annotator: "1", Domain: labels.Urgency, From: 0, Count: 4, Target: 22})
	if err != nil {
		t.Fatal(err)
	}
	var res contract.BatchResult
	if err := v.Get(&res); err != nil {
		t.Fatal(err)
	}
	// Far quicker than minBatchSpan: it works on, batch by batch, up to the run's target.
	if res.Next != 22 || res.Stored != 22 || res.Counts.OK != 22 || f.prov.calls() != 22 {
		t.Fatalf("result = %+v after %d calls; want the run's 22 samples done in one batch", res, f.prov.calls())
	}
}

func TestBatchSkipsStoredSamplesAndResumesFromHeartbeatDetails(t *testing.T) {
	f := newFixture(t, 6)
	if _, err := f.batch(t, 0, 2); err != nil {
		t.Fatal(err)
	}
	before := f.prov.calls()
	f.env.SetHeartbeatDetails(checkpoint{Last: 3}) // a previous attempt stored up to position 3
	res, err := f.batch(t, 0, 6)
	if err != nil {
		t.Fatal(err)
	}
	if got := f.prov.calls() - before; got != 2 || res.Stored != 2 {
		t.Fatalf("retried batch made %d calls and stored %d; want only positions 4 and 5", got, res.Stored)
	}
}

func TestMalformedRepliesAreReaskedThenStoredAsMalformed(t *testing.T) {
	f := newFixture(t, 2)
	f.prov.replies = []any{"no tag", "<<LEVEL_9>>", "still <<nothing>>", // sample A: 1 + max_retries (2) calls
		"no tag", "<<LEVEL_3>>"} // sample B: fixed by the re-ask
	res, err := f.batch(t, 0, 2)
	if err != nil {
		t.Fatal(err)
	}
	a, b := f.annotation(t, "SA"), f.annotation(t, "SB")
	if a.Status != store.StatusMalformed || a.Attempt != 3 || a.RawReply != "still <<nothing>>" || a.ValidityError == "" {
		t.Fatalf("sample A = %+v, want malformed after 3 calls with the last reply", a)
	}
	if b.Status != store.StatusOK || b.Label != "LEVEL_3" || b.Attempt != 2 || b.InputTokens != 20 {
		t.Fatalf("sample B = %+v, want ok on the second call with both calls' tokens", b)
	}
	if res.Counts.Malformed != 1 || res.Counts.OK != 1 {
		t.Fatalf("counts = %+v", res.Counts)
	}
}

func TestSamplesCarryTheirOwnFailures(t *testing.T) {
	f := newFixture(t, 3)
	f.prov.replies = []any{
		&llm.Error{Kind: llm.Blocked, Provider: "fake", Message: "SAFETY"},
		&llm.Error{Kind: llm.MaxTokensEmpty, Provider: "fake"},
	}
	res, err := f.batch(t, 0, 3)
	if err != nil {
		t.Fatal(err)
	}
	if a := f.annotation(t, "SA"); a.Status != store.StatusBlocked || !strings.Contains(a.Error, "SAFETY") {
		t.Fatalf("blocked sample = %+v", a)
	}
	if b := f.annotation(t, "SB"); b.Status != store.StatusError || !strings.Contains(b.Error, "max_tokens_empty") {
		t.Fatalf("empty-output sample = %+v", b)
	}
	if res.Counts.Blocked != 1 || res.Counts.Error != 1 || res.Counts.OK != 1 || f.prov.calls() != 3 {
		t.Fatalf("counts = %+v after %d calls; want one each and no retries", res.Counts, f.prov.calls())
	}
}

func TestProviderFailuresEndTheBatchWithTheirClass(t *testing.T) {
	cases := []struct {
		name      string
		err       error
		errType   string
		retryable bool
	}{
		{"an invalid key fails the run at once", &llm.Error{Kind: llm.InvalidKey, Provider: "fake", StatusCode: 401}, contract.ErrInvalidKey, false},
		{"no quota is a config error", &llm.Error{Kind: llm.NoQuota, Provider: "fake"}, contract.ErrBadConfig, false},
		{"an unknown model is a config error", &llm.Error{Kind: llm.ModelNotFound, Provider: "fake"}, contract.ErrBadConfig, false},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			f := newFixture(t, 2)
			// Three in a row: a transient failure is first retried in place twice.
			f.prov.replies = []any{tc.err, tc.err, tc.err}
			_, err := f.batch(t, 0, 2)
			var app *temporal.ApplicationError
			if !errors.As(err, &app) || app.Type() != tc.errType || app.NonRetryable() == tc.retryable {
				t.Fatalf("error = %v, want type %s (retryable %v)", err, tc.errType, tc.retryable)
			}
		})
	}
}

func TestWaitsEndTheBatchEarlyForADurableTimer(t *testing.T) {
	reset := time.Now().Add(time.Hour).Truncate(time.Second)
	cases := []struct {
		name   string
		err    error
		status string
		until  time.Time
	}{
		{"the daily quota waits until its reset", &llm.Error{Kind: llm.DailyQuota, Provider: "fake", ResetAt: reset}, contract.StatusWaitingQuota, reset},
		{"an overloaded provider is retried with back-off", &llm.Error{Kind: llm.Unavailable, Provider: "fake", StatusCode: 503}, contract.StatusWaitingRetry, time.Time{}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			f := newFixture(t, 3)
			// Sample A is stored; B then fails three times: in place twice, then the batch ends.
			f.prov.replies = []any{"<<LEVEL_2>>", tc.err, tc.err, tc.err}
			res, err := f.batch(t, 0, 3)
			if err != nil {
				t.Fatal(err)
			}
			if res.Wait == nil || res.Wait.Status != tc.status || !res.Wait.Until.Equal(tc.until) || res.Next != 1 || res.Stored != 1 || res.Counts.OK != 1 {
				t.Fatalf("result = %+v wait %+v; want a %s wait from position 1 with A stored", res, res.Wait, tc.status)
			}
		})
	}
}

func TestTheSameErrorOnConsecutiveSamplesFailsTheRunNotTheDataset(t *testing.T) {
	f := newFixture(t, 8)
	bad := &llm.Error{Kind: llm.BadRequest, Provider: "fake", StatusCode: 400, Message: "Unsupported parameter: 'max_tokens'"}
	f.prov.replies = []any{"<<LEVEL_1>>", bad, bad, bad, bad, bad, bad, bad}
	_, err := f.batch(t, 0, 8)
	var app *temporal.ApplicationError
	if !errors.As(err, &app) || app.Type() != contract.ErrSystematic || !app.NonRetryable() || !strings.Contains(app.Message(), "max_tokens") {
		t.Fatalf("error = %v, want a non-retryable systematic error naming the cause", err)
	}
	// Five error rows (the default max_consecutive_errors) stay visible; nothing after them.
	if calls := f.prov.calls(); calls != 6 {
		t.Fatalf("%d calls, want 1 ok + 5 failing", calls)
	}
	if e := f.annotation(t, "SF"); e.Status != store.StatusError {
		t.Fatalf("sample F = %+v, want its error row kept", e)
	}
}

func TestAStreakCarriesAcrossBatchesAndAGoodSampleEndsIt(t *testing.T) {
	f := newFixture(t, 6)
	bad := &llm.Error{Kind: llm.BadRequest, Provider: "fake", StatusCode: 400, Message: "too long"}
	f.prov.replies = []any{bad, bad, bad}
	res, err := f.batch(t, 0, 3)
	if err != nil || res.Carry.StreakCount != 3 {
		t.Fatalf("first batch: %+v, %v; want a streak of 3 carried", res.Carry, err)
	}
	f.prov.replies = []any{"<<LEVEL_0>>", bad, bad}
	v, err := f.env.ExecuteActivity(f.acts.AnnotateBatch, contract.BatchInput{Annotator: "1", Domain: labels.Urgency, From: 3, Count: 3, Target: 100, Carry: res.Carry})
	if err != nil {
		t.Fatalf("second batch failed: %v (a good sample should have ended the streak)", err)
	}
	var res2 contract.BatchResult
	if err := v.Get(&res2); err != nil || res2.Carry.StreakCount != 2 {
		t.Fatalf("second batch carry %+v, %v; want a new streak of 2", res2.Carry, err)
	}
}

func TestAReaskCountSurvivesARetriedAttempt(t *testing.T) {
	f := newFixture(t, 1)
	f.prov.replies = []any{"no tag"} // max_retries is 2: one re-ask left after the two spent before
	f.env.SetHeartbeatDetails(checkpoint{Last: -1, Carry: contract.Carry{Reasks: map[string]int{"SA": 2}}})
	if _, err := f.batch(t, 0, 1); err != nil {
		t.Fatal(err)
	}
	if a := f.annotation(t, "SA"); a.Status != store.StatusMalformed || f.prov.calls() != 1 || a.Attempt != 3 {
		t.Fatalf("sample A = %+v after %d calls; want malformed after the one re-ask left", a, f.prov.calls())
	}
}

func TestATransientFailureIsRetriedInPlace(t *testing.T) {
	f := newFixture(t, 2)
	f.prov.replies = []any{&llm.Error{Kind: llm.Unavailable, Provider: "fake", StatusCode: 503}}
	res, err := f.batch(t, 0, 2)
	if err != nil || res.Stored != 2 || f.prov.calls() != 3 || f.annotation(t, "SA").Attempt != 1 {
		t.Fatalf("stored %d after %d calls (err %v); want the failed call repeated once, not counted as a re-ask", res.Stored, f.prov.calls(), err)
	}
}

func TestAShortRateLimitIsWaitedOutInsideTheBatch(t *testing.T) {
	f := newFixture(t, 2)
	f.prov.replies = []any{&llm.Error{Kind: llm.RateLimited, Provider: "fake", RetryAfter: 50 * time.Millisecond}}
	res, err := f.batch(t, 0, 2)
	if err != nil {
		t.Fatal(err)
	}
	if res.Stored != 2 || f.prov.calls() != 3 || f.annotation(t, "SA").Attempt != 1 {
		t.Fatalf("stored %d after %d calls; want the limited call repeated once, not counted as a re-ask", res.Stored, f.prov.calls())
	}
}

func TestBrokenPromptOverrideFailsWithoutRetry(t *testing.T) {
	f := newFixture(t, 1)
	dir := filepath.Join(f.acts.Prompts.Dir, "overrides", "annotator_1")
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, "urgency.txt"), []byte("no placeholder"), 0o644); err != nil {
		t.Fatal(err)
	}
	_, err := f.batch(t, 0, 1)
	var app *temporal.ApplicationError
	if !errors.As(err, &app) || app.Type() != contract.ErrPromptMissing || !app.NonRetryable() || f.prov.calls() != 0 {
		t.Fatalf("error = %v after %d calls, want a non-retryable PromptMissing before any call", err, f.prov.calls())
	}
}

func TestProgressFindsTheFirstGap(t *testing.T) {
	f := newFixture(t, 6)
	if _, err := f.batch(t, 0, 3); err != nil {
		t.Fatal(err)
	}
	v, err := f.env.ExecuteActivity(f.acts.Progress, contract.ProgressInput{Annotator: "1", Domain: labels.Urgency, Target: 5})
	if err != nil {
		t.Fatal(err)
	}
	var p contract.ProgressResult
	if err := v.Get(&p); err != nil {
		t.Fatal(err)
	}
	if p.FirstMissing != 3 || p.Counts.OK != 3 || p.DatasetSize != 6 {
		t.Fatalf("progress = %+v, want first missing 3 with 3 done", p)
	}
}

// slowProvider answers after a pause, counting the calls in flight.
type slowProvider struct {
	mu       sync.Mutex
	inFlight int
	peak     int
	prompts  map[string]int
}

func (p *slowProvider) Complete(ctx context.Context, req llm.Request) (llm.Response, error) {
	p.mu.Lock()
	p.inFlight++
	p.peak = max(p.peak, p.inFlight)
	p.prompts[req.Prompt]++
	p.mu.Unlock()
	defer func() {
		p.mu.Lock()
		p.inFlight--
		p.mu.Unlock()
	}()
	select {
	case <-time.After(20 * time.Millisecond):
	case <-ctx.Done():
		return llm.Response{}, ctx.Err()
	}
	return llm.Response{Text: "<<LEVEL_2>>"}, nil
}

func TestLanesUseTheWorkersIdleCallSlotsAndStoreEachSampleOnce(t *testing.T) {
	f := newFixture(t, 40)
	prov := &slowProvider{prompts: map[string]int{}}
	f.acts.Provider = func(config.Annotator) (llm.Provider, error) { return prov, nil }
	f.acts.CallSlots = make(chan struct{}, 4)
	res, err := f.batch(t, 0, 40)
	if err != nil {
		t.Fatal(err)
	}
	if res.Next != 40 || res.Stored != 40 || res.Counts.OK != 40 {
		t.Fatalf("result = %+v, want all 40 stored", res)
	}
	if len(prov.prompts) != 40 {
		t.Fatalf("%d distinct prompts, want 40", len(prov.prompts))
	}
	for prompt, n := range prov.prompts {
		if n != 1 {
			t.Fatalf("prompt asked %d times: %q", n, prompt)
		}
	}
	// More than one lane worked, and never more calls at once than the worker's call slots.
	if prov.peak < 2 || prov.peak > 4 {
		t.Fatalf("peak calls in flight = %d, want 2..4 with 4 call slots", prov.peak)
	}
}
