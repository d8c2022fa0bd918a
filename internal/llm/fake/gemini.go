package fake

import (
	"encoding/json"
	"fmt"
	"net/http"
	"slices"
	"strconv"
	"strings"
	"time"
	"unicode"
)

// geminiWire speaks the Generative Language API v1beta.
type geminiWire struct{ s *Server }

const geminiJSON = "application/json; charset=UTF-8"

type (
	gemPart struct {
		Text string `json:"text"`
	}
	gemContent struct {
		Parts []gemPart `json:"parts,omitempty"`
		Role  string    `json:"role"`
	}
	gemRating struct {
		Category    string `json:"category"`
		Probability string `json:"probability"`
		Blocked     bool   `json:"blocked,omitempty"`
	}
	gemCandidate struct {
		Content       *gemContent `json:"content,omitempty"`
		FinishReason  string      `json:"finishReason,omitempty"`
		Index         int         `json:"index"`
		SafetyRatings []gemRating `json:"safetyRatings,omitempty"`
	}
	gemFeedback struct {
		BlockReason   string      `json:"blockReason"`
		SafetyRatings []gemRating `json:"safetyRatings"`
	}
	gemUsage struct {
		PromptTokenCount     int `json:"promptTokenCount,omitempty"`
		CandidatesTokenCount int `json:"candidatesTokenCount,omitempty"`
		ThoughtsTokenCount   int `json:"thoughtsTokenCount,omitempty"`
		TotalTokenCount      int `json:"totalTokenCount,omitempty"`
		CachedContentTokens  int `json:"cachedContentTokenCount,omitempty"`
	}
	gemResponse struct {
		Candidates     []gemCandidate `json:"candidates,omitempty"`
		PromptFeedback *gemFeedback   `json:"promptFeedback,omitempty"`
		UsageMetadata  gemUsage       `json:"usageMetadata"`
		ModelVersion   string         `json:"modelVersion"`
		ResponseID     string         `json:"responseId"`
	}
	gemStatus struct {
		Code    int    `json:"code"`
		Message string `json:"message"`
		Status  string `json:"status"`
		Details []any  `json:"details,omitempty"`
	}
	gemError struct {
		Error gemStatus `json:"error"`
	}
)

func (geminiWire) name() string { return "gemini" }

// key reads the header the official SDK sends, or the ?key= query.
func (geminiWire) key(r *http.Request) (string, bool) {
	if k := r.Header.Get("x-goog-api-key"); k != "" {
		return k, true
	}
	if k := r.URL.Query().Get("key"); k != "" {
		return k, true
	}
	return "", false
}

// Field names the API knows, in camelCase; proto3 JSON also accepts their snake_case forms,
// and rejects anything else, which catches misspelt options instead of silently dropping them.
var (
	gemRequestFields = []string{"contents", "systemInstruction", "generationConfig", "safetySettings",
		"tools", "toolConfig", "cachedContent", "model"}
	gemConfigFields = []string{"candidateCount", "frequencyPenalty", "logprobs", "maxOutputTokens",
		"presencePenalty", "responseJsonSchema", "responseLogprobs", "responseMimeType", "responseSchema",
		"responseModalities", "seed", "stopSequences", "temperature", "thinkingConfig", "topK", "topP",
		"mediaResolution", "speechConfig", "enableEnhancedCivicAnswers"}
	gemThinkingFields = []string{"includeThoughts", "thinkingBudget", "thinkingLevel"}
	gemCategories     = []string{"HARM_CATEGORY_HARASSMENT", "HARM_CATEGORY_HATE_SPEECH",
		"HARM_CATEGORY_SEXUALLY_EXPLICIT", "HARM_CATEGORY_DANGEROUS_CONTENT", "HARM_CATEGORY_CIVIC_INTEGRITY"}
	gemThresholds = []string{"HARM_BLOCK_THRESHOLD_UNSPECIFIED", "BLOCK_LOW_AND_ABOVE",
		"BLOCK_MEDIUM_AND_ABOVE", "BLOCK_ONLY_HIGH", "BLOCK_NONE", "OFF"}
)

func (g geminiWire) parse(r *http.Request, raw []byte) (*call, *apiErr) {
	model, method, _ := strings.Cut(r.PathValue("action"), ":")
	c := &call{model: model, stream: method == "streamGenerateContent"}
	switch {
	case method != "generateContent" && method != "streamGenerateContent":
		return c, &apiErr{kind: failBadRequest, status: http.StatusNotFound, msg: "Method not found."}
	case c.stream && r.URL.Query().Get("alt") != "sse":
		// The real API would stream a JSON array here; refusing it makes a client that forgot
		// alt=sse fail loudly rather than choke on a format it cannot parse.
		return c, badGemini("", "this fake serves streamGenerateContent only with alt=sse")
	}
	if err := json.Unmarshal(raw, &c.body); err != nil {
		return c, badGemini("", "Invalid JSON payload received. "+err.Error())
	}
	return c, parseGeminiRequest(c)
}

