// Package gemini is the Gemini REST API provider (generateContent, and streamGenerateContent
// with alt=sse).
package gemini

import (
	"cmp"
	"context"
	"net/http"
	"net/url"
	"strings"
	"time"
	_ "time/tzdata" // the daily quota resets at midnight Pacific time, on any machine

	"github.com/mhannotator/mha/internal/config"
	"github.com/mhannotator/mha/internal/llm"
	"github.com/mhannotator/mha/internal/llm/httpx"
)

// DefaultBaseURL is the Gemini API.
const DefaultBaseURL = "https://generativelanguage.googleapis.com"

// Defaults for zero Options fields.
const (
	DefaultRequestTimeout    = httpx.DefaultRequestTimeout
	DefaultStreamIdleTimeout = httpx.DefaultStreamIdleTimeout
)

// Options configure a Client. The API key is sent as the x-goog-api-key header, never in the
// URL; Stream calls streamGenerateContent?alt=sse instead of generateContent.
type Options struct {
	httpx.Options
	ThinkingBudget *int // nil: not sent (models without thinking reject it)
	// SafetyThreshold is sent for each harm category; "" sends no safety settings.
	SafetyThreshold string
}

// Client calls the Gemini API. It is safe for concurrent use; create one per API key and share
// it, so its calls share one connection pool.
type Client struct {
	http      *httpx.Client
	base      string
	model     string
	stream    bool
	genConfig *generationConfig
	safety    []safetySetting
	location  *time.Location
}

// harmCategories are the categories a safety threshold applies to.
var harmCategories = []string{
	"HARM_CATEGORY_DANGEROUS_CONTENT", "HARM_CATEGORY_HARASSMENT",
	"HARM_CATEGORY_HATE_SPEECH", "HARM_CATEGORY_SEXUALLY_EXPLICIT",
}

// New returns a client, or an error when the base URL is not an absolute http(s) URL.
func New(o Options) (*Client, error) {
	hc, base, err := httpx.New(config.ProviderGemini, DefaultBaseURL, o.Options)
	if err != nil {
		return nil, err
	}
	c := &Client{http: hc, base: base, model: o.Model, stream: o.Stream, location: pacific()}
	gc := generationConfig{MaxOutputTokens: o.MaxOutputTokens}
	if o.Temperature != nil {
		t := *o.Temperature
		gc.Temperature = &t
	}
	if o.ThinkingBudget != nil {
		gc.ThinkingConfig = &thinkingConfig{ThinkingBudget: *o.ThinkingBudget}
	}
	if gc != (generationConfig{}) {
		c.genConfig = &gc
	}
	if o.SafetyThreshold != "" {
		for _, cat := range harmCategories {
			c.safety = append(c.safety, safetySetting{Category: cat, Threshold: o.SafetyThreshold})
		}
	}
	return c, nil
}

// pacific is where the daily quota's day ends.
func pacific() *time.Location {
	loc, err := time.LoadLocation("America/Los_Angeles")
	if err != nil { // cannot happen with time/tzdata linked in; standard time is close enough
		return time.FixedZone("PST", -8*60*60)
	}
	return loc
}

// Complete sends one generateContent call (streamed when the client streams) and returns the
// reply's text, without thought parts, and its token counts. Failures are *llm.Error, except
// that a cancelled ctx returns ctx.Err() (see package httpx).
func (c *Client) Complete(ctx context.Context, req llm.Request) (llm.Response, error) {
	model := c.modelOf(req)
	endpoint := c.base + "/v1beta/models/" + url.PathEscape(model)
	if c.stream {
		endpoint += ":streamGenerateContent?alt=sse"
	} else {
		endpoint += ":generateContent"
	}
	header := http.Header{}
	header.Set("x-goog-api-key", c.http.Key.Reveal())
	var r reply
	err := httpx.Do(ctx, c.http, httpx.Exchange[apiError]{
		URL:     endpoint,
		Header:  header,
		Body:    c.newRequest(req),
		Stream:  c.stream,
		Refused: c.classify,
		Whole:   func(data []byte) error { return c.take(data, &r) },
		// An alt=sse stream ends when the server closes it.
		Event: func(data []byte, bare bool) (bool, error) { return false, c.event(data, bare, &r) },
	})
	if err != nil {
		return llm.Response{}, err
	}
	return c.result(&r, model)
}

// modelOf is the model that answers req, without the "models/" prefix.
func (c *Client) modelOf(req llm.Request) string {
	return strings.TrimPrefix(cmp.Or(req.Model, c.model), "models/")
}

// newRequest is the GenerateContentRequest of req: a call's body, and a batch line's request.
func (c *Client) newRequest(req llm.Request) request {
	return request{
		Contents:         []content{{Role: "user", Parts: []part{{Text: req.Prompt}}}},
		GenerationConfig: c.genConfig,
		SafetySettings:   c.safety,
	}
}

// event takes in one event of a stream.
func (c *Client) event(data []byte, bare bool, r *reply) error {
	if bare { // not an event: the server's way of reporting a mid-stream error
		if e := httpx.ErrorObject[apiError](data); e != nil {
			return c.classify(e.Code, nil, e, "")
		}
		return nil
	}
	if len(data) == 0 {
		return nil
	}
	return c.take(data, r)
}

