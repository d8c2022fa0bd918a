package e2e

import (
	"context"
	"fmt"
	"os"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/mhannotator/mha/internal/contract"
	"github.com/mhannotator/mha/internal/labels"
	"github.com/mhannotator/mha/internal/llm/fake"
	"github.com/mhannotator/mha/internal/runs"
)

// quotaBenchRPM is the pool's limit in the quota-use benchmark, and quotaBenchSpan how long
// it measures after the first minute (whose burst would flatter the figure).
const (
	quotaBenchRPM  = 120
	quotaBenchSpan = 2 * time.Minute
)

// BenchmarkQuotaUse runs 6 and 30 runs on one quota pool against the fake provider enforcing
// the same limit, and reports the share of the limit used in steady state and the 429s.
func BenchmarkQuotaUse(b *testing.B) {
	for _, n := range []int{6, 30} {
		b.Run(fmt.Sprintf("runs=%d", n), func(b *testing.B) {
			for range b.N {
				quotaUseOnce(b, n)
			}
		})
	}
}

func quotaUseOnce(b *testing.B, n int) {
	f, err := fake.Start(fake.Options{Keys: map[string]fake.Key{"bench-key": {RPM: quotaBenchRPM}}})
	if err != nil {
		b.Fatal(err)
	}
	defer f.Close()
	spec := map[string]map[labels.Domain]int{}
	extra := map[string]map[string]any{}
	keys := map[string]string{}
	var pairs []runs.Pair
	perRun := quotaBenchRPM * 4 / n // more work than the measured span can take
	for i := 0; len(pairs) < n; i++ {
		a := fmt.Sprintf("u%d-%d", n, i) // runs of their own per cell, too
		// A pool of its own per cell: the last cell's pool workflow stays on its task queue.
		spec[a], extra[a], keys[a] = map[labels.Domain]int{}, map[string]any{"quota_pool": fmt.Sprintf("bench-%d", n)}, "bench-key"
		for _, d := range labels.Domains {
			if len(pairs) < n {
				spec[a][d] = perRun
				pairs = append(pairs, runs.Pair{Annotator: a, Domain: d})
			}
		}
	}
	s := newStackWith(b, netGlobal(f.URL(), map[string]any{"requests_per_minute": quotaBenchRPM, "max_concurrent_activities": 40,
		"heartbeat_timeout_seconds": 30, "request_timeout_seconds": 10}), spec, perRun, extra, keys)
	s.startWorker()
	start := time.Now()
	s.startAll()
	from, to := start.Add(time.Minute), start.Add(time.Minute+quotaBenchSpan)
	waitFor(b, time.Minute+quotaBenchSpan+30*time.Second, "the measured span to pass", func() (bool, string) {
		return time.Now().After(to), ""
	})
	st := f.Stats().ByKey["bench-key"]
	inSpan := 0
	for _, at := range st.AcceptedAt {
		if !at.Before(from) && at.Before(to) {
			inSpan++
		}
	}
	use := float64(inSpan) / (quotaBenchRPM * quotaBenchSpan.Minutes())
	settings := fmt.Sprintf("%d runs on one pool, fake limit %d/min, steady state from 1 to 3 min", n, quotaBenchRPM)
	record(figure{ID: "P2", Measure: fmt.Sprintf("quota use, %d runs", n), Value: use, Goal: ">= 0.98", Met: met(use >= 0.98), Settings: settings})
	record(figure{ID: "P2", Measure: fmt.Sprintf("429s, %d runs", n), Value: float64(st.RateLimited), Goal: "0", Met: met(st.RateLimited == 0), Settings: settings})
	b.ReportMetric(use, "limit-use")
	b.ReportMetric(float64(st.RateLimited), "429s")
	fmt.Fprintf(os.Stderr, "runs=%d: %d calls accepted in %s at %d/min = %.3f of the limit; 429s %d\n",
		n, inSpan, quotaBenchSpan, quotaBenchRPM, use, st.RateLimited)
	for _, p := range pairs {
		s.ctl.Signal(context.Background(), p, contract.SignalStop, nil)
	}
}

// BenchmarkReserveUpdates measures how many reservations one quota workflow answers per
// second on the dev server, and their latency, with 1, 10 and 30 concurrent callers through
// one worker's QuotaClient. With one caller each reservation is one Update; with more, the
// client coalesces those that queue while an Update is in flight.
func BenchmarkReserveUpdates(b *testing.B) {
	for _, callers := range []int{1, 10, 30} {
		b.Run(fmt.Sprintf("callers=%d", callers), func(b *testing.B) {
			s := newStack(b, nil, map[string]map[labels.Domain]int{"r1": {labels.Urgency: 1}}, 1)
			s.startWorker()
			q := &runs.QuotaClient{Client: server.Client(), TaskQueue: s.taskQueue}
			limits := contract.QuotaLimits{RequestsPerMinute: 100000, RequestsPerDay: 1 << 30}
			pool := fmt.Sprintf("bench-%d-%d", callers, time.Now().UnixNano())
			reserve := func(requester string) error {
				_, _, err := q.Reserve(context.Background(), pool, contract.Ask{Requester: requester, Count: 1}, time.Second, limits)
				return err
			}
			if err := reserve("warm-up"); err != nil {
				b.Fatal(err)
			}
			const span = 10 * time.Second
			var mu sync.Mutex
			var lat []time.Duration
			var wg sync.WaitGroup
			end := time.Now().Add(span)
			for c := range callers {
				wg.Go(func() {
					for time.Now().Before(end) {
						t0 := time.Now()
						if err := reserve(fmt.Sprint("caller-", c)); err != nil {
							b.Error(err)
							return
						}
						mu.Lock()
						lat = append(lat, time.Since(t0))
						mu.Unlock()
					}
				})
			}
			wg.Wait()
			slices.Sort(lat)
			rate := float64(len(lat)) / span.Seconds()
			p50, p95 := lat[len(lat)/2], lat[len(lat)*95/100]
			b.ReportMetric(rate, "reservations/s")
			b.ReportMetric(float64(p50.Milliseconds()), "p50-ms")
			b.ReportMetric(float64(p95.Milliseconds()), "p95-ms")
			fmt.Fprintf(os.Stderr, "callers=%d: %.0f reservations/s, p50 %s, p95 %s\n", callers, rate, p50.Round(time.Millisecond), p95.Round(time.Millisecond))
		})
	}
}
