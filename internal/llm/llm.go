// Package llm defines what the platform asks of a language-model provider. Providers live in
// subpackages; every reply goes through the same label parser, whoever wrote it.
package llm

import (
	"context"

	"github.com/mhannotator/mha/internal/labels"
)

// Request is one annotation call.
type Request struct {
	Model  string
	Prompt string // the rendered prompt, sample text included
	Domain labels.Domain
	Text   string // the sample text alone, for providers that do not read prompts
}

// Response is a provider's reply.
type Response struct {
	Text         string
	Model        string // the model that answered, as the provider reports it
	InputTokens  int
	OutputTokens int
	CachedTokens int // of InputTokens, served from the provider's prompt cache
}

// Provider answers annotation requests.
type Provider interface {
	Complete(ctx context.Context, req Request) (Response, error)
}

// ApproxTokens is a prompt's size in tokens before a provider has counted it: about four
// bytes a token, the rule of thumb for English text in both providers' tokenizers.
func ApproxTokens(prompt string) int { return len(prompt) / 4 }
