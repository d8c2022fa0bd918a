package activities

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/mhannotator/mha/internal/llm"
	"github.com/mhannotator/mha/internal/metrics"
	"github.com/mhannotator/mha/internal/store"
)

func TestOutcomeOfClassifiesEveryFailure(t *testing.T) {
	for _, c := range []struct {
		err  error
		want string
	}{
		{nil, OutcomeOK},
		{&llm.Error{Kind: llm.RateLimited, StatusCode: 429}, OutcomeRateLimitedMinute},
		{&llm.Error{Kind: llm.DailyQuota, StatusCode: 429}, OutcomeRateLimitedDay},
		{&llm.Error{Kind: llm.InvalidKey, StatusCode: 401}, OutcomeInvalidKey},
		{&llm.Error{Kind: llm.Blocked}, OutcomeBlocked},
		{&llm.Error{Kind: llm.BadRequest, StatusCode: 400}, OutcomeRejected},
		{&llm.Error{Kind: llm.Unavailable, StatusCode: 503}, OutcomeServerError},
		{&llm.Error{Kind: llm.Unavailable, Err: llm.ErrStalled}, OutcomeStalledStream},
		{&llm.Error{Kind: llm.Unavailable, Err: fmt.Errorf("%w: %w", llm.ErrTimeout, errors.New("canceled"))}, OutcomeTimeout},
		{&llm.Error{Kind: llm.Unavailable, Err: errors.New("connection reset by peer")}, OutcomeNetwork},
		{fmt.Errorf("call: %w", context.DeadlineExceeded), OutcomeTimeout},
		{errors.New("something else"), OutcomeOther},
	} {
		if got := outcomeOf(c.err); got != c.want {
			t.Errorf("outcomeOf(%v) = %s; want %s", c.err, got, c.want)
		}
	}
}

// TestMetersReachThePrometheusPage records through the real scope and reads the page a
// scrape gets: names, labels and values as the dashboards query them.
func TestMetersReachThePrometheusPage(t *testing.T) {
	scope, page, closer := metrics.New(nil)
	m := newMeters(scope)
	m.prepare("a1", "urgency", "gemini", "g-1")
	m.stored(store.Annotation{Annotator: "a1", Domain: "urgency", Status: store.StatusOK, InputTokens: 120, OutputTokens: 7})
	m.stored(store.Annotation{Annotator: "a1", Domain: "urgency", Status: store.StatusMalformed, InputTokens: 100, OutputTokens: 3})
	m.callStarted("gemini")
	m.callStarted("gemini")
	m.callEnded("gemini", "g-1", 300*time.Millisecond, OutcomeOK)
	m.reask("a1", "urgency")
	m.quotaGranted("pool-1", 4, 15)
	m.quotaWaited("pool-1", 2*time.Second)
	closer.Close() // flushes

	rec := httptest.NewRecorder()
	page.ServeHTTP(rec, httptest.NewRequest("GET", "/metrics", nil))
	body, _ := io.ReadAll(rec.Body)
	text := string(body)
	for _, want := range []string{
		`mha_annotations_stored_total{annotator="a1",domain="urgency",status="ok"} 1`,
		`mha_annotations_stored_total{annotator="a1",domain="urgency",status="malformed"} 1`,
		`mha_tokens_input_total{annotator="a1"} 220`,
		`mha_tokens_output_total{annotator="a1"} 10`,
		`mha_provider_calls_in_flight{provider="gemini"} 1`,
		`mha_provider_request_duration_seconds_bucket{model="g-1",provider="gemini",le="0.5"} 1`,
		`mha_provider_request_duration_seconds_bucket{model="g-1",provider="gemini",le="0.25"} 0`,
		`mha_provider_outcomes_total{model="g-1",outcome="ok",provider="gemini"} 1`,
		`mha_provider_outcomes_total{model="g-1",outcome="server_error",provider="gemini"} 0`,
		`mha_reasks_total{annotator="a1",domain="urgency"} 1`,
		`mha_deadline_cuts_total{annotator="a1",domain="urgency"} 0`,
		`mha_quota_granted_total{pool="pool-1"} 4`,
		`mha_quota_limit_requests_per_minute{pool="pool-1"} 15`,
		`mha_quota_wait_seconds_count{pool="pool-1"} 1`,
	} {
		if !strings.Contains(text, want+"\n") {
			t.Errorf("/metrics lacks %s", want)
		}
	}
	if t.Failed() {
		t.Logf("page:\n%s", text)
	}
}