// parseGeminiRequest validates c.body, a GenerateContentRequest, and reads its prompt into c: a
// call and a line of a batch are read alike.
func parseGeminiRequest(c *call) *apiErr {
	if e := unknownFields(c.body, "", gemRequestFields); e != nil {
		return e
	}
	cfg, _ := field(c.body, "generationConfig").(map[string]any)
	if e := unknownFields(cfg, "generation_config", gemConfigFields); e != nil {
		return e
	}
	thinking, _ := field(cfg, "thinkingConfig").(map[string]any)
	if e := unknownFields(thinking, "generation_config.thinking_config", gemThinkingFields); e != nil {
		return e
	}
	if n, ok := field(cfg, "maxOutputTokens").(float64); ok {
		c.maxTokens = int(n)
	}
	if e := checkSafety(field(c.body, "safetySettings")); e != nil {
		return e
	}

	contents, _ := c.body["contents"].([]any)
	if len(contents) == 0 {
		return badGemini("contents", "* GenerateContentRequest.contents: contents is not specified\n")
	}
	first, _ := contents[0].(map[string]any)
	if parts, _ := first["parts"].([]any); len(parts) == 0 {
		return badGemini("contents[0].parts", "* GenerateContentRequest.contents[0].parts: contents.parts must not be empty.\n")
	} else if p, _ := parts[0].(map[string]any); p["text"] == nil {
		return badGemini("contents[0].parts[0].text", "* GenerateContentRequest.contents[0].parts[0].data: required oneof field 'data' must have one initialized field\n")
	}
	var texts []string
	for _, content := range contents {
		texts = append(texts, partTexts(content)...)
	}
	c.prompt = strings.Join(texts, "\n")
	c.input = strings.Join(append(partTexts(field(c.body, "systemInstruction")), c.prompt), "\n")
	return nil
}

// field reads a field under its camelCase or snake_case name.
func field(m map[string]any, camel string) any {
	if v, ok := m[camel]; ok {
		return v
	}
	return m[snake(camel)]
}

func snake(camel string) string {
	var b strings.Builder
	for _, r := range camel {
		if unicode.IsUpper(r) {
			b.WriteByte('_')
			r = unicode.ToLower(r)
		}
		b.WriteRune(r)
	}
	return b.String()
}

func unknownFields(m map[string]any, at string, known []string) *apiErr {
	for name := range m {
		if slices.ContainsFunc(known, func(k string) bool { return name == k || name == snake(k) }) {
			continue
		}
		where := ""
		if at != "" {
			where = fmt.Sprintf(" at '%s'", at)
		}
		return badGemini(at, fmt.Sprintf("Invalid JSON payload received. Unknown name %q%s: Cannot find field.", name, where))
	}
	return nil
}

func checkSafety(v any) *apiErr {
	enums := []struct {
		field, typ string
		allowed    []string
	}{{"category", "HarmCategory", gemCategories}, {"threshold", "HarmBlockThreshold", gemThresholds}}
	list, _ := v.([]any)
	for i, item := range list {
		setting, _ := item.(map[string]any)
		for _, e := range enums {
			if val, _ := setting[e.field].(string); !slices.Contains(e.allowed, val) {
				at := fmt.Sprintf("safety_settings[%d].%s", i, e.field)
				return badGemini(at, fmt.Sprintf("Invalid value at '%s' (type.googleapis.com/google.ai.generativelanguage.v1beta.%s), %q", at, e.typ, val))
			}
		}
	}
	return nil
}

// partTexts collects the text parts of a Content object.
func partTexts(content any) []string {
	m, _ := content.(map[string]any)
	parts, _ := m["parts"].([]any)
	var texts []string
	for _, p := range parts {
		if pm, ok := p.(map[string]any); ok {
			if t, ok := pm["text"].(string); ok {
				texts = append(texts, t)
			}
		}
	}
	return texts
}

func badGemini(at, msg string) *apiErr {
	return &apiErr{kind: failBadRequest, field: at, msg: msg}
}

func (g geminiWire) writeError(w http.ResponseWriter, c *call, e apiErr) {
	st := geminiStatus(c, e)
	writeJSON(w, st.Code, geminiJSON, "  ", gemError{st})
}

