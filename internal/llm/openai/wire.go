package openai

import "encoding/json"

// The JSON of /v1/chat/completions, as far as a single-prompt call uses it.

type request struct {
	Model         string         `json:"model"`
	Messages      []message      `json:"messages"`
	Temperature   *float64       `json:"temperature,omitempty"`
	MaxTokens     int            `json:"max_tokens,omitempty"`
	Stream        bool           `json:"stream,omitempty"`
	StreamOptions *streamOptions `json:"stream_options,omitempty"` // valid only with stream
	// MaxCompletionTokens stands in for MaxTokens with the models that refuse it (OpenAI's
	// reasoning models). A local server may not know it, so only those models get it.
	MaxCompletionTokens int `json:"max_completion_tokens,omitempty"`
}

type message struct {
	Role    string `json:"role"`
	Content string `json:"content"`
}

type streamOptions struct {
	IncludeUsage bool `json:"include_usage"`
}

// chatResponse is a reply, or one chunk of a streamed reply (whose choices carry a delta).
// Null fields decode as empty: vLLM sends the usage chunk with "choices": null.
type chatResponse struct {
	Model   string `json:"model"`
	Choices []struct {
		Message      message `json:"message"`
		Delta        message `json:"delta"`
		FinishReason string  `json:"finish_reason"`
	} `json:"choices"`
	Usage *usage    `json:"usage"`
	Error *apiError `json:"error"`
}

type usage struct {
	PromptTokens        int `json:"prompt_tokens"`
	CompletionTokens    int `json:"completion_tokens"`
	PromptTokensDetails *struct {
		CachedTokens int `json:"cached_tokens"` // served from the prompt cache
	} `json:"prompt_tokens_details"`
}

// apiError is an error object, as an error reply holds it: {"error": apiError}.
type apiError struct {
	Message string          `json:"message"`
	Type    string          `json:"type"`
	Code    json.RawMessage `json:"code"`  // usually a string ("insufficient_quota"), or null
	Param   json.RawMessage `json:"param"` // the request field at fault ("max_tokens"), or null
}
