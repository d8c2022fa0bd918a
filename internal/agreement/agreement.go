// Package agreement measures how far the annotators agree with one another: Cohen's κ
// (pairwise, and Light's mean of the pairs), Fleiss' κ, Krippendorff's α with nominal,
// ordinal, interval and set distances, per-code binary α, bootstrap confidence
// intervals, and a consensus label per sample.
//
// Data arrive as Label rows, one per (sample, annotator) that produced an ok label. A
// sample without a row from some annotator has a missing value there. In the statistics
// a sample is a unit and an annotator a coder.
//
// Domain is the entry point for the platform: it picks the figures that suit a labelling
// domain. The other functions compute one statistic on any data.
package agreement

import (
	"encoding/json"
	"errors"
)

// Label is one annotator's ok label for one sample. Malformed, failed and blocked replies
// are left out by the caller, which makes them missing values.
type Label struct {
	SampleID  string `json:"sample_id"`
	Annotator string `json:"annotator"`
	Value     string `json:"value"`
}

// Options controls the bootstrap confidence intervals.
type Options struct {
	// Resamples is the number of bootstrap resamples per interval; 0 computes no interval.
	Resamples int
	// Seed fixes the resamples. Resample r draws from a PCG stream derived from Seed and r
	// alone, so a result repeats exactly whatever the number of cores.
	Seed uint64
}

// ErrNoPairableUnits means no unit has values from two coders, so there is nothing to
// compare. Functions wrap it with detail; test for it with errors.Is.
var ErrNoPairableUnits = errors.New("no unit has values from at least two coders, so nothing is pairable")

// ErrFreeText is returned by Consensus for redressal, whose labels are free-text lists.
var ErrFreeText = errors.New("redressal labels are free text: there is no consensus label, κ or α for them")

// reasonOneValue is why α or κ is undefined when the data hold a single value: with
// nothing to disagree about by chance, the statistic is 0/0.
const reasonOneValue = "only one value in the whole domain (expected disagreement is 0)"

// Figure is one agreement statistic with the amount of data behind it.
//
// An undefined figure (for example every label identical, which makes α 0/0) has Defined
// false and a Reason. Value is then 0 and is never NaN; in JSON it is null.
type Figure struct {
	// Statistic names the figure: cohen_kappa, light_kappa, fleiss_kappa, alpha_nominal,
	// alpha_ordinal, alpha_interval, alpha_masi, alpha_jaccard or alpha_binary.
	Statistic string  `json:"statistic"`
	Value     float64 `json:"-"`
	Defined   bool    `json:"-"`
	// Reason says why the figure is undefined, or qualifies a defined one.
	Reason string `json:"reason,omitempty"`
	// Units is the number of units (samples) the figure rests on.
	Units int `json:"units"`
	// Values is the number of values used: pairable values for α, ratings for Fleiss' κ.
	Values int `json:"values,omitempty"`
	// CI is the bootstrap interval, when one was asked for and could be computed.
	CI *ConfidenceInterval `json:"ci,omitempty"`
}

// ConfidenceInterval is a percentile bootstrap confidence interval over units.
type ConfidenceInterval struct {
	Low   float64 `json:"low"`
	High  float64 `json:"high"`
	Level float64 `json:"level"`
	// Resamples is the number drawn; Skipped of them had an undefined statistic (for
	// example every drawn unit carried the same value) and are not in the interval.
	Resamples int    `json:"resamples"`
	Skipped   int    `json:"skipped"`
	Seed      uint64 `json:"seed"`
}

// figureJSON is Figure as written: a null value stands for an undefined figure.
type figureJSON struct {
	Value *float64 `json:"value"`
	plainFigure
}

// plainFigure has Figure's fields without its JSON methods, to avoid recursion.
type plainFigure Figure

// MarshalJSON writes the value as a number, or null when the figure is undefined.
func (f Figure) MarshalJSON() ([]byte, error) {
	out := figureJSON{plainFigure: plainFigure(f)}
	if f.Defined {
		v := f.Value
		out.Value = &v
	}
	return json.Marshal(out)
}

// UnmarshalJSON reads what MarshalJSON writes.
func (f *Figure) UnmarshalJSON(b []byte) error {
	var in figureJSON
	if err := json.Unmarshal(b, &in); err != nil {
		return err
	}
	*f = Figure(in.plainFigure)
	if in.Value != nil {
		f.Value, f.Defined = *in.Value, true
	}
	return nil
}

// Metric is the distance Krippendorff's α uses between two values.
type Metric int

const (
	// Nominal: values are categories; δ is 0 when equal and 1 otherwise.
	Nominal Metric = iota
	// Ordinal: values are ranked by their number (see Interval for how a value is read
	// as a number); δ(c,k) = (Σ_{g from c to k} n_g − (n_c + n_k)/2)², where n_g counts
	// the pairable values of rank g.
	Ordinal
	// Interval: δ(c,k) = (c − k)². A value is read as a number as a whole ("2.5") or else
	// by its trailing digits, so catalog codes such as LEVEL_3 and INT-4 read as 3 and 4.
	Interval
	// MASI (Passonneau 2006): values are sets written as codes separated by commas, with
	// "" and "NONE" the empty set; δ = 1 − J·M with J the Jaccard similarity and M = 1
	// for equal sets, 2/3 when one contains the other, 1/3 when they only overlap and 0
	// when disjoint. The weights are the exact 2/3 and 1/3; NLTK uses 0.67 and 0.33,
	// which moves α in the third or fourth decimal.
	MASI
	// Jaccard: sets as for MASI; δ = 1 − |A∩B|/|A∪B|, and 0 for two empty sets.
	Jaccard
)

// String is the metric's name as used in statistic names.
func (m Metric) String() string {
	switch m {
	case Nominal:
		return "nominal"
	case Ordinal:
		return "ordinal"
	case Interval:
		return "interval"
	case MASI:
		return "masi"
	case Jaccard:
		return "jaccard"
	}
	return "unknown"
}
