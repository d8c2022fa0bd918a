package fake

import (
	"bytes"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/mhannotator/mha/internal/labels"
)

func TestGeminiAnswersWithTextUsageAndModel(t *testing.T) {
	s := start(t, Options{})
	res := gemini(t, s, key1, plainText)
	if res.status != 200 {
		t.Fatalf("status %d: %s", res.status, res.raw)
	}
	if ct := res.header.Get("Content-Type"); !strings.HasPrefix(ct, "application/json") {
		t.Errorf("Content-Type = %q", ct)
	}
	body := res.json(t)
	text := path(t, body, "candidates", 0, "content", "parts", 0, "text").(string)
	if o := labels.Parse(labels.Redressal, text); !o.OK() {
		t.Errorf("reply does not parse as redressal: %+v\n%s", o, text)
	}
	if !strings.Contains(string(res.raw), "<<[") {
		t.Error("the tag is HTML-escaped on the wire; providers send \"<<\" as is")
	}
	if got := path(t, body, "candidates", 0, "finishReason"); got != "STOP" {
		t.Errorf("finishReason = %v", got)
	}
	if got := path(t, body, "modelVersion"); got != gemModel {
		t.Errorf("modelVersion = %v", got)
	}
	prompt := words("You are a careful annotator.\n" + plainText)
	usage := path(t, body, "usageMetadata").(map[string]any)
	if usage["promptTokenCount"] != float64(prompt) || usage["candidatesTokenCount"] != float64(words(text)) ||
		usage["totalTokenCount"] != float64(prompt+words(text)) {
		t.Errorf("usageMetadata = %v, want prompt %d, candidates %d", usage, prompt, words(text))
	}
}

func TestGeminiRecordsTheRequest(t *testing.T) {
	s := start(t, Options{})
	gemini(t, s, key1, plainText)
	got := s.LastRequest()
	if got.Format != "gemini" || got.Key != key1 || got.Model != gemModel || got.Prompt != plainText || got.Stream {
		t.Errorf("LastRequest = %+v", got)
	}
	if v := path(t, got.Body, "generationConfig", "thinkingConfig", "thinkingBudget"); v != float64(0) {
		t.Errorf("thinkingBudget recorded as %v", v)
	}
	if v := path(t, got.Body, "safetySettings", 0, "threshold"); v != "BLOCK_NONE" {
		t.Errorf("threshold recorded as %v", v)
	}
	if got.Header.Get("x-goog-api-key") != key1 {
		t.Errorf("key header not visible: %v", got.Header)
	}
}

func TestGeminiAcceptsTheKeyInTheQuery(t *testing.T) {
	s := start(t, Options{})
	req := geminiRequest(t, s, "", mustJSON(t, geminiBody(plainText)), false)
	req.URL.RawQuery = "key=" + key2
	if res := do(t, req); res.status != 200 {
		t.Fatalf("status %d: %s", res.status, res.raw)
	}
	if s.LastRequest().Key != key2 || s.Stats().ByKey[key2].Accepted != 1 {
		t.Errorf("query key not used: %+v", s.Stats().ByKey)
	}
}

func TestGeminiStreamFraming(t *testing.T) {
	s := start(t, Options{ChunkCount: 5})
	whole := path(t, gemini(t, s, key1, plainText).json(t), "candidates", 0, "content", "parts", 0, "text").(string)
	res := geminiStream(t, s, key1, plainText)
	if res.status != 200 || res.header.Get("Content-Type") != "text/event-stream" {
		t.Fatalf("status %d, Content-Type %q", res.status, res.header.Get("Content-Type"))
	}
	if bytes.Contains(bytes.ReplaceAll(res.raw, []byte("\r\n"), nil), []byte("\n")) {
		t.Error("a line ends in a bare LF; Gemini uses CRLF")
	}
	if bytes.Contains(res.raw, []byte("[DONE]")) {
		t.Error("Gemini streams have no [DONE]")
	}
	events := sseEvents(res.raw, "\r\n")
	if len(events) != 5 {
		t.Fatalf("%d events, want 5: %q", len(events), res.raw)
	}
	var text strings.Builder
	for i, e := range events {
		ev := decodeEvent(t, e)
		text.WriteString(path(t, ev, "candidates", 0, "content", "parts", 0, "text").(string))
		hasFinish := has(ev, "candidates", 0, "finishReason")
		if hasFinish != (i == len(events)-1) {
			t.Errorf("event %d: finishReason present = %v", i, hasFinish)
		}
		if !has(ev, "usageMetadata", "promptTokenCount") {
			t.Errorf("event %d has no usageMetadata", i)
		}
	}
	if text.String() != whole {
		t.Errorf("stream text %q differs from the whole reply %q", text.String(), whole)
	}
	last := decodeEvent(t, events[len(events)-1])
	if got := path(t, last, "usageMetadata", "candidatesTokenCount"); got != float64(words(whole)) {
		t.Errorf("last candidatesTokenCount = %v, want %d", got, words(whole))
	}
	if got := path(t, last, "candidates", 0, "finishReason"); got != "STOP" {
		t.Errorf("last finishReason = %v", got)
	}
	if got := s.LastRequest(); !got.Stream {
		t.Errorf("stream not recorded: %+v", got)
	}
}

