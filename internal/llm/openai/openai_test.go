package openai

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
const testKey = "sk-TEST-4c1d9a7e2b-never-print-me"

const testModel = "gpt-4o-mini"

// received is what the test server saw of a request.
type received struct {
	method, path string
	header       http.Header
	body         map[string]any
}

// server serves handler and records each request.
type server struct {
	*httptest.Server
	mu       sync.Mutex
	requests []received
}

type releaseKey struct{}

func newServer(t *testing.T, handler http.HandlerFunc) *server {
	t.Helper()
	s := &server{}
	release := make(chan struct{})
	s.Server = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		raw, _ := io.ReadAll(r.Body)
		var body map[string]any
		json.Unmarshal(raw, &body)
		s.mu.Lock()
		s.requests = append(s.requests, received{r.Method, r.URL.Path, r.Header.Clone(), body})
		s.mu.Unlock()
		handler(w, r.WithContext(context.WithValue(r.Context(), releaseKey{}, release)))
	}))
	t.Cleanup(s.Close)
	t.Cleanup(func() { close(release) }) // runs first, so no handler keeps Close waiting
	return s
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
	temp := 0.0
	o := Options{
		BaseURL: url, APIKey: testKey, Model: testModel, Stream: stream,
		RequestTimeout: 5 * time.Second, StreamIdleTimeout: 2 * time.Second,
		Temperature: &temp, MaxOutputTokens: 64,
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

// respond answers with status, headers and body.
func respond(status int, header map[string]string, body string) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		for k, v := range header {
			w.Header().Set(k, v)
		}
		w.Header().Set("Content-Type", "application/json")
		w.WriteHeader(status)
		io.WriteString(w, body)
	}
}

// streamReply answers with each chunk as one "data: " event, flushing after each.
func streamReply(chunks ...string) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "text/event-stream")
		for _, c := range chunks {
			io.WriteString(w, "data: "+c+"\n\n")
			w.(http.Flusher).Flush()
		}
	}
}

// modes runs f for a plain and a streamed client.
func modes(t *testing.T, f func(t *testing.T, stream bool)) {
	for _, stream := range []bool{false, true} {
		name := "whole"
		if stream {
			name = "stream"
		}
		t.Run(name, func(t *testing.T) { f(t, stream) })
	}
}

func wantKind(t *testing.T, err error, kind llm.Kind) *llm.Error {
	t.Helper()
	var e *llm.Error
	if !errors.As(err, &e) {
		t.Fatalf("err = %v, want an *llm.Error of kind %s", err, kind)
	}
	if e.Kind != kind || e.Provider != "openai" {
		t.Fatalf("err = %v (kind %s), want kind %s from openai", err, e.Kind, kind)
	}
	if strings.Contains(err.Error(), testKey) {
		t.Fatalf("the error shows the API key: %v", err)
	}
	return e
}

const okReply = `{"id": "chatcmpl-1", "object": "chat.completion", "created": 1726012687, "model": "gpt-4o-mini-2024-07-18",
 "choices": [{"index": 0, "message": {"role": "assistant", "content": "Reasoning. <<LEVEL_2>>", "refusal": null}, "logprobs": null, "finish_reason": "stop"}],
 "usage": {"prompt_tokens": 13, "completion_tokens": 5, "total_tokens": 18}, "system_fingerprint": null}`

func chunk(content, finish string) string {
	c, _ := json.Marshal(content)
	f := "null"
	if finish != "" {
		f = `"` + finish + `"`
	}
	return `{"id": "chatcmpl-1", "object": "chat.completion.chunk", "model": "gpt-4o-mini-2024-07-18", "choices": [{"index": 0, "delta": {"content": ` + string(c) + `}, "finish_reason": ` + f + `}], "usage": null}`
}

const usageChunk = `{"id": "chatcmpl-1", "object": "chat.completion.chunk", "model": "gpt-4o-mini-2024-07-18", "choices": [], "usage": {"prompt_tokens": 13, "completion_tokens": 5, "total_tokens": 18}}`

