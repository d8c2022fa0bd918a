package llm

import (
	"errors"
	"fmt"
	"time"
)

// Kind is the class of a failed call. Every provider maps each of its failures to one Kind,
// and the annotate activity handles each Kind in one place.
type Kind string

const (
	// RateLimited: a per-minute limit was hit; wait RetryAfter, then try again. The whole
	// quota pool waits, not only the caller.
	RateLimited Kind = "rate_limited"
	// DailyQuota: the day's requests are spent; the run waits until ResetAt.
	DailyQuota Kind = "daily_quota"
	// NoQuota: the key or project has no quota at all for this model (Gemini "limit: 0",
	// OpenAI insufficient_quota). A configuration error; never retried.
	NoQuota Kind = "no_quota"
	// InvalidKey: the key was refused (Gemini 400 API_KEY_INVALID, 401, 403). Never retried.
	InvalidKey Kind = "invalid_key"
	// ModelNotFound: the model name does not exist for this key (404). Never retried.
	ModelNotFound Kind = "model_not_found"
	// BadRequest: the provider refused this one request (say, input too long). The sample
	// is recorded with the error; retrying would fail the same way.
	BadRequest Kind = "bad_request"
	// Unavailable: overloaded, 5xx, connection reset, timeout, stalled stream. Retried with
	// backoff.
	Unavailable Kind = "unavailable"
	// Blocked: the provider refused to answer for safety reasons (HTTP 200 with a block
	// reason). Recorded as a blocked annotation; never retried.
	Blocked Kind = "blocked"
	// MaxTokensEmpty: the output budget ran out before any text (thinking models spend it on
	// thoughts). Recorded as an error annotation.
	MaxTokensEmpty Kind = "max_tokens_empty"
)

// Causes of an Unavailable error, for the outcome classes of the metrics.
var (
	ErrStalled = errors.New("stream stalled")
	ErrTimeout = errors.New("request timeout")
)

// Error is a classified provider failure. It never holds the API key.
type Error struct {
	Kind       Kind
	Provider   string
	StatusCode int           // HTTP status, 0 when no response arrived
	Message    string        // the provider's own message
	RetryAfter time.Duration // for RateLimited: the provider's retry delay, if it gave one
	ResetAt    time.Time     // for DailyQuota: when the day's quota returns, if known
	Err        error         // the underlying transport error, if any
}

func (e *Error) Error() string {
	msg := fmt.Sprintf("%s: %s", e.Provider, e.Kind)
	if e.StatusCode != 0 {
		msg += fmt.Sprintf(" (HTTP %d)", e.StatusCode)
	}
	if e.Message != "" {
		msg += ": " + e.Message
	}
	if e.Err != nil && e.Message == "" {
		msg += ": " + e.Err.Error()
	}
	return msg
}

func (e *Error) Unwrap() error { return e.Err }

// Retryable reports whether trying the same request again later can succeed.
func (k Kind) Retryable() bool {
	return k == RateLimited || k == DailyQuota || k == Unavailable
}

// KindOf returns the class of err, and false when err is not a classified provider error.
func KindOf(err error) (Kind, bool) {
	var e *Error
	if errors.As(err, &e) {
		return e.Kind, true
	}
	return "", false
}
