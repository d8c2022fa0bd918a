package openai

import (
	"context"
	"testing"

	"github.com/mhannotator/mha/internal/llm"
	"github.com/mhannotator/mha/internal/llm/fake"
	"github.com/mhannotator/mha/internal/llm/providertest"
)

// The outcome classes against the in-repo fake provider, which renders the API's bodies on its
// own: a second opinion on the wire format besides the canned replies of openai_test.go.

func TestAgainstTheFakeServer(t *testing.T) { providertest.AgainstTheFakeServer(t, provider) }

func TestAgainstTheFakeServerSentRequestAndQuota(t *testing.T) {
	providertest.TheFakeServerSeesTheRequestAndCountsQuota(t, provider)
}

func TestTheTokenLimitGoesUnderTheNameTheModelTakes(t *testing.T) {
	const maxTokens, maxCompletionTokens = "max_tokens", "max_completion_tokens"
	type call struct {
		model    string
		requests int    // how many requests the call takes
		limit    string // the field the last of them carries the limit in, "" for none
	}
	cases := []struct {
		name      string
		reject    []string // the models that refuse max_tokens
		maxTokens int
		calls     []call
	}{
		{"a model that refuses max_tokens is asked again with max_completion_tokens, and from then on at once",
			[]string{"o3"}, 64, []call{{"o3", 2, maxCompletionTokens}, {"o3", 1, maxCompletionTokens}, {"o3", 1, maxCompletionTokens}}},
		{"a server that takes max_tokens keeps getting it",
			nil, 64, []call{{testModel, 1, maxTokens}, {testModel, 1, maxTokens}}},
		{"the name learnt for one model leaves the others alone",
			[]string{"o3"}, 64, []call{{"o3", 2, maxCompletionTokens}, {testModel, 1, maxTokens}, {"o3", 1, maxCompletionTokens}}},
		{"without a limit nothing is sent and nothing is asked again",
			[]string{"o3"}, 0, []call{{"o3", 1, ""}, {"o3", 1, ""}}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			providertest.Modes(t, func(t *testing.T, stream bool) {
				srv, err := fake.Start(fake.Options{Keys: map[string]fake.Key{testKey: {}}, RejectMaxTokens: tc.reject})
				if err != nil {
					t.Fatal(err)
				}
				t.Cleanup(func() { srv.Close() })
				c := newClient(t, srv.URL(), stream, func(o *Options) { o.MaxOutputTokens = tc.maxTokens })
				for i, want := range tc.calls {
					before := srv.Stats().Requests
					resp, err := c.Complete(context.Background(), llm.Request{Model: want.model, Prompt: "Label this: I feel low."})
					if err != nil || resp.Text == "" {
						t.Fatalf("call %d (%s): Complete = %+v, %v", i+1, want.model, resp, err)
					}
					if n := srv.Stats().Requests - before; n != want.requests {
						t.Errorf("call %d (%s) took %d requests, want %d", i+1, want.model, n, want.requests)
					}
					body := srv.LastRequest().Body
					for _, field := range []string{maxTokens, maxCompletionTokens} {
						if got, sent := body[field]; (field == want.limit && got != float64(tc.maxTokens)) || (field != want.limit && sent) {
							t.Errorf("call %d (%s) sent %s = %v, want the limit of %d only in %q", i+1, want.model, field, got, tc.maxTokens, want.limit)
						}
					}
				}
			})
		})
	}
}

func TestCachedTokensAreRead(t *testing.T) { providertest.CachedTokensAreRead(t, provider) }
