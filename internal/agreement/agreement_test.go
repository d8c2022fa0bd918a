package agreement

import (
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"math/big"
	"math/rand/v2"
	"reflect"
	"slices"
	"strconv"
	"strings"
	"testing"

	"github.com/mhannotator/mha/internal/labels"
)

// grid builds rows from one line per coder, values separated by spaces and "." for a
// missing value. Coders are c1, c2, ... and units u01, u02, ...
func grid(lines ...string) []Label {
	var cells [][]string
	for _, line := range lines {
		cells = append(cells, strings.Fields(line))
	}
	return fromCells(cells)
}

// fromCells is grid for values that contain spaces: cells[coder][unit], "." missing.
func fromCells(cells [][]string) []Label {
	var rows []Label
	for c, line := range cells {
		for u, v := range line {
			if v != "." {
				rows = append(rows, Label{SampleID: fmt.Sprintf("u%02d", u+1), Annotator: fmt.Sprintf("c%d", c+1), Value: v})
			}
		}
	}
	return rows
}

// near asserts a defined figure equal to want at the given number of decimals.
func near(t *testing.T, what string, f Figure, want float64, decimals int) {
	t.Helper()
	if !f.Defined {
		t.Fatalf("%s is undefined (%s), want %.*f", what, f.Reason, decimals, want)
	}
	if math.Abs(f.Value-want) > 0.5*math.Pow10(-decimals) {
		t.Fatalf("%s = %.8f, want %.*f", what, f.Value, decimals, want)
	}
}

// must unwraps a result whose error would mean a broken test; the panic fails the test.
func must[T any](v T, err error) T {
	if err != nil {
		panic(err)
	}
	return v
}

// Krippendorff (2011), "Computing Krippendorff's Alpha-Reliability": 4 coders × 12 units.
var krippendorff2011 = []string{
	"1 2 3 3 2 1 4 1 2 . . .",
	"1 2 3 3 2 2 4 1 2 5 . 3",
	". 3 3 3 2 3 4 2 2 5 1 .",
	"1 2 3 3 2 4 4 1 2 5 1 .",
}

// fast-krippendorff's test_nominal_metric_reliability_data: 3 coders × 15 units.
var fastKrippendorff = []string{
	". . . . . 3 4 1 2 1 1 3 3 . 3",
	"1 . 2 1 3 3 4 3 . . . . . . .",
	". . 2 1 3 4 4 . 2 1 1 3 3 . 4",
}

// The set-α regression fixture of the reference, 3 coders × 4 samples.
var setFixture = [][]string{
	{"dep", "dep, anx", "sui", "anx"},
	{"dep", "dep", "sui, dep", "anx"},
	{"dep, anx", "dep, anx", "sui", "eat"},
}

func TestCohenKappaKnownAnswer(t *testing.T) {
	// Wikipedia's 50 proposals: 20 yes/yes, 5 yes/no, 10 no/yes, 15 no/no.
	var rows []Label
	add := func(n int, a, b string) {
		for range n {
			id := fmt.Sprintf("p%02d", len(rows)/2)
			rows = append(rows, Label{id, "A", a}, Label{id, "B", b})
		}
	}
	add(20, "yes", "yes")
	add(5, "yes", "no")
	add(10, "no", "yes")
	add(15, "no", "no")
	f := must(CohenKappa(rows, "A", "B"))
	near(t, "Cohen's κ", f, 0.4000, 4)
	if f.Units != 50 {
		t.Fatalf("units = %d, want 50", f.Units)
	}
	g := must(CohenKappa(rows, "B", "A"))
	if g.Value != f.Value {
		t.Fatalf("κ(B,A) = %v, κ(A,B) = %v", g.Value, f.Value)
	}
}

func TestFleissKappaKnownAnswer(t *testing.T) {
	// Wikipedia's worked example: 10 items, 14 raters, 5 categories.
	table := [][]int{
		{0, 0, 0, 0, 14}, {0, 2, 6, 4, 2}, {0, 0, 3, 5, 6}, {0, 3, 9, 2, 0}, {2, 2, 8, 1, 1},
		{7, 7, 0, 0, 0}, {3, 2, 6, 3, 0}, {2, 5, 3, 2, 2}, {6, 5, 2, 1, 0}, {0, 2, 2, 3, 7},
	}
	var rows []Label
	for i, counts := range table {
		rater := 0
		for cat, n := range counts {
			for range n {
				rows = append(rows, Label{fmt.Sprint("item", i), fmt.Sprint("r", rater), fmt.Sprint("cat", cat+1)})
				rater++
			}
		}
	}
	f := must(FleissKappa(rows, Options{}))
	near(t, "Fleiss' κ", f, 0.2099, 4)
	if f.Units != 10 || f.Values != 140 {
		t.Fatalf("units %d, values %d; want 10 and 140", f.Units, f.Values)
	}
}

