package fake

import (
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/mhannotator/mha/internal/labels"
)

func TestOpenAIAnswersWithTextUsageAndModel(t *testing.T) {
	s := start(t, Options{})
	res := openai(t, s, key1, plainText)
	if res.status != 200 {
		t.Fatalf("status %d: %s", res.status, res.raw)
	}
	body := res.json(t)
	text := path(t, body, "choices", 0, "message", "content").(string)
	if o := labels.Parse(labels.Redressal, text); !o.OK() {
		t.Errorf("reply does not parse: %+v\n%s", o, text)
	}
	if !strings.Contains(string(res.raw), "<<[") {
		t.Error("the tag is HTML-escaped on the wire; providers send \"<<\" as is")
	}
	if path(t, body, "object") != "chat.completion" || path(t, body, "model") != oaModel ||
		path(t, body, "choices", 0, "finish_reason") != "stop" || path(t, body, "choices", 0, "message", "role") != "assistant" {
		t.Errorf("response = %v", body)
	}
	prompt := words("You are a careful annotator.\n" + plainText)
	usage := path(t, body, "usage").(map[string]any)
	if usage["prompt_tokens"] != float64(prompt) || usage["completion_tokens"] != float64(words(text)) ||
		usage["total_tokens"] != float64(prompt+words(text)) {
		t.Errorf("usage = %v, want prompt %d, completion %d", usage, prompt, words(text))
	}
	got := s.LastRequest()
	if got.Format != "openai" || got.Key != key1 || got.Model != oaModel || got.Prompt != plainText ||
		got.Body["max_tokens"] != float64(256) || got.Header.Get("Authorization") != "Bearer "+key1 {
		t.Errorf("LastRequest = %+v", got)
	}
}

func TestOpenAIStreamFraming(t *testing.T) {
	for _, includeUsage := range []bool{true, false} {
		s := start(t, Options{ChunkCount: 3})
		whole := path(t, openai(t, s, key1, plainText).json(t), "choices", 0, "message", "content").(string)
		res := openaiStream(t, s, key1, plainText, includeUsage)
		if res.status != 200 || !strings.HasPrefix(res.header.Get("Content-Type"), "text/event-stream") {
			t.Fatalf("status %d, Content-Type %q", res.status, res.header.Get("Content-Type"))
		}
		events := sseEvents(res.raw, "\n")
		// role chunk, 3 deltas, finish chunk, [usage chunk,] [DONE]
		want := 6
		if includeUsage {
			want = 7
		}
		if len(events) != want {
			t.Fatalf("include_usage=%v: %d events, want %d: %q", includeUsage, len(events), want, res.raw)
		}
		if events[len(events)-1] != "data: [DONE]" {
			t.Errorf("last event = %q", events[len(events)-1])
		}
		first := decodeEvent(t, events[0])
		if path(t, first, "object") != "chat.completion.chunk" || path(t, first, "choices", 0, "delta", "role") != "assistant" {
			t.Errorf("first chunk = %v", first)
		}
		var text strings.Builder
		for _, e := range events[1:4] {
			text.WriteString(path(t, decodeEvent(t, e), "choices", 0, "delta", "content").(string))
		}
		if text.String() != whole {
			t.Errorf("stream text %q differs from %q", text.String(), whole)
		}
		finish := decodeEvent(t, events[4])
		if path(t, finish, "choices", 0, "finish_reason") != "stop" {
			t.Errorf("finish chunk = %v", finish)
		}
		if !includeUsage {
			if has(finish, "usage") {
				t.Error("usage sent without include_usage")
			}
			continue
		}
		if u, ok := finish["usage"]; !ok || u != nil {
			t.Errorf("content chunks must carry usage: null, got %v", finish["usage"])
		}
		usage := decodeEvent(t, events[5])
		if choices := path(t, usage, "choices").([]any); len(choices) != 0 {
			t.Errorf("usage chunk has choices %v", choices)
		}
		if got := path(t, usage, "usage", "completion_tokens"); got != float64(words(whole)) {
			t.Errorf("completion_tokens = %v, want %d", got, words(whole))
		}
	}
}

func TestOpenAIKeyErrors(t *testing.T) {
	s := start(t, Options{})
	const bad = "sk-wrong-0123456789"
	res := openai(t, s, bad, plainText)
	body := res.json(t)
	if res.status != 401 || path(t, body, "error", "code") != "invalid_api_key" || path(t, body, "error", "type") != "invalid_request_error" {
		t.Errorf("unknown key: status %d: %s", res.status, res.raw)
	}
	if strings.Contains(string(res.raw), bad) {
		t.Error("the error message echoes the whole key")
	}
	res = openai(t, s, "", plainText)
	if res.status != 401 || !strings.Contains(path(t, res.json(t), "error", "message").(string), "didn't provide an API key") {
		t.Errorf("missing key: status %d: %s", res.status, res.raw)
	}
}

