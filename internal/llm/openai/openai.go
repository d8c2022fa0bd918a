// Package openai is the provider for OpenAI-compatible /v1/chat/completions servers: OpenAI,
// vLLM, Ollama, llama.cpp, LM Studio.
package openai

import (
	"bytes"
	"cmp"
	"context"
	"encoding/json"
	"errors"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/mhannotator/mha/internal/config"
	"github.com/mhannotator/mha/internal/llm"
	"github.com/mhannotator/mha/internal/llm/httpx"
)

// DefaultBaseURL is OpenAI's API.
const DefaultBaseURL = "https://api.openai.com"

// Defaults for zero Options fields.
const (
	DefaultRequestTimeout    = httpx.DefaultRequestTimeout
	DefaultStreamIdleTimeout = httpx.DefaultStreamIdleTimeout
)

// Options configure a Client. BaseURL is the server, with or without the trailing /v1
// ("http://localhost:11434" and "http://localhost:11434/v1" both work). The API key is sent as
// "Authorization: Bearer"; local servers ignore it. MaxOutputTokens is sent as max_tokens, or
// as max_completion_tokens to a model that refused max_tokens (see Client.Complete).
type Options = httpx.Options

// Client calls a chat completions server. It is safe for concurrent use; create one per API
// key and share it, so its calls share one connection pool.
type Client struct {
	http        *httpx.Client
	endpoint    string
	model       string
	stream      bool
	temperature *float64
	maxTokens   int
	// completionTokens holds the models (as a set) that refused max_tokens and are sent
	// max_completion_tokens instead.
	completionTokens sync.Map
}

// New returns a client, or an error when the base URL is not an absolute http(s) URL.
func New(o Options) (*Client, error) {
	hc, base, err := httpx.New(config.ProviderOpenAI, DefaultBaseURL, o)
	if err != nil {
		return nil, err
	}
	if !strings.HasSuffix(base, "/v1") {
		base += "/v1"
	}
	c := &Client{http: hc, endpoint: base + "/chat/completions", model: o.Model, stream: o.Stream, maxTokens: o.MaxOutputTokens}
	if o.Temperature != nil {
		t := *o.Temperature
		c.temperature = &t
	}
	return c, nil
}

// Complete sends one chat completion (streamed when the client streams) and returns the
// reply's text and token counts. Failures are *llm.Error, except that a cancelled ctx returns
// ctx.Err() (see package httpx).
//
// The output limit goes out as max_tokens, which every OpenAI-compatible server takes but
// OpenAI's reasoning models (o1, o3, gpt-5) refuse with a 400 that asks for
// max_completion_tokens. Such a refusal sends the call again, once, with that name, and the
// client sends it to that model from then on.
func (c *Client) Complete(ctx context.Context, req llm.Request) (llm.Response, error) {
	model := cmp.Or(req.Model, c.model)
	_, completionTokens := c.completionTokens.Load(model)
	resp, err := c.complete(ctx, model, req.Prompt, completionTokens)
	if c.maxTokens > 0 && !completionTokens && errors.Is(err, errMaxTokensRefused) {
		c.completionTokens.Store(model, struct{}{})
		resp, err = c.complete(ctx, model, req.Prompt, true)
	}
	return resp, err
}

// complete sends one chat completion, with the output limit named max_completion_tokens when
// completionTokens is set, else max_tokens.
func (c *Client) complete(ctx context.Context, model, prompt string, completionTokens bool) (llm.Response, error) {
	r := c.body(model, prompt, completionTokens)
	if c.stream {
		r.Stream = true
		r.StreamOptions = &streamOptions{IncludeUsage: true}
	}
	header := http.Header{}
	header.Set("Authorization", "Bearer "+c.http.Key.Reveal())
	rep := reply{done: !c.stream} // a whole reply is complete
	err := httpx.Do(ctx, c.http, httpx.Exchange[apiError]{
		URL:     c.endpoint,
		Header:  header,
		Body:    r,
		Stream:  c.stream,
		Refused: c.classify,
		Whole:   func(data []byte) error { return c.take(data, false, &rep) },
		Event:   func(data []byte, bare bool) (bool, error) { return c.event(data, bare, &rep) },
	})
	if err != nil {
		return llm.Response{}, err
	}
	return c.result(&rep, model)
}

// body is the request of one prompt, not streamed: a call's, and a batch line's. The output
// limit is named max_completion_tokens when completionTokens is set, else max_tokens.
func (c *Client) body(model, prompt string, completionTokens bool) request {
	r := request{
		Model:       model,
		Messages:    []message{{Role: "user", Content: prompt}},
		Temperature: c.temperature,
	}
	if completionTokens {
		r.MaxCompletionTokens = c.maxTokens
	} else {
		r.MaxTokens = c.maxTokens
	}
	return r
}

// event takes in one event of a stream, which ends with "data: [DONE]".
func (c *Client) event(data []byte, bare bool, r *reply) (done bool, err error) {
	if bytes.Equal(data, []byte("[DONE]")) {
		r.done = true
		return true, nil
	}
	if len(data) == 0 {
		return false, nil
	}
	return false, c.take(data, bare, r)
}

// take adds a reply, or one chunk of a stream, to r. A bare line of a stream (see httpx.SSE)
// that is not a chunk is passed over.
func (c *Client) take(data []byte, bare bool, r *reply) error {
	cr, err := httpx.Decode[chatResponse](c.http, data)
	if err != nil {
		if bare {
			return nil
		}
		return err
	}
	if cr.Error != nil { // an error object in a 200 reply, or a mid-stream error event
		return c.classify(0, nil, cr.Error, "")
	}
	r.add(cr)
	return nil
}

