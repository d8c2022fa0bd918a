package agreement

import (
	"fmt"
	"maps"
	"math"
	"slices"
	"strconv"
	"strings"

	"github.com/mhannotator/mha/internal/labels"
)

// Alpha is Krippendorff's α under metric m, over the units with values from at least two
// coders; other units carry no pairable value and are left out. It is computed from the
// coincidence matrix, so missing values need no special handling, and the expected
// disagreement comes from the value totals in O(V²) for V distinct values.
//
// The figure is undefined when the pairable values hold a single value. The error wraps
// ErrNoPairableUnits when no unit has two values, and reports values that metric m cannot
// read (a non-number under Ordinal or Interval).
func Alpha(rows []Label, m Metric, opts Options) (Figure, error) {
	t, units, err := pairable(rows, "krippendorff's alpha")
	if err != nil {
		return Figure{}, err
	}
	spec, err := newSpec(t.values, m)
	if err != nil {
		return Figure{}, err
	}
	p := newProfiles(t, units)
	return figures(p, newAlphas(p, len(t.values), []*alphaSpec{spec}), opts, streamAlpha)[0], nil
}

// pairable reads rows into a table and lists its units with at least two values.
func pairable(rows []Label, what string) (*table, []int, error) {
	t, err := newTable(rows)
	if err != nil {
		return nil, nil, err
	}
	units := t.unitsWith(2)
	if len(units) == 0 {
		return nil, nil, fmt.Errorf("%s: %w", what, ErrNoPairableUnits)
	}
	return t, units, nil
}

// CodeFigure is the binary α of one code of a multi-label domain.
type CodeFigure struct {
	Code string `json:"code"`
	// Chosen counts the pairable labels that include the code.
	Chosen int    `json:"chosen"`
	Alpha  Figure `json:"alpha"`
}

// CodeAlpha is, for each code found in multi-label values, the nominal α of its presence
// or absence: every label of a pairable unit says yes or no to the code, and "" or NONE
// says no to all. Codes come in natural order (TA-2 before TA-10).
func CodeAlpha(rows []Label, opts Options) ([]CodeFigure, error) {
	t, units, err := pairable(rows, "per-code alpha")
	if err != nil {
		return nil, err
	}
	seen := map[string]bool{}
	for _, v := range t.values {
		for _, c := range splitSet(v) {
			seen[c] = true
		}
	}
	codes := slices.SortedFunc(maps.Keys(seen), compareCodes)
	p := newProfiles(t, units)
	specs, out := codeSpecs(t.values, p, codes)
	return finishCodes(out, figures(p, newAlphas(p, len(t.values), specs), opts, streamAlpha)), nil
}

// codeSpecs prepares the binary α of each code, and the table rows that will hold them
// with Chosen filled in.
func codeSpecs(raw []string, p *profiles, codes []string) ([]*alphaSpec, []CodeFigure) {
	sets := make([][]string, len(raw))
	for i, v := range raw {
		sets[i] = splitSet(v)
	}
	specs := make([]*alphaSpec, len(codes))
	out := make([]CodeFigure, len(codes))
	for j, code := range codes {
		s := &alphaSpec{name: "alpha_binary", metric: Nominal, nv: 2, to: make([]int32, len(raw))}
		for i, set := range sets {
			if _, ok := slices.BinarySearch(set, code); ok {
				s.to[i] = 1
			}
		}
		specs[j] = s
		out[j].Code = code
		for i := range p.len() {
			for _, c := range p.counts(i) {
				out[j].Chosen += int(p.base[i]) * int(c.n) * int(s.to[c.v])
			}
		}
	}
	return specs, out
}

// finishCodes puts the figures into the table rows, saying which way an undefined one
// is degenerate.
func finishCodes(out []CodeFigure, figs []Figure) []CodeFigure {
	for j, f := range figs {
		if !f.Defined && f.Reason == reasonOneValue {
			if out[j].Chosen == 0 {
				f.Reason = "no annotator chose " + out[j].Code
			} else {
				f.Reason = "every label includes " + out[j].Code
			}
		}
		out[j].Alpha = f
	}
	return out
}