func TestOpenAIValidatesRequests(t *testing.T) {
	without := func(field string) []byte {
		b := openaiBody(plainText, false, false)
		delete(b, field)
		return mustJSON(t, b)
	}
	streamOptionsAlone := openaiBody(plainText, false, false)
	streamOptionsAlone["stream_options"] = map[string]any{"include_usage": true}
	cases := []struct {
		name, want, param string
		body              []byte
	}{
		{"bad JSON", "could not parse the JSON body", "", []byte(`{"model": `)},
		{"no model", "you must provide a model parameter", "", without("model")},
		{"no messages", "Missing required parameter: 'messages'", "messages", without("messages")},
		{"empty messages", "empty array", "messages", []byte(`{"model": "m", "messages": []}`)},
		{"message without role", "messages[0].role", "messages[0].role", []byte(`{"model": "m", "messages": [{"content": "x"}]}`)},
		{"stream_options without stream", "only allowed when 'stream' is enabled", "stream_options", mustJSON(t, streamOptionsAlone)},
	}
	s := start(t, Options{})
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			res := do(t, openaiRequest(t, s, key1, tc.body))
			body := res.json(t)
			if res.status != 400 || path(t, body, "error", "type") != "invalid_request_error" {
				t.Fatalf("status %d: %s", res.status, res.raw)
			}
			if msg := path(t, body, "error", "message").(string); !strings.Contains(msg, tc.want) {
				t.Errorf("message %q does not contain %q", msg, tc.want)
			}
			if param := path(t, body, "error", "param"); (tc.param == "" && param != nil) || (tc.param != "" && param != tc.param) {
				t.Errorf("param = %v, want %q", param, tc.param)
			}
		})
	}
}

func TestOpenAIReadsContentParts(t *testing.T) {
	s := start(t, Options{})
	body := map[string]any{"model": oaModel, "messages": []any{map[string]any{"role": "user",
		"content": []any{map[string]any{"type": "text", "text": "first"}, map[string]any{"type": "text", "text": "second"}}}}}
	if res := do(t, openaiRequest(t, s, key1, mustJSON(t, body))); res.status != 200 {
		t.Fatalf("status %d: %s", res.status, res.raw)
	}
	if got := s.LastRequest().Prompt; got != "first\nsecond" {
		t.Errorf("prompt = %q", got)
	}
}

func TestOpenAIFaults(t *testing.T) {
	errType := func(typ, code string) func(t *testing.T, body map[string]any) {
		return func(t *testing.T, body map[string]any) {
			t.Helper()
			if got := path(t, body, "error", "type"); got != typ {
				t.Errorf("error.type = %v, want %s", got, typ)
			}
			got := path(t, body, "error", "code")
			if (code == "" && got != nil) || (code != "" && got != code) {
				t.Errorf("error.code = %v, want %q", got, code)
			}
		}
	}
	emptyWith := func(finish string) func(t *testing.T, body map[string]any) {
		return func(t *testing.T, body map[string]any) {
			t.Helper()
			if got := path(t, body, "choices", 0, "finish_reason"); got != finish {
				t.Errorf("finish_reason = %v, want %s", got, finish)
			}
			if got := path(t, body, "choices", 0, "message", "content"); got != "" {
				t.Errorf("content = %q, want empty", got)
			}
		}
	}
	cases := []faultCase{
		{Fault{Kind: ServerError}, 500, errType("server_error", "")},
		{Fault{Kind: ServerError, Status: 502}, 502, errType("server_error", "")},
		{Fault{Kind: Overloaded}, 503, func(t *testing.T, body map[string]any) {
			if msg := path(t, body, "error", "message").(string); !strings.Contains(msg, "The model is overloaded") {
				t.Errorf("message = %q", msg)
			}
		}},
		{Fault{Kind: RateLimitMinute, RetryAfter: 1500 * time.Millisecond}, 429, func(t *testing.T, body map[string]any) {
			errType("requests", "rate_limit_exceeded")(t, body)
			if msg := path(t, body, "error", "message").(string); !strings.Contains(msg, "per min (RPM)") || !strings.Contains(msg, "try again in 1.5s") {
				t.Errorf("message = %q", msg)
			}
		}},
		{Fault{Kind: RateLimitDay}, 429, func(t *testing.T, body map[string]any) {
			errType("requests", "rate_limit_exceeded")(t, body)
			if msg := path(t, body, "error", "message").(string); !strings.Contains(msg, "per day (RPD)") {
				t.Errorf("message = %q", msg)
			}
		}},
		{Fault{Kind: NoQuotaFault}, 429, errType("insufficient_quota", "insufficient_quota")},
		{Fault{Kind: SafetyBlockPrompt}, 200, emptyWith("content_filter")},
		{Fault{Kind: SafetyFinish}, 200, emptyWith("content_filter")},
		{Fault{Kind: MaxTokensEmpty}, 200, func(t *testing.T, body map[string]any) {
			emptyWith("length")(t, body)
			if got := path(t, body, "usage", "completion_tokens_details", "reasoning_tokens"); got != float64(256) {
				t.Errorf("reasoning_tokens = %v, want the budget of 256", got)
			}
		}},
		{Fault{Kind: Malformed}, 200, func(t *testing.T, body map[string]any) {
			text := path(t, body, "choices", 0, "message", "content").(string)
			if o := labels.Parse(labels.Redressal, text); o.ParseError == "" {
				t.Errorf("malformed reply parsed: %+v\n%s", o, text)
			}
		}},
		{Fault{Kind: InvalidKeyFault}, 401, errType("invalid_request_error", "invalid_api_key")},
		{Fault{Kind: ModelNotFound}, 404, errType("invalid_request_error", "model_not_found")},
		{Fault{Kind: BadRequest}, 400, errType("invalid_request_error", "unsupported_parameter")},
	}
	runFaultCases(t, cases, openai)
}