// result turns a complete reply into a Response, or into the error its outcome is.
func (c *Client) result(r *reply, model string) (llm.Response, error) {
	fail := func(kind llm.Kind, msg string) (llm.Response, error) {
		return llm.Response{}, &llm.Error{Kind: kind, Provider: config.ProviderOpenAI, StatusCode: http.StatusOK, Message: msg}
	}
	text := r.text.String()
	switch {
	case r.finishReason == "content_filter":
		return fail(llm.Blocked, "content_filter")
	case r.finishReason == "length" && text == "":
		return fail(llm.MaxTokensEmpty, "length before any text")
	case !r.done && r.finishReason == "":
		// The server closed the stream cleanly but mid-reply; the text may be cut short.
		return fail(llm.Unavailable, "stream ended before the reply was finished")
	case !r.choices:
		return fail(llm.Unavailable, "reply has no choices")
	}
	resp := llm.Response{Text: text, Model: cmp.Or(r.model, model)}
	if u := r.usage; u != nil {
		resp.InputTokens, resp.OutputTokens = u.PromptTokens, u.CompletionTokens
		if d := u.PromptTokensDetails; d != nil {
			resp.CachedTokens = d.CachedTokens
		}
	}
	return resp, nil
}

// errMaxTokensRefused is the Err of a BadRequest whose server refused max_tokens and asked for
// max_completion_tokens, which Complete answers by sending the call again.
var errMaxTokensRefused = errors.New("the model takes max_completion_tokens, not max_tokens")

// classify maps an API error to its Kind: status is the HTTP status, or 0 for an error object
// inside a 200 reply or stream. msg stands in for the message when the reply held no error
// object.
func (c *Client) classify(status int, h http.Header, e *apiError, msg string) *llm.Error {
	var code, typ, param string
	if e != nil {
		msg, typ = e.Message, e.Type
		// A param that is null, absent or not a string names no field.
		_ = json.Unmarshal(e.Param, &param)
		if json.Unmarshal(e.Code, &code) != nil { // not a string: vLLM puts the HTTP status there
			var n int
			if json.Unmarshal(e.Code, &n) == nil && status == 0 {
				status = n
			}
		}
	}
	out := &llm.Error{Provider: config.ProviderOpenAI, StatusCode: status, Message: httpx.Redact(msg, c.http.Key.Reveal())}
	if status == 0 {
		status = statusOf(code, typ)
	}
	switch {
	case status == http.StatusUnauthorized || status == http.StatusForbidden:
		out.Kind = llm.InvalidKey
	case status == http.StatusNotFound:
		out.Kind = llm.ModelNotFound
	case status == http.StatusTooManyRequests && (code == "insufficient_quota" || typ == "insufficient_quota"):
		out.Kind = llm.NoQuota
	case status == http.StatusTooManyRequests && strings.Contains(out.Message, "per day"):
		// A requests- or tokens-per-day limit (RPD, TPD): the day's quota is spent.
		out.Kind = llm.DailyQuota
		if d := retryAfter(h, out.Message); d > 0 {
			out.ResetAt = time.Now().Add(d)
		}
	case status == http.StatusTooManyRequests:
		out.Kind = llm.RateLimited
		out.RetryAfter = retryAfter(h, out.Message)
	case status == http.StatusRequestTimeout || status == http.StatusConflict:
		out.Kind = llm.Unavailable
	case status >= 400 && status < 500:
		out.Kind = llm.BadRequest
		// OpenAI says "Unsupported parameter: 'max_tokens' ... Use 'max_completion_tokens'
		// instead." A max_tokens that is merely too large (code invalid_value) is not this.
		if (param == "max_tokens" && code == "unsupported_parameter") || strings.Contains(out.Message, "max_completion_tokens") {
			out.Err = errMaxTokensRefused
		}
	default:
		out.Kind = llm.Unavailable
	}
	return out
}

// statusOf gives an error object without an HTTP status the status its code stands for.
func statusOf(code, typ string) int {
	switch {
	case code == "invalid_api_key":
		return http.StatusUnauthorized
	case code == "model_not_found":
		return http.StatusNotFound
	case code == "insufficient_quota" || code == "rate_limit_exceeded":
		return http.StatusTooManyRequests
	case typ == "invalid_request_error":
		return http.StatusBadRequest
	}
	return http.StatusInternalServerError
}

// retryAfter is the delay a 429 asks for: the Retry-After headers, else "try again in 41.7s"
// in the message, else the reset time of whichever rate-limit window is exhausted.
func retryAfter(h http.Header, msg string) time.Duration {
	if d := cmp.Or(httpx.RetryAfterHeader(h, time.Now()), httpx.RetryInMessage(msg)); d > 0 {
		return d
	}
	for _, window := range []string{"requests", "tokens"} {
		if remaining, err := strconv.Atoi(h.Get("x-ratelimit-remaining-" + window)); err == nil && remaining <= 0 {
			if d, err := time.ParseDuration(h.Get("x-ratelimit-reset-" + window)); err == nil && d > 0 {
				return d
			}
		}
	}
	return 0
}

// reply adds up a reply, whole or in streamed chunks.
type reply struct {
	text         strings.Builder
	choices      bool
	finishReason string
	model        string
	usage        *usage
	done         bool // the reply is known complete: a whole reply, or a stream's [DONE]
}

func (r *reply) add(cr *chatResponse) {
	r.model = cmp.Or(cr.Model, r.model)
	if cr.Usage != nil { // a stream's own usage chunk, or a gateway's final content chunk
		r.usage = cr.Usage
	}
	if len(cr.Choices) == 0 {
		return
	}
	r.choices = true
	ch := cr.Choices[0]
	r.finishReason = cmp.Or(ch.FinishReason, r.finishReason)
	r.text.WriteString(ch.Message.Content)
	r.text.WriteString(ch.Delta.Content)
}
