package agreement

import (
	"cmp"
	"errors"
	"math/bits"
	"slices"
	"strings"

	"github.com/mhannotator/mha/internal/labels"
)

// SampleConsensus is what the annotators of one sample agree on.
type SampleConsensus struct {
	SampleID string `json:"sample_id"`
	// Labels is the number of annotators who labelled the sample.
	Labels int `json:"labels"`
	// Consensus is the majority label, or for a multi-label domain the codes chosen by
	// at least half of the annotators (NONE for adjunct, "" for the others, when no code
	// is). It is "" on a tie.
	Consensus string `json:"consensus"`
	// Tie is set when several labels share the top count; Tied lists them. A tie is
	// never broken.
	Tie  bool     `json:"tie,omitempty"`
	Tied []string `json:"tied,omitempty"`
	// Agreement is, for a single-label domain, the share of annotators who gave the most
	// frequent label (the consensus, unless there is a tie); for a multi-label domain,
	// the mean over annotators of the Jaccard similarity between their set and the
	// consensus set (two empty sets are similar 1).
	Agreement float64 `json:"agreement"`
}

// Consensus gives the consensus of every sample labelled by at least two annotators, in
// sample order. Single-label domains take the majority label and report ties as ties.
// Multi-label domains take each code chosen by at least half of the sample's annotators;
// a code at exactly half counts as chosen, so there is no tie to break. Redressal has no
// consensus: its lists are free text, and the error is ErrFreeText.
func Consensus(d labels.Domain, rows []Label) ([]SampleConsensus, error) {
	if d == labels.Redressal {
		return nil, ErrFreeText
	}
	t, _, err := prepare(d, rows)
	if errors.Is(err, ErrNoPairableUnits) {
		return []SampleConsensus{}, nil
	}
	if err != nil {
		return nil, err
	}
	if d == labels.Urgency || d == labels.Intensity {
		return majority(t), nil
	}
	return halfOrMore(t, d), nil
}

func majority(t *table) []SampleConsensus {
	out := make([]SampleConsensus, len(t.units))
	counts := make([]int, len(t.values))
	var seen []int32
	for u, sample := range t.units {
		seen = seen[:0]
		m, top := 0, 0
		for _, v := range t.row(u) {
			if v == missing {
				continue
			}
			if counts[v] == 0 {
				seen = append(seen, v)
			}
			counts[v]++
			m++
			top = max(top, counts[v])
		}
		sc := SampleConsensus{SampleID: sample, Labels: m, Agreement: float64(top) / float64(m)}
		for _, v := range seen {
			if counts[v] == top {
				sc.Tied = append(sc.Tied, t.values[v])
			}
			counts[v] = 0
		}
		if len(sc.Tied) == 1 {
			sc.Consensus, sc.Tied = sc.Tied[0], nil
		} else {
			sc.Tie = true
			slices.SortFunc(sc.Tied, compareCodes)
		}
		out[u] = sc
	}
	return out
}

func halfOrMore(t *table, d labels.Domain) []SampleConsensus {
	codes := catalogCodes(d)
	// Catalogs have at most a dozen codes, so a set fits in a bit mask.
	masks := make([]uint64, len(t.values))
	for i, v := range t.values {
		for _, c := range splitSet(v) {
			masks[i] |= 1 << slices.Index(codes, c)
		}
	}
	out := make([]SampleConsensus, len(t.units))
	chosen := make([]int, len(codes))
	for u, sample := range t.units {
		clear(chosen)
		m := 0
		for _, v := range t.row(u) {
			if v == missing {
				continue
			}
			m++
			for set := masks[v]; set != 0; set &= set - 1 {
				chosen[bits.TrailingZeros64(set)]++
			}
		}
		var agreed uint64
		var names []string
		for i, n := range chosen {
			if 2*n >= m {
				agreed |= 1 << i
				names = append(names, codes[i])
			}
		}
		var similarity float64
		for _, v := range t.row(u) {
			if v == missing {
				continue
			}
			union := bits.OnesCount64(masks[v] | agreed)
			if union == 0 {
				similarity++
				continue
			}
			similarity += float64(bits.OnesCount64(masks[v]&agreed)) / float64(union)
		}
		sc := SampleConsensus{SampleID: sample, Labels: m, Consensus: strings.Join(names, ", "), Agreement: similarity / float64(m)}
		if agreed == 0 && d == labels.Adjunct {
			sc.Consensus = labels.NoAdjunct
		}
		out[u] = sc
	}
	return out
}

// Disputed returns the n samples with the lowest agreement, lowest first; samples with
// equal agreement come in sample order.
func Disputed(cs []SampleConsensus, n int) []SampleConsensus {
	out := slices.Clone(cs)
	slices.SortFunc(out, func(a, b SampleConsensus) int {
		if c := cmp.Compare(a.Agreement, b.Agreement); c != 0 {
			return c
		}
		return strings.Compare(a.SampleID, b.SampleID)
	})
	return out[:max(0, min(n, len(out)))]
}
