package providertest

import (
	"cmp"
	"context"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/mhannotator/mha/internal/config"
	"github.com/mhannotator/mha/internal/labels"
	"github.com/mhannotator/mha/internal/llm"
	"github.com/mhannotator/mha/internal/llm/fake"
	"github.com/mhannotator/mha/internal/llm/httpx"
)

// The outcome classes against the in-repo fake provider, which renders each API's bodies on its
// own: a second opinion on the wire format besides the canned replies of a provider's tests.

const fakePrompt = "Classify the urgency of this text and end with <<LEVEL_N>>.\nText: I can't sleep and I feel hopeless."

// startFake starts a fake server that accepts p's key unless opts name the keys.
func startFake(t *testing.T, p Provider, opts fake.Options) *fake.Server {
	t.Helper()
	if opts.Keys == nil {
		opts.Keys = map[string]fake.Key{p.Key: {}}
	}
	srv, err := fake.Start(opts)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { srv.Close() })
	return srv
}

// fakeClient returns a client of srv that sends key and gives up after a second.
func fakeClient(t *testing.T, p Provider, srv *fake.Server, stream bool, key string) llm.Provider {
	t.Helper()
	return p.client(t, srv.URL(), stream, func(o *httpx.Options) {
		o.APIKey, o.RequestTimeout, o.StreamIdleTimeout = config.Secret(key), time.Second, 300*time.Millisecond
	})
}

// AgainstTheFakeServer checks that p makes of each fault of the fake server the outcome it
// stands for, whole and streamed.
func AgainstTheFakeServer(t *testing.T, p Provider) {
	cases := []struct {
		name  string
		fault *fake.Fault
		key   string
		kind  llm.Kind // "" means a reply
		check func(t *testing.T, e *llm.Error)
	}{
		{name: "a reply"},
		{name: "a malformed reply is still a reply", fault: &fake.Fault{Kind: fake.Malformed}},
		{name: "an unknown key", key: "WRONG-key-0000000000000000", kind: llm.InvalidKey},
		{name: "an invalid-key fault", fault: &fake.Fault{Kind: fake.InvalidKeyFault}, kind: llm.InvalidKey},
		{name: "an unknown model", fault: &fake.Fault{Kind: fake.ModelNotFound}, kind: llm.ModelNotFound},
		{name: "a per-minute limit", fault: &fake.Fault{Kind: fake.RateLimitMinute, RetryAfter: 3 * time.Second}, kind: llm.RateLimited,
			check: func(t *testing.T, e *llm.Error) {
				if e.RetryAfter != 3*time.Second {
					t.Errorf("RetryAfter = %v, want 3s", e.RetryAfter)
				}
			}},
		{name: "a spent daily quota", fault: &fake.Fault{Kind: fake.RateLimitDay}, kind: llm.DailyQuota,
			check: func(t *testing.T, e *llm.Error) {
				if until := time.Until(e.ResetAt); until <= 0 || until > 25*time.Hour {
					t.Errorf("ResetAt = %v, want a reset within a day", e.ResetAt)
				}
			}},
		{name: "no quota for the model", fault: &fake.Fault{Kind: fake.NoQuotaFault}, kind: llm.NoQuota},
		{name: "a server error", fault: &fake.Fault{Kind: fake.ServerError}, kind: llm.Unavailable},
		{name: "an overloaded model", fault: &fake.Fault{Kind: fake.Overloaded}, kind: llm.Unavailable},
		{name: "a blocked prompt", fault: &fake.Fault{Kind: fake.SafetyBlockPrompt}, kind: llm.Blocked},
		{name: "a safety finish", fault: &fake.Fault{Kind: fake.SafetyFinish}, kind: llm.Blocked},
		{name: "thoughts that spend the budget", fault: &fake.Fault{Kind: fake.MaxTokensEmpty}, kind: llm.MaxTokensEmpty},
		{name: "a mid-stream error", fault: &fake.Fault{Kind: fake.MidStreamError, After: 1}, kind: llm.Unavailable},
		{name: "a stalled stream", fault: &fake.Fault{Kind: fake.StallStream, After: 1}, kind: llm.Unavailable},
		{name: "a hang", fault: &fake.Fault{Kind: fake.Hang}, kind: llm.Unavailable},
		{name: "a reset connection", fault: &fake.Fault{Kind: fake.ResetConnection}, kind: llm.Unavailable},
	}
	for _, stream := range []bool{false, true} {
		for _, c := range cases {
			name := c.name + map[bool]string{false: ", whole", true: ", streamed"}[stream]
			t.Run(name, func(t *testing.T) {
				srv := startFake(t, p, fake.Options{})
				if c.fault != nil {
					srv.Inject(*c.fault)
				}
				start := time.Now()
				resp, err := fakeClient(t, p, srv, stream, cmp.Or(c.key, p.Key)).Complete(context.Background(), llm.Request{Prompt: fakePrompt})
				elapsed := time.Since(start)
				if elapsed > 3*time.Second {
					t.Errorf("took %v: every fault must end within the request timeout (1s)", elapsed)
				}
				if stream && c.fault != nil && c.fault.Kind == fake.StallStream && elapsed > 900*time.Millisecond {
					t.Errorf("a stalled stream took %v to cut, want the idle timeout (300ms)", elapsed)
				}
				if c.kind == "" {
					if err != nil || resp.Text == "" || resp.InputTokens == 0 || resp.OutputTokens == 0 {
						t.Fatalf("Complete = %+v, %v; want a reply with usage", resp, err)
					}
					if c.fault == nil && !strings.Contains(resp.Text, "<<") {
						t.Errorf("reply %q has no label tag", resp.Text)
					}
					return
				}
				var e *llm.Error
				if !errors.As(err, &e) || e.Kind != c.kind {
					t.Fatalf("err = %v, want kind %s", err, c.kind)
				}
				if strings.Contains(err.Error(), p.Key) {
					t.Errorf("the error shows the key: %v", err)
				}
				if c.check != nil {
					c.check(t, e)
				}
			})
		}
	}
}

