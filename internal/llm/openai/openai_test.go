package openai

import (
	"context"
	"encoding/json"
	"net/http"
	"reflect"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/mhannotator/mha/internal/config"
	"github.com/mhannotator/mha/internal/llm"
	"github.com/mhannotator/mha/internal/llm/providertest"
)

// testKey is distinctive, so a test can tell that it appears nowhere it must not.
const testKey = "sk-TEST-4c1d9a7e2b-never-print-me"

const testModel = "gpt-4o-mini"

// provider is what the tests all providers share need to know of this one.
var provider = providertest.Provider{
	Name:  config.ProviderOpenAI,
	Key:   testKey,
	Model: testModel,
	New: func(t *testing.T, url string, stream bool, set func(*Options)) llm.Provider {
		return newClient(t, url, stream, set)
	},
	Sep: "\n",
	Event: func(text string, final bool) string {
		if final {
			return chunk(text, "stop")
		}
		return chunk(text, "")
	},
	Done:    "[DONE]",
	KeyEcho: `{"error": {"message": "Incorrect API key provided: ` + testKey + `", "type": "invalid_request_error", "code": "invalid_api_key"}}`,
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

// streamReply answers with each chunk as one "data: " event, flushing after each.
func streamReply(chunks ...string) http.HandlerFunc { return providertest.Stream("\n", chunks...) }

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
	providertest.Modes(t, func(t *testing.T, stream bool) {
		h := providertest.Respond(http.StatusOK, nil, okReply)
		if stream {
			h = streamReply(`{"choices": [{"index": 0, "delta": {"role": "assistant", "content": ""}, "finish_reason": null}]}`,
				chunk("Reasoning. ", ""), chunk("<<LEVEL_2>>", ""), chunk("", "stop"), usageChunk, "[DONE]")
		}
		srv := providertest.NewServer(t, h)
		resp, err := newClient(t, srv.URL, stream).Complete(context.Background(), llm.Request{Prompt: "Label this: I feel low."})
		if err != nil {
			t.Fatalf("Complete: %v", err)
		}
		want := llm.Response{Text: "Reasoning. <<LEVEL_2>>", Model: "gpt-4o-mini-2024-07-18", InputTokens: 13, OutputTokens: 5}
		if resp != want {
			t.Errorf("response = %+v, want %+v", resp, want)
		}
		got := srv.Last(t)
		if got.Method != http.MethodPost || got.Path != "/v1/chat/completions" {
			t.Errorf("request %s %s, want POST /v1/chat/completions", got.Method, got.Path)
		}
		if a := got.Header.Get("Authorization"); a != "Bearer "+testKey {
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
		if !reflect.DeepEqual(got.Body, wantBody) {
			t.Errorf("body = %v\nwant   %v", got.Body, wantBody)
		}
	})
}

func TestBaseURLsWithAndWithoutV1ReachTheSameEndpoint(t *testing.T) {
	srv := providertest.NewServer(t, providertest.Respond(http.StatusOK, nil, okReply))
	for _, base := range []string{srv.URL, srv.URL + "/", srv.URL + "/v1", srv.URL + "/v1/"} {
		if _, err := newClient(t, base, false).Complete(context.Background(), llm.Request{Prompt: "p"}); err != nil {
			t.Fatalf("base %q: %v", base, err)
		}
		if got := srv.Last(t).Path; got != "/v1/chat/completions" {
			t.Errorf("base %q: path %q", base, got)
		}
	}
}

func TestUnsetOptionsAreLeftOutAndRequestModelWins(t *testing.T) {
	srv := providertest.NewServer(t, providertest.Respond(http.StatusOK, nil, okReply))
	c := newClient(t, srv.URL, false, func(o *Options) { o.Temperature, o.MaxOutputTokens = nil, 0 })
	if _, err := c.Complete(context.Background(), llm.Request{Model: "llama3.2", Prompt: "p"}); err != nil {
		t.Fatal(err)
	}
	want := map[string]any{"model": "llama3.2", "messages": []any{map[string]any{"role": "user", "content": "p"}}}
	if got := srv.Last(t).Body; !reflect.DeepEqual(got, want) {
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
			srv := providertest.NewServer(t, streamReply(chunks...))
			resp, err := newClient(t, srv.URL, true).Complete(context.Background(), llm.Request{Prompt: "p"})
			if err != nil || resp.Text != "<<LEVEL_1>>" || resp.InputTokens != 13 || resp.OutputTokens != 5 {
				t.Errorf("Complete = %+v, %v", resp, err)
			}
		})
	}
}

