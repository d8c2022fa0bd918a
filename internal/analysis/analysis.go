// Package analysis reads the stored annotations of a domain and hands them to the agreement
// statistics: the figures per domain, the consensus per sample and the most disputed samples
// with every annotator's reply. Results are cached until the store changes, so a dashboard can
// ask again on every new annotation.
package analysis

import (
	"context"
	"errors"
	"sort"
	"sync"

	"github.com/mhannotator/mha/internal/agreement"
	"github.com/mhannotator/mha/internal/labels"
	"github.com/mhannotator/mha/internal/store"
)

// Defaults of the bootstrap: 1 000 resamples, seeded so figures repeat.
const (
	DefaultResamples = 1000
	DefaultSeed      = 20261125
)

// NothingPairable is a domain's error while no sample has two ok labels.
const NothingPairable = "no sample has ok labels from two annotators yet"

// Reply is one annotator's stored answer for a sample, whatever its status.
type Reply struct {
	Annotator string `json:"annotator"`
	Status    string `json:"status"`
	Label     string `json:"label"`
	RawReply  string `json:"raw_reply"`
}

// Sample is a sample's consensus with its text and every annotator's reply.
type Sample struct {
	agreement.SampleConsensus
	Text    string  `json:"text"`
	Replies []Reply `json:"replies"`
}

// Agreement is one domain's figures, or why there are none (such as no sample labelled by
// two annotators yet).
type Agreement struct {
	Domain labels.Domain     `json:"domain"`
	Report *agreement.Report `json:"report,omitempty"`
	Error  string            `json:"error,omitempty"`
}

// data is what one domain's analysis reads from the store.
type data struct {
	labels  []agreement.Label  // ok rows
	texts   map[string]string  // by sample
	replies map[string][]Reply // by sample, every status
	order   map[string]int     // sample position
}

// Analyzer computes from Store, caching per domain until the store's change sequence moves.
type Analyzer struct {
	Store store.Store
	// Resamples and Seed set the bootstrap; zero values take the defaults.
	Resamples int
	Seed      uint64

	mu    sync.Mutex
	seq   int64
	cache map[labels.Domain]*cached
}

type cached struct {
	data      *data
	agreement *Agreement
	consensus []agreement.SampleConsensus
	consErr   error
	hasCons   bool
}

// entry returns the cache entry of d, emptied when the store changed since it was filled.
func (a *Analyzer) entry(ctx context.Context, d labels.Domain) (*cached, error) {
	seq, err := a.Store.LastSeq(ctx)
	if err != nil {
		return nil, err
	}
	a.mu.Lock()
	defer a.mu.Unlock()
	if a.cache == nil || seq != a.seq {
		a.cache, a.seq = map[labels.Domain]*cached{}, seq
	}
	c := a.cache[d]
	if c == nil {
		c = &cached{}
		a.cache[d] = c
	}
	if c.data == nil {
		if c.data, err = load(ctx, a.Store, d); err != nil {
			return nil, err
		}
	}
	return c, nil
}

func load(ctx context.Context, st store.Store, d labels.Domain) (*data, error) {
	out := &data{texts: map[string]string{}, replies: map[string][]Reply{}, order: map[string]int{}}
	err := st.Export(ctx, store.Filter{Domain: string(d)}, func(r store.ExportRow) error {
		out.texts[r.SampleID], out.order[r.SampleID] = r.Text, r.Position
		out.replies[r.SampleID] = append(out.replies[r.SampleID], Reply{Annotator: r.Annotator, Status: r.Status, Label: r.Label, RawReply: r.RawReply})
		if r.Status == store.StatusOK {
			out.labels = append(out.labels, agreement.Label{SampleID: r.SampleID, Annotator: r.Annotator, Value: r.Label})
		}
		return nil
	})
	for _, rs := range out.replies {
		sort.Slice(rs, func(i, j int) bool { return rs[i].Annotator < rs[j].Annotator })
	}
	return out, err
}

// Agreement computes the figures of each domain in domains.
func (a *Analyzer) Agreement(ctx context.Context, domains []labels.Domain) ([]Agreement, error) {
	out := make([]Agreement, 0, len(domains))
	for _, d := range domains {
		c, err := a.entry(ctx, d)
		if err != nil {
			return nil, err
		}
		a.mu.Lock()
		res := c.agreement
		a.mu.Unlock()
		if res == nil {
			res = &Agreement{Domain: d}
			r, err := agreement.Domain(d, c.data.labels, agreement.Options{Resamples: a.resamples(), Seed: a.seed()})
			switch {
			case errors.Is(err, agreement.ErrNoPairableUnits):
				res.Error = NothingPairable
			case err != nil:
				res.Error = err.Error()
			default:
				res.Report = &r
			}
			a.mu.Lock()
			c.agreement = res
			a.mu.Unlock()
		}
		out = append(out, *res)
	}
	return out, nil
}

// Consensus is the consensus of every sample of d labelled by two annotators or more, in
// the dataset's order, with its text and replies.
func (a *Analyzer) Consensus(ctx context.Context, d labels.Domain) ([]Sample, error) {
	cs, c, err := a.consensus(ctx, d)
	if err != nil {
		return nil, err
	}
	return c.data.samples(cs), nil
}

// Disputed is the n samples of d the annotators agree on least.
func (a *Analyzer) Disputed(ctx context.Context, d labels.Domain, n int) ([]Sample, error) {
	cs, c, err := a.consensus(ctx, d)
	if err != nil {
		return nil, err
	}
	return c.data.samples(agreement.Disputed(cs, n)), nil
}

func (a *Analyzer) consensus(ctx context.Context, d labels.Domain) ([]agreement.SampleConsensus, *cached, error) {
	c, err := a.entry(ctx, d)
	if err != nil {
		return nil, nil, err
	}
	a.mu.Lock()
	done := c.hasCons
	cs, cerr := c.consensus, c.consErr
	a.mu.Unlock()
	if !done {
		cs, cerr = agreement.Consensus(d, c.data.labels)
		if cerr == nil {
			d := c.data
			sort.SliceStable(cs, func(i, j int) bool { return d.order[cs[i].SampleID] < d.order[cs[j].SampleID] })
		}
		a.mu.Lock()
		c.consensus, c.consErr, c.hasCons = cs, cerr, true
		a.mu.Unlock()
	}
	if cerr != nil {
		return nil, nil, cerr
	}
	return cs, c, nil
}

func (d *data) samples(cs []agreement.SampleConsensus) []Sample {
	out := make([]Sample, len(cs))
	for i, c := range cs {
		out[i] = Sample{SampleConsensus: c, Text: d.texts[c.SampleID], Replies: d.replies[c.SampleID]}
	}
	return out
}

func (a *Analyzer) resamples() int {
	if a.Resamples == 0 {
		return DefaultResamples
	}
	return max(a.Resamples, 0)
}

func (a *Analyzer) seed() uint64 {
	if a.Seed == 0 {
		return DefaultSeed
	}
	return a.Seed
}

// IsFreeText reports whether err says a domain has no consensus.
func IsFreeText(err error) bool { return errors.Is(err, agreement.ErrFreeText) }
