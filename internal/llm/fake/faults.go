package fake

import (
	"fmt"
	"net/http"
	"slices"
	"strings"
	"time"
)

// FaultKind is one way a provider call can go wrong. Its string form is the name the fakellm
// command accepts.
type FaultKind string

const (
	// Hang reads the request and never answers, until the client gives up or Close.
	Hang FaultKind = "hang"
	// StallStream sends After chunks, flushes, then stalls without closing. A non-streaming
	// request gets its headers and half its body, then the stall.
	StallStream FaultKind = "stall_stream"
	// ResetConnection closes the TCP connection with a reset, without any response.
	ResetConnection FaultKind = "reset_connection"
	// ServerError answers Status (default 500): Gemini INTERNAL / UNAVAILABLE /
	// DEADLINE_EXCEEDED, OpenAI server_error.
	ServerError FaultKind = "server_error"
	// Overloaded answers 503 "The model is overloaded".
	Overloaded FaultKind = "overloaded"
	// RateLimitMinute answers the per-minute 429, with Fault.RetryAfter as the retry delay.
	RateLimitMinute FaultKind = "rate_limit_minute"
	// RateLimitDay answers the per-day 429.
	RateLimitDay FaultKind = "rate_limit_day"
	// NoQuotaFault answers as for a Key with NoQuota.
	NoQuotaFault FaultKind = "no_quota"
	// SafetyBlockPrompt answers 200 with Gemini promptFeedback.blockReason SAFETY and no
	// candidates; OpenAI finish_reason "content_filter" and empty content.
	SafetyBlockPrompt FaultKind = "safety_block_prompt"
	// SafetyFinish answers 200 with a Gemini candidate whose finishReason is SAFETY and has no
	// content; OpenAI as SafetyBlockPrompt, having only the one filter outcome.
	SafetyFinish FaultKind = "safety_finish"
	// MaxTokensEmpty answers 200 with no text: Gemini finishReason MAX_TOKENS with the output
	// budget spent on thoughtsTokenCount; OpenAI finish_reason "length" with reasoning tokens.
	MaxTokensEmpty FaultKind = "max_tokens_empty"
	// Malformed answers a normal reply whose text has no <<...>> tag.
	Malformed FaultKind = "malformed"
	// MidStreamError sends After chunks, then an error object (Gemini: a bare JSON line
	// without "data:"; OpenAI: a data: event), then ends the stream. A non-streaming request
	// gets half its body and a closed connection.
	MidStreamError FaultKind = "mid_stream_error"
	// InvalidKeyFault answers as for an unknown key.
	InvalidKeyFault FaultKind = "invalid_key"
	// ModelNotFound answers 404 for the requested model.
	ModelNotFound FaultKind = "model_not_found"
	// BadRequest answers 400 INVALID_ARGUMENT (OpenAI invalid_request_error) naming a
	// parameter the model rejects: what every sample gets when the request itself is wrong.
	BadRequest FaultKind = "bad_request"
)

// FaultKinds lists every kind.
var FaultKinds = []FaultKind{
	Hang, StallStream, ResetConnection, ServerError, Overloaded, RateLimitMinute, RateLimitDay,
	NoQuotaFault, SafetyBlockPrompt, SafetyFinish, MaxTokensEmpty, Malformed, MidStreamError,
	InvalidKeyFault, ModelNotFound, BadRequest,
}

// ParseFaultKind accepts a kind's name.
func ParseFaultKind(name string) (FaultKind, error) {
	k := FaultKind(strings.ToLower(strings.TrimSpace(name)))
	if !slices.Contains(FaultKinds, k) {
		return "", fmt.Errorf("unknown fault kind %q", name)
	}
	return k, nil
}

// Fault is a queued misbehaviour. Faults are tried in the order injected; the first one that
// matches a generate request answers it. Requests with a missing or unknown key or an invalid
// body are rejected before faults are consulted.
type Fault struct {
	Kind FaultKind
	// Times is how many matching requests the fault answers; 0 = every one until ClearFaults.
	Times int
	// Match limits the fault to requests whose prompt contains it ("" = any).
	Match string
	// Key limits the fault to requests with this API key ("" = any).
	Key string
	// Status is the HTTP status of a ServerError (default 500).
	Status int
	// After is the number of stream chunks sent before StallStream or MidStreamError strikes
	// (default 1). A value at or past the chunk count strikes after the last chunk, where a
	// Gemini stream would otherwise just end.
	After int
	// RetryAfter is the retry delay a RateLimitMinute reports (default 2s, short enough for
	// tests that really wait).
	RetryAfter time.Duration
}