func TestFleissKappaUsesCompleteCasesOnly(t *testing.T) {
	rows := grid(krippendorff2011...)
	f := must(FleissKappa(rows, Options{}))
	if f.Units != 8 {
		t.Fatalf("Fleiss' κ rests on %d units, want the 8 complete cases", f.Units)
	}
	var complete []Label
	for _, r := range rows {
		if u, _ := strconv.Atoi(r.SampleID[1:]); u >= 2 && u <= 9 {
			complete = append(complete, r)
		}
	}
	g := must(FleissKappa(complete, Options{}))
	if g.Value != f.Value {
		t.Fatalf("κ over all rows %v, over the complete cases alone %v", f.Value, g.Value)
	}
}

func TestAlphaKnownAnswers(t *testing.T) {
	k2011 := grid(krippendorff2011...)
	fast := grid(fastKrippendorff...)
	medkit := grid(
		"yes yes no no yes .",
		". yes no yes yes no",
		"yes no no yes yes .",
	)
	sets := fromCells(setFixture)
	cases := []struct {
		name     string
		rows     []Label
		metric   Metric
		want     float64
		decimals int
	}{
		{"Krippendorff 2011 nominal", k2011, Nominal, 0.7434, 4},
		{"Krippendorff 2011 ordinal", k2011, Ordinal, 0.8154, 4},
		{"Krippendorff 2011 interval", k2011, Interval, 0.8491, 4},
		{"fast-krippendorff nominal", fast, Nominal, 0.691358, 6},
		{"fast-krippendorff interval", fast, Interval, 0.810845, 6},
		{"medkit strings", medkit, Nominal, 0.4222, 4},
		{"set fixture Jaccard", sets, Jaccard, 0.4149, 4},
		{"set fixture MASI exact", sets, MASI, 0.3529, 4},
		{"set fixture nominal on sets", sets, Nominal, 0.2414, 4},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			near(t, "α", must(Alpha(tc.rows, tc.metric, Options{})), tc.want, tc.decimals)
		})
	}
	f := must(Alpha(k2011, Nominal, Options{}))
	if f.Units != 11 || f.Values != 40 {
		t.Fatalf("Krippendorff 2011: %d units and %d pairable values, want 11 and 40", f.Units, f.Values)
	}
}

func TestCodeAlphaKnownAnswers(t *testing.T) {
	got := must(CodeAlpha(fromCells(setFixture), Options{}))
	want := []struct {
		code   string
		alpha  float64
		chosen int
	}{{"anx", 0.0571, 5}, {"dep", 0.6857, 7}, {"eat", 0, 1}, {"sui", 1, 3}}
	if len(got) != len(want) {
		t.Fatalf("got %d codes, want %d: %+v", len(got), len(want), got)
	}
	for i, w := range want {
		if got[i].Code != w.code || got[i].Chosen != w.chosen {
			t.Fatalf("row %d = %s chosen %d, want %s chosen %d", i, got[i].Code, got[i].Chosen, w.code, w.chosen)
		}
		near(t, "binary α of "+w.code, got[i].Alpha, w.alpha, 4)
	}
}

func TestSetDistances(t *testing.T) {
	cases := []struct {
		a, b          []string
		jaccard, masi float64
	}{
		{[]string{"1", "2", "3", "4"}, []string{"3", "4", "5"}, 0.6, 1 - 0.4/3},
		{[]string{"1", "2"}, []string{"1", "2", "3", "4"}, 0.5, 1 - 0.5*2/3},
		{[]string{"a"}, []string{"a"}, 0, 0},
		{[]string{"a"}, []string{"b"}, 1, 1},
		{nil, nil, 0, 0},
		{nil, []string{"a"}, 1, 1},
		{[]string{"b", "a", "a"}, []string{"a", "b"}, 0, 0},
	}
	for _, tc := range cases {
		if got := JaccardDistance(tc.a, tc.b); math.Abs(got-tc.jaccard) > 1e-12 {
			t.Errorf("Jaccard(%v, %v) = %v, want %v", tc.a, tc.b, got, tc.jaccard)
		}
		if got := MASIDistance(tc.a, tc.b); math.Abs(got-tc.masi) > 1e-12 {
			t.Errorf("MASI(%v, %v) = %v, want %v", tc.a, tc.b, got, tc.masi)
		}
		if MASIDistance(tc.a, tc.b) != MASIDistance(tc.b, tc.a) {
			t.Errorf("MASI(%v, %v) is not symmetric", tc.a, tc.b)
		}
	}
	// The reference's table, to its printed decimals.
	if got := MASIDistance([]string{"1", "2", "3", "4"}, []string{"3", "4", "5"}); fmt.Sprintf("%.4f", got) != "0.8667" {
		t.Errorf("MASI = %.4f, want 0.8667", got)
	}
	if got := MASIDistance([]string{"1", "2"}, []string{"1", "2", "3", "4"}); fmt.Sprintf("%.4f", got) != "0.6667" {
		t.Errorf("MASI = %.4f, want 0.6667", got)
	}
}

