package gemini

import (
	"context"
	"encoding/json"
	"io"
	"net/http"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/mhannotator/mha/internal/config"
	"github.com/mhannotator/mha/internal/llm"
	"github.com/mhannotator/mha/internal/llm/httpx"
	"github.com/mhannotator/mha/internal/llm/providertest"
)

// testKey is distinctive, so a test can tell that it appears nowhere it must not.
const testKey = "AIzaTEST-key-9f8e7d6c5b4a-never-print-me"

const testModel = "gemini-2.5-flash"

// provider is what the tests all providers share need to know of this one.
var provider = providertest.Provider{
	Name:  config.ProviderGemini,
	Key:   testKey,
	Model: testModel,
	New: func(t *testing.T, url string, stream bool, set func(*httpx.Options)) llm.Provider {
		return newClient(t, url, stream, func(o *Options) { set(&o.Options) })
	},
	Sep: "\r\n",
	Event: func(text string, final bool) string {
		finish := ""
		if final {
			finish = `, "finishReason": "STOP"`
		}
		return `{"candidates": [{"content": {"parts": [{"text": "` + text + `"}]}` + finish + `}]}`
	},
	KeyEcho: `{"error": {"code": 400, "message": "API key not valid: ` + testKey + `", "status": "INVALID_ARGUMENT"}}`,
}

func newClient(t *testing.T, url string, stream bool, opts ...func(*Options)) *Client {
	t.Helper()
	temp, budget := 0.0, 0
	o := Options{
		Options: httpx.Options{
			BaseURL: url, APIKey: testKey, Model: testModel, Stream: stream,
			RequestTimeout: 5 * time.Second, StreamIdleTimeout: 2 * time.Second,
			Temperature: &temp, MaxOutputTokens: 64,
		},
		ThinkingBudget: &budget, SafetyThreshold: "BLOCK_NONE",
	}
	for _, f := range opts {
		f(&o)
	}
	c, err := New(o)
	if err != nil {
		t.Fatal(err)
	}
	return c
}

const okReply = `{
  "candidates": [{"content": {"role": "model", "parts": [{"text": "thinking about it", "thought": true}, {"text": "Reasoning. <<LEVEL_2>>"}]},
                  "finishReason": "STOP", "index": 0}],
  "usageMetadata": {"promptTokenCount": 412, "candidatesTokenCount": 14, "thoughtsTokenCount": 5, "totalTokenCount": 431},
  "modelVersion": "gemini-2.5-flash-001", "responseId": "abc123"}`

