// Package metrics is the one place that builds the tally scope the binaries report through and
// the Prometheus page that serves it, and that names the platform's own series.
package metrics

import (
	"io"
	"log/slog"
	"net/http"
	"sync"
	"time"

	prom "github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/uber-go/tally/v4"
	tallyprom "github.com/uber-go/tally/v4/prometheus"
	"go.temporal.io/sdk/client"
	sdktally "go.temporal.io/sdk/contrib/tally"
)

// reportEvery is how often tally hands its values to the Prometheus registry; a scrape sees
// values at most this old.
const reportEvery = time.Second

// LatencyBuckets (seconds) fit everything timed here: a Temporal round trip of a millisecond,
// a provider call of a minute, a quota wait of several.
var LatencyBuckets = tally.ValueBuckets{.001, .0025, .005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5, 10, 30, 60, 120, 300}

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
// format, with the Go runtime's and the process's own collectors beside them. Timers become
// histograms, so the Temporal SDK dashboards' _bucket queries work. Close flushes and stops
// the scope. A series registered twice with different labels is logged (once per name), not
// a panic: the SDK emits a few names with varying tag sets.
func New(logger *slog.Logger) (tally.Scope, http.Handler, io.Closer) {
	registry := prom.NewRegistry()
	registry.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	var logged sync.Map
	reporter := tallyprom.NewReporter(tallyprom.Options{
		Registerer:              registry,
		Gatherer:                registry,
		DefaultTimerType:        tallyprom.HistogramTimerType,
		DefaultHistogramBuckets: LatencyBuckets,
		OnRegisterError: func(err error) {
			if _, seen := logged.LoadOrStore(err.Error(), true); !seen && logger != nil {
				logger.Warn("A metric could not be registered; its series are dropped", "error", err)
			}
		},
	})
	scope, closer := tally.NewRootScope(tally.ScopeOptions{
		CachedReporter:  reporter,
		Separator:       tallyprom.DefaultSeparator,
		SanitizeOptions: &sanitize,
	}, reportEvery)
	return scope, reporter.HTTPHandler(), closer
}

// SDKHandler reports the Temporal SDK's metrics into scope under the names Temporal's published
// Grafana dashboards query (temporal_..._total, temporal_..._seconds), with no prefix.
func SDKHandler(scope tally.Scope) client.MetricsHandler {
	return sdktally.NewMetricsHandler(sdktally.NewPrometheusNamingScope(scope))
}