func TestGeminiRefusesStreamWithoutSSE(t *testing.T) {
	s := start(t, Options{})
	req := geminiRequest(t, s, key1, mustJSON(t, geminiBody(plainText)), true)
	req.URL.RawQuery = ""
	if res := do(t, req); res.status != 400 || !strings.Contains(string(res.raw), "alt=sse") {
		t.Errorf("status %d: %s", res.status, res.raw)
	}
}

func TestGeminiKeyErrors(t *testing.T) {
	s := start(t, Options{})
	res := gemini(t, s, "not-a-key", plainText)
	if res.status != 400 {
		t.Fatalf("unknown key: status %d", res.status)
	}
	body := res.json(t)
	if path(t, body, "error", "status") != "INVALID_ARGUMENT" || path(t, body, "error", "code") != float64(400) {
		t.Errorf("unknown key: %v", body)
	}
	if got := path(t, geminiDetail(t, body, "ErrorInfo"), "reason"); got != "API_KEY_INVALID" {
		t.Errorf("reason = %v", got)
	}

	res = gemini(t, s, "", plainText)
	if res.status != 403 || path(t, res.json(t), "error", "status") != "PERMISSION_DENIED" {
		t.Errorf("missing key: status %d: %s", res.status, res.raw)
	}
	if st := s.Stats(); st.ByKey["not-a-key"].Rejected != 1 || st.ByKey[""].Rejected != 1 || st.Requests != 2 {
		t.Errorf("stats = %+v", st)
	}
}

func TestGeminiValidatesRequests(t *testing.T) {
	withConfig := func(name string, v any) []byte {
		b := geminiBody(plainText)
		b["generationConfig"].(map[string]any)[name] = v
		return mustJSON(t, b)
	}
	cases := []struct {
		name string
		body []byte
		want string // in the message; "" means the request is accepted
	}{
		{"bad JSON", []byte(`{"contents": [`), "Invalid JSON payload"},
		{"no contents", []byte(`{"generationConfig": {}}`), "contents is not specified"},
		{"no parts", []byte(`{"contents": [{"role": "user", "parts": []}]}`), "must not be empty"},
		{"no text", []byte(`{"contents": [{"role": "user", "parts": [{}]}]}`), "required oneof field"},
		{"unknown top-level field", []byte(`{"contents": [{"parts": [{"text": "x"}]}], "generation_config": {}, "temprature": 1}`), `Unknown name "temprature"`},
		{"unknown config field", withConfig("maxTokens", 10), `Unknown name "maxTokens" at 'generation_config'`},
		{"snake_case config field", withConfig("max_output_tokens", 10), ""},
		{"bad safety threshold", mustJSON(t, map[string]any{
			"contents":       []any{map[string]any{"parts": []any{map[string]any{"text": "x"}}}},
			"safetySettings": []any{map[string]any{"category": "HARM_CATEGORY_HARASSMENT", "threshold": "BLOCK_NOTHING"}},
		}), "Invalid value at 'safety_settings[0].threshold'"},
	}
	s := start(t, Options{})
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			res := do(t, geminiRequest(t, s, key1, tc.body, false))
			if tc.want == "" {
				if res.status != 200 {
					t.Fatalf("status %d: %s", res.status, res.raw)
				}
				return
			}
			body := res.json(t)
			if res.status != 400 || path(t, body, "error", "status") != "INVALID_ARGUMENT" {
				t.Fatalf("status %d: %s", res.status, res.raw)
			}
			if msg := path(t, body, "error", "message").(string); !strings.Contains(msg, tc.want) {
				t.Errorf("message %q does not contain %q", msg, tc.want)
			}
		})
	}
}

