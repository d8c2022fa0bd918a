package agreement

import (
	"encoding/json"
	"fmt"
	"slices"
	"strings"

	"github.com/mhannotator/mha/internal/labels"
)

// Report is the agreement in one domain. Fields that do not apply to the domain are
// absent; everything is sorted (annotators, pairs, codes) so the same labels always give
// the same report.
type Report struct {
	Domain labels.Domain `json:"domain"`
	// Scale is "ordinal" (urgency, intensity), "multi_label" (therapeutic, modality,
	// adjunct) or "free_text" (redressal).
	Scale string `json:"scale"`
	// Annotators are those with a label on a counted sample.
	Annotators []string `json:"annotators"`
	Coverage   Coverage `json:"coverage"`
	// Headline is the figure to show first: α ordinal or α MASI. It is the same figure
	// as the field it copies.
	Headline     *Figure   `json:"headline,omitempty"`
	AlphaNominal *Figure   `json:"alpha_nominal,omitempty"`
	AlphaOrdinal *Figure   `json:"alpha_ordinal,omitempty"`
	AlphaMASI    *Figure   `json:"alpha_masi,omitempty"`
	AlphaJaccard *Figure   `json:"alpha_jaccard,omitempty"`
	Fleiss       *Figure   `json:"fleiss_kappa,omitempty"`
	Cohen        *Pairwise `json:"cohen_kappa,omitempty"`
	// Codes is the binary α of every catalog code, in catalog order.
	Codes []CodeFigure `json:"code_alpha,omitempty"`
	// Points is, for redressal, the length of each annotator's lists.
	Points []PointStats `json:"points,omitempty"`
	Note   string       `json:"note,omitempty"`
}

// Coverage says how much of the data the figures use. Only samples labelled by at least
// two annotators count; the rest have nothing to agree with.
type Coverage struct {
	// Samples have at least one label; Pairable of them have two or more and are the
	// ones counted; Complete were labelled by every annotator (Fleiss' κ uses those).
	Samples  int `json:"samples"`
	Pairable int `json:"pairable"`
	Complete int `json:"complete"`
	// Labels counts each annotator's labels on the counted samples.
	Labels []AnnotatorLabels `json:"labels"`
}

// AnnotatorLabels is one annotator's number of labels.
type AnnotatorLabels struct {
	Annotator string `json:"annotator"`
	Labels    int    `json:"labels"`
}

// PointStats describes one annotator's redressal lists on the counted samples.
type PointStats struct {
	Annotator    string  `json:"annotator"`
	Labels       int     `json:"labels"`
	MeanPoints   float64 `json:"mean_points"`
	MedianPoints float64 `json:"median_points"`
}

const (
	noteOrdinal = "The levels are ordered, so α ordinal is the headline; Cohen's and Fleiss' κ and α nominal treat them as unordered categories."
	noteSets    = "Cohen's and Fleiss' κ and α nominal treat each label set as one category. α MASI (the headline, exact weights 2/3 and 1/3) and α Jaccard give partial credit to overlapping sets; the code table gives each code's α on its presence or absence. NONE is the empty set."
	noteFree    = "Redressal labels are free-text lists of points, so no κ or α is computed; coverage and list lengths are reported instead."
)

// Domain computes the agreement figures that suit domain d from its ok labels:
//
//   - urgency, intensity: pairwise Cohen's κ and Light's κ, Fleiss' κ on complete cases,
//     α nominal and α ordinal (the headline);
//   - therapeutic, modality, adjunct: the same κ figures and α nominal with each label
//     set as one category, α MASI (the headline) and α Jaccard over sets, and a binary α
//     per code;
//   - redressal: no statistic, only coverage and list lengths, as the Note says.
//
// Only samples labelled by at least two annotators count. The α and Fleiss figures get
// bootstrap intervals as opts asks. A figure that cannot be computed (say, no complete
// case for Fleiss' κ) is undefined with a Reason. The error reports an unknown domain, a
// value outside the domain's catalog, a sample labelled twice by one annotator, or,
// wrapping ErrNoPairableUnits, no sample labelled by two annotators.
func Domain(d labels.Domain, rows []Label, opts Options) (Report, error) {
	t, samples, err := prepare(d, rows)
	if err != nil {
		return Report{}, err
	}
	r := Report{Domain: d, Annotators: t.coders, Coverage: coverage(t, samples)}
	if d == labels.Redressal {
		r.Scale, r.Note = "free_text", noteFree
		if r.Points, err = points(t); err != nil {
			return Report{}, err
		}
		return r, nil
	}
	pw := t.pairwise()
	r.Cohen = &pw
	fleiss, err := t.fleiss(opts)
	if err != nil {
		fleiss = Figure{Statistic: "fleiss_kappa", Reason: err.Error()}
	}
	r.Fleiss = &fleiss

	p := newProfiles(t, t.unitsWith(2)) // every unit left has two labels
	ordinal := d == labels.Urgency || d == labels.Intensity
	metrics, codes := []Metric{Nominal, MASI, Jaccard}, catalogCodes(d)
	if ordinal {
		metrics, codes = []Metric{Nominal, Ordinal}, nil
	}
	var specs []*alphaSpec
	for _, m := range metrics {
		s, err := newSpec(t.values, m)
		if err != nil {
			return Report{}, err // cannot happen: prepare checked every value
		}
		specs = append(specs, s)
	}
	codeSpec, codeRows := codeSpecs(t.values, p, codes)
	// One family, so every α shares each resample's pass over the units.
	figs := figures(p, newAlphas(p, len(t.values), append(specs, codeSpec...)), opts, streamAlpha)
	r.AlphaNominal = &figs[0]
	if ordinal {
		r.Scale, r.Note = "ordinal", noteOrdinal
		r.AlphaOrdinal, r.Headline = &figs[1], &figs[1]
		return r, nil
	}
	r.Scale, r.Note = "multi_label", noteSets
	r.AlphaMASI, r.AlphaJaccard, r.Headline = &figs[1], &figs[2], &figs[1]
	r.Codes = finishCodes(codeRows, figs[len(metrics):])
	return r, nil
}