// TheFakeServerSeesTheRequestAndCountsQuota checks what the fake server saw of p's streamed
// request, with a frame over 1 MiB in the reply, and that a second call within the minute meets
// the key's limit of one request a minute.
func TheFakeServerSeesTheRequestAndCountsQuota(t *testing.T, p Provider) {
	srv := startFake(t, p, fake.Options{Keys: map[string]fake.Key{p.Key: {RPM: 1}}, LargeFrame: true})
	c := fakeClient(t, p, srv, true, p.Key)
	resp, err := c.Complete(context.Background(), llm.Request{Prompt: fakePrompt})
	if err != nil || !strings.Contains(resp.Text, "<<") {
		t.Fatalf("a reply with a frame over 1 MiB: %v", err)
	}
	got := srv.LastRequest()
	if got.Format != p.Name || got.Key != p.Key || got.Model != p.Model || !got.Stream || got.Prompt != fakePrompt {
		t.Errorf("the server saw %+v", got)
	}
	_, err = c.Complete(context.Background(), llm.Request{Prompt: fakePrompt})
	var e *llm.Error
	if !errors.As(err, &e) || e.Kind != llm.RateLimited || e.RetryAfter <= 0 || e.RetryAfter > time.Minute {
		t.Fatalf("the second call in a minute with RPM 1: %v, want RateLimited with the time left in the window", err)
	}
	if st := srv.Stats().ByKey[p.Key]; st.Accepted != 1 || st.RateLimited != 1 {
		t.Errorf("stats = %+v, want one accepted and one rate limited", st)
	}
}

// CachedTokensAreRead checks that p reads the cached part of the prompt from the usage the
// fake server reports: nothing on a key's first call, the shared instructions on the next.
func CachedTokensAreRead(t *testing.T, p Provider) {
	for _, stream := range []bool{false, true} {
		srv := startFake(t, p, fake.Options{})
		c := fakeClient(t, p, srv, stream, p.Key)
		instructions := strings.Repeat("Read the text and rate its urgency. ", 20)
		first, err := c.Complete(context.Background(), llm.Request{Prompt: instructions + "Text: one. <<LEVEL_N>>", Domain: labels.Urgency})
		if err != nil {
			t.Fatal(err)
		}
		second, err := c.Complete(context.Background(), llm.Request{Prompt: instructions + "Text: two. <<LEVEL_N>>", Domain: labels.Urgency})
		if err != nil {
			t.Fatal(err)
		}
		if first.CachedTokens != 0 || second.CachedTokens < 100 || second.CachedTokens > second.InputTokens {
			t.Errorf("stream %v: cached tokens %d then %d (of %d); want 0, then the instructions' share", stream, first.CachedTokens, second.CachedTokens, second.InputTokens)
		}
	}
}
