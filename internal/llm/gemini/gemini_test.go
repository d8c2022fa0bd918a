package gemini

import (
	"context"
	"encoding/json"
	"errors"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"reflect"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/mhannotator/mha/internal/llm"
)

// testKey is distinctive, so a test can tell that it appears nowhere it must not.
const testKey = "AIzaTEST-key-9f8e7d6c5b4a-never-print-me"

const testModel = "gemini-2.5-flash"

// received is what the test server saw of a request.
type received struct {
	method, path, rawQuery string
	header                 http.Header
	body                   map[string]any
}

// server serves handler and records each request.
type server struct {
	*httptest.Server
	mu       sync.Mutex
	requests []received
}

func newServer(t *testing.T, handler http.HandlerFunc) *server {
	t.Helper()
	s := &server{}
	release := make(chan struct{})
	s.Server = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		raw, _ := io.ReadAll(r.Body)
		var body map[string]any
		json.Unmarshal(raw, &body)
		s.mu.Lock()
		s.requests = append(s.requests, received{r.Method, r.URL.Path, r.URL.RawQuery, r.Header.Clone(), body})
		s.mu.Unlock()
		handler(w, r.WithContext(withRelease(r.Context(), release)))
	}))
	t.Cleanup(s.Close)
	t.Cleanup(func() { close(release) }) // runs first, so no handler keeps Close waiting
	return s
}

type releaseKey struct{}

func withRelease(ctx context.Context, ch chan struct{}) context.Context {
	return context.WithValue(ctx, releaseKey{}, ch)
}

// hang blocks until the client goes away or the test ends.
func hang(r *http.Request) {
	select {
	case <-r.Context().Done():
	case <-r.Context().Value(releaseKey{}).(chan struct{}):
	}
}

func (s *server) last(t *testing.T) received {
	t.Helper()
	s.mu.Lock()
	defer s.mu.Unlock()
	if len(s.requests) == 0 {
		t.Fatal("the server got no request")
	}
	return s.requests[len(s.requests)-1]
}

func newClient(t *testing.T, url string, stream bool, opts ...func(*Options)) *Client {
	t.Helper()
	temp, budget := 0.0, 0
	o := Options{
		BaseURL: url, APIKey: testKey, Model: testModel, Stream: stream,
		RequestTimeout: 5 * time.Second, StreamIdleTimeout: 2 * time.Second,
		Temperature: &temp, MaxOutputTokens: 64, ThinkingBudget: &budget, SafetyThreshold: "BLOCK_NONE",
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

// respond answers with status and body.
func respond(status int, body string) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		w.WriteHeader(status)
		io.WriteString(w, body)
	}
}

// streamReply answers with each chunk as one SSE event whose lines end in sep, flushing
// after each.
func streamReply(sep string, chunks ...string) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "text/event-stream")
		for _, c := range chunks {
			io.WriteString(w, "data: "+c+sep+sep)
			w.(http.Flusher).Flush()
		}
	}
}

// modes runs f for a plain and a streamed client.
func modes(t *testing.T, f func(t *testing.T, stream bool)) {
	for _, stream := range []bool{false, true} {
		name := "generateContent"
		if stream {
			name = "streamGenerateContent"
		}
		t.Run(name, func(t *testing.T) { f(t, stream) })
	}
}

// handlerFor answers a plain call with body as it is, and a streamed one with body as one
// event: the error and block outcomes look the same either way.
func handlerFor(stream bool, status int, body string) http.HandlerFunc {
	if stream && status == http.StatusOK {
		return streamReply("\r\n", body)
	}
	return respond(status, body)
}

func wantKind(t *testing.T, err error, kind llm.Kind) *llm.Error {
	t.Helper()
	var e *llm.Error
	if !errors.As(err, &e) {
		t.Fatalf("err = %v, want an *llm.Error of kind %s", err, kind)
	}
	if e.Kind != kind || e.Provider != "gemini" {
		t.Fatalf("err = %v (kind %s), want kind %s from gemini", err, e.Kind, kind)
	}
	if strings.Contains(err.Error(), testKey) {
		t.Fatalf("the error shows the API key: %v", err)
	}
	return e
}

const okReply = `{
  "candidates": [{"content": {"role": "model", "parts": [{"text": "thinking about it", "thought": true}, {"text": "Reasoning. <<LEVEL_2>>"}]},
                  "finishReason": "STOP", "index": 0}],
  "usageMetadata": {"promptTokenCount": 412, "candidatesTokenCount": 14, "thoughtsTokenCount": 5, "totalTokenCount": 431},
  "modelVersion": "gemini-2.5-flash-001", "responseId": "abc123"}`

