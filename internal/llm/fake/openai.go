package fake

import (
	"encoding/json"
	"fmt"
	"math"
	"net/http"
	"slices"
	"strconv"
	"strings"
	"time"
)

// openaiWire speaks the OpenAI chat-completions API, as OpenAI, vLLM and Ollama serve it.
type openaiWire struct{ s *Server }

type (
	oaMessage struct {
		Role    string  `json:"role"`
		Content string  `json:"content"`
		Refusal *string `json:"refusal"`
	}
	oaDelta struct {
		Role    string  `json:"role,omitempty"`
		Content *string `json:"content,omitempty"`
	}
	oaChoice struct {
		Index        int        `json:"index"`
		Message      *oaMessage `json:"message,omitempty"`
		Delta        *oaDelta   `json:"delta,omitempty"`
		Logprobs     *struct{}  `json:"logprobs"`
		FinishReason *string    `json:"finish_reason"`
	}
	oaDetails struct {
		ReasoningTokens int `json:"reasoning_tokens"`
	}
	oaUsage struct {
		PromptTokens     int        `json:"prompt_tokens"`
		CompletionTokens int        `json:"completion_tokens"`
		TotalTokens      int        `json:"total_tokens"`
		Details          *oaDetails `json:"completion_tokens_details,omitempty"`
		PromptDetails    struct {
			CachedTokens int `json:"cached_tokens"`
		} `json:"prompt_tokens_details"`
	}
	oaResponse struct {
		ID                string     `json:"id"`
		Object            string     `json:"object"`
		Created           int64      `json:"created"`
		Model             string     `json:"model"`
		SystemFingerprint string     `json:"system_fingerprint"`
		Choices           []oaChoice `json:"choices"`
		// Usage is an object on completions and on the usage chunk, JSON null on the other
		// chunks of a stream with include_usage, and absent otherwise.
		Usage any `json:"usage,omitempty"`
	}
	oaErrorBody struct {
		Message string  `json:"message"`
		Type    string  `json:"type"`
		Param   *string `json:"param"`
		Code    *string `json:"code"`
	}
	oaError struct {
		Error oaErrorBody `json:"error"`
	}
)

func (openaiWire) name() string { return "openai" }

func (openaiWire) key(r *http.Request) (string, bool) {
	k, ok := strings.CutPrefix(r.Header.Get("Authorization"), "Bearer ")
	k = strings.TrimSpace(k)
	return k, ok && k != ""
}

func (o openaiWire) parse(r *http.Request, raw []byte) (*call, *apiErr) {
	c := &call{}
	if err := json.Unmarshal(raw, &c.body); err != nil {
		return c, &apiErr{kind: failBadRequest, msg: "We could not parse the JSON body of your request. (HINT: This likely means you aren't using your HTTP library correctly. The OpenAI API expects a JSON payload, but what was sent was not valid JSON. If you have trouble figuring out how to fix this, please contact us through our help center at help.openai.com.)"}
	}
	c.model, _ = c.body["model"].(string)
	c.stream, _ = c.body["stream"].(bool)
	if opts, ok := c.body["stream_options"].(map[string]any); ok {
		c.includeUsage, _ = opts["include_usage"].(bool)
	}
	for _, name := range []string{"max_completion_tokens", "max_tokens"} {
		if n, ok := c.body[name].(float64); ok && c.maxTokens == 0 {
			c.maxTokens = int(n)
		}
	}
	messages, isList := c.body["messages"].([]any)
	switch {
	case c.model == "":
		return c, &apiErr{kind: failBadRequest, msg: "you must provide a model parameter"}
	case !isList:
		return c, &apiErr{kind: failBadRequest, field: "messages", code: "missing_required_parameter",
			msg: "Missing required parameter: 'messages'."}
	case len(messages) == 0:
		return c, &apiErr{kind: failBadRequest, field: "messages", code: "empty_array",
			msg: "Invalid 'messages': empty array. Expected an array with minimum length 1, but got an empty array instead."}
	case c.body["stream_options"] != nil && !c.stream:
		return c, &apiErr{kind: failBadRequest, field: "stream_options",
			msg: "The 'stream_options' parameter is only allowed when 'stream' is enabled."}
	case c.body["max_tokens"] != nil && slices.Contains(o.s.opts.RejectMaxTokens, c.model):
		return c, &apiErr{kind: failBadRequest, field: "max_tokens", code: "unsupported_parameter",
			msg: "Unsupported parameter: 'max_tokens' is not supported with this model. Use 'max_completion_tokens' instead."}
	}
	var user, all []string
	for i, m := range messages {
		msg, _ := m.(map[string]any)
		role, _ := msg["role"].(string)
		if role == "" {
			at := fmt.Sprintf("messages[%d].role", i)
			return c, &apiErr{kind: failBadRequest, field: at, code: "missing_required_parameter",
				msg: fmt.Sprintf("Missing required parameter: '%s'.", at)}
		}
		text := messageText(msg["content"])
		all = append(all, text)
		if role == "user" {
			user = append(user, text)
		}
	}
	c.prompt = strings.Join(user, "\n")
	c.input = strings.Join(all, "\n")
	return c, nil
}