func TestPerfectAgreementIsOne(t *testing.T) {
	rows := grid(
		"1 2 3 4 5 1 .",
		"1 2 3 4 5 1 2",
		"1 2 3 . 5 1 2",
	)
	for _, m := range []Metric{Nominal, Ordinal, Interval, MASI, Jaccard} {
		near(t, "α "+m.String(), must(Alpha(rows, m, Options{})), 1, 12)
	}
	near(t, "Fleiss' κ", must(FleissKappa(rows, Options{})), 1, 12)
	pw := must(PairwiseKappa(rows))
	near(t, "Light's κ", pw.Light, 1, 12)
}

func TestSingleValueLeavesStatisticsUndefined(t *testing.T) {
	rows := grid("a a a .", "a a . a", "a . a a")
	for _, m := range []Metric{Nominal, MASI, Jaccard} {
		f := must(Alpha(rows, m, Options{Resamples: 50}))
		if f.Defined || f.Reason != reasonOneValue || f.Units != 4 || f.CI != nil {
			t.Fatalf("α %s = %+v, want undefined with the one-value reason", m, f)
		}
		b := must(json.Marshal(f))
		if !strings.Contains(string(b), `"value":null`) || strings.Contains(string(b), "NaN") {
			t.Fatalf("JSON %s, want a null value and no NaN", b)
		}
		var back Figure
		if err := json.Unmarshal(b, &back); err != nil || !reflect.DeepEqual(back, f) {
			t.Fatalf("round trip gave %+v (%v), want %+v", back, err, f)
		}
	}
	pw := must(PairwiseKappa(rows))
	if pw.Light.Defined || pw.Pairs[0].Kappa.Defined {
		t.Fatalf("κ with one value should be undefined: %+v", pw)
	}
	f := must(FleissKappa(grid("a a", "a a"), Options{}))
	if f.Defined || f.Reason != reasonOneValue {
		t.Fatalf("Fleiss' κ = %+v, want undefined", f)
	}
}

func TestNoPairableUnitIsAnError(t *testing.T) {
	rows := grid("1 . .", ". 2 .", ". . 3")
	_, err := Alpha(rows, Nominal, Options{})
	if !errors.Is(err, ErrNoPairableUnits) || !strings.Contains(err.Error(), "no unit has values from at least two coders") {
		t.Fatalf("err = %v, want ErrNoPairableUnits", err)
	}
	if _, err := Alpha(nil, Nominal, Options{}); !errors.Is(err, ErrNoPairableUnits) {
		t.Fatalf("no rows: err = %v", err)
	}
	if _, err := PairwiseKappa(rows); !errors.Is(err, ErrNoPairableUnits) {
		t.Fatalf("pairwise: err = %v", err)
	}
	if _, err := CohenKappa(rows, "c1", "c2"); !errors.Is(err, ErrNoPairableUnits) {
		t.Fatalf("Cohen: err = %v", err)
	}
	if _, err := CodeAlpha(rows, Options{}); !errors.Is(err, ErrNoPairableUnits) {
		t.Fatalf("codes: err = %v", err)
	}
	if _, err := FleissKappa(rows, Options{}); err == nil || !strings.Contains(err.Error(), "no sample was labelled by all 3") {
		t.Fatalf("Fleiss: err = %v", err)
	}
	if _, err := Domain(labels.Urgency, []Label{{"s1", "a", "LEVEL_1"}, {"s2", "b", "LEVEL_2"}}, Options{}); !errors.Is(err, ErrNoPairableUnits) {
		t.Fatalf("Domain: err = %v", err)
	}
}

func TestInputErrors(t *testing.T) {
	if _, err := Alpha(grid("1 x", "2 3"), Interval, Options{}); err == nil || !strings.Contains(err.Error(), `"x"`) {
		t.Fatalf("a non-number under the interval metric: err = %v", err)
	}
	twice := []Label{{"s1", "a", "1"}, {"s1", "a", "2"}, {"s1", "b", "1"}}
	if _, err := Alpha(twice, Nominal, Options{}); err == nil || !strings.Contains(err.Error(), "two labels") {
		t.Fatalf("a duplicate label: err = %v", err)
	}
	if _, err := CohenKappa(grid("1 2", "1 2"), "c1", "zz"); err == nil {
		t.Fatal("an unknown annotator should be an error")
	}
	bad := []Label{{"s1", "a", "LEVEL_9"}, {"s1", "b", "LEVEL_1"}}
	if _, err := Domain(labels.Urgency, bad, Options{}); err == nil || !strings.Contains(err.Error(), "LEVEL_9") {
		t.Fatalf("a value outside the catalog: err = %v", err)
	}
	if _, err := Domain(labels.Adjunct, []Label{{"s1", "a", "NONE, ADJ-1"}, {"s1", "b", "NONE"}}, Options{}); err == nil {
		t.Fatal("NONE together with a code should be an error")
	}
	if _, err := Domain("mood", bad, Options{}); err == nil || !strings.Contains(err.Error(), "unknown domain") {
		t.Fatalf("unknown domain: err = %v", err)
	}
	for _, v := range []string{"first, second", `["x", 2]`, `["x", null]`, `{"x": "y"}`} {
		notJSON := []Label{{"s1", "a", v}, {"s1", "b", `["x","y"]`}}
		if _, err := Domain(labels.Redressal, notJSON, Options{}); err == nil || !strings.Contains(err.Error(), "JSON array") {
			t.Fatalf("a redressal label that is no JSON list of strings, %s: err = %v", v, err)
		}
	}
}