// alphaSpec is one α: a metric, and how the raw values map onto the values it tells
// apart (under Interval "3" and "LEVEL_3" are one value; under the set metrics "" and
// NONE are; a binary code α has two values, absent and present).
type alphaSpec struct {
	name   string
	metric Metric
	nv     int       // distinct values under the metric
	to     []int32   // raw value index → metric value index
	x      []float64 // Interval: the number each value stands for
	delta  []float64 // set metrics: nv × nv distances
}

func newSpec(raw []string, m Metric) (*alphaSpec, error) {
	s := &alphaSpec{name: "alpha_" + m.String(), metric: m, to: make([]int32, len(raw))}
	switch m {
	case Nominal:
		for i := range raw {
			s.to[i] = int32(i)
		}
		s.nv = len(raw)
	case Ordinal, Interval:
		nums := make([]float64, len(raw))
		for i, v := range raw {
			x, err := number(v)
			if err != nil {
				return nil, fmt.Errorf("%s alpha: %w", m, err)
			}
			nums[i] = x
		}
		// Ordinal ranks are the positions in this sorted list.
		s.x = slices.Compact(slices.Sorted(slices.Values(nums)))
		for i, x := range nums {
			j, _ := slices.BinarySearch(s.x, x)
			s.to[i] = int32(j)
		}
		s.nv = len(s.x)
	case MASI, Jaccard:
		sets := map[string][]string{}
		keys := make([]string, len(raw))
		for i, v := range raw {
			set := splitSet(v)
			keys[i] = strings.Join(set, "\x00")
			sets[keys[i]] = set
		}
		distinct := slices.Sorted(maps.Keys(sets))
		for i, k := range keys {
			j, _ := slices.BinarySearch(distinct, k)
			s.to[i] = int32(j)
		}
		s.nv = len(distinct)
		s.delta = make([]float64, s.nv*s.nv)
		for a := range distinct {
			for b := a + 1; b < len(distinct); b++ {
				d := setDistance(sets[distinct[a]], sets[distinct[b]], m == MASI)
				s.delta[a*s.nv+b], s.delta[b*s.nv+a] = d, d
			}
		}
	default:
		return nil, fmt.Errorf("unknown metric %d", m)
	}
	return s, nil
}

// dist is δ between two metric values, for the metrics whose distances do not depend on
// the data (all but Ordinal).
func (s *alphaSpec) dist(a, b int32) float64 {
	switch s.metric {
	case Nominal:
		if a == b {
			return 0
		}
		return 1
	case Interval:
		d := s.x[a] - s.x[b]
		return d * d
	}
	return s.delta[int(a)*s.nv+int(b)]
}

// alphas evaluates several α over the same units. Each is
//
//	α = 1 − (n − 1) · Σ_u Σ_{c≠k} o_uck δ(c,k) / Σ_{c≠k} n_c n_k δ(c,k)
//
// with o_uck = n_uc n_uk / (m_u − 1) unit u's share of the coincidence matrix and n_c the
// total of value c. Both sums add up over units, so they are precomputed per profile and
// a bootstrap resample is a weighted sum: one pass over the profiles gives the raw value
// totals (shared by every α) and each α's observed disagreement.
type alphas struct {
	p     *profiles
	nraw  int
	specs []*alphaSpec
	// Profile i's observed disagreements are within[off[i]:off[i+1]], zeros left out.
	off    []int32
	within []term
	// Ordinal distances depend on the value totals, so for an ordinal α each profile keeps
	// its coincidences between raw values instead: pairs[poff[i]:poff[i+1]].
	poff  []int32
	pairs []coincidence
}

// term is Σ_{c≠k} o_ck δ(c,k) of one α (by index) in one profile.
type term struct {
	spec int32
	sum  float64
}

// coincidence is o_ck for raw values c < k within one profile.
type coincidence struct {
	c, k int32
	o    float64
}