// prepare checks every value against d's catalog, writes label sets in canonical form,
// and keeps the samples labelled by at least two annotators. It also returns the number
// of samples with any label.
func prepare(d labels.Domain, rows []Label) (*table, int, error) {
	if !slices.Contains(labels.Domains, d) {
		return nil, 0, fmt.Errorf("unknown domain %q (want one of %s)", d, labels.DomainList())
	}
	// Values repeat a lot, so each distinct one is checked once.
	canon := map[string]string{}
	changed := false
	for _, r := range rows {
		if _, ok := canon[r.Value]; ok {
			continue
		}
		c, err := canonical(d, r.Value)
		if err != nil {
			return nil, 0, fmt.Errorf("%s label of sample %q by %q: %w", d, r.SampleID, r.Annotator, err)
		}
		canon[r.Value] = c
		changed = changed || c != r.Value
	}
	if changed {
		fixed := make([]Label, len(rows))
		for i, r := range rows {
			fixed[i] = Label{r.SampleID, r.Annotator, canon[r.Value]}
		}
		rows = fixed
	}
	t, err := newTable(rows)
	if err != nil {
		return nil, 0, fmt.Errorf("%s: %w", d, err)
	}
	units := t.unitsWith(2)
	if len(units) == 0 {
		return nil, 0, fmt.Errorf("%s: %w", d, ErrNoPairableUnits)
	}
	return t.subset(units), len(t.units), nil
}

// canonical returns the stored form of a valid value of domain d: the code itself for a
// single-label domain, catalog codes in catalog order joined by ", " for a multi-label
// one (NONE alone for no adjunct service), and the value unchanged for redressal, whose
// lists points checks.
func canonical(d labels.Domain, v string) (string, error) {
	codes := catalogCodes(d)
	switch d {
	case labels.Redressal:
		return v, nil // points reads it; a list is parsed once
	case labels.Urgency, labels.Intensity:
		if !slices.Contains(codes, v) {
			return "", fmt.Errorf("%q is not one of %s", v, strings.Join(codes, ", "))
		}
		return v, nil
	}
	if d == labels.Adjunct && strings.TrimSpace(v) == labels.NoAdjunct {
		return labels.NoAdjunct, nil
	}
	var at []int
	for part := range strings.SplitSeq(v, ",") {
		i := slices.Index(codes, strings.TrimSpace(part))
		if i < 0 {
			return "", fmt.Errorf("%q in %q is not one of %s", strings.TrimSpace(part), v, strings.Join(codes, ", "))
		}
		if !slices.Contains(at, i) {
			at = append(at, i)
		}
	}
	slices.Sort(at)
	out := make([]string, len(at))
	for j, i := range at {
		out[j] = codes[i]
	}
	return strings.Join(out, ", "), nil
}

func catalogCodes(d labels.Domain) []string {
	var codes []string
	for _, c := range labels.Catalog[d] {
		codes = append(codes, c.Code)
	}
	return codes
}

func coverage(t *table, samples int) Coverage {
	c := Coverage{Samples: samples, Pairable: len(t.units), Complete: len(t.unitsWith(len(t.coders)))}
	for i, name := range t.coders {
		n := 0
		for u := range t.units {
			if t.row(u)[i] != missing {
				n++
			}
		}
		c.Labels = append(c.Labels, AnnotatorLabels{name, n})
	}
	return c
}

// point is one redressal point. Only the count matters, so a point is checked to be a
// string but not kept.
type point struct{}

func (*point) UnmarshalJSON(b []byte) error {
	if len(b) == 0 || b[0] != '"' {
		return fmt.Errorf("point %s is not a string", b)
	}
	return nil
}

// points gives the mean and median list length of each annotator's redressal labels.
func points(t *table) ([]PointStats, error) {
	length := make([]int, len(t.values))
	for i := range length {
		length[i] = -1
	}
	var list []point
	for u, sample := range t.units {
		for c, v := range t.row(u) {
			if v == missing || length[v] >= 0 {
				continue
			}
			if err := json.Unmarshal([]byte(t.values[v]), &list); err != nil {
				return nil, fmt.Errorf("redressal label of sample %q by %q is not a JSON array of strings: %q", sample, t.coders[c], t.values[v])
			}
			length[v] = len(list)
		}
	}
	out := make([]PointStats, len(t.coders))
	var lens []int
	for c, name := range t.coders {
		lens = lens[:0]
		sum := 0
		for u := range t.units {
			if v := t.row(u)[c]; v != missing {
				lens = append(lens, length[v])
				sum += length[v]
			}
		}
		out[c] = PointStats{Annotator: name, Labels: len(lens)}
		if len(lens) == 0 {
			continue
		}
		slices.Sort(lens)
		out[c].MeanPoints = float64(sum) / float64(len(lens))
		mid := len(lens) / 2
		out[c].MedianPoints = float64(lens[mid])
		if len(lens)%2 == 0 {
			out[c].MedianPoints = float64(lens[mid-1]+lens[mid]) / 2
		}
	}
	return out, nil
}