// exactAlpha computes α from its definition with exact fractions: D_o averages δ over the
// ordered pairs of values within each unit, weighted 1/(m_u − 1), and D_e over all ordered
// pairs of pairable values. It shares no code with the package.
func exactAlpha(rows []Label, m Metric) (*big.Rat, bool) {
	byUnit := map[string][]string{}
	for _, r := range rows {
		byUnit[r.SampleID] = append(byUnit[r.SampleID], r.Value)
	}
	var units [][]string
	var all []string
	for _, vs := range byUnit {
		if len(vs) >= 2 {
			units = append(units, vs)
			all = append(all, vs...)
		}
	}
	if len(all) == 0 {
		return nil, false
	}
	num := func(v string) int {
		x, err := strconv.Atoi(v)
		if err != nil {
			panic(err)
		}
		return x
	}
	set := func(v string) map[string]bool {
		s := map[string]bool{}
		for p := range strings.SplitSeq(v, ",") {
			if p = strings.TrimSpace(p); p != "" && p != "NONE" {
				s[p] = true
			}
		}
		return s
	}
	counts := map[int]int{}
	if m == Ordinal {
		for _, v := range all {
			counts[num(v)]++
		}
	}
	delta := func(a, b string) *big.Rat {
		switch m {
		case Nominal:
			if a == b {
				return big.NewRat(0, 1)
			}
			return big.NewRat(1, 1)
		case Interval:
			d := int64(num(a) - num(b))
			return big.NewRat(d*d, 1)
		case Ordinal:
			lo, hi := min(num(a), num(b)), max(num(a), num(b))
			if lo == hi {
				return big.NewRat(0, 1)
			}
			sum := 0
			for g, n := range counts {
				if g >= lo && g <= hi {
					sum += n
				}
			}
			d := big.NewRat(int64(2*sum-counts[lo]-counts[hi]), 2)
			return d.Mul(d, d)
		}
		sa, sb := set(a), set(b)
		common, union := 0, len(sb)
		for x := range sa {
			if sb[x] {
				common++
			} else {
				union++
			}
		}
		if union == 0 {
			return big.NewRat(0, 1)
		}
		sim := big.NewRat(int64(common), int64(union))
		if m == MASI {
			switch {
			case common == len(sa) && common == len(sb):
			case common == len(sa) || common == len(sb):
				sim.Mul(sim, big.NewRat(2, 3))
			case common > 0:
				sim.Mul(sim, big.NewRat(1, 3))
			}
		}
		return sim.Sub(big.NewRat(1, 1), sim)
	}
	observed := new(big.Rat)
	for _, vs := range units {
		within := new(big.Rat)
		for i := range vs {
			for j := range vs {
				if i != j {
					within.Add(within, delta(vs[i], vs[j]))
				}
			}
		}
		observed.Add(observed, within.Quo(within, big.NewRat(int64(len(vs)-1), 1)))
	}
	n := int64(len(all))
	observed.Quo(observed, big.NewRat(n, 1))
	expected := new(big.Rat)
	for i := range all {
		for j := range all {
			if i != j {
				expected.Add(expected, delta(all[i], all[j]))
			}
		}
	}
	expected.Quo(expected, big.NewRat(n*(n-1), 1))
	if expected.Sign() == 0 {
		return nil, false
	}
	return new(big.Rat).Sub(big.NewRat(1, 1), observed.Quo(observed, expected)), true
}

// randomRows makes reliability data with missing values: numbers 1..levels, or for the
// set metrics subsets of {a, b, c} ("" is the empty set).
func randomRows(rng *rand.Rand, m Metric) []Label {
	units, coders := 3+rng.IntN(25), 2+rng.IntN(4)
	var rows []Label
	for u := range units {
		for c := range coders {
			if rng.Float64() < 0.3 {
				continue
			}
			v := strconv.Itoa(1 + rng.IntN(4))
			if m == MASI || m == Jaccard {
				var s []string
				for _, code := range []string{"a", "b", "c"} {
					if rng.IntN(2) == 0 {
						s = append(s, code)
					}
				}
				v = strings.Join(s, ", ")
			}
			rows = append(rows, Label{fmt.Sprintf("u%02d", u), fmt.Sprintf("c%d", c), v})
		}
	}
	return rows
}

func TestAlphaMatchesTheExactDefinition(t *testing.T) {
	rng := rand.New(rand.NewPCG(1, 2))
	for _, m := range []Metric{Nominal, Ordinal, Interval, MASI, Jaccard} {
		checked := 0
		for range 200 {
			rows := randomRows(rng, m)
			want, ok := exactAlpha(rows, m)
			got, err := Alpha(rows, m, Options{})
			if errors.Is(err, ErrNoPairableUnits) {
				continue
			}
			if err != nil {
				t.Fatal(err)
			}
			if ok != got.Defined {
				t.Fatalf("%s: defined %v, the definition says %v, rows %v", m, got.Defined, ok, rows)
			}
			if !ok {
				continue
			}
			w, _ := want.Float64()
			if math.Abs(got.Value-w) > 1e-9 {
				t.Fatalf("%s: α = %.12f, exact %.12f, rows %v", m, got.Value, w, rows)
			}
			checked++
		}
		if checked < 150 {
			t.Fatalf("%s: only %d random data sets checked", m, checked)
		}
	}
}