// messageText reads a message content: a string, or a list of {"type":"text","text":...} parts.
func messageText(content any) string {
	if s, ok := content.(string); ok {
		return s
	}
	parts, _ := content.([]any)
	var texts []string
	for _, p := range parts {
		if pm, ok := p.(map[string]any); ok {
			if t, ok := pm["text"].(string); ok {
				texts = append(texts, t)
			}
		}
	}
	return strings.Join(texts, "\n")
}

func (o openaiWire) writeError(w http.ResponseWriter, c *call, e apiErr) {
	status, body := openaiError(c, e)
	switch e.kind {
	case failRateMinute, failRateDay:
		wait := e.retry
		if e.kind == failRateDay {
			wait = e.reset
		}
		// openai-go reads retry-after (whole seconds); round up so an obedient client is not early.
		w.Header().Set("Retry-After", strconv.Itoa(int(math.Ceil(wait.Seconds()))))
		w.Header().Set("x-ratelimit-limit-requests", strconv.Itoa(e.limit))
		w.Header().Set("x-ratelimit-remaining-requests", "0")
		w.Header().Set("x-ratelimit-reset-requests", wait.Round(time.Millisecond).String())
	}
	writeJSON(w, status, "application/json", "    ", oaError{body})
}

// openaiError renders e as OpenAI does. The message of an unknown key shows only its ends.
func openaiError(c *call, e apiErr) (int, oaErrorBody) {
	str := func(s string) *string {
		if s == "" {
			return nil
		}
		return &s
	}
	switch e.kind {
	case failMissingKey:
		return 401, oaErrorBody{Type: "invalid_request_error",
			Message: "You didn't provide an API key. You need to provide your API key in an Authorization header using Bearer auth (i.e. Authorization: Bearer YOUR_KEY), or as the password field (with blank username) if you're accessing the API from your browser and are prompted for a username and password. You can obtain an API key from https://platform.openai.com/account/api-keys."}
	case failInvalidKey:
		return 401, oaErrorBody{Type: "invalid_request_error", Code: str("invalid_api_key"),
			Message: fmt.Sprintf("Incorrect API key provided: %s. You can find your API key at https://platform.openai.com/account/api-keys.", maskKey(c.key))}
	case failBadRequest:
		return orDefault(e.status, 400), oaErrorBody{Type: "invalid_request_error", Message: e.msg, Param: str(e.field), Code: str(e.code)}
	case failModelNotFound:
		return 404, oaErrorBody{Type: "invalid_request_error", Code: str("model_not_found"),
			Message: fmt.Sprintf("The model `%s` does not exist or you do not have access to it.", c.model)}
	case failServer:
		return e.status, oaErrorBody{Type: "server_error",
			Message: "The server had an error while processing your request. Sorry about that!"}
	case failOverloaded:
		return 503, oaErrorBody{Type: "server_error", Message: "The model is overloaded. Please try again later."}
	case failRateMinute, failRateDay:
		per, wait := "min (RPM)", e.retry
		if e.kind == failRateDay {
			per, wait = "day (RPD)", e.reset
		}
		return 429, oaErrorBody{Type: "requests", Code: str("rate_limit_exceeded"), Message: fmt.Sprintf(
			"Rate limit reached for %s in organization org-fake on requests per %s: Limit %d, Used %d, Requested 1. Please try again in %s. Visit https://platform.openai.com/account/rate-limits to learn more.",
			c.model, per, e.limit, e.limit, wait.Round(time.Millisecond))}
	}
	return 429, oaErrorBody{Type: "insufficient_quota", Code: str("insufficient_quota"),
		Message: "You exceeded your current quota, please check your plan and billing details. For more information on this error, read the docs: https://platform.openai.com/docs/guides/error-codes/api-errors."}
}

