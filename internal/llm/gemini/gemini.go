// Package gemini is the Gemini REST API provider (generateContent, and streamGenerateContent
// with alt=sse).
package gemini

import (
	"cmp"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
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
	DefaultRequestTimeout    = 45 * time.Second
	DefaultStreamIdleTimeout = 20 * time.Second
)

// Reply size limits: a label needs a few kilobytes, and these only stop a runaway server from
// filling memory.
const (
	maxReply      = 32 << 20
	maxErrorReply = 1 << 20
)

// Options configure a Client.
type Options struct {
	BaseURL string        // "" means DefaultBaseURL
	APIKey  config.Secret // sent as the x-goog-api-key header, never in the URL
	Model   string        // used when a Request names none
	Stream  bool          // streamGenerateContent?alt=sse instead of generateContent
	// RequestTimeout bounds a whole call; StreamIdleTimeout the silence between two chunks of
	// a stream. Zero means the defaults above.
	RequestTimeout    time.Duration
	StreamIdleTimeout time.Duration
	Temperature       *float64 // nil: not sent
	MaxOutputTokens   int      // 0: not sent
	ThinkingBudget    *int     // nil: not sent (models without thinking reject it)
	// SafetyThreshold is sent for each harm category; "" sends no safety settings.
	SafetyThreshold string
	// MaxConns is how many calls may run at once; it sizes the connection pool.
	MaxConns int
}

// Client calls the Gemini API. It is safe for concurrent use; create one per API key and share
// it, so its calls share one connection pool.
type Client struct {
	http      *httpx.Client
	base      string
	key       config.Secret
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
	base := strings.TrimRight(cmp.Or(o.BaseURL, DefaultBaseURL), "/")
	if u, err := url.Parse(base); err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		return nil, fmt.Errorf("gemini: base URL %q is not an absolute http or https URL", base)
	}
	requestTimeout := cmp.Or(o.RequestTimeout, DefaultRequestTimeout)
	c := &Client{
		http: &httpx.Client{
			Provider: config.ProviderGemini,
			HTTP: &http.Client{Transport: httpx.NewTransport(httpx.TransportOptions{
				ResponseHeaderTimeout: requestTimeout,
				MaxIdleConnsPerHost:   o.MaxConns,
			})},
			RequestTimeout:    requestTimeout,
			StreamIdleTimeout: cmp.Or(o.StreamIdleTimeout, DefaultStreamIdleTimeout),
		},
		base:     base,
		key:      o.APIKey,
		model:    o.Model,
		stream:   o.Stream,
		location: pacific(),
	}
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
	model := strings.TrimPrefix(cmp.Or(req.Model, c.model), "models/")
	endpoint := c.base + "/v1beta/models/" + url.PathEscape(model)
	if c.stream {
		endpoint += ":streamGenerateContent?alt=sse"
	} else {
		endpoint += ":generateContent"
	}
	body, err := json.Marshal(request{
		Contents:         []content{{Role: "user", Parts: []part{{Text: req.Prompt}}}},
		GenerationConfig: c.genConfig,
		SafetySettings:   c.safety,
	})
	if err != nil {
		return llm.Response{}, &llm.Error{Kind: llm.BadRequest, Provider: config.ProviderGemini, Err: err}
	}
	header := http.Header{}
	header.Set("x-goog-api-key", c.key.Reveal())
	call, err := c.http.Post(ctx, endpoint, header, body)
	if err != nil {
		return llm.Response{}, err
	}
	defer call.Close()
	if call.Response.StatusCode != http.StatusOK {
		data, err := call.ReadAll(maxErrorReply)
		if err != nil {
			return llm.Response{}, err
		}
		var e errorBody
		if json.Unmarshal(data, &e) != nil || e.Error == nil {
			return llm.Response{}, c.classify(call.Response.StatusCode, call.Response.Header, nil, httpx.Snippet(data, c.key.Reveal()))
		}
		return llm.Response{}, c.classify(call.Response.StatusCode, call.Response.Header, e.Error, "")
	}
	var r reply
	if c.stream {
		err = c.readStream(call, &r)
	} else {
		err = c.readWhole(call, &r)
	}
	if err != nil {
		return llm.Response{}, err
	}
	return c.result(&r, model)
}

func (c *Client) readWhole(call *httpx.Call, r *reply) error {
	data, err := call.ReadAll(maxReply)
	if err != nil {
		return err
	}
	var g generateResponse
	if err := json.Unmarshal(data, &g); err != nil {
		return c.unreadable(err, data)
	}
	if g.Error != nil {
		return c.classify(g.Error.Code, nil, g.Error, "")
	}
	r.add(&g)
	return nil
}

// readStream adds up the chunks of an alt=sse stream, which ends when the server closes it.
func (c *Client) readStream(call *httpx.Call, r *reply) error {
	events := httpx.NewSSE(call.Stream())
	for {
		data, bare, err := events.Next()
		if errors.Is(err, io.EOF) {
			return nil
		}
		if err != nil {
			return call.Fail(err)
		}
		if bare { // not an event: the server's way of reporting a mid-stream error
			var e errorBody
			if json.Unmarshal(data, &e) == nil && e.Error != nil {
				return c.classify(e.Error.Code, nil, e.Error, "")
			}
			continue
		}
		if len(data) == 0 {
			continue
		}
		var g generateResponse
		if err := json.Unmarshal(data, &g); err != nil {
			return c.unreadable(err, data)
		}
		if g.Error != nil {
			return c.classify(g.Error.Code, nil, g.Error, "")
		}
		r.add(&g)
	}
}

// unreadable reports a 200 reply that is not the JSON the API sends: a proxy's page or a cut
// reply, which trying again may fix.
func (c *Client) unreadable(err error, data []byte) error {
	return &llm.Error{Kind: llm.Unavailable, Provider: config.ProviderGemini, StatusCode: http.StatusOK,
		Message: "reply is not valid JSON: " + httpx.Snippet(data, c.key.Reveal()), Err: err}
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
	msg = httpx.Redact(msg, c.key.Reveal())
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