func TestGeminiFaults(t *testing.T) {
	cases := []faultCase{
		{Fault{Kind: ServerError}, 500, errorStatus("INTERNAL")},
		{Fault{Kind: ServerError, Status: 502}, 502, errorStatus("UNAVAILABLE")},
		{Fault{Kind: ServerError, Status: 504}, 504, errorStatus("DEADLINE_EXCEEDED")},
		{Fault{Kind: Overloaded}, 503, func(t *testing.T, body map[string]any) {
			errorStatus("UNAVAILABLE")(t, body)
			if msg := path(t, body, "error", "message").(string); !strings.Contains(msg, "The model is overloaded") {
				t.Errorf("message = %q", msg)
			}
		}},
		{Fault{Kind: RateLimitMinute}, 429, func(t *testing.T, body map[string]any) {
			errorStatus("RESOURCE_EXHAUSTED")(t, body)
			if ids := quotaIDs(t, body); len(ids) != 1 || !strings.Contains(ids[0], "PerMinute") {
				t.Errorf("quotaIds = %v", ids)
			}
			if got := path(t, geminiDetail(t, body, "RetryInfo"), "retryDelay"); got != "2s" {
				t.Errorf("retryDelay = %v, want the 2s default", got)
			}
			if msg := path(t, body, "error", "message").(string); strings.Contains(msg, "limit: 0") {
				t.Errorf("a per-minute limit must not read as no quota: %q", msg)
			}
		}},
		{Fault{Kind: RateLimitDay}, 429, func(t *testing.T, body map[string]any) {
			if ids := quotaIDs(t, body); len(ids) != 1 || ids[0] != "GenerateRequestsPerDayPerProjectPerModel-FreeTier" {
				t.Errorf("quotaIds = %v", ids)
			}
		}},
		{Fault{Kind: NoQuotaFault}, 429, func(t *testing.T, body map[string]any) {
			if msg := path(t, body, "error", "message").(string); !strings.Contains(msg, "limit: 0") {
				t.Errorf("message = %q", msg)
			}
		}},
		{Fault{Kind: SafetyBlockPrompt}, 200, func(t *testing.T, body map[string]any) {
			if got := path(t, body, "promptFeedback", "blockReason"); got != "SAFETY" {
				t.Errorf("blockReason = %v", got)
			}
			if has(body, "candidates") {
				t.Error("a blocked prompt has no candidates")
			}
		}},
		{Fault{Kind: SafetyFinish}, 200, func(t *testing.T, body map[string]any) {
			if got := path(t, body, "candidates", 0, "finishReason"); got != "SAFETY" {
				t.Errorf("finishReason = %v", got)
			}
			if has(body, "candidates", 0, "content") {
				t.Error("a safety stop has no content")
			}
		}},
		{Fault{Kind: MaxTokensEmpty}, 200, func(t *testing.T, body map[string]any) {
			if got := path(t, body, "candidates", 0, "finishReason"); got != "MAX_TOKENS" {
				t.Errorf("finishReason = %v", got)
			}
			if has(body, "candidates", 0, "content", "parts") {
				t.Error("MAX_TOKENS reply has text parts")
			}
			if got := path(t, body, "usageMetadata", "thoughtsTokenCount"); got != float64(256) {
				t.Errorf("thoughtsTokenCount = %v, want the whole budget of 256", got)
			}
		}},
		{Fault{Kind: Malformed}, 200, func(t *testing.T, body map[string]any) {
			text := path(t, body, "candidates", 0, "content", "parts", 0, "text").(string)
			if o := labels.Parse(labels.Redressal, text); o.ParseError == "" {
				t.Errorf("malformed reply parsed: %+v\n%s", o, text)
			}
		}},
		{Fault{Kind: InvalidKeyFault}, 400, func(t *testing.T, body map[string]any) {
			if got := path(t, geminiDetail(t, body, "ErrorInfo"), "reason"); got != "API_KEY_INVALID" {
				t.Errorf("reason = %v", got)
			}
		}},
		{Fault{Kind: ModelNotFound}, 404, func(t *testing.T, body map[string]any) {
			errorStatus("NOT_FOUND")(t, body)
			if msg := path(t, body, "error", "message").(string); !strings.Contains(msg, "models/"+gemModel) {
				t.Errorf("message = %q", msg)
			}
		}},
		{Fault{Kind: BadRequest}, 400, func(t *testing.T, body map[string]any) {
			errorStatus("INVALID_ARGUMENT")(t, body)
			if got := path(t, geminiDetail(t, body, "BadRequest"), "fieldViolations", 0, "field"); got != "generation_config.thinking_config" {
				t.Errorf("field violation = %v", got)
			}
		}},
	}
	runFaultCases(t, cases, gemini)
}