func maskKey(k string) string {
	if len(k) <= 8 {
		return strings.Repeat("*", len(k))
	}
	return k[:3] + strings.Repeat("*", len(k)-7) + k[len(k)-4:]
}

// outcome is what every rendering of rep shares: the finish reason, the usage and the
// response fields that do not depend on streaming.
func (o openaiWire) outcome(c *call, rep reply) (finish string, usage oaUsage, base oaResponse) {
	finish = "stop"
	switch {
	case rep.promptBlocked, rep.finish == finishSafety:
		finish = "content_filter"
	case rep.finish == finishMaxTokens:
		finish = "length"
	}
	prompt := words(c.input)
	usage = oaUsage{PromptTokens: prompt, CompletionTokens: words(rep.text)}
	usage.PromptDetails.CachedTokens = o.s.cachedTokens(c)
	if rep.thoughts > 0 {
		usage.CompletionTokens = rep.thoughts
		usage.Details = &oaDetails{ReasoningTokens: rep.thoughts}
	}
	usage.TotalTokens = usage.PromptTokens + usage.CompletionTokens
	base = oaResponse{ID: fmt.Sprintf("chatcmpl-fake%d", o.s.nextID()), Created: o.s.opts.Now().Unix(),
		Model: c.model, SystemFingerprint: "fp_fake"}
	return finish, usage, base
}

// completion is rep as a whole chat.completion object, the body of a reply that does not stream
// and of a batch output line.
func (o openaiWire) completion(c *call, rep reply) oaResponse {
	finish, usage, resp := o.outcome(c, rep)
	resp.Object = "chat.completion"
	resp.Choices = []oaChoice{{Message: &oaMessage{Role: "assistant", Content: strings.Join(o.s.deltas(rep.text, false), "")}, FinishReason: &finish}}
	resp.Usage = usage
	return resp
}

func (o openaiWire) writeReply(w http.ResponseWriter, r *http.Request, c *call, rep reply, plan streamPlan) {
	if !c.stream {
		resp := o.completion(c, rep)
		body := encode(resp, "  ")
		if plan.cut >= 0 {
			o.s.writeTruncated(w, r, "application/json", body, plan)
			return
		}
		writeJSON(w, http.StatusOK, "application/json", "  ", resp)
		return
	}

	finish, usage, base := o.outcome(c, rep)
	base.Object = "chat.completion.chunk"
	if c.includeUsage {
		base.Usage = json.RawMessage("null")
	}
	chunk := func(d oaDelta, finish *string) oaResponse {
		ch := base
		ch.Choices = []oaChoice{{Delta: &d, FinishReason: finish}}
		return ch
	}
	empty := ""
	chunks := []oaResponse{chunk(oaDelta{Role: "assistant", Content: &empty}, nil)}
	if rep.text != "" {
		for _, d := range o.s.deltas(rep.text, true) {
			chunks = append(chunks, chunk(oaDelta{Content: &d}, nil))
		}
	}
	chunks = append(chunks, chunk(oaDelta{}, &finish))
	if c.includeUsage {
		last := base
		last.Choices, last.Usage = []oaChoice{}, usage
		chunks = append(chunks, last)
	}
	frames := make([][]byte, len(chunks))
	for i, ch := range chunks {
		frames[i] = append(append([]byte("data: "), encode(ch, "")...), "\n\n"...)
	}
	_, errBody := openaiError(c, apiErr{kind: failServer, status: 500})
	errFrame := append(append([]byte("data: "), encode(oaError{errBody}, "")...), "\n\n"...)
	o.s.writeStream(w, r, "text/event-stream; charset=utf-8", frames, []byte("data: [DONE]\n\n"), errFrame, plan)
}

func (s *Server) openaiModels(w http.ResponseWriter, r *http.Request) {
	o := openaiWire{s}
	key, present := o.key(r)
	if !s.listRequest(key) {
		kind := failInvalidKey
		if !present {
			kind = failMissingKey
		}
		o.writeError(w, &call{key: key}, apiErr{kind: kind})
		return
	}
	var data []map[string]any
	for _, m := range []string{"gpt-4o-mini", "gpt-4.1-mini", "fake-chat"} {
		data = append(data, map[string]any{"id": m, "object": "model", "created": 1721172741, "owned_by": "system"})
	}
	writeJSON(w, http.StatusOK, "application/json", "  ", map[string]any{"object": "list", "data": data})
}