func TestCompleteSendsTheConfiguredRequestAndReadsTextUsageAndModel(t *testing.T) {
	modes(t, func(t *testing.T, stream bool) {
		h := respond(http.StatusOK, nil, okReply)
		if stream {
			h = streamReply(`{"choices": [{"index": 0, "delta": {"role": "assistant", "content": ""}, "finish_reason": null}]}`,
				chunk("Reasoning. ", ""), chunk("<<LEVEL_2>>", ""), chunk("", "stop"), usageChunk, "[DONE]")
		}
		srv := newServer(t, h)
		resp, err := newClient(t, srv.URL, stream).Complete(context.Background(), llm.Request{Prompt: "Label this: I feel low."})
		if err != nil {
			t.Fatalf("Complete: %v", err)
		}
		want := llm.Response{Text: "Reasoning. <<LEVEL_2>>", Model: "gpt-4o-mini-2024-07-18", InputTokens: 13, OutputTokens: 5}
		if resp != want {
			t.Errorf("response = %+v, want %+v", resp, want)
		}
		got := srv.last(t)
		if got.method != http.MethodPost || got.path != "/v1/chat/completions" {
			t.Errorf("request %s %s, want POST /v1/chat/completions", got.method, got.path)
		}
		if a := got.header.Get("Authorization"); a != "Bearer "+testKey {
			t.Errorf("Authorization = %q, want the bearer key", a)
		}
		wantBody := map[string]any{
			"model":       testModel,
			"messages":    []any{map[string]any{"role": "user", "content": "Label this: I feel low."}},
			"temperature": 0.0,
			"max_tokens":  64.0,
		}
		if stream {
			wantBody["stream"] = true
			wantBody["stream_options"] = map[string]any{"include_usage": true}
		}
		if !reflect.DeepEqual(got.body, wantBody) {
			t.Errorf("body = %v\nwant   %v", got.body, wantBody)
		}
	})
}

func TestBaseURLsWithAndWithoutV1ReachTheSameEndpoint(t *testing.T) {
	srv := newServer(t, respond(http.StatusOK, nil, okReply))
	for _, base := range []string{srv.URL, srv.URL + "/", srv.URL + "/v1", srv.URL + "/v1/"} {
		if _, err := newClient(t, base, false).Complete(context.Background(), llm.Request{Prompt: "p"}); err != nil {
			t.Fatalf("base %q: %v", base, err)
		}
		if got := srv.last(t).path; got != "/v1/chat/completions" {
			t.Errorf("base %q: path %q", base, got)
		}
	}
}

func TestUnsetOptionsAreLeftOutAndRequestModelWins(t *testing.T) {
	srv := newServer(t, respond(http.StatusOK, nil, okReply))
	c := newClient(t, srv.URL, false, func(o *Options) { o.Temperature, o.MaxOutputTokens = nil, 0 })
	if _, err := c.Complete(context.Background(), llm.Request{Model: "llama3.2", Prompt: "p"}); err != nil {
		t.Fatal(err)
	}
	want := map[string]any{"model": "llama3.2", "messages": []any{map[string]any{"role": "user", "content": "p"}}}
	if got := srv.last(t).body; !reflect.DeepEqual(got, want) {
		t.Errorf("body = %v, want %v", got, want)
	}
}

func TestTheUsageChunkMayHaveNullOrNoChoicesOrRideOnTheLastChunk(t *testing.T) {
	cases := map[string][]string{
		"empty choices": {chunk("<<LEVEL_1>>", "stop"), usageChunk, "[DONE]"},
		"null choices (vLLM)": {chunk("<<LEVEL_1>>", "stop"),
			`{"choices": null, "usage": {"prompt_tokens": 13, "completion_tokens": 5}}`, "[DONE]"},
		"no choices key": {chunk("<<LEVEL_1>>", "stop"), `{"usage": {"prompt_tokens": 13, "completion_tokens": 5}}`, "[DONE]"},
		"usage on the final content chunk": {
			`{"choices": [{"delta": {"content": "<<LEVEL_1>>"}, "finish_reason": "stop"}], "usage": {"prompt_tokens": 13, "completion_tokens": 5}}`, "[DONE]"},
	}
	for name, chunks := range cases {
		t.Run(name, func(t *testing.T) {
			srv := newServer(t, streamReply(chunks...))
			resp, err := newClient(t, srv.URL, true).Complete(context.Background(), llm.Request{Prompt: "p"})
			if err != nil || resp.Text != "<<LEVEL_1>>" || resp.InputTokens != 13 || resp.OutputTokens != 5 {
				t.Errorf("Complete = %+v, %v", resp, err)
			}
		})
	}
}

