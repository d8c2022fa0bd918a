// Package providers builds an annotator's real LLM provider from the configuration, and checks
// that its key works. (It cannot live in package llm: the providers import llm.)
package providers

import (
	"context"
	"fmt"

	"github.com/mhannotator/mha/internal/config"
	"github.com/mhannotator/mha/internal/llm"
	"github.com/mhannotator/mha/internal/llm/gemini"
	"github.com/mhannotator/mha/internal/llm/httpx"
	"github.com/mhannotator/mha/internal/llm/openai"
)

// New returns the provider annotator a uses, configured from g. Build it once per annotator
// and share it between that annotator's calls: it holds their connection pool. Calls report
// streamed chunks to the callback of their context (llm.WithProgress). The offline baseline
// is not built here: it needs no configuration of this kind, and New returns an error for it.
func New(a config.Annotator, g config.Global) (llm.Provider, error) {
	temperature := g.Temperature
	shared := httpx.Options{
		BaseURL:           a.BaseURL,
		APIKey:            a.APIKey,
		Model:             a.ModelName,
		Stream:            g.Stream,
		RequestTimeout:    g.RequestTimeout,
		StreamIdleTimeout: g.StreamIdleTimeout,
		Temperature:       &temperature,
		MaxOutputTokens:   g.MaxOutputTokens,
		MaxConns:          g.MaxConcurrentActivities,
	}
	switch a.Provider {
	case config.ProviderGemini:
		c, err := gemini.New(gemini.Options{Options: shared, ThinkingBudget: g.ThinkingBudget, SafetyThreshold: g.SafetyThreshold})
		if err != nil { // returned apart, so a failed build is a nil Provider, not a nil *Client in one
			return nil, err
		}
		return c, nil
	case config.ProviderOpenAI:
		c, err := openai.New(shared)
		if err != nil {
			return nil, err
		}
		return c, nil
	}
	return nil, fmt.Errorf("annotator %s: provider %q is not a networked LLM provider", a.ID, a.Provider)
}

// CheckPrompt is the prompt Check sends.
const CheckPrompt = "Reply with OK."

// Check makes one small real call through p, to tell whether its key and model work. It
// returns nil when they do, else the classified *llm.Error (or ctx.Err() when ctx was
// cancelled), whose Kind the caller can report: a RateLimited key was accepted but could not
// be tried now. A reply blocked for safety, or cut by the token limit, still proves that key
// and model work, so it counts as success.
func Check(ctx context.Context, p llm.Provider) error {
	_, err := p.Complete(ctx, llm.Request{Prompt: CheckPrompt})
	if k, ok := llm.KindOf(err); ok && (k == llm.Blocked || k == llm.MaxTokensEmpty) {
		return nil
	}
	return err
}