func errorStatus(status string) func(t *testing.T, body map[string]any) {
	return func(t *testing.T, body map[string]any) {
		t.Helper()
		if got := path(t, body, "error", "status"); got != status {
			t.Errorf("error.status = %v, want %s", got, status)
		}
	}
}

func TestGeminiStreamsNonTextAnswersAsOneEvent(t *testing.T) {
	cases := []struct {
		kind  FaultKind
		check []any
		want  any
	}{
		{SafetyBlockPrompt, []any{"promptFeedback", "blockReason"}, "SAFETY"},
		{SafetyFinish, []any{"candidates", 0, "finishReason"}, "SAFETY"},
		{MaxTokensEmpty, []any{"candidates", 0, "finishReason"}, "MAX_TOKENS"},
	}
	for _, tc := range cases {
		t.Run(string(tc.kind), func(t *testing.T) {
			s := start(t, Options{})
			s.Inject(Fault{Kind: tc.kind})
			res := geminiStream(t, s, key1, plainText)
			events := sseEvents(res.raw, "\r\n")
			if res.status != 200 || len(events) != 1 {
				t.Fatalf("status %d, %d events: %q", res.status, len(events), res.raw)
			}
			if got := path(t, decodeEvent(t, events[0]), tc.check...); got != tc.want {
				t.Errorf("%v = %v, want %v", tc.check, got, tc.want)
			}
		})
	}
}

func TestGeminiListsModels(t *testing.T) {
	s := start(t, Options{})
	req, _ := http.NewRequest(http.MethodGet, s.URL()+"/v1beta/models", nil)
	req.Header.Set("x-goog-api-key", key1)
	res := do(t, req)
	if res.status != 200 || len(path(t, res.json(t), "models").([]any)) == 0 {
		t.Errorf("status %d: %s", res.status, res.raw)
	}
	req, _ = http.NewRequest(http.MethodGet, s.URL()+"/v1beta/models?key=wrong", nil)
	res = do(t, req)
	if res.status != 400 || path(t, geminiDetail(t, res.json(t), "ErrorInfo"), "reason") != "API_KEY_INVALID" {
		t.Errorf("bad key: status %d: %s", res.status, res.raw)
	}
	if st := s.Stats(); st.Requests != 2 || st.ByKey["wrong"].Rejected != 1 || st.ByKey[key1].Accepted != 0 {
		t.Errorf("stats = %+v", st)
	}
}

func TestProtoDuration(t *testing.T) {
	for d, want := range map[string]string{"26s": "26s", "38.804097346s": "38.804097346s", "0.5s": "0.5s", "1m0.25s": "60.25s", "3ms": "0.003s"} {
		dur, err := time.ParseDuration(d)
		if err != nil {
			t.Fatal(err)
		}
		got := protoDuration(dur)
		if got != want {
			t.Errorf("protoDuration(%s) = %q, want %q", d, got, want)
		}
		// Clients read retryDelay with time.ParseDuration.
		if back, err := time.ParseDuration(got); err != nil || back != dur {
			t.Errorf("time.ParseDuration(%q) = %v, %v; want %v", got, back, err, dur)
		}
	}
}
