// Package metrics is the one place that builds the tally scope the binaries report through and
// the Prometheus page that serves it.
package metrics

import (
	"io"
	"net/http"
	"time"

	prom "github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/uber-go/tally/v4"
	tallyprom "github.com/uber-go/tally/v4/prometheus"
)

// reportEvery is how often tally hands its values to the Prometheus registry; a scrape sees
// values at most this old.
const reportEvery = time.Second

// sanitize keeps names and label keys to what Prometheus allows, and label values readable:
// Prometheus takes any value, and a route such as /api/runs/:id should read as itself.
var sanitize = func() tally.SanitizeOptions {
	o := tallyprom.DefaultSanitizerOpts
	o.ValueCharacters = tally.ValidCharacters{
		Ranges:     tally.AlphanumericRange,
		Characters: append([]rune{'/', ':', '.', '-', '{', '}', '+'}, tally.UnderscoreCharacters...),
	}
	return o
}()

// New returns a root scope whose metrics /metrics serves (the handler) in the Prometheus text
// format, with the Go runtime's and the process's own collectors beside them. Close flushes
// and stops the scope.
func New() (tally.Scope, http.Handler, io.Closer) {
	registry := prom.NewRegistry()
	registry.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	reporter := tallyprom.NewReporter(tallyprom.Options{Registerer: registry, Gatherer: registry})
	scope, closer := tally.NewRootScope(tally.ScopeOptions{
		CachedReporter:  reporter,
		Separator:       tallyprom.DefaultSeparator,
		SanitizeOptions: &sanitize,
	}, reportEvery)
	return scope, reporter.HTTPHandler(), closer
}
