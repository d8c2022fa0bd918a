package providers

import (
	"context"
	"errors"
	"time"

	"github.com/mhannotator/mha/internal/config"
	"github.com/mhannotator/mha/internal/llm"
)

// completeGrace lets the provider's own request timeout end the call, so its classified
// error is what gets reported rather than a bare deadline.
const completeGrace = 2 * time.Second

// Classes of a key test besides the failure kinds of llm.
const (
	ClassOK          = "ok"
	ClassOffline     = "offline"     // the offline annotator has no key to test
	ClassNoKey       = "no_key"      // the annotator has no key
	ClassUnreachable = "unreachable" // no answer: a transport fault, a timeout, or llm.Unavailable
)

// Verdicts says, for each failure kind, what a key test reports to a person.
var Verdicts = map[llm.Kind]string{
	llm.InvalidKey:    "invalid key",
	llm.NoQuota:       "no quota for this model",
	llm.ModelNotFound: "model not found",
	llm.RateLimited:   "rate limited (the key was accepted; try again later)",
	llm.DailyQuota:    "daily quota spent (the key was accepted)",
	llm.Unavailable:   "unreachable",
	llm.BadRequest:    "request refused",
}

// KeyCheck is the outcome of CheckKey.
type KeyCheck struct {
	// OK is true when the key and model answered (or there is no key to test: offline).
	OK bool
	// Class is ClassOK, ClassOffline, ClassNoKey, ClassUnreachable, or the llm.Kind of the
	// failure (llm.Unavailable reads ClassUnreachable).
	Class string
	// Kind is the class of a classified provider failure, "" otherwise.
	Kind llm.Kind
	// Verdict says the outcome to a person: "valid", "invalid key", "unreachable"...
	Verdict string
	// Detail is the provider's classified error, or the transport error; "" on success. It
	// never holds the key: providers leave it out of their errors.
	Detail  string
	Latency time.Duration
}

// CheckKey makes one small real call with annotator a's key, model and base URL (as configured
// by g), bounded by g's request timeout, and classifies the outcome. Nothing is stored. The
// error is for a provider that cannot be built at all; a failed call is a KeyCheck with OK false.
func CheckKey(ctx context.Context, a config.Annotator, g config.Global) (KeyCheck, error) {
	switch {
	case a.Provider == config.ProviderOffline:
		return KeyCheck{OK: true, Class: ClassOffline, Verdict: "the offline annotator needs no key"}, nil
	case a.APIKey == "":
		return KeyCheck{Class: ClassNoKey, Verdict: "no API key"}, nil
	}
	p, err := New(a, g)
	if err != nil {
		return KeyCheck{}, err
	}
	ctx, cancel := context.WithTimeout(ctx, g.RequestTimeout+completeGrace)
	defer cancel()
	start := time.Now()
	err = Check(ctx, p)
	t := KeyCheck{Latency: time.Since(start)}
	var e *llm.Error
	switch {
	case err == nil:
		t.OK, t.Class, t.Verdict = true, ClassOK, "valid"
	case errors.As(err, &e):
		t.Class, t.Kind, t.Verdict, t.Detail = string(e.Kind), e.Kind, Verdicts[e.Kind], e.Error()
		if e.Kind == llm.Unavailable {
			t.Class = ClassUnreachable
		}
		if t.Verdict == "" {
			t.Verdict = string(e.Kind)
		}
	default:
		t.Class, t.Verdict, t.Detail = ClassUnreachable, "unreachable", err.Error()
	}
	return t, nil
}