func TestExactDefinitionReproducesTheFixtures(t *testing.T) {
	// The oracle itself must be right for the comparison above to mean anything.
	for _, tc := range []struct {
		rows []Label
		m    Metric
		want string
	}{
		{grid(krippendorff2011...), Ordinal, "0.81538750"},
		{fromCells(setFixture), MASI, "0.35294118"},
	} {
		got, _ := exactAlpha(tc.rows, tc.m)
		if got.FloatString(8) != tc.want {
			t.Fatalf("exact α %s = %s, want %s", tc.m, got.FloatString(8), tc.want)
		}
	}
}

// agreeingRows gives every coder the unit's value, with some values missing.
func agreeingRows(rng *rand.Rand) []Label {
	var rows []Label
	for u := range 20 {
		v := strconv.Itoa(1 + u%3 + rng.IntN(2))
		for c := range 4 {
			if c < 2 || rng.IntN(3) > 0 {
				rows = append(rows, Label{fmt.Sprintf("u%02d", u), fmt.Sprintf("c%d", c), v})
			}
		}
	}
	return rows
}

func TestIdenticalAnnotatorsAgreeFully(t *testing.T) {
	rng := rand.New(rand.NewPCG(3, 4))
	for range 50 {
		rows := agreeingRows(rng)
		for _, m := range []Metric{Nominal, Ordinal, Interval, MASI, Jaccard} {
			near(t, "α "+m.String(), must(Alpha(rows, m, Options{})), 1, 12)
		}
		pw := must(PairwiseKappa(rows))
		for _, p := range pw.Pairs {
			near(t, "κ "+p.A+p.B, p.Kappa, 1, 12)
		}
		if f, err := FleissKappa(rows, Options{}); err == nil {
			near(t, "Fleiss' κ", f, 1, 12)
		}
	}
}

// figuresOf computes α under each metric, Light's κ and Fleiss' κ (when there is a
// complete case) for the property tests.
func figuresOf(rows []Label, metrics ...Metric) map[string]Figure {
	out := map[string]Figure{}
	for _, m := range metrics {
		out["alpha "+m.String()] = must(Alpha(rows, m, Options{}))
	}
	out["light"] = must(PairwiseKappa(rows)).Light
	if f, err := FleissKappa(rows, Options{}); err == nil {
		out["fleiss"] = f
	}
	return out
}

func sameFigures(t *testing.T, what string, a, b map[string]Figure) {
	t.Helper()
	if len(a) != len(b) {
		t.Fatalf("%s changes which figures exist: %v then %v", what, a, b)
	}
	for k, fa := range a {
		fb, ok := b[k]
		if !ok || fa.Defined != fb.Defined || math.Abs(fa.Value-fb.Value) > 1e-12 {
			t.Fatalf("%s changes %s: %+v then %+v", what, k, fa, fb)
		}
	}
}

func TestStatisticsAreSymmetricInTheAnnotators(t *testing.T) {
	rng := rand.New(rand.NewPCG(5, 6))
	for range 100 {
		rows := randomRows(rng, Interval)
		if len(must(newTable(rows)).unitsWith(2)) == 0 {
			continue
		}
		// Renaming the coders through a random permutation reorders them.
		perm := rng.Perm(6)
		permuted := slices.Clone(rows)
		for i := range permuted {
			c, _ := strconv.Atoi(permuted[i].Annotator[1:])
			permuted[i].Annotator = fmt.Sprint("c", perm[c])
		}
		all := []Metric{Nominal, Ordinal, Interval, MASI, Jaccard}
		sameFigures(t, "permuting the annotators", figuresOf(rows, all...), figuresOf(permuted, all...))
		ab, errAB := CohenKappa(rows, "c0", "c1")
		ba, errBA := CohenKappa(rows, "c1", "c0")
		if (errAB == nil) != (errBA == nil) || ab != ba {
			t.Fatalf("κ(c0,c1) = %+v (%v), κ(c1,c0) = %+v (%v)", ab, errAB, ba, errBA)
		}
	}
}

func TestNominalStatisticsIgnoreLabelNames(t *testing.T) {
	rng := rand.New(rand.NewPCG(7, 8))
	rename := map[string]string{"1": "zebra", "2": "apple", "3": "mango", "4": "kiwi"}
	for range 100 {
		rows := randomRows(rng, Nominal)
		if len(must(newTable(rows)).unitsWith(2)) == 0 {
			continue
		}
		renamed := slices.Clone(rows)
		for i := range renamed {
			renamed[i].Value = rename[renamed[i].Value]
		}
		sameFigures(t, "renaming the labels", figuresOf(rows, Nominal), figuresOf(renamed, Nominal))
	}
}