func TestAStreamEndingWithoutDoneOrAFinishReasonIsUnavailable(t *testing.T) {
	srv := newServer(t, streamReply(chunk("<<LEV", "")))
	_, err := newClient(t, srv.URL, true).Complete(context.Background(), llm.Request{Prompt: "p"})
	wantKind(t, err, llm.Unavailable)

	srv = newServer(t, streamReply(chunk("<<LEVEL_4>>", "stop")))
	resp, err := newClient(t, srv.URL, true).Complete(context.Background(), llm.Request{Prompt: "p"})
	if err != nil || resp.Text != "<<LEVEL_4>>" {
		t.Errorf("a stream that finished but sent no [DONE]: %+v, %v", resp, err)
	}

	srv = newServer(t, streamReply(chunk("<<LEVEL_4>>", ""), "[DONE]"))
	resp, err = newClient(t, srv.URL, true).Complete(context.Background(), llm.Request{Prompt: "p"})
	if err != nil || resp.Text != "<<LEVEL_4>>" {
		t.Errorf("a stream that sent [DONE] but no finish reason: %+v, %v", resp, err)
	}
}

func TestAStreamedFrameOverOneMiBIsRead(t *testing.T) {
	big := strings.Repeat("word ", 400_000)
	srv := newServer(t, streamReply(chunk(big, ""), chunk("<<LEVEL_0>>", "stop"), "[DONE]"))
	resp, err := newClient(t, srv.URL, true).Complete(context.Background(), llm.Request{Prompt: "p"})
	if err != nil || resp.Text != big+"<<LEVEL_0>>" {
		t.Fatalf("Complete: %v (text of %d bytes)", err, len(resp.Text))
	}
}

