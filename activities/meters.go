package activities

import (
	"context"
	"errors"
	"sync"
	"time"

	"github.com/uber-go/tally/v4"

	"github.com/mhannotator/mha/internal/labels"
	"github.com/mhannotator/mha/internal/llm"
	"github.com/mhannotator/mha/internal/store"
)

// Outcome classes of a provider call, the values of mha_provider_outcomes_total's outcome
// label: a small fixed set, so dashboards can name them.
const (
	OutcomeOK                = "ok"
	OutcomeRateLimitedMinute = "rate_limited_minute"
	OutcomeRateLimitedDay    = "rate_limited_day"
	OutcomeInvalidKey        = "invalid_key"
	OutcomeServerError       = "server_error"
	OutcomeTimeout           = "timeout"
	OutcomeStalledStream     = "stalled_stream"
	OutcomeNetwork           = "network"
	OutcomeBlocked           = "blocked"
	OutcomeMalformed         = "malformed"
	OutcomeRejected          = "rejected" // the request itself was refused (400, unknown model, empty at max tokens)
	OutcomeOther             = "other"
)

// meters records the platform's series of one worker. Labels are annotators, domains,
// providers, models, pools and fixed classes: never samples, texts or keys.
type meters struct {
	scope tally.Scope

	mu       sync.Mutex
	inFlight map[string]int // provider calls in flight, by provider

	series sync.Map // meterKey → tally.Counter, tally.Gauge or tally.Timer
}

// meterKey names one series: its name and label values, in the order its call site gives.
type meterKey struct{ name, v1, v2, v3 string }

// cached returns the series key names, made by mk the first time. Tally's Tagged builds a
// scope key from a new map on every call, which cost a busy worker more than the recording.
func cached[T any](m *meters, key meterKey, mk func() T) T {
	if v, ok := m.series.Load(key); ok {
		return v.(T)
	}
	v, _ := m.series.LoadOrStore(key, mk())
	return v.(T)
}

func newMeters(scope tally.Scope) *meters {
	if scope == nil {
		scope = tally.NoopScope
	}
	return &meters{scope: scope, inFlight: map[string]int{}}
}

// outcomes are every outcome class, for prepare.
var outcomes = []string{OutcomeOK, OutcomeRateLimitedMinute, OutcomeRateLimitedDay, OutcomeInvalidKey, OutcomeServerError,
	OutcomeTimeout, OutcomeStalledStream, OutcomeNetwork, OutcomeBlocked, OutcomeMalformed, OutcomeRejected, OutcomeOther}

// prepare creates a batch's counters at zero, so a rate over them exists before the first
// event and a dashboard shows 0 rather than no data.
func (m *meters) prepare(annotator, domain, provider, model string) {
	run := m.scope.Tagged(map[string]string{"annotator": annotator, "domain": domain})
	run.Counter("mha_reasks_total")
	run.Counter("mha_deadline_cuts_total")
	by := m.scope.Tagged(map[string]string{"provider": provider, "model": model})
	for _, o := range outcomes {
		by.Tagged(map[string]string{"outcome": o}).Counter("mha_provider_outcomes_total")
	}
}

// stored counts one stored annotation and its tokens.
func (m *meters) stored(a store.Annotation) {
	cached(m, meterKey{"mha_annotations_stored_total", a.Annotator, a.Domain, a.Status}, func() tally.Counter {
		return m.scope.Tagged(map[string]string{"annotator": a.Annotator, "domain": a.Domain, "status": a.Status}).
			Counter("mha_annotations_stored_total")
	}).Inc(1)
	m.tokens("mha_tokens_input_total", a.Annotator).Inc(int64(a.InputTokens))
	m.tokens("mha_tokens_output_total", a.Annotator).Inc(int64(a.OutputTokens))
}

// tokens is the annotator's counter of input or output tokens.
func (m *meters) tokens(name, annotator string) tally.Counter {
	return cached(m, meterKey{name: name, v1: annotator}, func() tally.Counter {
		return m.scope.Tagged(map[string]string{"annotator": annotator}).Counter(name)
	})
}

// callStarted and callEnded bracket one provider call; callEnded records its latency and class.
func (m *meters) callStarted(provider string) {
	m.mu.Lock()
	m.inFlight[provider]++
	n := m.inFlight[provider]
	m.mu.Unlock()
	m.inFlightGauge(provider).Update(float64(n))
}

