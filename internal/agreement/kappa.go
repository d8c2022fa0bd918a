package agreement

import (
	"fmt"
	"math"
	"slices"
)

// CohenKappa is Cohen's κ between annotators a and b over the samples both labelled,
// with values as nominal categories and each annotator's own marginals for chance
// agreement. It is undefined when both gave one and the same value throughout.
func CohenKappa(rows []Label, a, b string) (Figure, error) {
	t, err := newTable(rows)
	if err != nil {
		return Figure{}, err
	}
	i, iok := slices.BinarySearch(t.coders, a)
	j, jok := slices.BinarySearch(t.coders, b)
	if !iok || !jok || a == b {
		return Figure{}, fmt.Errorf("cohen's kappa needs two different annotators with labels; got %q and %q", a, b)
	}
	f := t.cohen(i, j)
	if f.Units == 0 {
		return Figure{}, fmt.Errorf("cohen's kappa: %q and %q labelled no sample in common: %w", a, b, ErrNoPairableUnits)
	}
	return f, nil
}

// Pair is Cohen's κ for two annotators, A before B in sorted order.
type Pair struct {
	A     string `json:"a"`
	B     string `json:"b"`
	Kappa Figure `json:"kappa"`
}

// Pairwise is Cohen's κ for every pair of annotators and Light's κ, their mean.
type Pairwise struct {
	Annotators []string `json:"annotators"`
	Pairs      []Pair   `json:"pairs"`
	Light      Figure   `json:"light_kappa"`
}

// PairwiseKappa computes Cohen's κ for every pair of annotators (the upper triangle of
// the κ matrix, row by row) and Light's κ. A pair with no sample in common, or with one
// shared value throughout, has an undefined κ and is left out of Light's mean, which
// says so in its Reason.
func PairwiseKappa(rows []Label) (Pairwise, error) {
	t, _, err := pairable(rows, "pairwise kappa")
	if err != nil {
		return Pairwise{}, err
	}
	return t.pairwise(), nil
}

func (t *table) pairwise() Pairwise {
	pw := Pairwise{Annotators: t.coders, Pairs: []Pair{}}
	inPair := make([]bool, len(t.units)) // units behind at least one defined pair
	var sum float64
	defined := 0
	for i := range t.coders {
		for j := i + 1; j < len(t.coders); j++ {
			f := t.cohen(i, j)
			pw.Pairs = append(pw.Pairs, Pair{A: t.coders[i], B: t.coders[j], Kappa: f})
			if !f.Defined {
				continue
			}
			sum += f.Value
			defined++
			for u := range t.units {
				row := t.row(u)
				if row[i] != missing && row[j] != missing {
					inPair[u] = true
				}
			}
		}
	}
	light := Figure{Statistic: "light_kappa"}
	for _, in := range inPair {
		if in {
			light.Units++
		}
	}
	if defined == 0 {
		light.Reason = "no pair of annotators has a defined kappa"
	} else {
		light.Value, light.Defined = sum/float64(defined), true
		if defined < len(pw.Pairs) {
			light.Reason = fmt.Sprintf("mean of the %d defined pairs out of %d", defined, len(pw.Pairs))
		}
	}
	pw.Light = light
	return pw
}

// cohen is κ = (p_o − p_e) / (1 − p_e) for coders i and j, with p_e = Σ_v p_i(v) p_j(v)
// from each coder's own value shares.
func (t *table) cohen(i, j int) Figure {
	f := Figure{Statistic: "cohen_kappa"}
	ni, nj := make([]int, len(t.values)), make([]int, len(t.values))
	agree := 0
	for u := range t.units {
		row := t.row(u)
		a, b := row[i], row[j]
		if a == missing || b == missing {
			continue
		}
		f.Units++
		ni[a]++
		nj[b]++
		if a == b {
			agree++
		}
	}
	if f.Units == 0 {
		f.Reason = "the two annotators labelled no sample in common"
		return f
	}
	// κ = (p_o − p_e)/(1 − p_e) multiplied through by N², in integers, so that κ(a,b)
	// and κ(b,a) are bit for bit equal.
	n, chance := int64(f.Units), int64(0)
	for v := range ni {
		chance += int64(ni[v]) * int64(nj[v])
	}
	if chance == n*n {
		// p_e = 1: both coders used one and the same value for every shared sample.
		f.Reason = "both annotators gave one and the same value to every shared sample (chance agreement is 1)"
		return f
	}
	f.Value, f.Defined = float64(int64(agree)*n-chance)/float64(n*n-chance), true
	return f
}

// FleissKappa is Fleiss' κ over the complete cases: the samples labelled by every
// annotator present in rows. Values are nominal categories. Units in the figure is the
// number of complete cases. It is an error when there are fewer than two annotators or
// no complete case.
func FleissKappa(rows []Label, opts Options) (Figure, error) {
	t, err := newTable(rows)
	if err != nil {
		return Figure{}, err
	}
	f, err := t.fleiss(opts)
	if err != nil {
		return Figure{}, fmt.Errorf("fleiss' kappa: %w", err)
	}
	return f, nil
}

func (t *table) fleiss(opts Options) (Figure, error) {
	if len(t.coders) < 2 {
		return Figure{}, fmt.Errorf("needs at least two annotators, found %d: %w", len(t.coders), ErrNoPairableUnits)
	}
	units := t.unitsWith(len(t.coders))
	if len(units) == 0 {
		return Figure{}, fmt.Errorf("no sample was labelled by all %d annotators", len(t.coders))
	}
	p := newProfiles(t, units)
	return figures(p, newFleiss(p, len(t.values), len(t.coders)), opts, streamFleiss)[0], nil
}

// fleissStat is Fleiss' κ = (P̄ − P̄_e) / (1 − P̄_e) over profiles of complete cases, with
// P_i = (Σ_j n_ij² − r) / (r(r − 1)) for r raters and P̄_e = Σ_j p_j².
type fleissStat struct {
	p      *profiles
	nv     int
	raters float64
	agree  []float64 // P_i per profile
}

func newFleiss(p *profiles, values, raters int) *fleissStat {
	s := &fleissStat{p: p, nv: values, raters: float64(raters), agree: make([]float64, p.len())}
	r := s.raters
	for i := range p.len() {
		var sq float64
		for _, c := range p.counts(i) {
			sq += float64(c.n) * float64(c.n)
		}
		s.agree[i] = (sq - r) / (r * (r - 1))
	}
	return s
}

func (s *fleissStat) names() []string { return []string{"fleiss_kappa"} }

func (s *fleissStat) bufLen() int { return s.nv }

func (s *fleissStat) eval(w, buf, out []float64) {
	n := buf[:s.nv]
	clear(n)
	var units, pbar float64
	for i, wi := range w {
		if wi == 0 {
			continue
		}
		units += wi
		pbar += wi * s.agree[i]
		for _, c := range s.p.counts(i) {
			n[c.v] += wi * float64(c.n)
		}
	}
	pbar /= units
	ratings := units * s.raters
	var pe float64
	used := 0
	for _, x := range n {
		if x > 0 {
			used++
			pe += (x / ratings) * (x / ratings)
		}
	}
	if used < 2 {
		out[0] = math.NaN() // P̄_e = 1: every rating is one category
		return
	}
	out[0] = (pbar - pe) / (1 - pe)
}