func TestCompleteSendsTheConfiguredRequestAndReadsTextUsageAndModel(t *testing.T) {
	modes(t, func(t *testing.T, stream bool) {
		h := respond(http.StatusOK, okReply)
		if stream {
			h = streamReply("\r\n",
				`{"candidates": [{"content": {"parts": [{"text": "thinking about it", "thought": true}]}}], "usageMetadata": {"promptTokenCount": 412}}`,
				`{"candidates": [{"content": {"parts": [{"text": "Reasoning. "}]}}], "usageMetadata": {"promptTokenCount": 412, "candidatesTokenCount": 3}}`,
				`{"candidates": [{"content": {"parts": [{"text": "<<LEVEL_2>>"}]}, "finishReason": "STOP"}], "usageMetadata": {"promptTokenCount": 412, "candidatesTokenCount": 14, "thoughtsTokenCount": 5}, "modelVersion": "gemini-2.5-flash-001"}`)
		}
		srv := newServer(t, h)
		resp, err := newClient(t, srv.URL, stream).Complete(context.Background(), llm.Request{Prompt: "Label this: I feel low."})
		if err != nil {
			t.Fatalf("Complete: %v", err)
		}
		want := llm.Response{Text: "Reasoning. <<LEVEL_2>>", Model: "gemini-2.5-flash-001", InputTokens: 412, OutputTokens: 19}
		if resp != want {
			t.Errorf("response = %+v, want %+v", resp, want)
		}

		got := srv.last(t)
		wantPath, wantQuery := "/v1beta/models/gemini-2.5-flash:generateContent", ""
		if stream {
			wantPath, wantQuery = "/v1beta/models/gemini-2.5-flash:streamGenerateContent", "alt=sse"
		}
		if got.method != http.MethodPost || got.path != wantPath || got.rawQuery != wantQuery {
			t.Errorf("request %s %s?%s, want POST %s?%s", got.method, got.path, got.rawQuery, wantPath, wantQuery)
		}
		if k := got.header.Get("x-goog-api-key"); k != testKey {
			t.Errorf("x-goog-api-key = %q, want the key", k)
		}
		if ct := got.header.Get("Content-Type"); ct != "application/json" {
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
		if !reflect.DeepEqual(got.body, wantBody) {
			t.Errorf("body = %v\nwant   %v", got.body, wantBody)
		}
	})
}

func TestUnsetOptionsAreLeftOutOfTheRequest(t *testing.T) {
	srv := newServer(t, respond(http.StatusOK, okReply))
	c := newClient(t, srv.URL+"/", false, func(o *Options) {
		o.Temperature, o.MaxOutputTokens, o.ThinkingBudget, o.SafetyThreshold = nil, 0, nil, ""
	})
	if _, err := c.Complete(context.Background(), llm.Request{Prompt: "p"}); err != nil {
		t.Fatal(err)
	}
	got := srv.last(t)
	if _, ok := got.body["generationConfig"]; ok {
		t.Errorf("generationConfig sent although nothing is set: %v", got.body)
	}
	if _, ok := got.body["safetySettings"]; ok {
		t.Errorf("safetySettings sent for an empty threshold: %v", got.body)
	}
	if got.path != "/v1beta/models/gemini-2.5-flash:generateContent" {
		t.Errorf("path %q: a trailing slash on the base URL must not double", got.path)
	}
}

func TestRequestModelOverridesTheClientsAndAModelsPrefixIsDropped(t *testing.T) {
	srv := newServer(t, respond(http.StatusOK, okReply))
	c := newClient(t, srv.URL, false)
	for req, want := range map[string]string{"gemma-3-27b-it": "gemma-3-27b-it", "models/gemini-2.0-flash": "gemini-2.0-flash"} {
		if _, err := c.Complete(context.Background(), llm.Request{Model: req, Prompt: "p"}); err != nil {
			t.Fatal(err)
		}
		if got := srv.last(t).path; got != "/v1beta/models/"+want+":generateContent" {
			t.Errorf("model %q: path %q", req, got)
		}
	}
}

func TestReplyWithoutModelVersionNamesTheRequestedModel(t *testing.T) {
	srv := newServer(t, respond(http.StatusOK, `{"candidates": [{"content": {"parts": [{"text": "<<LEVEL_1>>"}]}, "finishReason": "STOP"}]}`))
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
	cases := []struct {
		name       string
		status     int
		header     map[string]string
		body       string
		kind       llm.Kind
		retryAfter time.Duration
		daily      bool
	}{
		{"400 API_KEY_INVALID", 400, nil, errBody(400, "INVALID_ARGUMENT", "API key not valid. Please pass a valid API key.",
			`{"@type": "type.googleapis.com/google.rpc.ErrorInfo", "reason": "API_KEY_INVALID", "domain": "googleapis.com"}`), llm.InvalidKey, 0, false},
		{"400 with only the message", 400, nil, errBody(400, "INVALID_ARGUMENT", "API key not valid. Please pass a valid API key."), llm.InvalidKey, 0, false},
		{"401", 401, nil, errBody(401, "UNAUTHENTICATED", "Request had invalid authentication credentials."), llm.InvalidKey, 0, false},
		{"403", 403, nil, errBody(403, "PERMISSION_DENIED", "Generative Language API has not been used in project 1 before or it is disabled."), llm.InvalidKey, 0, false},
		{"404", 404, nil, errBody(404, "NOT_FOUND", "models/gemini-9 is not found for API version v1beta."), llm.ModelNotFound, 0, false},
		{"429 limit 0", 429, nil, errBody(429, "RESOURCE_EXHAUSTED", exceeded+" Quota exceeded for metric: x, limit: 0, model: gemini-2.5-pro. Please retry in 26.4s.",
			quota("GenerateRequestsPerDayPerProjectPerModel-FreeTier"), retryInfo("26s")), llm.NoQuota, 0, false},
		{"429 per day", 429, nil, errBody(429, "RESOURCE_EXHAUSTED", exceeded,
			quota("GenerateRequestsPerDayPerProjectPerModel-FreeTier"), retryInfo("26s")), llm.DailyQuota, 0, true},
		{"429 with a per-day among three violations", 429, nil, errBody(429, "RESOURCE_EXHAUSTED", exceeded,
			quota("GenerateRequestsPerMinutePerProjectPerModel-FreeTier", "GenerateRequestsPerDayPerProjectPerModel-FreeTier", "GenerateContentInputTokensPerModelPerMinute-FreeTier")), llm.DailyQuota, 0, true},
		{"429 per minute with RetryInfo", 429, map[string]string{"Retry-After": "99"}, errBody(429, "RESOURCE_EXHAUSTED", exceeded+" Please retry in 26.4s.",
			quota("GenerateRequestsPerMinutePerProjectPerModel-FreeTier"), `{"@type": "type.googleapis.com/google.rpc.Help"}`, retryInfo("26s")), llm.RateLimited, 26 * time.Second, false},
		{"429 with a fractional RetryInfo", 429, nil, errBody(429, "RESOURCE_EXHAUSTED", exceeded, retryInfo("38.804097346s")),
			llm.RateLimited, 38804097346 * time.Nanosecond, false},
		{"429 with the delay only in the message", 429, map[string]string{"Retry-After": "99"}, errBody(429, "RESOURCE_EXHAUSTED", exceeded+" Please retry in 26.4s."),
			llm.RateLimited, 26400 * time.Millisecond, false},
		{"429 with the delay only in Retry-After", 429, map[string]string{"Retry-After": "7"}, errBody(429, "RESOURCE_EXHAUSTED", "Resource has been exhausted (e.g. check quota)."),
			llm.RateLimited, 7 * time.Second, false},
		{"429 with no delay at all", 429, nil, errBody(429, "RESOURCE_EXHAUSTED", "Resource has been exhausted."), llm.RateLimited, 0, false},
		{"400 input too long", 400, nil, errBody(400, "INVALID_ARGUMENT", "The input token count (1200000) exceeds the maximum number of tokens allowed (1048576)."), llm.BadRequest, 0, false},
		{"400 failed precondition", 400, nil, errBody(400, "FAILED_PRECONDITION", "User location is not supported for the API use."), llm.BadRequest, 0, false},
		{"408", 408, nil, "", llm.Unavailable, 0, false},
		{"500", 500, nil, errBody(500, "INTERNAL", "An internal error has occurred."), llm.Unavailable, 0, false},
		{"503 overloaded", 503, nil, errBody(503, "UNAVAILABLE", "The model is overloaded. Please try again later."), llm.Unavailable, 0, false},
		{"504", 504, nil, errBody(504, "DEADLINE_EXCEEDED", "Deadline expired before operation could complete."), llm.Unavailable, 0, false},
		{"502 from a proxy, in HTML", 502, nil, "<html><body>502 Bad Gateway</body></html>", llm.Unavailable, 0, false},
	}
	modes(t, func(t *testing.T, stream bool) {
		for _, c := range cases {
			t.Run(c.name, func(t *testing.T) {
				srv := newServer(t, func(w http.ResponseWriter, r *http.Request) {
					for k, v := range c.header {
						w.Header().Set(k, v)
					}
					respond(c.status, c.body)(w, r)
				})
				before := time.Now()
				_, err := newClient(t, srv.URL, stream).Complete(context.Background(), llm.Request{Prompt: "p"})
				e := wantKind(t, err, c.kind)
				if e.StatusCode != c.status {
					t.Errorf("StatusCode = %d, want %d", e.StatusCode, c.status)
				}
				if e.RetryAfter != c.retryAfter {
					t.Errorf("RetryAfter = %v, want %v", e.RetryAfter, c.retryAfter)
				}
				if c.daily {
					checkPacificMidnight(t, e.ResetAt, before)
				} else if !e.ResetAt.IsZero() {
					t.Errorf("ResetAt = %v, want none", e.ResetAt)
				}
				if c.status == 502 && !strings.Contains(e.Message, "502 Bad Gateway") {
					t.Errorf("message %q does not show the proxy's page", e.Message)
				}
			})
		}
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
	cases := []struct {
		name string
		body string
		kind llm.Kind // "" means success
		msg  string
		text string
	}{
		{"a blocked prompt", `{"promptFeedback": {"blockReason": "SAFETY", "safetyRatings": []}, "usageMetadata": {"promptTokenCount": 398}, "modelVersion": "gemini-2.5-flash"}`,
			llm.Blocked, "SAFETY", ""},
		{"a prompt blocked for OTHER", `{"promptFeedback": {"blockReason": "OTHER"}}`, llm.Blocked, "OTHER", ""},
		{"a SAFETY finish without content", `{"candidates": [{"finishReason": "SAFETY", "safetyRatings": [{"category": "HARM_CATEGORY_DANGEROUS_CONTENT", "probability": "HIGH", "blocked": true}]}]}`,
			llm.Blocked, "SAFETY", ""},
		{"a PROHIBITED_CONTENT finish", `{"candidates": [{"content": {"parts": [{"text": "partial"}]}, "finishReason": "PROHIBITED_CONTENT"}]}`, llm.Blocked, "PROHIBITED_CONTENT", ""},
		{"a BLOCKLIST finish", `{"candidates": [{"finishReason": "BLOCKLIST"}]}`, llm.Blocked, "BLOCKLIST", ""},
		{"an SPII finish", `{"candidates": [{"finishReason": "SPII"}]}`, llm.Blocked, "SPII", ""},
		{"MAX_TOKENS with no text", `{"candidates": [{"content": {"role": "model"}, "finishReason": "MAX_TOKENS"}], "usageMetadata": {"promptTokenCount": 10, "thoughtsTokenCount": 64}}`,
			llm.MaxTokensEmpty, "", ""},
		{"MAX_TOKENS with only thoughts", `{"candidates": [{"content": {"parts": [{"text": "hmm", "thought": true}]}, "finishReason": "MAX_TOKENS"}]}`,
			llm.MaxTokensEmpty, "", ""},
		{"MAX_TOKENS with some text", `{"candidates": [{"content": {"parts": [{"text": "Reasoning so fa"}]}, "finishReason": "MAX_TOKENS"}]}`,
			"", "", "Reasoning so fa"},
		{"no candidates and no block reason", `{"usageMetadata": {"promptTokenCount": 3}}`, llm.Unavailable, "", ""},
		{"a body that is not JSON", `<html>oops</html>`, llm.Unavailable, "", ""},
	}
	modes(t, func(t *testing.T, stream bool) {
		for _, c := range cases {
			t.Run(c.name, func(t *testing.T) {
				srv := newServer(t, handlerFor(stream, http.StatusOK, c.body))
				resp, err := newClient(t, srv.URL, stream).Complete(context.Background(), llm.Request{Prompt: "p"})
				if c.kind == "" {
					if err != nil || resp.Text != c.text {
						t.Fatalf("Complete = %+v, %v; want text %q", resp, err, c.text)
					}
					return
				}
				e := wantKind(t, err, c.kind)
				if c.msg != "" && e.Message != c.msg {
					t.Errorf("Message = %q, want %q", e.Message, c.msg)
				}
			})
		}
	})
}

func TestStreamsAreReadWithEveryLineEnding(t *testing.T) {
	chunks := []string{
		`{"candidates": [{"content": {"parts": [{"text": "<<LEV"}]}}], "usageMetadata": {"promptTokenCount": 7, "candidatesTokenCount": 1}}`,
		`{"candidates": [{"content": {"parts": [{"text": "EL_3>>"}]}, "finishReason": "STOP"}], "usageMetadata": {"promptTokenCount": 7, "candidatesTokenCount": 4}}`,
	}
	for name, sep := range map[string]string{"LF": "\n", "CRLF": "\r\n", "CR": "\r"} {
		t.Run(name, func(t *testing.T) {
			srv := newServer(t, streamReply(sep, chunks...))
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
	srv := newServer(t, streamReply("\r\n",
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
			srv := newServer(t, func(w http.ResponseWriter, r *http.Request) {
				io.WriteString(w, first+c.line+"\r\n\r\n")
			})
			_, err := newClient(t, srv.URL, true).Complete(context.Background(), llm.Request{Prompt: "p"})
			e := wantKind(t, err, c.kind)
			if e.StatusCode != c.status || e.RetryAfter != c.retryAfter {
				t.Errorf("StatusCode %d RetryAfter %v, want %d and %v", e.StatusCode, e.RetryAfter, c.status, c.retryAfter)
			}
		})
	}
}

func TestAStreamThatStallsIsCutAtTheIdleTimeoutNotTheRequestTimeout(t *testing.T) {
	srv := newServer(t, func(w http.ResponseWriter, r *http.Request) {
		io.WriteString(w, `data: {"candidates": [{"content": {"parts": [{"text": "<<LEV"}]}}]}`+"\r\n\r\n")
		w.(http.Flusher).Flush()
		hang(r)
	})
	c := newClient(t, srv.URL, true, func(o *Options) {
		o.RequestTimeout, o.StreamIdleTimeout = 20*time.Second, 200*time.Millisecond
	})
	var chunks atomic.Int32
	ctx := llm.WithProgress(context.Background(), func() { chunks.Add(1) })
	start := time.Now()
	_, err := c.Complete(ctx, llm.Request{Prompt: "p"})
	elapsed := time.Since(start)
	e := wantKind(t, err, llm.Unavailable)
	if e.Message != "stream stalled: no data for 200ms" {
		t.Errorf("Message = %q", e.Message)
	}
	if elapsed > 3*time.Second {
		t.Errorf("the stalled stream ended after %v, want about 200ms", elapsed)
	}
	if chunks.Load() != 1 {
		t.Errorf("progress reported %d times, want once for the one chunk", chunks.Load())
	}
}

func TestAServerThatNeverAnswersIsCutAtTheRequestTimeout(t *testing.T) {
	modes(t, func(t *testing.T, stream bool) {
		srv := newServer(t, func(w http.ResponseWriter, r *http.Request) { hang(r) })
		c := newClient(t, srv.URL, stream, func(o *Options) {
			o.RequestTimeout, o.StreamIdleTimeout = 300*time.Millisecond, 300*time.Millisecond
		})
		start := time.Now()
		_, err := c.Complete(context.Background(), llm.Request{Prompt: "p"})
		e := wantKind(t, err, llm.Unavailable)
		if !strings.Contains(e.Message, "request timeout 300ms") {
			t.Errorf("Message = %q, want it to name the request timeout", e.Message)
		}
		if elapsed := time.Since(start); elapsed > 3*time.Second {
			t.Errorf("took %v, want about 300ms", elapsed)
		}
	})
}

// resetConnection answers with a TCP reset.
func resetConnection(w http.ResponseWriter, r *http.Request) {
	conn, _, err := http.NewResponseController(w).Hijack()
	if err != nil {
		panic(err)
	}
	conn.(*net.TCPConn).SetLinger(0)
	conn.Close()
}

func TestAResetConnectionIsUnavailable(t *testing.T) {
	modes(t, func(t *testing.T, stream bool) {
		srv := newServer(t, resetConnection)
		_, err := newClient(t, srv.URL, stream).Complete(context.Background(), llm.Request{Prompt: "p"})
		wantKind(t, err, llm.Unavailable)
	})
}

func TestACancelledCallReturnsTheContextsError(t *testing.T) {
	modes(t, func(t *testing.T, stream bool) {
		srv := newServer(t, func(w http.ResponseWriter, r *http.Request) {
			io.WriteString(w, `data: {"candidates": [{"content": {"parts": [{"text": "x"}]}}]}`+"\n\n")
			w.(http.Flusher).Flush()
			hang(r)
		})
		ctx, cancel := context.WithCancel(context.Background())
		time.AfterFunc(100*time.Millisecond, cancel)
		_, err := newClient(t, srv.URL, stream).Complete(ctx, llm.Request{Prompt: "p"})
		if err != context.Canceled {
			t.Fatalf("err = %#v, want context.Canceled, unclassified", err)
		}
	})
}

func TestProgressIsReportedForEveryChunk(t *testing.T) {
	const n = 5
	srv := newServer(t, func(w http.ResponseWriter, r *http.Request) {
		for i := range n {
			finish := ""
			if i == n-1 {
				finish = `, "finishReason": "STOP"`
			}
			io.WriteString(w, `data: {"candidates": [{"content": {"parts": [{"text": "x"}]}`+finish+`}]}`+"\r\n\r\n")
			w.(http.Flusher).Flush()
			time.Sleep(20 * time.Millisecond) // so each chunk arrives on its own
		}
	})
	var chunks atomic.Int32
	ctx := llm.WithProgress(context.Background(), func() { chunks.Add(1) })
	resp, err := newClient(t, srv.URL, true).Complete(ctx, llm.Request{Prompt: "p"})
	if err != nil || resp.Text != "xxxxx" {
		t.Fatalf("Complete = %+v, %v", resp, err)
	}
	if got := chunks.Load(); got < n {
		t.Errorf("progress reported %d times for %d chunks", got, n)
	}
}

func TestTheKeyNeverAppearsInAnError(t *testing.T) {
	echo := `{"error": {"code": CODE, "message": "API key not valid: ` + testKey + `", "status": "X"}}`
	handlers := map[string]http.HandlerFunc{
		"400 echoing the key":    respond(400, strings.Replace(echo, "CODE", "400", 1)),
		"429 echoing the key":    respond(429, strings.Replace(echo, "CODE", "429", 1)),
		"500 echoing the key":    respond(500, strings.Replace(echo, "CODE", "500", 1)),
		"an HTML page with it":   respond(502, "<p>bad key "+testKey+"</p>"),
		"a 200 that is not JSON": respond(200, "key="+testKey),
		"a mid-stream echo":      streamReply("\n", strings.Replace(echo, "CODE", "503", 1)),
		"a reset":                resetConnection,
		"a hang":                 func(w http.ResponseWriter, r *http.Request) { hang(r) },
	}
	for name, h := range handlers {
		t.Run(name, func(t *testing.T) {
			srv := newServer(t, h)
			for _, stream := range []bool{false, true} {
				c := newClient(t, srv.URL, stream, func(o *Options) { o.RequestTimeout, o.StreamIdleTimeout = 300*time.Millisecond, 300*time.Millisecond })
				_, err := c.Complete(context.Background(), llm.Request{Prompt: "p"})
				if err == nil {
					t.Fatal("want an error")
				}
				if strings.Contains(err.Error(), testKey) || strings.Contains(fmtAll(err), testKey) {
					t.Errorf("the error shows the key: %v", err)
				}
			}
		})
	}
}

// fmtAll renders every error in err's chain.
func fmtAll(err error) string {
	var b strings.Builder
	for ; err != nil; err = errors.Unwrap(err) {
		b.WriteString(err.Error())
		b.WriteString("\n")
	}
	return b.String()
}

func TestNewRejectsABaseURLThatIsNotHTTP(t *testing.T) {
	for _, u := range []string{"ftp://x", "localhost:8080", "http://"} {
		if _, err := New(Options{BaseURL: u}); err == nil {
			t.Errorf("New accepted base URL %q", u)
		}
	}
	c, err := New(Options{})
	if err != nil || c.base != DefaultBaseURL || c.http.RequestTimeout != DefaultRequestTimeout || c.http.StreamIdleTimeout != DefaultStreamIdleTimeout {
		t.Errorf("zero Options: %+v, %v; want the defaults", c, err)
	}
}
