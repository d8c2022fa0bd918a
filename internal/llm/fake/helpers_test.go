package fake

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"
)

const (
	key1      = "test-key-1"
	key2      = "test-key-2"
	gemModel  = "gemini-2.5-flash"
	oaModel   = "gpt-4o-mini"
	plainText = "I have felt low for weeks and I cannot focus on my thesis."
)

// clock is a settable Options.Now.
type clock struct {
	mu sync.Mutex
	t  time.Time
}

func newClock(t time.Time) *clock { return &clock{t: t} }

func (c *clock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.t
}

func (c *clock) Set(t time.Time) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.t = t
}

func start(t *testing.T, opts Options) *Server {
	t.Helper()
	if opts.Keys == nil {
		opts.Keys = map[string]Key{key1: {}, key2: {}}
	}
	s, err := Start(opts)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = s.Close() })
	return s
}

// geminiBody is a request as the official SDK shapes it.
func geminiBody(prompt string) map[string]any {
	return map[string]any{
		"systemInstruction": map[string]any{"parts": []any{map[string]any{"text": "You are a careful annotator."}}},
		"contents":          []any{map[string]any{"role": "user", "parts": []any{map[string]any{"text": prompt}}}},
		"generationConfig": map[string]any{"temperature": 0, "maxOutputTokens": 256,
			"thinkingConfig": map[string]any{"thinkingBudget": 0}},
		"safetySettings": []any{map[string]any{"category": "HARM_CATEGORY_DANGEROUS_CONTENT", "threshold": "BLOCK_NONE"}},
	}
}

func openaiBody(prompt string, stream, includeUsage bool) map[string]any {
	b := map[string]any{
		"model": oaModel,
		"messages": []any{
			map[string]any{"role": "system", "content": "You are a careful annotator."},
			map[string]any{"role": "user", "content": prompt},
		},
		"temperature": 0, "max_tokens": 256,
	}
	if stream {
		b["stream"] = true
		if includeUsage {
			b["stream_options"] = map[string]any{"include_usage": true}
		}
	}
	return b
}