func TestAStreamEndingWithoutDoneOrAFinishReasonIsUnavailable(t *testing.T) {
	srv := providertest.NewServer(t, streamReply(chunk("<<LEV", "")))
	_, err := newClient(t, srv.URL, true).Complete(context.Background(), llm.Request{Prompt: "p"})
	provider.WantKind(t, err, llm.Unavailable)

	srv = providertest.NewServer(t, streamReply(chunk("<<LEVEL_4>>", "stop")))
	resp, err := newClient(t, srv.URL, true).Complete(context.Background(), llm.Request{Prompt: "p"})
	if err != nil || resp.Text != "<<LEVEL_4>>" {
		t.Errorf("a stream that finished but sent no [DONE]: %+v, %v", resp, err)
	}

	srv = providertest.NewServer(t, streamReply(chunk("<<LEVEL_4>>", ""), "[DONE]"))
	resp, err = newClient(t, srv.URL, true).Complete(context.Background(), llm.Request{Prompt: "p"})
	if err != nil || resp.Text != "<<LEVEL_4>>" {
		t.Errorf("a stream that sent [DONE] but no finish reason: %+v, %v", resp, err)
	}
}

func TestAStreamedFrameOverOneMiBIsRead(t *testing.T) {
	big := strings.Repeat("word ", 400_000)
	srv := providertest.NewServer(t, streamReply(chunk(big, ""), chunk("<<LEVEL_0>>", "stop"), "[DONE]"))
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
	// inAnHour checks a daily quota's reset against the hour the reply asked for.
	inAnHour := func(t *testing.T, at, _ time.Time) {
		if reset := time.Until(at); reset < 59*time.Minute || reset > time.Hour {
			t.Errorf("ResetAt is %v away, want the hour the reply asked for", reset)
		}
	}
	now := time.Now()
	providertest.Replies(t, provider, []providertest.Case{
		{Name: "401 invalid key", Status: 401, Body: errBody("Incorrect API key provided: sk-TEST****.", "invalid_request_error", `"invalid_api_key"`), Kind: llm.InvalidKey},
		{Name: "403", Status: 403, Body: errBody("You are not allowed to sample from this model", "invalid_request_error", "null"), Kind: llm.InvalidKey},
		{Name: "404 model not found", Status: 404, Body: errBody("The model `gpt-9` does not exist or you do not have access to it.", "invalid_request_error", `"model_not_found"`), Kind: llm.ModelNotFound},
		{Name: "404 from Ollama", Status: 404, Body: errBody(`model "llama9" not found, try pulling it first`, "api_error", "null"), Kind: llm.ModelNotFound},
		{Name: "429 insufficient quota", Status: 429, Header: map[string]string{"Retry-After": "20"}, Body: errBody("You exceeded your current quota, please check your plan and billing details.", "insufficient_quota", `"insufficient_quota"`),
			Kind: llm.NoQuota},
		{Name: "429 with Retry-After-Ms", Status: 429, Header: map[string]string{"Retry-After-Ms": "1500", "Retry-After": "2"},
			Body: errBody("Rate limit reached for gpt-4o-mini on requests per min (RPM): Limit 3, Used 3, Requested 1. Please try again in 20s.", "requests", `"rate_limit_exceeded"`),
			Kind: llm.RateLimited, RetryAfter: 1500 * time.Millisecond},
		{Name: "429 with Retry-After seconds", Status: 429, Header: map[string]string{"Retry-After": "3"}, Body: errBody("Rate limit reached.", "requests", `"rate_limit_exceeded"`), Kind: llm.RateLimited, RetryAfter: 3 * time.Second},
		{Name: "429 with a Retry-After date", Status: 429, Header: map[string]string{"Retry-After": now.Add(30 * time.Second).UTC().Format(http.TimeFormat)},
			Body: errBody("Rate limit reached.", "requests", `"rate_limit_exceeded"`), Kind: llm.RateLimited, RetryAfter: 30 * time.Second, Tolerance: 2 * time.Second},
		{Name: "429 with the delay in seconds in the message", Status: 429, Body: errBody("Rate limit reached for gpt-4 in organization org-x on tokens per min. Please try again in 41.7s.", "tokens", `"rate_limit_exceeded"`),
			Kind: llm.RateLimited, RetryAfter: 41700 * time.Millisecond},
		{Name: "429 with the delay in milliseconds in the message", Status: 429, Body: errBody("Rate limit reached ... Please try again in 20ms. Visit https://platform.openai.com/account/rate-limits", "tokens", `"rate_limit_exceeded"`),
			Kind: llm.RateLimited, RetryAfter: 20 * time.Millisecond},
		{Name: "429 with only the rate-limit headers", Status: 429, Header: map[string]string{"x-ratelimit-remaining-requests": "0", "x-ratelimit-reset-requests": "6m0s",
			"x-ratelimit-remaining-tokens": "149984", "x-ratelimit-reset-tokens": "1s"},
			Body: errBody("Rate limit reached.", "requests", `"rate_limit_exceeded"`), Kind: llm.RateLimited, RetryAfter: 6 * time.Minute},
		{Name: "429 with the token window spent", Status: 429, Header: map[string]string{"x-ratelimit-remaining-requests": "59", "x-ratelimit-reset-requests": "1s",
			"x-ratelimit-remaining-tokens": "0", "x-ratelimit-reset-tokens": "2.5s"},
			Body: errBody("Rate limit reached.", "tokens", `"rate_limit_exceeded"`), Kind: llm.RateLimited, RetryAfter: 2500 * time.Millisecond},
		{Name: "429 on requests per day", Status: 429, Header: map[string]string{"Retry-After": "3600"},
			Body: errBody("Rate limit reached for gpt-4o-mini in organization org-x on requests per day (RPD): Limit 200, Used 200, Requested 1. Please try again in 1h0m0s.", "requests", `"rate_limit_exceeded"`),
			Kind: llm.DailyQuota, ResetAt: inAnHour},
		{Name: "400 context too long", Status: 400, Body: errBody("This model's maximum context length is 8192 tokens.", "invalid_request_error", `"context_length_exceeded"`), Kind: llm.BadRequest},
		{Name: "422 from a local server", Status: 422, Body: `{"detail": "bad field"}`, Kind: llm.BadRequest},
		{Name: "408", Status: 408, Kind: llm.Unavailable},
		{Name: "500", Status: 500, Body: errBody("The server had an error while processing your request.", "server_error", "null"), Kind: llm.Unavailable},
		{Name: "503 from a full Ollama queue", Status: 503, Body: `{"error":"server busy, please try again.  maximum pending requests exceeded"}`, Kind: llm.Unavailable, Shows: "server busy"},
		{Name: "502 from a proxy, in HTML", Status: 502, Body: "<html><body>502 Bad Gateway</body></html>", Kind: llm.Unavailable},
	})
}

