package agreement

import (
	"encoding/json"
	"fmt"
	"math/rand/v2"
	"strings"
	"testing"

	"github.com/mhannotator/mha/internal/labels"
)

// benchRows makes seeded labels from 5 annotators on n samples of domain d: each sample
// has a true label that an annotator mostly reproduces, and about 8% of labels are
// missing.
func benchRows(d labels.Domain, n int, rng *rand.Rand) []Label {
	codes := catalogCodes(d)
	rows := make([]Label, 0, 5*n)
	for s := range n {
		id := fmt.Sprintf("sample-%05d", s)
		truth := rng.IntN(max(1, len(codes)))
		var truthSet []bool
		if len(codes) > 0 {
			truthSet = make([]bool, len(codes))
			if d != labels.Adjunct || rng.Float64() > 0.3 {
				for range 1 + rng.IntN(3) {
					truthSet[rng.IntN(len(codes))] = true
				}
			}
		}
		for a := range 5 {
			if rng.Float64() < 0.08 {
				continue
			}
			var v string
			switch d {
			case labels.Urgency, labels.Intensity:
				v = codes[truth]
				if rng.Float64() < 0.3 {
					v = codes[min(len(codes)-1, max(0, truth+rng.IntN(3)-1))]
				}
			case labels.Redressal:
				points := make([]string, 2+rng.IntN(5))
				for i := range points {
					points[i] = fmt.Sprintf("point %d for %s by annotator %d", i, id, a)
				}
				b, _ := json.Marshal(points)
				v = string(b)
			default:
				var chosen []string
				for i, in := range truthSet {
					if in != (rng.Float64() < 0.08) {
						chosen = append(chosen, codes[i])
					}
				}
				switch {
				case len(chosen) > 0:
					v = strings.Join(chosen, ", ")
				case d == labels.Adjunct:
					v = labels.NoAdjunct
				default:
					v = codes[rng.IntN(len(codes))]
				}
			}
			rows = append(rows, Label{id, fmt.Sprint("annotator-", a), v})
		}
	}
	return rows
}

// BenchmarkAllDomains computes every domain's report, with 1 000 bootstrap resamples,
// for 5 annotators × 10 000 samples per domain.
func BenchmarkAllDomains(b *testing.B) {
	rng := rand.New(rand.NewPCG(2026, 11))
	data := map[labels.Domain][]Label{}
	for _, d := range labels.Domains {
		data[d] = benchRows(d, 10_000, rng)
	}
	opts := Options{Resamples: 1000, Seed: 1}
	b.ReportAllocs()
	for b.Loop() {
		for _, d := range labels.Domains {
			if _, err := Domain(d, data[d], opts); err != nil {
				b.Fatal(err)
			}
		}
	}
}
