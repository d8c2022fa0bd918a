package fake

import (
	"bytes"
	"encoding/json"
	"net/http"
	"strconv"
	"strings"
	"time"
)

// wire is one provider's wire format. The server decides what happens to a request; the wire
// decides how that looks on the connection.
type wire interface {
	name() string
	// key returns the API key and whether the request carried one at all.
	key(r *http.Request) (string, bool)
	// parse decodes and validates a generate request. The call is never nil, so that what
	// could be read is recorded even when the request is invalid.
	parse(r *http.Request, raw []byte) (*call, *apiErr)
	writeError(w http.ResponseWriter, c *call, e apiErr)
	writeReply(w http.ResponseWriter, r *http.Request, c *call, rep reply, plan streamPlan)
}

// call is a decoded generate request.
type call struct {
	key          string
	model        string
	prompt       string // the user text
	input        string // everything the model reads (system text too): the domain and token count come from it
	stream       bool
	includeUsage bool // OpenAI stream_options.include_usage
	maxTokens    int  // the output budget the client set, 0 if none
	body         map[string]any
}

// failure is a provider error class, rendered by each wire in its own words.
type failure int

const (
	failNone failure = iota
	failMissingKey
	failInvalidKey
	failBadRequest
	failModelNotFound
	failServer
	failOverloaded
	failRateMinute
	failRateDay
	failNoQuota
)

// apiErr is an error answer before rendering.
type apiErr struct {
	kind   failure
	status int    // failServer: the HTTP status; failBadRequest: overrides 400
	msg    string // failBadRequest: the provider's message
	field  string // failBadRequest: the offending field (Gemini field violation, OpenAI param)
	code   string // failBadRequest: OpenAI error code
	limit  int    // quota errors: the limit that was hit
	retry  time.Duration
	reset  time.Duration // failRateDay: time until the day's quota returns
}

// Gemini finish reasons; the OpenAI wire maps them to its own.
const (
	finishStop      = "STOP"
	finishSafety    = "SAFETY"
	finishMaxTokens = "MAX_TOKENS"
)

// reply is a 200 answer before rendering.
type reply struct {
	text          string // without the LargeFrame padding
	finish        string
	promptBlocked bool // Gemini promptFeedback.blockReason: no candidate at all
	thoughts      int  // thinking tokens that used up the budget (MAX_TOKENS)
}

// streamPlan says where a StallStream or MidStreamError strikes: after cut chunks (cut < 0:
// nowhere), stalling or sending an error.
type streamPlan struct {
	cut   int
	stall bool
}

var noFault = streamPlan{cut: -1}

// largePad is longer than 1 MiB, the line limit clients most often pick for bufio.Scanner.
var largePad = strings.Repeat(" ", 1<<20+1024)

// deltas splits text into ChunkCount stream deltas (a single one when not streaming), with the
// LargeFrame padding in the first. Splitting by runes, not words, puts tags across chunk
// boundaries as real token streams do.
func (s *Server) deltas(text string, stream bool) []string {
	var parts []string
	n := s.opts.ChunkCount
	if !stream || text == "" {
		n = 1
	}
	runes := []rune(text)
	n = max(1, min(n, len(runes)))
	for i := range n {
		parts = append(parts, string(runes[i*len(runes)/n:(i+1)*len(runes)/n]))
	}
	if s.opts.LargeFrame && text != "" {
		parts[0] = largePad + parts[0]
	}
	return parts
}

// words is the fake's token count: whitespace-separated words.
func words(s string) int { return len(strings.Fields(s)) }

// encode marshals v without Go's HTML escaping, which no provider does: a reply's "<<" stays
// "<<" on the wire, not "\u003c\u003c".
func encode(v any, indent string) []byte {
	var b bytes.Buffer
	enc := json.NewEncoder(&b)
	enc.SetEscapeHTML(false)
	enc.SetIndent("", indent)
	if err := enc.Encode(v); err != nil {
		panic(err) // only the package's own types get here, and they always encode
	}
	return bytes.TrimSuffix(b.Bytes(), []byte("\n"))
}

func writeJSON(w http.ResponseWriter, status int, contentType, indent string, v any) {
	body := encode(v, indent)
	w.Header().Set("Content-Type", contentType)
	w.Header().Set("Content-Length", strconv.Itoa(len(body)))
	w.WriteHeader(status)
	_, _ = w.Write(body)
}

// writeStream sends frames as one event stream, each flushed on its own, then end (if any).
// The plan can cut it short with a stall or errFrame.
func (s *Server) writeStream(w http.ResponseWriter, r *http.Request, contentType string, frames [][]byte, end, errFrame []byte, plan streamPlan) {
	w.Header().Set("Content-Type", contentType)
	w.Header().Set("Cache-Control", "no-cache")
	w.WriteHeader(http.StatusOK)
	rc := http.NewResponseController(w)
	n := len(frames)
	if plan.cut >= 0 {
		n = min(plan.cut, n)
	}
	for _, f := range frames[:n] {
		if _, err := w.Write(f); err != nil {
			return
		}
		if err := rc.Flush(); err != nil {
			return
		}
	}
	switch {
	case plan.cut < 0:
		_, _ = w.Write(end)
	case plan.stall:
		s.block(r.Context())
	default:
		_, _ = w.Write(errFrame)
	}
}

// writeTruncated is a stream fault on a non-streaming request: half the body is sent, then the
// server stalls, or stops short of Content-Length, which makes net/http drop the connection.
func (s *Server) writeTruncated(w http.ResponseWriter, r *http.Request, contentType string, body []byte, plan streamPlan) {
	w.Header().Set("Content-Type", contentType)
	w.Header().Set("Content-Length", strconv.Itoa(len(body)))
	w.WriteHeader(http.StatusOK)
	_, _ = w.Write(body[:len(body)/2])
	if plan.stall {
		_ = http.NewResponseController(w).Flush()
		s.block(r.Context())
	}
}

// listRequest counts a model-listing request and reports whether its key is accepted.
func (s *Server) listRequest(key string) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.stats.Requests++
	ks := s.stats.ByKey[key]
	ks.Requests++
	_, ok := s.opts.Keys[key]
	if !ok {
		ks.Rejected++
	}
	s.stats.ByKey[key] = ks
	return ok
}

// cacheBlock is the fake prompt cache's granularity, in tokens (words).
const cacheBlock = 16

// cachedTokens plays the providers' prompt cache: the part of c's input it shares with the
// previous call of the same key, in whole blocks, counts as served from the cache. Prompts
// that put their fixed instructions first share all of them.
func (s *Server) cachedTokens(c *call) int {
	s.mu.Lock()
	prev := s.prefix[c.key]
	if s.prefix == nil {
		s.prefix = map[string]string{}
	}
	s.prefix[c.key] = c.input
	s.mu.Unlock()
	n := 0
	for n < len(prev) && n < len(c.input) && prev[n] == c.input[n] {
		n++
	}
	return words(c.input[:n]) / cacheBlock * cacheBlock
}
