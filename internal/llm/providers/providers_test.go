package providers

import (
	"context"
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"reflect"
	"testing"

	"github.com/mhannotator/mha/internal/config"
	"github.com/mhannotator/mha/internal/llm"
)

const testKey = "provider-test-key-0123456789"

// load parses a settings file whose one annotator uses provider at baseURL.
func load(t *testing.T, provider, baseURL string, global map[string]any) (config.Annotator, config.Global) {
	t.Helper()
	g := map[string]any{"provider": provider, "base_url": baseURL, "model_name": "m-1"}
	for k, v := range global {
		g[k] = v
	}
	settings, err := json.Marshal(map[string]any{
		"global":     g,
		"annotators": map[string]any{"1": map[string]any{"urgency": map[string]any{"enabled": true, "target_count": 1}}},
	})
	if err != nil {
		t.Fatal(err)
	}
	cfg, err := config.Parse(settings, nil, func(k string) string {
		if k == config.KeyEnvPrefix+"1" {
			return testKey
		}
		return ""
	})
	if err != nil {
		t.Fatal(err)
	}
	return cfg.Annotators[0], cfg.Global
}

// capture answers every request with body and records the last request's path and JSON body.
func capture(t *testing.T, body string) (*httptest.Server, *string, *map[string]any) {
	t.Helper()
	var path string
	var got map[string]any
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		raw, _ := io.ReadAll(r.Body)
		path = r.URL.Path + "?" + r.URL.RawQuery
		got = nil
		json.Unmarshal(raw, &got)
		io.WriteString(w, body)
	}))
	t.Cleanup(srv.Close)
	return srv, &path, &got
}

func TestNewBuildsGeminiFromTheConfig(t *testing.T) {
	srv, path, body := capture(t, "data: "+`{"candidates": [{"content": {"parts": [{"text": "OK"}]}, "finishReason": "STOP"}]}`+"\r\n\r\n")
	a, g := load(t, config.ProviderGemini, srv.URL, map[string]any{"thinking_budget": 0, "temperature": 0.2})
	p, err := New(a, g)
	if err != nil {
		t.Fatal(err)
	}
	resp, err := p.Complete(context.Background(), llm.Request{Prompt: "p"})
	if err != nil || resp.Text != "OK" || resp.Model != "m-1" {
		t.Fatalf("Complete = %+v, %v", resp, err)
	}
	if *path != "/v1beta/models/m-1:streamGenerateContent?alt=sse" {
		t.Errorf("path %q: the config streams by default", *path)
	}
	want := map[string]any{"temperature": 0.2, "maxOutputTokens": 1024.0, "thinkingConfig": map[string]any{"thinkingBudget": 0.0}}
	if got := (*body)["generationConfig"]; !reflect.DeepEqual(got, want) {
		t.Errorf("generationConfig = %v, want %v", got, want)
	}
	if safety, _ := (*body)["safetySettings"].([]any); len(safety) != 4 {
		t.Errorf("safetySettings = %v, want the four categories at BLOCK_NONE", (*body)["safetySettings"])
	}
}

func TestNewBuildsOpenAIFromTheConfig(t *testing.T) {
	srv, path, body := capture(t, `{"model": "m-1", "choices": [{"message": {"content": "OK"}, "finish_reason": "stop"}]}`)
	a, g := load(t, config.ProviderOpenAI, srv.URL+"/v1", map[string]any{"stream": false})
	p, err := New(a, g)
	if err != nil {
		t.Fatal(err)
	}
	if resp, err := p.Complete(context.Background(), llm.Request{Prompt: "p"}); err != nil || resp.Text != "OK" {
		t.Fatalf("Complete = %+v, %v", resp, err)
	}
	if *path != "/v1/chat/completions?" {
		t.Errorf("path %q", *path)
	}
	want := map[string]any{"model": "m-1", "messages": []any{map[string]any{"role": "user", "content": "p"}}, "temperature": 0.0, "max_tokens": 1024.0}
	if !reflect.DeepEqual(*body, want) {
		t.Errorf("body = %v, want %v", *body, want)
	}
}

func TestNewRefusesOfflineAndUnknownProviders(t *testing.T) {
	a, g := load(t, config.ProviderOffline, "", nil)
	if p, err := New(a, g); err == nil || p != nil {
		t.Errorf("New(offline) = %v, %v; want an error", p, err)
	}
	a.Provider = "claude"
	if p, err := New(a, g); err == nil || p != nil {
		t.Errorf("New(claude) = %v, %v; want an error", p, err)
	}
}

// stub is a provider with a canned outcome.
type stub struct {
	err error
	got llm.Request
}

func (s *stub) Complete(_ context.Context, req llm.Request) (llm.Response, error) {
	s.got = req
	return llm.Response{Text: "OK"}, s.err
}

func TestCheckPassesWhenKeyAndModelAnswer(t *testing.T) {
	cases := []struct {
		name string
		err  error
		ok   bool
	}{
		{"an answer", nil, true},
		{"a safety block, which still proves the key", &llm.Error{Kind: llm.Blocked}, true},
		{"an empty reply at the token limit, which still proves the key", &llm.Error{Kind: llm.MaxTokensEmpty}, true},
		{"an invalid key", &llm.Error{Kind: llm.InvalidKey}, false},
		{"an unknown model", &llm.Error{Kind: llm.ModelNotFound}, false},
		{"a rate limit", &llm.Error{Kind: llm.RateLimited}, false},
		{"a cancellation", context.Canceled, false},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			s := &stub{err: c.err}
			err := Check(context.Background(), s)
			if (err == nil) != c.ok || (!c.ok && err != c.err) {
				t.Errorf("Check = %v, want ok=%v (the provider's error as is)", err, c.ok)
			}
			if s.got.Prompt != CheckPrompt {
				t.Errorf("prompt %q", s.got.Prompt)
			}
		})
	}
}