const geminiHelp = "You exceeded your current quota, please check your plan and billing details. " +
	"For more information on this error, head to: https://ai.google.dev/gemini-api/docs/rate-limits. " +
	"To monitor your current usage, head to: https://ai.dev/usage?tab=rate-limit. "

// geminiStatus renders e as the google.rpc.Status the real API sends.
func geminiStatus(c *call, e apiErr) gemStatus {
	switch e.kind {
	case failMissingKey:
		return gemStatus{Code: 403, Status: "PERMISSION_DENIED",
			Message: "Method doesn't allow unregistered callers (callers without established identity). Please use API Key or other form of API consumer identity to call this API."}
	case failInvalidKey:
		const msg = "API key not valid. Please pass a valid API key."
		return gemStatus{Code: 400, Status: "INVALID_ARGUMENT", Message: msg, Details: []any{
			map[string]any{"@type": "type.googleapis.com/google.rpc.ErrorInfo", "reason": "API_KEY_INVALID",
				"domain": "googleapis.com", "metadata": map[string]string{"service": "generativelanguage.googleapis.com"}},
			map[string]any{"@type": "type.googleapis.com/google.rpc.LocalizedMessage", "locale": "en-US", "message": msg},
		}}
	case failBadRequest:
		st := gemStatus{Code: 400, Status: "INVALID_ARGUMENT", Message: e.msg}
		if e.status == http.StatusNotFound {
			st.Code, st.Status = 404, "NOT_FOUND"
		}
		if e.field != "" {
			st.Details = []any{map[string]any{"@type": "type.googleapis.com/google.rpc.BadRequest",
				"fieldViolations": []map[string]string{{"field": e.field, "description": e.msg}}}}
		}
		return st
	case failModelNotFound:
		return gemStatus{Code: 404, Status: "NOT_FOUND", Message: fmt.Sprintf(
			"models/%s is not found for API version v1beta, or is not supported for generateContent. Call ListModels to see the list of available models and their supported methods.", c.model)}
	case failServer:
		switch e.status {
		case 500:
			return gemStatus{Code: 500, Status: "INTERNAL",
				Message: "An internal error has occurred. Please retry or report in https://developers.generativeai.google/guide/troubleshooting"}
		case 504:
			return gemStatus{Code: 504, Status: "DEADLINE_EXCEEDED", Message: "Deadline expired before operation could complete."}
		}
		return gemStatus{Code: e.status, Status: "UNAVAILABLE", Message: "The service is currently unavailable."}
	case failOverloaded:
		return gemStatus{Code: 503, Status: "UNAVAILABLE", Message: "The model is overloaded. Please try again later."}
	}

	// The quota errors: one QuotaFailure, a Help link and a RetryInfo, as in the real bodies.
	per, limit := "Minute", e.limit
	if e.kind == failRateDay {
		per = "Day"
	}
	violation := func(per string, limit int) map[string]any {
		v := map[string]any{
			"quotaMetric":     "generativelanguage.googleapis.com/generate_content_free_tier_requests",
			"quotaId":         "GenerateRequestsPer" + per + "PerProjectPerModel-FreeTier",
			"quotaDimensions": map[string]string{"location": "global", "model": c.model},
		}
		if limit > 0 { // proto3 JSON leaves out a zero quotaValue
			v["quotaValue"] = strconv.Itoa(limit)
		}
		return v
	}
	violations := []any{violation(per, limit)}
	if e.kind == failNoQuota {
		// A model without free tier names both request quotas; only "limit: 0" in the
		// message tells it from a spent daily quota.
		violations = []any{violation("Day", 0), violation("Minute", 0)}
	}
	delay := protoDuration(e.retry)
	return gemStatus{
		Code:   429,
		Status: "RESOURCE_EXHAUSTED",
		Message: fmt.Sprintf("%s\n* Quota exceeded for metric: generativelanguage.googleapis.com/generate_content_free_tier_requests, limit: %d, model: %s\nPlease retry in %s.",
			geminiHelp, limit, c.model, delay),
		Details: []any{
			map[string]any{"@type": "type.googleapis.com/google.rpc.QuotaFailure", "violations": violations},
			map[string]any{"@type": "type.googleapis.com/google.rpc.Help", "links": []map[string]string{
				{"description": "Learn more about Gemini API quotas", "url": "https://ai.google.dev/gemini-api/docs/rate-limits"}}},
			map[string]any{"@type": "type.googleapis.com/google.rpc.RetryInfo", "retryDelay": delay},
		},
	}
}