// queuedFault is a Fault with the number of matches it has left (for Times > 0).
type queuedFault struct {
	Fault
	left int
}

// Inject queues f behind the faults already queued. It panics on an unknown kind, a mistake in
// the test that calls it.
func (s *Server) Inject(f Fault) {
	if !slices.Contains(FaultKinds, f.Kind) {
		panic(fmt.Sprintf("fake.Inject: unknown fault kind %q", f.Kind))
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	s.faults = append(s.faults, &queuedFault{Fault: f, left: f.Times})
}

// ClearFaults drops every queued fault.
func (s *Server) ClearFaults() {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.faults = nil
}

// takeFault returns the fault that answers c, if any, using up one of its Times. Called with
// s.mu held.
func (s *Server) takeFault(c *call) *Fault {
	for i, q := range s.faults {
		if (q.Match != "" && !strings.Contains(c.prompt, q.Match)) || (q.Key != "" && q.Key != c.key) {
			continue
		}
		f := q.Fault
		if q.Times > 0 {
			q.left--
			if q.left == 0 {
				s.faults = slices.Delete(s.faults, i, i+1)
			}
		}
		return &f
	}
	if s.opts.FaultRate > 0 && len(s.opts.RandomFaults) > 0 && s.rng.Float64() < s.opts.FaultRate {
		return &Fault{Kind: s.opts.RandomFaults[s.rng.IntN(len(s.opts.RandomFaults))]}
	}
	return nil
}

// applyFault answers c as f says.
func (s *Server) applyFault(w http.ResponseWriter, r *http.Request, wf wire, c *call, f Fault) {
	after := f.After
	if after <= 0 {
		after = 1
	}
	switch f.Kind {
	case Hang:
		s.block(r.Context())
	case StallStream:
		wf.writeReply(w, r, c, normalReply(c), streamPlan{cut: after, stall: true})
	case MidStreamError:
		wf.writeReply(w, r, c, normalReply(c), streamPlan{cut: after})
	case ResetConnection:
		resetConnection(w)
	default:
		rep, e := s.faultAnswer(c, f)
		if e != nil {
			wf.writeError(w, c, *e)
			return
		}
		wf.writeReply(w, r, c, rep, noFault)
	}
}

// faultAnswer is the answer f stands for when it is a whole reply or an error: every kind but
// the four that act on the connection (Hang, StallStream, MidStreamError, ResetConnection),
// which a batch line, having no connection of its own, gets as the error a client would make
// of them (see batch.go).
func (s *Server) faultAnswer(c *call, f Fault) (reply, *apiErr) {
	switch f.Kind {
	case Hang:
		return reply{}, &apiErr{kind: failServer, status: http.StatusGatewayTimeout}
	case StallStream, MidStreamError, ResetConnection:
		return reply{}, &apiErr{kind: failServer, status: http.StatusServiceUnavailable}
	case ServerError:
		status := f.Status
		if status == 0 {
			status = http.StatusInternalServerError
		}
		return reply{}, &apiErr{kind: failServer, status: status}
	case Overloaded:
		return reply{}, &apiErr{kind: failOverloaded}
	case RateLimitMinute:
		retry := f.RetryAfter
		if retry <= 0 {
			retry = 2 * time.Second
		}
		// A key without an RPM still reports a nonzero limit: "limit: 0" means no quota.
		return reply{}, &apiErr{kind: failRateMinute, retry: retry, limit: orDefault(s.opts.Keys[c.key].RPM, 15)}
	case RateLimitDay:
		e := s.dayLimit(s.opts.Now(), orDefault(s.opts.Keys[c.key].RPD, 1500))
		return reply{}, &e
	case NoQuotaFault:
		e := noQuota(s.opts.Now())
		return reply{}, &e
	case SafetyBlockPrompt:
		return reply{promptBlocked: true}, nil
	case SafetyFinish:
		return reply{finish: finishSafety}, nil
	case MaxTokensEmpty:
		return reply{finish: finishMaxTokens, thoughts: orDefault(c.maxTokens, 1024)}, nil
	case Malformed:
		return reply{text: malformedText(c), finish: finishStop}, nil
	case InvalidKeyFault:
		return reply{}, &apiErr{kind: failInvalidKey}
	case ModelNotFound:
		return reply{}, &apiErr{kind: failModelNotFound}
	case BadRequest:
		return reply{}, &apiErr{kind: failBadRequest, field: "generation_config.thinking_config",
			msg: "Thinking budget is not supported for this model.", code: "unsupported_parameter"}
	}
	return normalReply(c), nil
}

func orDefault(n, def int) int {
	if n > 0 {
		return n
	}
	return def
}