// take adds a reply, or one chunk of a stream, to r.
func (c *Client) take(data []byte, r *reply) error {
	g, err := httpx.Decode[generateResponse](c.http, data)
	if err != nil {
		return err
	}
	if g.Error != nil {
		return c.classify(g.Error.Code, nil, g.Error, "")
	}
	r.add(g)
	return nil
}

// blockedFinish are the finish reasons of a reply withheld for safety.
var blockedFinish = map[string]bool{"SAFETY": true, "PROHIBITED_CONTENT": true, "BLOCKLIST": true, "SPII": true}

// result turns a complete reply into a Response, or into the error its outcome is.
func (c *Client) result(r *reply, model string) (llm.Response, error) {
	fail := func(kind llm.Kind, msg string) (llm.Response, error) {
		return llm.Response{}, &llm.Error{Kind: kind, Provider: config.ProviderGemini, StatusCode: http.StatusOK, Message: msg}
	}
	text := r.text.String()
	switch {
	case r.blockReason != "":
		return fail(llm.Blocked, r.blockReason)
	case blockedFinish[r.finishReason]:
		return fail(llm.Blocked, r.finishReason)
	case r.finishReason == "MAX_TOKENS" && text == "":
		return fail(llm.MaxTokensEmpty, "MAX_TOKENS before any text")
	case !r.candidates:
		return fail(llm.Unavailable, "reply has no candidates and no block reason")
	}
	resp := llm.Response{Text: text, Model: cmp.Or(r.modelVersion, model)}
	if u := r.usage; u != nil {
		resp.InputTokens = u.PromptTokenCount
		resp.CachedTokens = u.CachedContentTokenCount
		resp.OutputTokens = u.CandidatesTokenCount + u.ThoughtsTokenCount
	}
	return resp, nil
}

// classify maps an API error (HTTP status, or the code of an error object inside a stream) to
// its Kind. msg stands in for the message when the reply held no error object.
func (c *Client) classify(status int, h http.Header, e *apiError, msg string) *llm.Error {
	var details []detail
	if e != nil {
		msg, details = e.Message, e.Details
	}
	msg = httpx.Redact(msg, c.http.Key.Reveal())
	out := &llm.Error{Provider: config.ProviderGemini, StatusCode: status, Message: msg}
	switch {
	case status == http.StatusBadRequest && (hasReason(details, "API_KEY_INVALID") || strings.Contains(msg, "API key not valid")):
		out.Kind = llm.InvalidKey
	case status == http.StatusUnauthorized || status == http.StatusForbidden:
		out.Kind = llm.InvalidKey
	case status == http.StatusNotFound:
		out.Kind = llm.ModelNotFound
	case status == http.StatusTooManyRequests:
		c.classifyQuota(out, h, details)
	case status == http.StatusRequestTimeout:
		out.Kind = llm.Unavailable
	case status >= 400 && status < 500:
		out.Kind = llm.BadRequest
	default:
		out.Kind = llm.Unavailable
	}
	return out
}

// classifyQuota tells the three 429s apart: no quota at all for the model ("limit: 0"), the
// day's quota spent (a PerDay quota ID), or a per-minute limit.
func (c *Client) classifyQuota(out *llm.Error, h http.Header, details []detail) {
	if strings.Contains(out.Message, "limit: 0") {
		out.Kind = llm.NoQuota
		return
	}
	for _, d := range details {
		for _, v := range d.Violations {
			if strings.Contains(v.QuotaID, "PerDay") {
				out.Kind = llm.DailyQuota
				out.ResetAt = nextMidnight(time.Now(), c.location)
				return
			}
		}
	}
	out.Kind = llm.RateLimited
	for _, d := range details {
		if delay, err := time.ParseDuration(d.RetryDelay); err == nil && delay > 0 {
			out.RetryAfter = delay
			return
		}
	}
	out.RetryAfter = cmp.Or(httpx.RetryInMessage(out.Message), httpx.RetryAfterHeader(h, time.Now()))
}

// nextMidnight is the first midnight in loc after now.
func nextMidnight(now time.Time, loc *time.Location) time.Time {
	y, m, d := now.In(loc).Date()
	return time.Date(y, m, d+1, 0, 0, 0, 0, loc)
}

func hasReason(details []detail, reason string) bool {
	for _, d := range details {
		if d.Reason == reason {
			return true
		}
	}
	return false
}

// reply adds up a reply, whole or in streamed chunks.
type reply struct {
	text         strings.Builder
	candidates   bool
	finishReason string
	blockReason  string
	modelVersion string
	usage        *usageMetadata // the last one seen: a stream's final chunk has the totals
}

func (r *reply) add(g *generateResponse) {
	if g.PromptFeedback != nil && g.PromptFeedback.BlockReason != "" {
		r.blockReason = g.PromptFeedback.BlockReason
	}
	if g.UsageMetadata != nil {
		r.usage = g.UsageMetadata
	}
	r.modelVersion = cmp.Or(g.ModelVersion, r.modelVersion)
	if len(g.Candidates) == 0 {
		return
	}
	r.candidates = true
	cand := g.Candidates[0]
	r.finishReason = cmp.Or(cand.FinishReason, r.finishReason)
	if cand.Content == nil {
		return
	}
	for _, p := range cand.Content.Parts {
		if !p.Thought {
			r.text.WriteString(p.Text)
		}
	}
}