func TestCompleteSendsTheConfiguredRequestAndReadsTextUsageAndModel(t *testing.T) {
	providertest.Modes(t, func(t *testing.T, stream bool) {
		h := providertest.Respond(http.StatusOK, nil, okReply)
		if stream {
			h = providertest.Stream("\r\n",
				`{"candidates": [{"content": {"parts": [{"text": "thinking about it", "thought": true}]}}], "usageMetadata": {"promptTokenCount": 412}}`,
				`{"candidates": [{"content": {"parts": [{"text": "Reasoning. "}]}}], "usageMetadata": {"promptTokenCount": 412, "candidatesTokenCount": 3}}`,
				`{"candidates": [{"content": {"parts": [{"text": "<<LEVEL_2>>"}]}, "finishReason": "STOP"}], "usageMetadata": {"promptTokenCount": 412, "candidatesTokenCount": 14, "thoughtsTokenCount": 5}, "modelVersion": "gemini-2.5-flash-001"}`)
		}
		srv := providertest.NewServer(t, h)
		resp, err := newClient(t, srv.URL, stream).Complete(context.Background(), llm.Request{Prompt: "Label this: I feel low."})
		if err != nil {
			t.Fatalf("Complete: %v", err)
		}
		want := llm.Response{Text: "Reasoning. <<LEVEL_2>>", Model: "gemini-2.5-flash-001", InputTokens: 412, OutputTokens: 19}
		if resp != want {
			t.Errorf("response = %+v, want %+v", resp, want)
		}

		got := srv.Last(t)
		wantPath, wantQuery := "/v1beta/models/gemini-2.5-flash:generateContent", ""
		if stream {
			wantPath, wantQuery = "/v1beta/models/gemini-2.5-flash:streamGenerateContent", "alt=sse"
		}
		if got.Method != http.MethodPost || got.Path != wantPath || got.RawQuery != wantQuery {
			t.Errorf("request %s %s?%s, want POST %s?%s", got.Method, got.Path, got.RawQuery, wantPath, wantQuery)
		}
		if k := got.Header.Get("x-goog-api-key"); k != testKey {
			t.Errorf("x-goog-api-key = %q, want the key", k)
		}
		if ct := got.Header.Get("Content-Type"); ct != "application/json" {
			t.Errorf("Content-Type = %q", ct)
		}
		var safety []any
		for _, c := range []string{"HARM_CATEGORY_DANGEROUS_CONTENT", "HARM_CATEGORY_HARASSMENT", "HARM_CATEGORY_HATE_SPEECH", "HARM_CATEGORY_SEXUALLY_EXPLICIT"} {
			safety = append(safety, map[string]any{"category": c, "threshold": "BLOCK_NONE"})
		}
		wantBody := map[string]any{
			"contents":         []any{map[string]any{"role": "user", "parts": []any{map[string]any{"text": "Label this: I feel low."}}}},
			"generationConfig": map[string]any{"temperature": 0.0, "maxOutputTokens": 64.0, "thinkingConfig": map[string]any{"thinkingBudget": 0.0}},
			"safetySettings":   safety,
		}
		if !reflect.DeepEqual(got.Body, wantBody) {
			t.Errorf("body = %v\nwant   %v", got.Body, wantBody)
		}
	})
}

func TestUnsetOptionsAreLeftOutOfTheRequest(t *testing.T) {
	srv := providertest.NewServer(t, providertest.Respond(http.StatusOK, nil, okReply))
	c := newClient(t, srv.URL+"/", false, func(o *Options) {
		o.Temperature, o.MaxOutputTokens, o.ThinkingBudget, o.SafetyThreshold = nil, 0, nil, ""
	})
	if _, err := c.Complete(context.Background(), llm.Request{Prompt: "p"}); err != nil {
		t.Fatal(err)
	}
	got := srv.Last(t)
	if _, ok := got.Body["generationConfig"]; ok {
		t.Errorf("generationConfig sent although nothing is set: %v", got.Body)
	}
	if _, ok := got.Body["safetySettings"]; ok {
		t.Errorf("safetySettings sent for an empty threshold: %v", got.Body)
	}
	if got.Path != "/v1beta/models/gemini-2.5-flash:generateContent" {
		t.Errorf("path %q: a trailing slash on the base URL must not double", got.Path)
	}
}

func TestRequestModelOverridesTheClientsAndAModelsPrefixIsDropped(t *testing.T) {
	srv := providertest.NewServer(t, providertest.Respond(http.StatusOK, nil, okReply))
	c := newClient(t, srv.URL, false)
	for req, want := range map[string]string{"gemma-3-27b-it": "gemma-3-27b-it", "models/gemini-2.0-flash": "gemini-2.0-flash"} {
		if _, err := c.Complete(context.Background(), llm.Request{Model: req, Prompt: "p"}); err != nil {
			t.Fatal(err)
		}
		if got := srv.Last(t).Path; got != "/v1beta/models/"+want+":generateContent" {
			t.Errorf("model %q: path %q", req, got)
		}
	}
}