func (m *meters) inFlightGauge(provider string) tally.Gauge {
	return cached(m, meterKey{name: "mha_provider_calls_in_flight", v1: provider}, func() tally.Gauge {
		return m.scope.Tagged(map[string]string{"provider": provider}).Gauge("mha_provider_calls_in_flight")
	})
}

func (m *meters) callEnded(provider, model string, took time.Duration, outcome string) {
	m.mu.Lock()
	m.inFlight[provider]--
	n := m.inFlight[provider]
	m.mu.Unlock()
	m.inFlightGauge(provider).Update(float64(n))
	cached(m, meterKey{"mha_provider_request_duration_seconds", provider, model, ""}, func() tally.Timer {
		return m.scope.Tagged(map[string]string{"provider": provider, "model": model}).Timer("mha_provider_request_duration_seconds")
	}).Record(took)
	cached(m, meterKey{"mha_provider_outcomes_total", provider, model, outcome}, func() tally.Counter {
		return m.scope.Tagged(map[string]string{"provider": provider, "model": model, "outcome": outcome}).Counter("mha_provider_outcomes_total")
	}).Inc(1)
}

func (m *meters) reask(annotator, domain string) {
	m.scope.Tagged(map[string]string{"annotator": annotator, "domain": domain}).Counter("mha_reasks_total").Inc(1)
}

func (m *meters) deadlineCut(annotator, domain string) {
	m.scope.Tagged(map[string]string{"annotator": annotator, "domain": domain}).Counter("mha_deadline_cuts_total").Inc(1)
}

// quotaWaited records how long a call waited for its quota slot.
func (m *meters) quotaWaited(pool string, took time.Duration) {
	cached(m, meterKey{name: "mha_quota_wait_seconds", v1: pool}, func() tally.Timer {
		return m.scope.Tagged(map[string]string{"pool": pool}).Timer("mha_quota_wait_seconds")
	}).Record(took)
}

// quotaGranted records a reservation's answer and the pool's limit it was asked under.
func (m *meters) quotaGranted(pool string, granted, perMinute int) {
	by := m.scope.Tagged(map[string]string{"pool": pool})
	by.Counter("mha_quota_granted_total").Inc(int64(granted))
	by.Gauge("mha_quota_limit_requests_per_minute").Update(float64(perMinute))
}

// Phases of a sample's path through a batch, the values of mha_sample_phase_seconds's phase
// label; the provider call itself is mha_provider_request_duration_seconds, and the quota
// wait mha_quota_wait_seconds.
const (
	phaseLoad     = "load"      // taking the next sample, reading the store when the queue is empty
	phaseControl  = "control"   // asking the server whether the run was paused or stopped
	phaseCallSlot = "call_slot" // waiting for one of the worker's call slots
	phaseStore    = "store"     // writing the annotation
)

// phase records how long a sample spent in one phase since start, so the time a sample
// takes can be split where it goes.
func (m *meters) phase(name string, start time.Time) {
	cached(m, meterKey{name: "mha_sample_phase_seconds", v1: name}, func() tally.Timer {
		return m.scope.Tagged(map[string]string{"phase": name}).Timer("mha_sample_phase_seconds")
	}).Record(time.Since(start))
}

// replyOutcome classifies an answered call by whether its reply parsed.
func replyOutcome(o labels.Outcome) string {
	if o.OK() {
		return OutcomeOK
	}
	return OutcomeMalformed
}

// outcomeOf classifies a call's error (nil: answered) for mha_provider_outcomes_total.
func outcomeOf(err error) string {
	if err == nil {
		return OutcomeOK
	}
	var e *llm.Error
	if !errors.As(err, &e) {
		if errors.Is(err, context.DeadlineExceeded) {
			return OutcomeTimeout
		}
		return OutcomeOther
	}
	switch e.Kind {
	case llm.RateLimited:
		return OutcomeRateLimitedMinute
	case llm.DailyQuota, llm.NoQuota:
		return OutcomeRateLimitedDay
	case llm.InvalidKey:
		return OutcomeInvalidKey
	case llm.Blocked:
		return OutcomeBlocked
	case llm.BadRequest, llm.ModelNotFound, llm.MaxTokensEmpty:
		return OutcomeRejected
	case llm.Unavailable:
		switch {
		case e.StatusCode >= 500:
			return OutcomeServerError
		case errors.Is(err, llm.ErrStalled):
			return OutcomeStalledStream
		case errors.Is(err, context.DeadlineExceeded) || errors.Is(err, llm.ErrTimeout):
			return OutcomeTimeout
		}
		return OutcomeNetwork
	}
	return OutcomeOther
}