// protoDuration formats d as a google.protobuf.Duration in JSON: seconds with up to nine
// fractional digits and an "s", such as "26s" or "38.804097346s".
func protoDuration(d time.Duration) string {
	sec, frac := d/time.Second, d%time.Second
	if frac == 0 {
		return fmt.Sprintf("%ds", sec)
	}
	return strings.TrimRight(fmt.Sprintf("%d.%09d", sec, frac), "0") + "s"
}

func (g geminiWire) writeReply(w http.ResponseWriter, r *http.Request, c *call, rep reply, plan streamPlan) {
	events := g.events(c, rep)
	if !c.stream {
		body := encode(events[0], "  ")
		if plan.cut >= 0 {
			g.s.writeTruncated(w, r, geminiJSON, body, plan)
			return
		}
		writeJSON(w, http.StatusOK, geminiJSON, "  ", events[0])
		return
	}
	// Google frames events with CRLF and ends the stream by closing it, with no [DONE].
	frames := make([][]byte, len(events))
	for i, ev := range events {
		frames[i] = append(append([]byte("data: "), encode(ev, "")...), "\r\n\r\n"...)
	}
	errLine := encode(gemError{geminiStatus(c, apiErr{kind: failOverloaded})}, "")
	g.s.writeStream(w, r, "text/event-stream", frames, nil, append(errLine, "\r\n"...), plan)
}

// events renders rep as the stream events (one response when not streaming). Usage is on every
// event and cumulative, so a client must keep the last.
func (g geminiWire) events(c *call, rep reply) []gemResponse {
	base := gemResponse{ModelVersion: c.model, ResponseID: fmt.Sprintf("fake-%d", g.s.nextID())}
	prompt := words(c.input)
	cached := g.s.cachedTokens(c)
	base.UsageMetadata = gemUsage{PromptTokenCount: prompt, TotalTokenCount: prompt, CachedContentTokens: cached}
	switch {
	case rep.promptBlocked:
		base.PromptFeedback = &gemFeedback{BlockReason: "SAFETY", SafetyRatings: blockedRatings()}
		return []gemResponse{base}
	case rep.finish == finishSafety:
		base.Candidates = []gemCandidate{{FinishReason: finishSafety, SafetyRatings: blockedRatings()}}
		return []gemResponse{base}
	case rep.finish == finishMaxTokens:
		base.Candidates = []gemCandidate{{Content: &gemContent{Role: "model"}, FinishReason: finishMaxTokens}}
		base.UsageMetadata.ThoughtsTokenCount = rep.thoughts
		base.UsageMetadata.TotalTokenCount += rep.thoughts
		return []gemResponse{base}
	}
	deltas := g.s.deltas(rep.text, c.stream)
	events := make([]gemResponse, len(deltas))
	sent := ""
	for i, d := range deltas {
		sent += d
		ev := base
		ev.Candidates = []gemCandidate{{Content: &gemContent{Parts: []gemPart{{Text: d}}, Role: "model"}}}
		if i == len(deltas)-1 {
			ev.Candidates[0].FinishReason = rep.finish
		}
		out := words(sent)
		ev.UsageMetadata = gemUsage{PromptTokenCount: prompt, CandidatesTokenCount: out, TotalTokenCount: prompt + out, CachedContentTokens: cached}
		events[i] = ev
	}
	return events
}

// blockedRatings are the safety ratings of a blocked answer: all negligible but one.
func blockedRatings() []gemRating {
	ratings := make([]gemRating, 0, 4)
	for _, cat := range gemCategories[:4] {
		ratings = append(ratings, gemRating{Category: cat, Probability: "NEGLIGIBLE"})
	}
	ratings[3] = gemRating{Category: ratings[3].Category, Probability: "HIGH", Blocked: true}
	return ratings
}

func (s *Server) geminiModels(w http.ResponseWriter, r *http.Request) {
	g := geminiWire{s}
	key, _ := g.key(r)
	if !s.listRequest(key) {
		kind := failInvalidKey
		if key == "" {
			kind = failMissingKey
		}
		g.writeError(w, &call{}, apiErr{kind: kind})
		return
	}
	var models []map[string]any
	for _, m := range []string{"gemini-2.5-flash", "gemini-2.5-flash-lite", "gemini-2.5-pro"} {
		models = append(models, map[string]any{
			"name": "models/" + m, "displayName": m, "inputTokenLimit": 1048576, "outputTokenLimit": 65536,
			"supportedGenerationMethods": []string{"generateContent", "countTokens"},
		})
	}
	writeJSON(w, http.StatusOK, geminiJSON, "  ", map[string]any{"models": models})
}