func TestReplyWithoutModelVersionNamesTheRequestedModel(t *testing.T) {
	srv := providertest.NewServer(t, providertest.Respond(http.StatusOK, nil, `{"candidates": [{"content": {"parts": [{"text": "<<LEVEL_1>>"}]}, "finishReason": "STOP"}]}`))
	resp, err := newClient(t, srv.URL, false).Complete(context.Background(), llm.Request{Prompt: "p"})
	if err != nil || resp.Model != testModel || resp.Text != "<<LEVEL_1>>" || resp.InputTokens != 0 {
		t.Errorf("Complete = %+v, %v", resp, err)
	}
}

func TestErrorRepliesAreClassified(t *testing.T) {
	quota := func(quotaIDs ...string) string {
		var vs []string
		for _, id := range quotaIDs {
			vs = append(vs, `{"quotaMetric": "generativelanguage.googleapis.com/generate_content_free_tier_requests", "quotaId": "`+id+`", "quotaValue": "10"}`)
		}
		return `{"@type": "type.googleapis.com/google.rpc.QuotaFailure", "violations": [` + strings.Join(vs, ",") + `]}`
	}
	retryInfo := func(d string) string {
		return `{"@type": "type.googleapis.com/google.rpc.RetryInfo", "retryDelay": "` + d + `"}`
	}
	errBody := func(code int, status, msg string, details ...string) string {
		b, _ := json.Marshal(msg)
		return `{"error": {"code": ` + itoa(code) + `, "message": ` + string(b) + `, "status": "` + status + `", "details": [` + strings.Join(details, ",") + `]}}`
	}
	const exceeded = "You exceeded your current quota, please check your plan and billing details."
	providertest.Replies(t, provider, []providertest.Case{
		{Name: "400 API_KEY_INVALID", Status: 400, Body: errBody(400, "INVALID_ARGUMENT", "API key not valid. Please pass a valid API key.",
			`{"@type": "type.googleapis.com/google.rpc.ErrorInfo", "reason": "API_KEY_INVALID", "domain": "googleapis.com"}`), Kind: llm.InvalidKey},
		{Name: "400 with only the message", Status: 400, Body: errBody(400, "INVALID_ARGUMENT", "API key not valid. Please pass a valid API key."), Kind: llm.InvalidKey},
		{Name: "401", Status: 401, Body: errBody(401, "UNAUTHENTICATED", "Request had invalid authentication credentials."), Kind: llm.InvalidKey},
		{Name: "403", Status: 403, Body: errBody(403, "PERMISSION_DENIED", "Generative Language API has not been used in project 1 before or it is disabled."), Kind: llm.InvalidKey},
		{Name: "404", Status: 404, Body: errBody(404, "NOT_FOUND", "models/gemini-9 is not found for API version v1beta."), Kind: llm.ModelNotFound},
		{Name: "429 limit 0", Status: 429, Body: errBody(429, "RESOURCE_EXHAUSTED", exceeded+" Quota exceeded for metric: x, limit: 0, model: gemini-2.5-pro. Please retry in 26.4s.",
			quota("GenerateRequestsPerDayPerProjectPerModel-FreeTier"), retryInfo("26s")), Kind: llm.NoQuota},
		{Name: "429 per day", Status: 429, Body: errBody(429, "RESOURCE_EXHAUSTED", exceeded,
			quota("GenerateRequestsPerDayPerProjectPerModel-FreeTier"), retryInfo("26s")), Kind: llm.DailyQuota, ResetAt: checkPacificMidnight},
		{Name: "429 with a per-day among three violations", Status: 429, Body: errBody(429, "RESOURCE_EXHAUSTED", exceeded,
			quota("GenerateRequestsPerMinutePerProjectPerModel-FreeTier", "GenerateRequestsPerDayPerProjectPerModel-FreeTier", "GenerateContentInputTokensPerModelPerMinute-FreeTier")),
			Kind: llm.DailyQuota, ResetAt: checkPacificMidnight},
		{Name: "429 per minute with RetryInfo", Status: 429, Header: map[string]string{"Retry-After": "99"}, Body: errBody(429, "RESOURCE_EXHAUSTED", exceeded+" Please retry in 26.4s.",
			quota("GenerateRequestsPerMinutePerProjectPerModel-FreeTier"), `{"@type": "type.googleapis.com/google.rpc.Help"}`, retryInfo("26s")), Kind: llm.RateLimited, RetryAfter: 26 * time.Second},
		{Name: "429 with a fractional RetryInfo", Status: 429, Body: errBody(429, "RESOURCE_EXHAUSTED", exceeded, retryInfo("38.804097346s")),
			Kind: llm.RateLimited, RetryAfter: 38804097346 * time.Nanosecond},
		{Name: "429 with the delay only in the message", Status: 429, Header: map[string]string{"Retry-After": "99"}, Body: errBody(429, "RESOURCE_EXHAUSTED", exceeded+" Please retry in 26.4s."),
			Kind: llm.RateLimited, RetryAfter: 26400 * time.Millisecond},
		{Name: "429 with the delay only in Retry-After", Status: 429, Header: map[string]string{"Retry-After": "7"}, Body: errBody(429, "RESOURCE_EXHAUSTED", "Resource has been exhausted (e.g. check quota)."),
			Kind: llm.RateLimited, RetryAfter: 7 * time.Second},
		{Name: "429 with no delay at all", Status: 429, Body: errBody(429, "RESOURCE_EXHAUSTED", "Resource has been exhausted."), Kind: llm.RateLimited},
		{Name: "400 input too long", Status: 400, Body: errBody(400, "INVALID_ARGUMENT", "The input token count (1200000) exceeds the maximum number of tokens allowed (1048576)."), Kind: llm.BadRequest},
		{Name: "400 failed precondition", Status: 400, Body: errBody(400, "FAILED_PRECONDITION", "User location is not supported for the API use."), Kind: llm.BadRequest},
		{Name: "408", Status: 408, Kind: llm.Unavailable},
		{Name: "500", Status: 500, Body: errBody(500, "INTERNAL", "An internal error has occurred."), Kind: llm.Unavailable},
		{Name: "503 overloaded", Status: 503, Body: errBody(503, "UNAVAILABLE", "The model is overloaded. Please try again later."), Kind: llm.Unavailable},
		{Name: "504", Status: 504, Body: errBody(504, "DEADLINE_EXCEEDED", "Deadline expired before operation could complete."), Kind: llm.Unavailable},
		{Name: "502 from a proxy, in HTML", Status: 502, Body: "<html><body>502 Bad Gateway</body></html>", Kind: llm.Unavailable, Shows: "502 Bad Gateway"},
	})
}