func TestOpenAIStreamsEmptyAnswers(t *testing.T) {
	for kind, finish := range map[FaultKind]string{SafetyBlockPrompt: "content_filter", MaxTokensEmpty: "length"} {
		t.Run(string(kind), func(t *testing.T) {
			s := start(t, Options{})
			s.Inject(Fault{Kind: kind})
			events := sseEvents(openaiStream(t, s, key1, plainText, true).raw, "\n")
			// role chunk, finish chunk, usage chunk, [DONE]
			if len(events) != 4 {
				t.Fatalf("%d events: %q", len(events), events)
			}
			if got := path(t, decodeEvent(t, events[1]), "choices", 0, "finish_reason"); got != finish {
				t.Errorf("finish_reason = %v, want %s", got, finish)
			}
		})
	}
}

func TestOpenAIListsModels(t *testing.T) {
	s := start(t, Options{})
	req, _ := http.NewRequest(http.MethodGet, s.URL()+"/v1/models", nil)
	req.Header.Set("Authorization", "Bearer "+key1)
	res := do(t, req)
	if res.status != 200 || path(t, res.json(t), "object") != "list" {
		t.Errorf("status %d: %s", res.status, res.raw)
	}
	req.Header.Set("Authorization", "Bearer nope")
	if res := do(t, req); res.status != 401 {
		t.Errorf("bad key: status %d: %s", res.status, res.raw)
	}
}

func TestOpenAIModelsThatRejectMaxTokens(t *testing.T) {
	cases := []struct {
		name   string
		reject []string
		model  string
		limit  string // the field that carries the output limit, "" for none
		status int
	}{
		{"a listed model refuses max_tokens", []string{"o3", "gpt-5"}, "gpt-5", "max_tokens", 400},
		{"a listed model takes max_completion_tokens", []string{"gpt-5"}, "gpt-5", "max_completion_tokens", 200},
		{"a listed model takes a request with no limit", []string{"gpt-5"}, "gpt-5", "", 200},
		{"a model not listed takes max_tokens", []string{"gpt-5"}, oaModel, "max_tokens", 200},
		{"without the option every model takes max_tokens", nil, "gpt-5", "max_tokens", 200},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			s := start(t, Options{RejectMaxTokens: tc.reject})
			body := openaiBody(plainText, false, false)
			delete(body, "max_tokens")
			body["model"] = tc.model
			if tc.limit != "" {
				body[tc.limit] = 256
			}
			res := do(t, openaiRequest(t, s, key1, mustJSON(t, body)))
			if res.status != tc.status {
				t.Fatalf("status %d, want %d: %s", res.status, tc.status, res.raw)
			}
			ks := s.Stats().ByKey[key1]
			if tc.status == 200 {
				if ks.Accepted != 1 {
					t.Errorf("key stats = %+v, want the request accepted", ks)
				}
				return
			}
			got := res.json(t)
			if path(t, got, "error", "type") != "invalid_request_error" || path(t, got, "error", "param") != "max_tokens" ||
				path(t, got, "error", "code") != "unsupported_parameter" {
				t.Errorf("error = %v, want invalid_request_error, param max_tokens, code unsupported_parameter", got["error"])
			}
			if msg := path(t, got, "error", "message").(string); !strings.Contains(msg, "Use 'max_completion_tokens' instead") {
				t.Errorf("message = %q, want it to name max_completion_tokens", msg)
			}
			if ks.Rejected != 1 || ks.Accepted != 0 {
				t.Errorf("key stats = %+v, want the request rejected", ks)
			}
		})
	}
}