func newAlphas(p *profiles, nraw int, specs []*alphaSpec) *alphas {
	a := &alphas{p: p, nraw: nraw, specs: specs, off: make([]int32, 1, p.len()+1)}
	ordinal := slices.ContainsFunc(specs, func(s *alphaSpec) bool { return s.metric == Ordinal })
	if ordinal {
		a.poff = make([]int32, 1, p.len()+1)
	}
	for i := range p.len() {
		cs := p.counts(i)
		m := 0
		for _, c := range cs {
			m += int(c.n)
		}
		for j, s := range specs {
			if s.metric == Ordinal {
				continue
			}
			var sum float64
			for x := range cs {
				for y := x + 1; y < len(cs); y++ {
					sum += float64(cs[x].n) * float64(cs[y].n) * s.dist(s.to[cs[x].v], s.to[cs[y].v])
				}
			}
			if sum != 0 {
				a.within = append(a.within, term{int32(j), 2 * sum / float64(m-1)})
			}
		}
		a.off = append(a.off, int32(len(a.within)))
		if ordinal {
			for x := range cs { // counts are sorted by value, so cs[x].v < cs[y].v
				for y := x + 1; y < len(cs); y++ {
					a.pairs = append(a.pairs, coincidence{cs[x].v, cs[y].v, float64(cs[x].n) * float64(cs[y].n) / float64(m-1)})
				}
			}
			a.poff = append(a.poff, int32(len(a.pairs)))
		}
	}
	return a
}

func (a *alphas) names() []string {
	out := make([]string, len(a.specs))
	for i, s := range a.specs {
		out[i] = s.name
	}
	return out
}

func (a *alphas) bufLen() int {
	n := a.nraw + len(a.specs)
	if a.poff != nil {
		n += a.nraw * a.nraw
	}
	most := 0
	for _, s := range a.specs {
		most = max(most, 2*s.nv+1)
	}
	return n + most
}

// eval computes every α for unit weights w per profile (the data's unit counts, or a
// resample's draws). An undefined α is NaN.
func (a *alphas) eval(w, buf, out []float64) {
	nraw := a.nraw
	clear(buf)
	n, observed, scratch := buf[:nraw], buf[nraw:nraw+len(a.specs)], buf[nraw+len(a.specs):]
	var o []float64
	if a.poff != nil {
		o, scratch = scratch[:nraw*nraw], scratch[nraw*nraw:]
	}
	p := a.p
	for i, wi := range w {
		if wi == 0 {
			continue
		}
		for _, c := range p.cnt[p.off[i]:p.off[i+1]] {
			n[c.v] += wi * float64(c.n)
		}
		for _, e := range a.within[a.off[i]:a.off[i+1]] {
			observed[e.spec] += wi * e.sum
		}
		if o != nil {
			for _, e := range a.pairs[a.poff[i]:a.poff[i+1]] {
				o[int(e.c)*nraw+int(e.k)] += wi * e.o
			}
		}
	}
	for j, s := range a.specs {
		out[j] = s.alpha(n, observed[j], o, scratch)
	}
}

// alpha finishes one α from the raw value totals nraw and the observed disagreement (for
// Ordinal, from the raw coincidences o instead). It is NaN when undefined.
func (s *alphaSpec) alpha(nraw []float64, observed float64, o, scratch []float64) float64 {
	nv := s.nv
	n := scratch[:nv]
	clear(n)
	for v, x := range nraw {
		n[s.to[v]] += x
	}
	var total float64
	present := 0
	for _, x := range n {
		if x > 0 {
			total += x
			present++
		}
	}
	// With one value, expected disagreement is 0: distances are 0 between equal values
	// and positive between different ones, so this test is exact where D_e = 0 may not be.
	if present < 2 {
		return math.NaN()
	}
	var expected float64
	switch s.metric {
	case Nominal:
		expected = total * total
		for _, x := range n {
			expected -= x * x
		}
	case Interval:
		// Σ_ck n_c n_k (x_c − x_k)² = 2 n Σ_c n_c (x_c − mean)², centred against cancellation.
		var sum float64
		for v, x := range n {
			sum += x * s.x[v]
		}
		mean := sum / total
		for v, x := range n {
			d := s.x[v] - mean
			expected += x * d * d
		}
		expected *= 2 * total
	case Ordinal:
		cum := scratch[nv : 2*nv+1]
		cum[0] = 0
		for g, x := range n {
			cum[g+1] = cum[g] + x
		}
		delta := func(c, k int32) float64 {
			c, k = min(c, k), max(c, k)
			if c == k {
				return 0
			}
			d := cum[k+1] - cum[c] - (n[c]+n[k])/2
			return d * d
		}
		for c := range int32(nv) {
			for k := c + 1; k < int32(nv); k++ {
				expected += 2 * n[c] * n[k] * delta(c, k)
			}
		}
		nr := len(nraw)
		for c := range nr {
			for k := c + 1; k < nr; k++ {
				if x := o[c*nr+k]; x != 0 {
					observed += 2 * x * delta(s.to[c], s.to[k])
				}
			}
		}
	default:
		// nᵀΔn over the distinct sets: the one O(V²) step, so the upper triangle only.
		for c := range nv {
			if n[c] != 0 {
				expected += 2 * n[c] * dot(n[c+1:], s.delta[c*nv+c+1:(c+1)*nv])
			}
		}
	}
	return 1 - (total-1)*observed/expected
}