func TestMissingValuePathAgreesWithCompleteData(t *testing.T) {
	rng := rand.New(rand.NewPCG(9, 10))
	for range 100 {
		// Complete data: every coder labels every unit.
		units, coders := 2+rng.IntN(20), 2+rng.IntN(4)
		var rows []Label
		for u := range units {
			for c := range coders {
				rows = append(rows, Label{fmt.Sprintf("u%02d", u), fmt.Sprint("c", c), strconv.Itoa(rng.IntN(3))})
			}
		}
		alpha := must(Alpha(rows, Nominal, Options{}))
		fleiss := must(FleissKappa(rows, Options{}))
		if alpha.Defined != fleiss.Defined {
			t.Fatalf("α defined %v, Fleiss' κ defined %v", alpha.Defined, fleiss.Defined)
		}
		if !alpha.Defined {
			continue
		}
		// On complete data α nominal = 1 − (1 − κ_Fleiss)(n − 1)/n for n = units × coders:
		// the coincidence path must reproduce the complete-data formula.
		n := float64(units * coders)
		if want := 1 - (1-fleiss.Value)*(n-1)/n; math.Abs(alpha.Value-want) > 1e-12 {
			t.Fatalf("α = %.15f, from Fleiss' κ %.15f", alpha.Value, want)
		}
		// Units with a single value, and a coder who pairs with no one, change nothing.
		extra := slices.Clone(rows)
		for u := range 5 {
			extra = append(extra, Label{fmt.Sprint("lonely", u), fmt.Sprint("c", u%coders), strconv.Itoa(u % 3)})
		}
		extra = append(extra, Label{"alone", "outsider", "2"})
		for _, m := range []Metric{Nominal, Ordinal, Interval} {
			a := must(Alpha(rows, m, Options{}))
			b := must(Alpha(extra, m, Options{}))
			if a.Value != b.Value || a.Units != b.Units || a.Values != b.Values {
				t.Fatalf("%s: unpairable values changed α: %+v then %+v", m, a, b)
			}
		}
	}
}

// spreadRows is a larger fixture with moderate agreement, for the bootstrap.
func spreadRows() []Label {
	rng := rand.New(rand.NewPCG(11, 12))
	var rows []Label
	for u := range 300 {
		truth := rng.IntN(5)
		for c := range 5 {
			if rng.Float64() < 0.15 {
				continue
			}
			v := truth
			if rng.Float64() < 0.35 {
				v = rng.IntN(5)
			}
			rows = append(rows, Label{fmt.Sprintf("s%03d", u), fmt.Sprint("a", c), fmt.Sprint("LEVEL_", v)})
		}
	}
	return rows
}

func TestBootstrapRepeatsAndCoversThePointEstimate(t *testing.T) {
	rows := spreadRows()
	opts := Options{Resamples: 400, Seed: 42}
	for _, m := range []Metric{Nominal, Ordinal} {
		a := must(Alpha(rows, m, opts))
		b := must(Alpha(rows, m, opts))
		if a.CI == nil || !reflect.DeepEqual(a, b) {
			t.Fatalf("%s: two runs with one seed differ: %+v, %+v", m, a.CI, b.CI)
		}
		if !(a.CI.Low < a.Value && a.Value < a.CI.High) || a.CI.Skipped != 0 || a.CI.Resamples != 400 || a.CI.Seed != 42 {
			t.Fatalf("%s: α %.4f, interval %+v", m, a.Value, *a.CI)
		}
		if a.CI.High-a.CI.Low > 0.2 {
			t.Fatalf("%s: interval %+v is implausibly wide for 300 samples", m, *a.CI)
		}
		c := must(Alpha(rows, m, Options{Resamples: 400, Seed: 43}))
		if *c.CI == *a.CI {
			t.Fatalf("%s: another seed gave the same interval", m)
		}
	}
	f := must(FleissKappa(rows, opts))
	if f.CI == nil || !(f.CI.Low < f.Value && f.Value < f.CI.High) {
		t.Fatalf("Fleiss' κ %.4f, interval %+v", f.Value, f.CI)
	}
}

func TestBootstrapDoesNotDependOnTheNumberOfWorkers(t *testing.T) {
	rows := spreadRows()
	tb := must(newTable(rows))
	p := newProfiles(tb, tb.unitsWith(2))
	nominal, ordinal := must(newSpec(tb.values, Nominal)), must(newSpec(tb.values, Ordinal))
	f := newAlphas(p, len(tb.values), []*alphaSpec{nominal, ordinal})
	opts := Options{Resamples: 101, Seed: 7}
	one := resample(p, f, opts, streamAlpha, 1)
	three := resample(p, f, opts, streamAlpha, 3)
	if !reflect.DeepEqual(one, three) {
		t.Fatal("one worker and three workers drew different resamples")
	}
}