func TestOnlyARefusalOfMaxTokensIsAskedAgainWithMaxCompletionTokens(t *testing.T) {
	const unsupported = `{"error":{"message":"Unsupported parameter: 'max_tokens' is not supported with this model. Use 'max_completion_tokens' instead.","type":"invalid_request_error","param":"max_tokens","code":"unsupported_parameter"}}`
	cases := []struct {
		name     string
		refusal  string // the 400 body answering a request that carries max_tokens
		always   bool   // the refusal answers max_completion_tokens too
		requests int
		kind     llm.Kind // "" means a reply
	}{
		{name: "OpenAI's unsupported_parameter", refusal: unsupported, requests: 2},
		{name: "a message that names max_completion_tokens, with no param or code",
			refusal:  `{"error": {"message": "max_tokens is deprecated for this model, use max_completion_tokens", "type": "BadRequestError", "param": null, "code": 400}}`,
			requests: 2},
		{name: "a max_tokens that is too large", refusal: `{"error": {"message": "max_tokens is too large: 100000. This model supports at most 16384 completion tokens, whereas you provided 100000.", "type": "invalid_request_error", "param": "max_tokens", "code": "invalid_value"}}`,
			requests: 1, kind: llm.BadRequest},
		{name: "another bad request", refusal: `{"error": {"message": "This model's maximum context length is 8192 tokens.", "type": "invalid_request_error", "param": "messages", "code": "context_length_exceeded"}}`,
			requests: 1, kind: llm.BadRequest},
		{name: "a server that refuses both names is asked only once more", refusal: unsupported, always: true, requests: 2, kind: llm.BadRequest},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			refuse := providertest.Respond(http.StatusBadRequest, nil, c.refusal)
			var (
				srv      *providertest.Server
				requests atomic.Int32
			)
			srv = providertest.NewServer(t, func(w http.ResponseWriter, r *http.Request) {
				requests.Add(1)
				if _, sent := srv.Last(t).Body["max_tokens"]; sent || c.always {
					refuse(w, r)
					return
				}
				providertest.Respond(http.StatusOK, nil, okReply)(w, r)
			})
			_, err := newClient(t, srv.URL, false).Complete(context.Background(), llm.Request{Prompt: "p"})
			if c.kind == "" && err != nil {
				t.Fatalf("Complete: %v", err)
			}
			if c.kind != "" {
				provider.WantKind(t, err, c.kind)
			}
			if n := int(requests.Load()); n != c.requests {
				t.Errorf("%d requests, want %d", n, c.requests)
			}
		})
	}
}