func TestErrorRepliesAreClassified(t *testing.T) {
	errBody := func(msg, typ, code string) string {
		m, _ := json.Marshal(msg)
		return `{"error": {"message": ` + string(m) + `, "type": "` + typ + `", "param": null, "code": ` + code + `}}`
	}
	now := time.Now()
	cases := []struct {
		name       string
		status     int
		header     map[string]string
		body       string
		kind       llm.Kind
		retryAfter time.Duration
		tolerance  time.Duration
	}{
		{"401 invalid key", 401, nil, errBody("Incorrect API key provided: sk-TEST****.", "invalid_request_error", `"invalid_api_key"`), llm.InvalidKey, 0, 0},
		{"403", 403, nil, errBody("You are not allowed to sample from this model", "invalid_request_error", "null"), llm.InvalidKey, 0, 0},
		{"404 model not found", 404, nil, errBody("The model `gpt-9` does not exist or you do not have access to it.", "invalid_request_error", `"model_not_found"`), llm.ModelNotFound, 0, 0},
		{"404 from Ollama", 404, nil, errBody(`model "llama9" not found, try pulling it first`, "api_error", "null"), llm.ModelNotFound, 0, 0},
		{"429 insufficient quota", 429, map[string]string{"Retry-After": "20"}, errBody("You exceeded your current quota, please check your plan and billing details.", "insufficient_quota", `"insufficient_quota"`),
			llm.NoQuota, 0, 0},
		{"429 with Retry-After-Ms", 429, map[string]string{"Retry-After-Ms": "1500", "Retry-After": "2"},
			errBody("Rate limit reached for gpt-4o-mini on requests per min (RPM): Limit 3, Used 3, Requested 1. Please try again in 20s.", "requests", `"rate_limit_exceeded"`),
			llm.RateLimited, 1500 * time.Millisecond, 0},
		{"429 with Retry-After seconds", 429, map[string]string{"Retry-After": "3"}, errBody("Rate limit reached.", "requests", `"rate_limit_exceeded"`), llm.RateLimited, 3 * time.Second, 0},
		{"429 with a Retry-After date", 429, map[string]string{"Retry-After": now.Add(30 * time.Second).UTC().Format(http.TimeFormat)},
			errBody("Rate limit reached.", "requests", `"rate_limit_exceeded"`), llm.RateLimited, 30 * time.Second, 2 * time.Second},
		{"429 with the delay in seconds in the message", 429, nil, errBody("Rate limit reached for gpt-4 in organization org-x on tokens per min. Please try again in 41.7s.", "tokens", `"rate_limit_exceeded"`),
			llm.RateLimited, 41700 * time.Millisecond, 0},
		{"429 with the delay in milliseconds in the message", 429, nil, errBody("Rate limit reached ... Please try again in 20ms. Visit https://platform.openai.com/account/rate-limits", "tokens", `"rate_limit_exceeded"`),
			llm.RateLimited, 20 * time.Millisecond, 0},
		{"429 with only the rate-limit headers", 429, map[string]string{"x-ratelimit-remaining-requests": "0", "x-ratelimit-reset-requests": "6m0s",
			"x-ratelimit-remaining-tokens": "149984", "x-ratelimit-reset-tokens": "1s"},
			errBody("Rate limit reached.", "requests", `"rate_limit_exceeded"`), llm.RateLimited, 6 * time.Minute, 0},
		{"429 with the token window spent", 429, map[string]string{"x-ratelimit-remaining-requests": "59", "x-ratelimit-reset-requests": "1s",
			"x-ratelimit-remaining-tokens": "0", "x-ratelimit-reset-tokens": "2.5s"},
			errBody("Rate limit reached.", "tokens", `"rate_limit_exceeded"`), llm.RateLimited, 2500 * time.Millisecond, 0},
		{"429 on requests per day", 429, map[string]string{"Retry-After": "3600"},
			errBody("Rate limit reached for gpt-4o-mini in organization org-x on requests per day (RPD): Limit 200, Used 200, Requested 1. Please try again in 1h0m0s.", "requests", `"rate_limit_exceeded"`),
			llm.DailyQuota, 0, 0},
		{"400 context too long", 400, nil, errBody("This model's maximum context length is 8192 tokens.", "invalid_request_error", `"context_length_exceeded"`), llm.BadRequest, 0, 0},
		{"422 from a local server", 422, nil, `{"detail": "bad field"}`, llm.BadRequest, 0, 0},
		{"408", 408, nil, "", llm.Unavailable, 0, 0},
		{"500", 500, nil, errBody("The server had an error while processing your request.", "server_error", "null"), llm.Unavailable, 0, 0},
		{"503 from a full Ollama queue", 503, nil, `{"error":"server busy, please try again.  maximum pending requests exceeded"}`, llm.Unavailable, 0, 0},
		{"502 from a proxy, in HTML", 502, nil, "<html><body>502 Bad Gateway</body></html>", llm.Unavailable, 0, 0},
	}
	modes(t, func(t *testing.T, stream bool) {
		for _, c := range cases {
			t.Run(c.name, func(t *testing.T) {
				srv := newServer(t, respond(c.status, c.header, c.body))
				_, err := newClient(t, srv.URL, stream).Complete(context.Background(), llm.Request{Prompt: "p"})
				e := wantKind(t, err, c.kind)
				if e.StatusCode != c.status {
					t.Errorf("StatusCode = %d, want %d", e.StatusCode, c.status)
				}
				if d := e.RetryAfter - c.retryAfter; d > c.tolerance || d < -c.tolerance {
					t.Errorf("RetryAfter = %v, want %v", e.RetryAfter, c.retryAfter)
				}
				if reset := time.Until(e.ResetAt); c.kind == llm.DailyQuota && (reset < 59*time.Minute || reset > time.Hour) {
					t.Errorf("ResetAt is %v away, want the hour the reply asked for", reset)
				}
				if c.status == 503 && !strings.Contains(e.Message, "server busy") {
					t.Errorf("message %q does not show the server's words", e.Message)
				}
			})
		}
	})
}

func TestOutcomesOfASuccessfulStatusAreClassified(t *testing.T) {
	whole := func(content, finish string) string {
		return `{"model": "m", "choices": [{"index": 0, "message": {"role": "assistant", "content": ` + content + `}, "finish_reason": "` + finish + `"}], "usage": {"prompt_tokens": 1, "completion_tokens": 64}}`
	}
	cases := []struct {
		name    string
		whole   string
		chunks  []string
		kind    llm.Kind // "" means success
		text    string
		message string
	}{
		{"a content filter", whole("null", "content_filter"), []string{chunk("", "content_filter"), "[DONE]"}, llm.Blocked, "", "content_filter"},
		{"length with no text", whole(`""`, "length"), []string{chunk("", "length"), usageChunk, "[DONE]"}, llm.MaxTokensEmpty, "", ""},
		{"length with some text", whole(`"Reasoning so fa"`, "length"), []string{chunk("Reasoning so fa", "length"), "[DONE]"}, "", "Reasoning so fa", ""},
		{"no choices", `{"model": "m", "choices": []}`, []string{usageChunk, "[DONE]"}, llm.Unavailable, "", ""},
		{"a body that is not JSON", `<html>oops</html>`, []string{`<html>oops</html>`}, llm.Unavailable, "", ""},
	}
	modes(t, func(t *testing.T, stream bool) {
		for _, c := range cases {
			t.Run(c.name, func(t *testing.T) {
				h := respond(http.StatusOK, nil, c.whole)
				if stream {
					h = streamReply(c.chunks...)
				}
				srv := newServer(t, h)
				resp, err := newClient(t, srv.URL, stream).Complete(context.Background(), llm.Request{Prompt: "p"})
				if c.kind == "" {
					if err != nil || resp.Text != c.text {
						t.Fatalf("Complete = %+v, %v; want text %q", resp, err, c.text)
					}
					return
				}
				e := wantKind(t, err, c.kind)
				if c.message != "" && e.Message != c.message {
					t.Errorf("Message = %q, want %q", e.Message, c.message)
				}
			})
		}
	})
}