func TestBootstrapSkipsUndefinedResamples(t *testing.T) {
	// Half of all resamples draw the same unit twice and hold a single value.
	rows := grid("a b", "a b")
	f := must(Alpha(rows, Nominal, Options{Resamples: 1000, Seed: 1}))
	if f.CI == nil || f.CI.Skipped < 400 || f.CI.Skipped > 600 || f.CI.Resamples != 1000 {
		t.Fatalf("interval %+v, want about 500 of 1000 resamples skipped", f.CI)
	}
}

func TestDomainUrgencyIsOrdinal(t *testing.T) {
	// Krippendorff 2011 with the values 1..5 written as LEVEL_0..LEVEL_4.
	var rows []Label
	for _, r := range grid(krippendorff2011...) {
		v, _ := strconv.Atoi(r.Value)
		rows = append(rows, Label{r.SampleID, r.Annotator, fmt.Sprint("LEVEL_", v-1)})
	}
	opts := Options{Resamples: 200, Seed: 5}
	r := must(Domain(labels.Urgency, rows, opts))
	if r.Scale != "ordinal" || r.Headline != r.AlphaOrdinal || r.AlphaMASI != nil || r.Codes != nil || r.Note == "" {
		t.Fatalf("report shape: %+v", r)
	}
	near(t, "α ordinal", *r.AlphaOrdinal, 0.8154, 4)
	near(t, "α nominal", *r.AlphaNominal, 0.7434, 4)
	if r.AlphaOrdinal.CI == nil || r.AlphaNominal.CI == nil || r.Fleiss.CI == nil {
		t.Fatal("the α and Fleiss figures should carry intervals")
	}
	// Domain's figures are the generic functions' figures, intervals included.
	for m, f := range map[Metric]*Figure{Nominal: r.AlphaNominal, Ordinal: r.AlphaOrdinal} {
		if g := must(Alpha(rows, m, opts)); !reflect.DeepEqual(g, *f) {
			t.Fatalf("α %s: Domain %+v, Alpha %+v", m, *f, g)
		}
	}
	if g := must(FleissKappa(rows, opts)); !reflect.DeepEqual(g, *r.Fleiss) || g.Units != 8 {
		t.Fatalf("Fleiss: Domain %+v, FleissKappa %+v", *r.Fleiss, g)
	}
	wantCoverage := Coverage{Samples: 12, Pairable: 11, Complete: 8, Labels: []AnnotatorLabels{{"c1", 9}, {"c2", 10}, {"c3", 10}, {"c4", 11}}}
	if !reflect.DeepEqual(r.Coverage, wantCoverage) {
		t.Fatalf("coverage %+v, want %+v", r.Coverage, wantCoverage)
	}
	if len(r.Cohen.Pairs) != 6 || r.Cohen.Pairs[0].A != "c1" || r.Cohen.Pairs[0].B != "c2" || !r.Cohen.Light.Defined {
		t.Fatalf("pairwise κ: %+v", r.Cohen)
	}
	pw := must(PairwiseKappa(rows))
	if !reflect.DeepEqual(pw, *r.Cohen) {
		t.Fatalf("Domain's pairwise κ %+v, PairwiseKappa %+v", *r.Cohen, pw)
	}
	checkJSON(t, r)
}

// checkJSON asserts the report survives JSON without NaN and comes back unchanged.
func checkJSON(t *testing.T, r Report) {
	t.Helper()
	b := must(json.Marshal(r))
	if strings.Contains(string(b), "NaN") {
		t.Fatalf("JSON holds NaN: %s", b)
	}
	var back Report
	if err := json.Unmarshal(b, &back); err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(back, r) {
		t.Fatalf("JSON round trip changed the report:\n%s", b)
	}
}

func TestDomainTherapeuticUsesMASI(t *testing.T) {
	codes := strings.NewReplacer("dep", "TA-1", "anx", "TA-2", "sui", "TA-3", "eat", "TA-4")
	var rows []Label
	for _, r := range fromCells(setFixture) {
		rows = append(rows, Label{r.SampleID, r.Annotator, codes.Replace(r.Value)})
	}
	rows[1].Value = "TA-2 ,TA-1" // not canonical: must read as "TA-1, TA-2"
	r := must(Domain(labels.Therapeutic, rows, Options{}))
	if r.Scale != "multi_label" || r.Headline != r.AlphaMASI || r.AlphaOrdinal != nil {
		t.Fatalf("report shape: %+v", r)
	}
	near(t, "α MASI", *r.AlphaMASI, 0.3529, 4)
	near(t, "α Jaccard", *r.AlphaJaccard, 0.4149, 4)
	near(t, "α nominal on sets", *r.AlphaNominal, 0.2414, 4)
	if len(r.Codes) != 9 {
		t.Fatalf("%d codes, want the catalog's 9", len(r.Codes))
	}
	for i, want := range []float64{0.6857, 0.0571, 1, 0} {
		near(t, r.Codes[i].Code, r.Codes[i].Alpha, want, 4)
	}
	for _, c := range r.Codes[4:] {
		if c.Alpha.Defined || c.Alpha.Reason != "no annotator chose "+c.Code || c.Chosen != 0 {
			t.Fatalf("unused code: %+v", c)
		}
	}
	if r.Fleiss.Units != 4 || r.Cohen.Light.Units != 4 {
		t.Fatalf("Fleiss %+v, Light %+v", *r.Fleiss, r.Cohen.Light)
	}
	checkJSON(t, r)
}

