package e2e

import (
	"fmt"
	"os"
	"sync/atomic"
	"testing"
	"time"
)

// wasteSeq numbers the chaos runs of this process: run IDs are per annotator on the shared
// dev server.
var wasteSeq atomic.Int64

// BenchmarkWaste is P6: provider calls per stored annotation under faults, against the
// minimum. 30 runs (5 annotators × the six domains, gemini and openai on the fake, latency
// 200 ± 200 ms, six call slots) with random hangs, stalled streams, resets, 5xx, overloaded,
// 429s, safety blocks and malformed replies (8% of calls), one provider-wide 429 storm and the
// worker SIGKILLed every 6–15 s, for MHA_BENCH_WASTE (default 90s), then drained. The minimum
// is one call per stored row, plus every injected fault that stored no row, the least the 429
// storm costs (the calls in flight, then one probe per retry delay per quota pool) and the
// paid calls open at each kill; the ledger (ledger_test.go) must add up. Goal: at most 1.05.
func BenchmarkWaste(b *testing.B) {
	window := envDuration(b, "MHA_BENCH_WASTE", 90*time.Second)
	for range b.N {
		seed := uint64(time.Now().UnixNano())
		cs := chaosSettings{prefix: fmt.Sprintf("w%da", wasteSeq.Add(1)), samples: chaosSamples(window, 13), seed: seed}
		c := newChaos(b, cs, os.Stderr)
		c.logf("P6: seed %d, %s of chaos, 30 runs × %d samples", seed, window, cs.samples)
		l := c.run(window, window+2*time.Minute, c.basics(window)...)
		l.print(os.Stderr)
		for _, p := range l.problems() {
			b.Errorf("ledger: %s (seed %d)", p, seed)
		}
		ratio := l.ratio()
		record(figure{ID: "P6", Measure: "provider calls ÷ the minimum, under faults and worker kills", Value: ratio,
			Goal: "<= 1.05", Met: met(ratio <= 1.05 && len(l.problems()) == 0),
			Settings: fmt.Sprintf("30 runs × %d samples, gemini + openai on the fake (200 ± 200 ms, 6 call slots), 8%% random faults, "+
				"%s with %d SIGKILLs and a 4 s 429 storm; %d calls for %d rows, minimum %d (faults that stored no row %d, storm least %d of %d, open at kills %d), %d duplicates",
				cs.samples, window, l.kills, l.calls, l.rows.Total(), l.minimum(), l.wastedFaults()-l.stormCalls, l.stormMinimum, l.stormCalls, l.atKills, l.duplicates)})
		b.ReportMetric(ratio, "calls/minimum")
		b.ReportMetric(float64(l.calls)/float64(max(l.rows.Total(), 1)), "calls/row")
	}
}
