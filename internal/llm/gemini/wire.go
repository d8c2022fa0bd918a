package gemini

// The JSON of the v1beta API, as far as a single-prompt call uses it.

type request struct {
	Contents         []content         `json:"contents"`
	GenerationConfig *generationConfig `json:"generationConfig,omitempty"`
	SafetySettings   []safetySetting   `json:"safetySettings,omitempty"`
}

type content struct {
	Role  string `json:"role,omitempty"`
	Parts []part `json:"parts"`
}

type part struct {
	Text    string `json:"text"`
	Thought bool   `json:"thought,omitempty"` // set on replies, for parts that are thoughts
}

type generationConfig struct {
	Temperature     *float64        `json:"temperature,omitempty"`
	MaxOutputTokens int             `json:"maxOutputTokens,omitempty"`
	ThinkingConfig  *thinkingConfig `json:"thinkingConfig,omitempty"`
}

type thinkingConfig struct {
	ThinkingBudget int `json:"thinkingBudget"` // 0 turns thinking off, -1 lets the model decide
}

type safetySetting struct {
	Category  string `json:"category"`
	Threshold string `json:"threshold"`
}

// generateResponse is a reply, or one chunk of a streamed reply.
type generateResponse struct {
	Candidates []struct {
		Content      *content `json:"content"`
		FinishReason string   `json:"finishReason"`
	} `json:"candidates"`
	PromptFeedback *struct {
		BlockReason string `json:"blockReason"`
	} `json:"promptFeedback"`
	UsageMetadata *usageMetadata `json:"usageMetadata"`
	ModelVersion  string         `json:"modelVersion"`
	Error         *apiError      `json:"error"`
}

type usageMetadata struct {
	PromptTokenCount     int `json:"promptTokenCount"`
	CandidatesTokenCount int `json:"candidatesTokenCount"`
	ThoughtsTokenCount   int `json:"thoughtsTokenCount"`
	// CachedContentTokenCount is the part of the prompt served from the context cache.
	CachedContentTokenCount int `json:"cachedContentTokenCount"`
}

// apiError is a google.rpc.Status, as an error reply holds it: {"error": apiError}.
type apiError struct {
	Code    int      `json:"code"`
	Message string   `json:"message"`
	Details []detail `json:"details"`
}

// detail holds the fields of the detail types that matter here: ErrorInfo (reason),
// QuotaFailure (violations) and RetryInfo (retryDelay).
type detail struct {
	Reason     string `json:"reason"`
	Violations []struct {
		QuotaID string `json:"quotaId"`
	} `json:"violations"`
	RetryDelay string `json:"retryDelay"`
}