// dot is Σ a_i b_i with four running sums, which lets the additions overlap.
func dot(a, b []float64) float64 {
	b = b[:len(a)]
	var s0, s1, s2, s3 float64
	i := 0
	for ; i+4 <= len(a); i += 4 {
		s0 += a[i] * b[i]
		s1 += a[i+1] * b[i+1]
		s2 += a[i+2] * b[i+2]
		s3 += a[i+3] * b[i+3]
	}
	for ; i < len(a); i++ {
		s0 += a[i] * b[i]
	}
	return (s0 + s1) + (s2 + s3)
}

// number reads a value as a number: the whole value if it is one ("2.5", "-1"), else its
// trailing digits (LEVEL_3 is 3, INT-4 is 4).
func number(v string) (float64, error) {
	s := strings.TrimSpace(v)
	if x, err := strconv.ParseFloat(s, 64); err == nil && !math.IsInf(x, 0) && !math.IsNaN(x) {
		return x, nil
	}
	i := len(s)
	for i > 0 && s[i-1] >= '0' && s[i-1] <= '9' {
		i--
	}
	if i == len(s) {
		return 0, fmt.Errorf("value %q is not a number and does not end in digits, so it has no place on a scale", v)
	}
	return strconv.ParseFloat(s[i:], 64)
}

// splitSet reads a multi-label value: codes separated by commas, "" and NONE being the
// empty set. The result is sorted and free of repeats.
func splitSet(v string) []string {
	var set []string
	for part := range strings.SplitSeq(v, ",") {
		part = strings.TrimSpace(part)
		if part != "" && part != labels.NoAdjunct {
			set = append(set, part)
		}
	}
	slices.Sort(set)
	return slices.Compact(set)
}

// MASIDistance is the MASI distance between two sets of codes, with the exact weights 2/3
// and 1/3 (see MASI). Two empty sets are at distance 0.
func MASIDistance(a, b []string) float64 {
	return setDistance(normalSet(a), normalSet(b), true)
}

// JaccardDistance is 1 − |A∩B|/|A∪B|, and 0 for two empty sets.
func JaccardDistance(a, b []string) float64 {
	return setDistance(normalSet(a), normalSet(b), false)
}

func normalSet(a []string) []string {
	return slices.Compact(slices.Sorted(slices.Values(a)))
}

// setDistance needs sorted sets without repeats.
func setDistance(a, b []string, masi bool) float64 {
	common := 0
	for i, j := 0, 0; i < len(a) && j < len(b); {
		switch {
		case a[i] < b[j]:
			i++
		case a[i] > b[j]:
			j++
		default:
			common++
			i++
			j++
		}
	}
	union := len(a) + len(b) - common
	if union == 0 {
		return 0
	}
	jaccard := float64(common) / float64(union)
	if !masi {
		return 1 - jaccard
	}
	var m float64
	switch {
	case common == len(a) && common == len(b):
		m = 1
	case common == len(a) || common == len(b):
		m = 2.0 / 3
	case common > 0:
		m = 1.0 / 3
	}
	return 1 - jaccard*m
}

// compareCodes orders codes naturally: by the text before the trailing number, then by
// the number, so TA-2 comes before TA-10.
func compareCodes(a, b string) int {
	pa, na := splitCode(a)
	pb, nb := splitCode(b)
	if c := strings.Compare(pa, pb); c != 0 {
		return c
	}
	if na != nb {
		if len(na) != len(nb) {
			return len(na) - len(nb) // digit strings without leading zeros: longer is larger
		}
		return strings.Compare(na, nb)
	}
	return strings.Compare(a, b)
}

func splitCode(s string) (prefix, digits string) {
	i := len(s)
	for i > 0 && s[i-1] >= '0' && s[i-1] <= '9' {
		i--
	}
	j := i
	for j < len(s)-1 && s[j] == '0' {
		j++
	}
	return s[:i], s[j:]
}
