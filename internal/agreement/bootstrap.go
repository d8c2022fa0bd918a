package agreement

import (
	"math"
	"math/bits"
	"math/rand/v2"
	"runtime"
	"slices"
	"sync"
)

// family is a set of figures computed together from weights per profile, so that they
// share each pass over the profiles.
type family interface {
	names() []string
	// eval puts each figure for weights w into out, NaN when undefined. buf is scratch
	// space of bufLen() values.
	eval(w, buf, out []float64)
	bufLen() int
}

// Bootstrap streams: the α figures resample the pairable units, Fleiss' κ the complete
// cases; separate streams keep the two from sharing draws by accident.
const (
	streamAlpha  = 1
	streamFleiss = 2
)

// figures computes the family's figures on the data and, when opts asks for it, their
// bootstrap intervals.
func figures(p *profiles, f family, opts Options, stream uint64) []Figure {
	var values float64
	for i := range p.len() {
		for _, c := range p.counts(i) {
			values += p.base[i] * float64(c.n)
		}
	}
	names := f.names()
	point := make([]float64, len(names))
	f.eval(p.base, make([]float64, f.bufLen()), point)
	out := make([]Figure, len(names))
	defined := false
	for i, v := range point {
		out[i] = Figure{Statistic: names[i], Units: len(p.of), Values: int(values)}
		if math.IsNaN(v) {
			out[i].Reason = reasonOneValue
			continue
		}
		out[i].Value, out[i].Defined = v, true
		defined = true
	}
	if opts.Resamples <= 0 || !defined {
		return out
	}
	for i, draws := range resample(p, f, opts, stream, runtime.GOMAXPROCS(0)) {
		if !out[i].Defined {
			continue // every resample would be undefined too
		}
		if out[i].CI = percentile(draws, opts.Seed); out[i].CI == nil {
			out[i].Reason = "no bootstrap resample gave a defined value, so there is no interval"
		}
	}
	return out
}

// resample draws opts.Resamples bootstrap samples of the units behind p (with
// replacement, as many as there are units) and evaluates the family on each; out[i][r]
// is figure i on resample r. Resample r is seeded from (Seed, stream, r) alone, so the
// result does not depend on how many workers share the work.
func resample(p *profiles, f family, opts Options, stream uint64, workers int) [][]float64 {
	total, size := opts.Resamples, len(f.names())
	out := make([][]float64, size)
	for i := range out {
		out[i] = make([]float64, total)
	}
	workers = max(1, min(workers, total))
	var wg sync.WaitGroup
	for k := range workers {
		// Contiguous blocks keep each worker's writes apart.
		from, to := k*total/workers, (k+1)*total/workers
		wg.Go(func() {
			src := rand.NewPCG(0, 0)
			w := make([]float64, p.len())
			buf := make([]float64, f.bufLen())
			res := make([]float64, size)
			for r := from; r < to; r++ {
				src.Seed(opts.Seed, splitmix(stream<<56|uint64(r)))
				clear(w)
				draw(src, p.of, w)
				f.eval(w, buf, res)
				for i, v := range res {
					out[i][r] = v
				}
			}
		})
	}
	wg.Wait()
	return out
}

// draw adds one to w[of[u]] for each of len(of) units u drawn uniformly with
// replacement. It is Lemire's unbiased multiply-and-reject method on both 32-bit halves
// of each PCG output, which halves the generator calls (len(of) < 2³²).
func draw(src *rand.PCG, of []int32, w []float64) {
	n := uint32(len(of))
	reject := -n % n // 2³² mod n: the low products below this would favour some units
	var x uint64
	half := 0
	for range of {
		for {
			if half == 0 {
				x = src.Uint64()
			}
			r := uint32(x >> (32 * half))
			half ^= 1
			if hi, lo := bits.Mul32(r, n); lo >= reject {
				w[of[hi]]++
				break
			}
		}
	}
}

// splitmix scrambles a counter into a well-spread seed, so neighbouring resamples do not
// start from neighbouring PCG states.
func splitmix(x uint64) uint64 {
	x += 0x9e3779b97f4a7c15
	x = (x ^ x>>30) * 0xbf58476d1ce4e5b9
	x = (x ^ x>>27) * 0x94d049bb133111eb
	return x ^ x>>31
}

// percentile is the 95% percentile interval of the defined draws, with linear
// interpolation between order statistics (the usual "type 7" quantile). It is nil when
// no draw is defined.
func percentile(draws []float64, seed uint64) *ConfidenceInterval {
	vals := make([]float64, 0, len(draws))
	for _, v := range draws {
		if !math.IsNaN(v) {
			vals = append(vals, v)
		}
	}
	if len(vals) == 0 {
		return nil
	}
	slices.Sort(vals)
	return &ConfidenceInterval{
		Low:       quantile(vals, 0.025),
		High:      quantile(vals, 0.975),
		Level:     0.95,
		Resamples: len(draws),
		Skipped:   len(draws) - len(vals),
		Seed:      seed,
	}
}

func quantile(sorted []float64, q float64) float64 {
	h := q * float64(len(sorted)-1)
	lo := int(h)
	if lo+1 >= len(sorted) {
		return sorted[lo]
	}
	return sorted[lo] + (h-float64(lo))*(sorted[lo+1]-sorted[lo])
}