func mustJSON(t *testing.T, v any) []byte {
	t.Helper()
	b, err := json.Marshal(v)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func geminiRequest(t *testing.T, s *Server, key string, body []byte, stream bool) *http.Request {
	t.Helper()
	url := s.URL() + "/v1beta/models/" + gemModel + ":generateContent"
	if stream {
		url = s.URL() + "/v1beta/models/" + gemModel + ":streamGenerateContent?alt=sse"
	}
	req, err := http.NewRequest(http.MethodPost, url, bytes.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Content-Type", "application/json")
	if key != "" {
		req.Header.Set("x-goog-api-key", key)
	}
	return req
}

func openaiRequest(t *testing.T, s *Server, key string, body []byte) *http.Request {
	t.Helper()
	req, err := http.NewRequest(http.MethodPost, s.URL()+"/v1/chat/completions", bytes.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Content-Type", "application/json")
	if key != "" {
		req.Header.Set("Authorization", "Bearer "+key)
	}
	return req
}

type result struct {
	status int
	header http.Header
	raw    []byte
}

// json decodes the body as a generic object, failing the test when it is not JSON.
func (r result) json(t *testing.T) map[string]any {
	t.Helper()
	var m map[string]any
	if err := json.Unmarshal(r.raw, &m); err != nil {
		t.Fatalf("body is not a JSON object (%v): %.300s", err, r.raw)
	}
	return m
}

func do(t *testing.T, req *http.Request) result {
	t.Helper()
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatalf("%s %s: %v", req.Method, req.URL, err)
	}
	defer resp.Body.Close()
	raw, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatalf("reading %s: %v", req.URL, err)
	}
	return result{resp.StatusCode, resp.Header, raw}
}

func gemini(t *testing.T, s *Server, key, prompt string) result {
	t.Helper()
	return do(t, geminiRequest(t, s, key, mustJSON(t, geminiBody(prompt)), false))
}

func geminiStream(t *testing.T, s *Server, key, prompt string) result {
	t.Helper()
	return do(t, geminiRequest(t, s, key, mustJSON(t, geminiBody(prompt)), true))
}

func openai(t *testing.T, s *Server, key, prompt string) result {
	t.Helper()
	return do(t, openaiRequest(t, s, key, mustJSON(t, openaiBody(prompt, false, false))))
}

func openaiStream(t *testing.T, s *Server, key, prompt string, includeUsage bool) result {
	t.Helper()
	return do(t, openaiRequest(t, s, key, mustJSON(t, openaiBody(prompt, true, includeUsage))))
}

// path walks decoded JSON: strings index objects, ints index arrays. It fails the test when the
// path does not exist.
func path(t *testing.T, v any, steps ...any) any {
	t.Helper()
	for i, step := range steps {
		switch k := step.(type) {
		case string:
			m, ok := v.(map[string]any)
			if !ok {
				t.Fatalf("%v: not an object at step %d in %v", steps, i, v)
			}
			if v, ok = m[k]; !ok {
				t.Fatalf("%v: no field %q in %v", steps, k, m)
			}
		case int:
			a, ok := v.([]any)
			if !ok || k >= len(a) {
				t.Fatalf("%v: no element %d at step %d in %v", steps, k, i, v)
			}
			v = a[k]
		}
	}
	return v
}

// has reports whether the path exists.
func has(v any, steps ...any) bool {
	for _, step := range steps {
		switch k := step.(type) {
		case string:
			m, ok := v.(map[string]any)
			if !ok {
				return false
			}
			if v, ok = m[k]; !ok {
				return false
			}
		case int:
			a, ok := v.([]any)
			if !ok || k >= len(a) {
				return false
			}
			v = a[k]
		}
	}
	return true
}

// geminiDetail returns the details entry of a Gemini error with the given @type suffix.
func geminiDetail(t *testing.T, body map[string]any, typ string) map[string]any {
	t.Helper()
	details, _ := path(t, body, "error", "details").([]any)
	for _, d := range details {
		if m, _ := d.(map[string]any); strings.HasSuffix(fmt.Sprint(m["@type"]), typ) {
			return m
		}
	}
	t.Fatalf("no %s in error details: %v", typ, details)
	return nil
}

// quotaIDs lists the quotaId of every QuotaFailure violation.
func quotaIDs(t *testing.T, body map[string]any) []string {
	t.Helper()
	var ids []string
	for _, v := range path(t, geminiDetail(t, body, "QuotaFailure"), "violations").([]any) {
		ids = append(ids, path(t, v, "quotaId").(string))
	}
	return ids
}

// sseEvents splits a stream body on the blank lines that end events.
func sseEvents(raw []byte, sep string) []string {
	var events []string
	for _, e := range strings.Split(string(raw), sep+sep) {
		if e != "" {
			events = append(events, e)
		}
	}
	return events
}

// decodeEvent decodes the JSON after "data: ".
func decodeEvent(t *testing.T, event string) map[string]any {
	t.Helper()
	data, ok := strings.CutPrefix(event, "data: ")
	if !ok {
		t.Fatalf("event does not start with \"data: \": %.200q", event)
	}
	var m map[string]any
	if err := json.Unmarshal([]byte(data), &m); err != nil {
		t.Fatalf("event data is not JSON (%v): %.200q", err, data)
	}
	return m
}

// eventually polls cond for up to 5 s.
func eventually(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting until %s", what)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// streamOpen starts a request and returns the response with its body still open.
func streamOpen(t *testing.T, ctx context.Context, req *http.Request) *http.Response {
	t.Helper()
	resp, err := http.DefaultClient.Do(req.WithContext(ctx))
	if err != nil {
		t.Fatalf("%s: %v", req.URL, err)
	}
	t.Cleanup(func() { resp.Body.Close() })
	return resp
}

// faultCase injects fault once and expects the answer's status, checked by check.
type faultCase struct {
	fault  Fault
	status int
	check  func(t *testing.T, body map[string]any)
}

// runFaultCases runs each case through call (one wire format): the fault answers one request,
// the next is accepted, and the key's stats count one of each.
func runFaultCases(t *testing.T, cases []faultCase, call func(t *testing.T, s *Server, key, prompt string) result) {
	t.Helper()
	for _, tc := range cases {
		t.Run(string(tc.fault.Kind), func(t *testing.T) {
			s := start(t, Options{})
			tc.fault.Times = 1
			s.Inject(tc.fault)
			res := call(t, s, key1, plainText)
			if res.status != tc.status {
				t.Fatalf("status %d, want %d: %s", res.status, tc.status, res.raw)
			}
			tc.check(t, res.json(t))
			if res := call(t, s, key1, plainText); res.status != 200 {
				t.Errorf("the fault outlived Times: 1: status %d", res.status)
			}
			if ks := s.Stats().ByKey[key1]; ks.Faulted != 1 || ks.Accepted != 1 {
				t.Errorf("key stats = %+v", ks)
			}
		})
	}
}