func TestDomainAdjunctTreatsNONEAsTheEmptySet(t *testing.T) {
	cells := [][]string{
		{"NONE", "ADJ-1", "NONE", "ADJ-2", "ADJ-1, ADJ-5"},
		{"NONE", "ADJ-1", "NONE", "ADJ-1", "ADJ-5"},
		{"ADJ-1", "ADJ-1", "NONE", "ADJ-2", "NONE"},
	}
	rows := fromCells(cells)
	r := must(Domain(labels.Adjunct, rows, Options{Resamples: 100, Seed: 3}))
	for _, m := range []Metric{MASI, Jaccard, Nominal} {
		want, _ := exactAlpha(rows, m)
		w, _ := want.Float64()
		got := map[Metric]*Figure{MASI: r.AlphaMASI, Jaccard: r.AlphaJaccard, Nominal: r.AlphaNominal}[m]
		near(t, "α "+m.String(), *got, w, 12)
	}
	// With "" for NONE the set metrics see the same sets.
	empty := slices.Clone(rows)
	for i := range empty {
		empty[i].Value = strings.ReplaceAll(empty[i].Value, "NONE", "")
	}
	if f := must(Alpha(empty, MASI, Options{})); f.Value != r.AlphaMASI.Value {
		t.Fatalf("MASI with \"\" for NONE: %v, with NONE: %v", f.Value, r.AlphaMASI.Value)
	}
	// NONE says no to every code: ADJ-1's presence per sample is the binary data below.
	binary := fromCells([][]string{{"0", "1", "0", "0", "1"}, {"0", "1", "0", "1", "0"}, {"1", "1", "0", "0", "0"}})
	want, _ := exactAlpha(binary, Nominal)
	w, _ := want.Float64()
	if r.Codes[0].Code != "ADJ-1" || r.Codes[0].Chosen != 6 {
		t.Fatalf("first code row %+v", r.Codes[0])
	}
	near(t, "binary α of ADJ-1", r.Codes[0].Alpha, w, 12)
	checkJSON(t, r)
}

func TestDomainRedressalReportsCoverageOnly(t *testing.T) {
	rows := []Label{
		{"s1", "a", `["call a friend","sleep"]`},
		{"s1", "b", `["see a GP","sleep","walk","write"]`},
		{"s2", "a", `["one","two","three"]`},
		{"s2", "b", `["one","two"]`},
		{"s2", "c", `["x","y","z","w","v"]`},
		{"s3", "c", `["only","one annotator"]`}, // not counted: nobody to agree with
	}
	r := must(Domain(labels.Redressal, rows, Options{Resamples: 100}))
	if r.Scale != "free_text" || !strings.Contains(r.Note, "no κ or α") || r.Headline != nil ||
		r.AlphaNominal != nil || r.Fleiss != nil || r.Cohen != nil || r.Codes != nil {
		t.Fatalf("redressal report: %+v", r)
	}
	wantCoverage := Coverage{Samples: 3, Pairable: 2, Complete: 1, Labels: []AnnotatorLabels{{"a", 2}, {"b", 2}, {"c", 1}}}
	if !reflect.DeepEqual(r.Coverage, wantCoverage) {
		t.Fatalf("coverage %+v, want %+v", r.Coverage, wantCoverage)
	}
	wantPoints := []PointStats{{"a", 2, 2.5, 2.5}, {"b", 2, 3, 3}, {"c", 1, 5, 5}}
	if !reflect.DeepEqual(r.Points, wantPoints) {
		t.Fatalf("points %+v, want %+v", r.Points, wantPoints)
	}
	checkJSON(t, r)
}

func TestDomainKeepsUndefinedFiguresAsValues(t *testing.T) {
	// Everyone says LEVEL_2 and no sample has all three annotators.
	rows := []Label{{"s1", "a", "LEVEL_2"}, {"s1", "b", "LEVEL_2"}, {"s2", "b", "LEVEL_2"}, {"s2", "c", "LEVEL_2"}}
	r := must(Domain(labels.Urgency, rows, Options{Resamples: 50}))
	if r.Headline.Defined || r.Headline.Reason != reasonOneValue {
		t.Fatalf("headline %+v", *r.Headline)
	}
	if r.Fleiss.Defined || !strings.Contains(r.Fleiss.Reason, "no sample was labelled by all 3") {
		t.Fatalf("Fleiss %+v", *r.Fleiss)
	}
	if r.Cohen.Pairs[1].Kappa.Reason != "the two annotators labelled no sample in common" {
		t.Fatalf("pair a-c: %+v", r.Cohen.Pairs[1])
	}
	b := must(json.Marshal(r))
	if strings.Contains(string(b), "NaN") || !strings.Contains(string(b), `"headline":{"value":null`) {
		t.Fatalf("JSON %s", b)
	}
	checkJSON(t, r)
}