func itoa(n int) string { b, _ := json.Marshal(n); return string(b) }

// checkPacificMidnight checks that at is the first midnight in Los Angeles after now.
func checkPacificMidnight(t *testing.T, at, now time.Time) {
	t.Helper()
	la, err := time.LoadLocation("America/Los_Angeles")
	if err != nil {
		t.Fatal(err)
	}
	local := at.In(la)
	if local.Hour() != 0 || local.Minute() != 0 || local.Second() != 0 || local.Nanosecond() != 0 {
		t.Errorf("ResetAt = %v, want a midnight in Los Angeles", local)
	}
	// A day is 23 to 25 hours long across daylight saving changes.
	if !at.After(now) || at.Sub(now) > 25*time.Hour {
		t.Errorf("ResetAt = %v, want the next midnight after %v", local, now.In(la))
	}
}

func TestNextMidnightCountsLocalDaysAcrossDaylightSaving(t *testing.T) {
	la := pacific()
	cases := []struct{ now, want time.Time }{
		{time.Date(2026, 11, 3, 23, 59, 0, 0, la), time.Date(2026, 11, 4, 0, 0, 0, 0, la)},
		{time.Date(2026, 11, 4, 0, 0, 0, 0, la), time.Date(2026, 11, 5, 0, 0, 0, 0, la)},
		// 07:30 UTC on 3 Nov is still 2 Nov in Los Angeles.
		{time.Date(2026, 11, 3, 7, 30, 0, 0, time.UTC), time.Date(2026, 11, 3, 0, 0, 0, 0, la)},
		// The day daylight saving ends is 25 hours long.
		{time.Date(2026, 11, 1, 0, 30, 0, 0, la), time.Date(2026, 11, 2, 0, 0, 0, 0, la)},
	}
	for _, c := range cases {
		if got := nextMidnight(c.now, la); !got.Equal(c.want) {
			t.Errorf("nextMidnight(%v) = %v, want %v", c.now, got, c.want)
		}
	}
}