func TestOutcomesOfASuccessfulStatusAreClassified(t *testing.T) {
	whole := func(content, finish string) string {
		return `{"model": "m", "choices": [{"index": 0, "message": {"role": "assistant", "content": ` + content + `}, "finish_reason": "` + finish + `"}], "usage": {"prompt_tokens": 1, "completion_tokens": 64}}`
	}
	providertest.Replies(t, provider, []providertest.Case{
		{Name: "a content filter", Body: whole("null", "content_filter"), Events: []string{chunk("", "content_filter"), "[DONE]"}, Kind: llm.Blocked, Message: "content_filter"},
		{Name: "length with no text", Body: whole(`""`, "length"), Events: []string{chunk("", "length"), usageChunk, "[DONE]"}, Kind: llm.MaxTokensEmpty},
		{Name: "length with some text", Body: whole(`"Reasoning so fa"`, "length"), Events: []string{chunk("Reasoning so fa", "length"), "[DONE]"}, Text: "Reasoning so fa"},
		{Name: "no choices", Body: `{"model": "m", "choices": []}`, Events: []string{usageChunk, "[DONE]"}, Kind: llm.Unavailable},
		{Name: "a body that is not JSON", Body: `<html>oops</html>`, Kind: llm.Unavailable},
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
			srv := providertest.NewServer(t, streamReply(chunk("<<LEV", ""), c.event, "[DONE]"))
			_, err := newClient(t, srv.URL, true).Complete(context.Background(), llm.Request{Prompt: "p"})
			e := provider.WantKind(t, err, c.kind)
			if e.StatusCode != c.status {
				t.Errorf("StatusCode = %d, want %d", e.StatusCode, c.status)
			}
			if c.kind == llm.RateLimited && e.RetryAfter != 2*time.Second {
				t.Errorf("RetryAfter = %v, want 2s from the message", e.RetryAfter)
			}
		})
	}
}

func TestConnectionFailures(t *testing.T) { providertest.ConnectionFailures(t, provider) }

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