func TestAnErrorEventInsideAStreamIsClassified(t *testing.T) {
	cases := []struct {
		name   string
		event  string
		kind   llm.Kind
		status int
	}{
		{"a server error", `{"error": {"message": "The server had an error.", "type": "server_error", "code": null}}`, llm.Unavailable, 0},
		{"a rate limit by code", `{"error": {"message": "Rate limit reached. Please try again in 2s.", "type": "requests", "code": "rate_limit_exceeded"}}`, llm.RateLimited, 0},
		{"no quota by code", `{"error": {"message": "You exceeded your current quota.", "type": "insufficient_quota", "code": "insufficient_quota"}}`, llm.NoQuota, 0},
		{"vLLM's numeric code", `{"error": {"object": "error", "message": "too long", "type": "BadRequestError", "code": 400}}`, llm.BadRequest, 400},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			srv := newServer(t, streamReply(chunk("<<LEV", ""), c.event, "[DONE]"))
			_, err := newClient(t, srv.URL, true).Complete(context.Background(), llm.Request{Prompt: "p"})
			e := wantKind(t, err, c.kind)
			if e.StatusCode != c.status {
				t.Errorf("StatusCode = %d, want %d", e.StatusCode, c.status)
			}
			if c.kind == llm.RateLimited && e.RetryAfter != 2*time.Second {
				t.Errorf("RetryAfter = %v, want 2s from the message", e.RetryAfter)
			}
		})
	}
}

func TestAStreamThatStallsIsCutAtTheIdleTimeoutNotTheRequestTimeout(t *testing.T) {
	srv := newServer(t, func(w http.ResponseWriter, r *http.Request) {
		io.WriteString(w, "data: "+chunk("<<LEV", "")+"\n\n")
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
			io.WriteString(w, "data: "+chunk("x", "")+"\n\n")
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
				finish = "stop"
			}
			io.WriteString(w, "data: "+chunk("x", finish)+"\n\n")
			w.(http.Flusher).Flush()
			time.Sleep(20 * time.Millisecond) // so each chunk arrives on its own
		}
		io.WriteString(w, "data: [DONE]\n\n")
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
	echo := `{"error": {"message": "Incorrect API key provided: ` + testKey + `", "type": "invalid_request_error", "code": "invalid_api_key"}}`
	handlers := map[string]http.HandlerFunc{
		"401 echoing the key":    respond(401, nil, echo),
		"429 echoing the key":    respond(429, nil, echo),
		"500 echoing the key":    respond(500, nil, echo),
		"an HTML page with it":   respond(502, nil, "<p>bad key "+testKey+"</p>"),
		"a 200 that is not JSON": respond(200, nil, "key="+testKey),
		"a mid-stream echo":      streamReply(echo),
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
				for e := err; e != nil; e = errors.Unwrap(e) {
					if strings.Contains(e.Error(), testKey) {
						t.Errorf("the error shows the key: %v", e)
					}
				}
			}
		})
	}
}

func TestNewRejectsABaseURLThatIsNotHTTP(t *testing.T) {
	for _, u := range []string{"ftp://x", "localhost:8080", "http://"} {
		if _, err := New(Options{BaseURL: u}); err == nil {
			t.Errorf("New accepted base URL %q", u)
		}
	}
	c, err := New(Options{})
	if err != nil || c.endpoint != DefaultBaseURL+"/v1/chat/completions" || c.http.RequestTimeout != DefaultRequestTimeout {
		t.Errorf("zero Options: %+v, %v; want the defaults", c, err)
	}
}
