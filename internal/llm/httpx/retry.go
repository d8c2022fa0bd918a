package httpx

import (
	"net/http"
	"regexp"
	"strconv"
	"strings"
	"time"

	"github.com/mhannotator/mha/internal/clip"
)

// RetryAfterHeader reads the delay a reply asks for: Retry-After-Ms (milliseconds), else
// Retry-After (seconds, or an HTTP date measured from now). It returns 0 when there is none.
func RetryAfterHeader(h http.Header, now time.Time) time.Duration {
	if ms, err := strconv.ParseFloat(h.Get("Retry-After-Ms"), 64); err == nil && ms > 0 {
		return time.Duration(ms * float64(time.Millisecond))
	}
	v := strings.TrimSpace(h.Get("Retry-After"))
	if v == "" {
		return 0
	}
	if s, err := strconv.ParseFloat(v, 64); err == nil {
		return max(time.Duration(s*float64(time.Second)), 0)
	}
	if t, err := http.ParseTime(v); err == nil {
		return max(t.Sub(now), 0)
	}
	return 0
}

// retryIn finds "retry in 26.4s" (Gemini) and "try again in 41.7s", "try again in 20ms",
// "try again in 1m30s" (OpenAI): a Go-style duration after either phrase.
var retryIn = regexp.MustCompile(`(?i)(?:retry|try again) in ((?:[0-9]+(?:\.[0-9]+)?(?:ms|h|m|s))+)`)

// RetryInMessage reads the delay a provider's message asks for, or 0.
func RetryInMessage(msg string) time.Duration {
	m := retryIn.FindStringSubmatch(msg)
	if m == nil {
		return 0
	}
	d, err := time.ParseDuration(m[1])
	if err != nil || d < 0 {
		return 0
	}
	return d
}

// Snippet shortens a reply body that is not the expected JSON to something a message can
// hold: secret removed, whitespace collapsed, at most 200 bytes, valid UTF-8.
func Snippet(body []byte, secret string) string {
	const limit = 200
	return clip.String(strings.Join(strings.Fields(strings.ToValidUTF8(Redact(string(body), secret), "?")), " "), limit)
}

// Redact removes secret from msg, so a provider or proxy that echoes the key back cannot put
// it into an error.
func Redact(msg, secret string) string {
	if secret == "" {
		return msg
	}
	return strings.ReplaceAll(msg, secret, "****")
}