func TestOutcomesOfASuccessfulStatusAreClassified(t *testing.T) {
	// A streamed reply is the same body as its one event.
	providertest.Replies(t, provider, []providertest.Case{
		{Name: "a blocked prompt", Body: `{"promptFeedback": {"blockReason": "SAFETY", "safetyRatings": []}, "usageMetadata": {"promptTokenCount": 398}, "modelVersion": "gemini-2.5-flash"}`,
			Kind: llm.Blocked, Message: "SAFETY"},
		{Name: "a prompt blocked for OTHER", Body: `{"promptFeedback": {"blockReason": "OTHER"}}`, Kind: llm.Blocked, Message: "OTHER"},
		{Name: "a SAFETY finish without content", Body: `{"candidates": [{"finishReason": "SAFETY", "safetyRatings": [{"category": "HARM_CATEGORY_DANGEROUS_CONTENT", "probability": "HIGH", "blocked": true}]}]}`,
			Kind: llm.Blocked, Message: "SAFETY"},
		{Name: "a PROHIBITED_CONTENT finish", Body: `{"candidates": [{"content": {"parts": [{"text": "partial"}]}, "finishReason": "PROHIBITED_CONTENT"}]}`, Kind: llm.Blocked, Message: "PROHIBITED_CONTENT"},
		{Name: "a BLOCKLIST finish", Body: `{"candidates": [{"finishReason": "BLOCKLIST"}]}`, Kind: llm.Blocked, Message: "BLOCKLIST"},
		{Name: "an SPII finish", Body: `{"candidates": [{"finishReason": "SPII"}]}`, Kind: llm.Blocked, Message: "SPII"},
		{Name: "MAX_TOKENS with no text", Body: `{"candidates": [{"content": {"role": "model"}, "finishReason": "MAX_TOKENS"}], "usageMetadata": {"promptTokenCount": 10, "thoughtsTokenCount": 64}}`,
			Kind: llm.MaxTokensEmpty},
		{Name: "MAX_TOKENS with only thoughts", Body: `{"candidates": [{"content": {"parts": [{"text": "hmm", "thought": true}]}, "finishReason": "MAX_TOKENS"}]}`,
			Kind: llm.MaxTokensEmpty},
		{Name: "MAX_TOKENS with some text", Body: `{"candidates": [{"content": {"parts": [{"text": "Reasoning so fa"}]}, "finishReason": "MAX_TOKENS"}]}`,
			Text: "Reasoning so fa"},
		{Name: "no candidates and no block reason", Body: `{"usageMetadata": {"promptTokenCount": 3}}`, Kind: llm.Unavailable},
		{Name: "a body that is not JSON", Body: `<html>oops</html>`, Kind: llm.Unavailable},
	})
}

