package providertest

import (
	"errors"
	"strings"
	"testing"

	"github.com/mhannotator/mha/internal/llm"
	"github.com/mhannotator/mha/internal/llm/httpx"
)

// Provider is what the shared tests need to know of a provider.
type Provider struct {
	Name  string // as llm.Error and fake.RequestInfo.Format name it
	Key   string // the API key its test clients send: distinctive, so a test can tell no error shows it
	Model string // the model its test clients ask for
	// New returns a test client of the server at url, streaming or not, with the package's usual
	// test settings (Key, Model, a few seconds' timeouts) changed by set.
	New func(t *testing.T, url string, stream bool, set func(*httpx.Options)) llm.Provider
	// Sep ends the lines of the streams the tests serve, as the real API ends them.
	Sep string
	// Event is the data of a stream event that carries text, and that ends the reply when final.
	Event func(text string, final bool) string
	// Done is the data of the event that ends a stream; "" when the server just closes it.
	Done string
	// KeyEcho is an error reply whose message shows the key.
	KeyEcho string
}

// client returns a test client of url whose settings the sets change.
func (p Provider) client(t *testing.T, url string, stream bool, sets ...func(*httpx.Options)) llm.Provider {
	t.Helper()
	return p.New(t, url, stream, func(o *httpx.Options) {
		for _, set := range sets {
			set(o)
		}
	})
}

// frame is data as one event of a stream.
func (p Provider) frame(data string) string {
	return "data: " + data + p.Sep + p.Sep
}

// WantKind fails the test unless err is an *llm.Error of kind from p that does not show the key,
// and returns it.
func (p Provider) WantKind(t *testing.T, err error, kind llm.Kind) *llm.Error {
	t.Helper()
	var e *llm.Error
	if !errors.As(err, &e) {
		t.Fatalf("err = %v, want an *llm.Error of kind %s", err, kind)
	}
	if e.Kind != kind || e.Provider != p.Name {
		t.Fatalf("err = %v (kind %s), want kind %s from %s", err, e.Kind, kind, p.Name)
	}
	if strings.Contains(err.Error(), p.Key) {
		t.Fatalf("the error shows the API key: %v", err)
	}
	return e
}

// Modes runs f for a whole and a streamed client.
func Modes(t *testing.T, f func(t *testing.T, stream bool)) {
	for _, stream := range []bool{false, true} {
		name := "whole"
		if stream {
			name = "stream"
		}
		t.Run(name, func(t *testing.T) { f(t, stream) })
	}
}