func TestStreamsAreReadWithEveryLineEnding(t *testing.T) {
	chunks := []string{
		`{"candidates": [{"content": {"parts": [{"text": "<<LEV"}]}}], "usageMetadata": {"promptTokenCount": 7, "candidatesTokenCount": 1}}`,
		`{"candidates": [{"content": {"parts": [{"text": "EL_3>>"}]}, "finishReason": "STOP"}], "usageMetadata": {"promptTokenCount": 7, "candidatesTokenCount": 4}}`,
	}
	for name, sep := range map[string]string{"LF": "\n", "CRLF": "\r\n", "CR": "\r"} {
		t.Run(name, func(t *testing.T) {
			srv := providertest.NewServer(t, providertest.Stream(sep, chunks...))
			resp, err := newClient(t, srv.URL, true).Complete(context.Background(), llm.Request{Prompt: "p"})
			want := llm.Response{Text: "<<LEVEL_3>>", Model: testModel, InputTokens: 7, OutputTokens: 4}
			if err != nil || resp != want {
				t.Errorf("Complete = %+v, %v; want %+v (the last usage counts)", resp, err, want)
			}
		})
	}
}

func TestAStreamedFrameOverOneMiBIsRead(t *testing.T) {
	big := strings.Repeat("word ", 400_000) // 2 MB in one event
	srv := providertest.NewServer(t, providertest.Stream("\r\n",
		`{"candidates": [{"content": {"parts": [{"text": "`+big+`"}]}}]}`,
		`{"candidates": [{"content": {"parts": [{"text": "<<LEVEL_0>>"}]}, "finishReason": "STOP"}]}`))
	resp, err := newClient(t, srv.URL, true).Complete(context.Background(), llm.Request{Prompt: "p"})
	if err != nil || resp.Text != big+"<<LEVEL_0>>" {
		t.Fatalf("Complete: %v (text of %d bytes, want %d)", err, len(resp.Text), len(big)+11)
	}
}

func TestAnErrorInsideAStreamIsClassifiedByItsCode(t *testing.T) {
	first := `data: {"candidates": [{"content": {"parts": [{"text": "<<LEV"}]}}]}` + "\r\n\r\n"
	cases := []struct {
		name       string
		line       string
		kind       llm.Kind
		status     int
		retryAfter time.Duration
	}{
		{"a bare error line, overloaded", `{"error": {"code": 503, "message": "The model is overloaded.", "status": "UNAVAILABLE"}}`, llm.Unavailable, 503, 0},
		{"a bare error line, rate limited", `{"error": {"code": 429, "message": "Resource exhausted.", "status": "RESOURCE_EXHAUSTED", "details": [{"@type": "type.googleapis.com/google.rpc.RetryInfo", "retryDelay": "3s"}]}}`,
			llm.RateLimited, 429, 3 * time.Second},
		{"an error event", `data: {"error": {"code": 500, "message": "Internal error.", "status": "INTERNAL"}}`, llm.Unavailable, 500, 0},
		{"an error without a code", `{"error": {"message": "stream aborted"}}`, llm.Unavailable, 0, 0},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			srv := providertest.NewServer(t, func(w http.ResponseWriter, r *http.Request) {
				io.WriteString(w, first+c.line+"\r\n\r\n")
			})
			_, err := newClient(t, srv.URL, true).Complete(context.Background(), llm.Request{Prompt: "p"})
			e := provider.WantKind(t, err, c.kind)
			if e.StatusCode != c.status || e.RetryAfter != c.retryAfter {
				t.Errorf("StatusCode %d RetryAfter %v, want %d and %v", e.StatusCode, e.RetryAfter, c.status, c.retryAfter)
			}
		})
	}
}

func TestConnectionFailures(t *testing.T) { providertest.ConnectionFailures(t, provider) }

func TestNewRejectsABaseURLThatIsNotHTTP(t *testing.T) {
	for _, u := range []string{"ftp://x", "localhost:8080", "http://"} {
		if _, err := New(Options{Options: httpx.Options{BaseURL: u}}); err == nil {
			t.Errorf("New accepted base URL %q", u)
		}
	}
	c, err := New(Options{})
	if err != nil || c.base != DefaultBaseURL || c.http.RequestTimeout != DefaultRequestTimeout || c.http.StreamIdleTimeout != DefaultStreamIdleTimeout {
		t.Errorf("zero Options: %+v, %v; want the defaults", c, err)
	}
}
