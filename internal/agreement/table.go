package agreement

import (
	"encoding/binary"
	"fmt"
	"slices"
)

// missing marks a cell with no value.
const missing = -1

// table is the rows laid out as units × coders. Coders, units and values are sorted so
// every result is deterministic.
type table struct {
	coders []string
	units  []string
	values []string // distinct values
	cells  []int32  // cells[u*len(coders)+c] indexes values, or is missing
}

func newTable(rows []Label) (*table, error) {
	coderIdx, unitIdx, valueIdx := map[string]int{}, map[string]int{}, map[string]int{}
	for _, r := range rows {
		coderIdx[r.Annotator] = 0
		unitIdx[r.SampleID] = 0
		valueIdx[r.Value] = 0
	}
	t := &table{coders: sortedKeys(coderIdx), units: sortedKeys(unitIdx), values: sortedKeys(valueIdx)}
	index(coderIdx, t.coders)
	index(unitIdx, t.units)
	index(valueIdx, t.values)
	nc := len(t.coders)
	t.cells = make([]int32, len(t.units)*nc)
	for i := range t.cells {
		t.cells[i] = missing
	}
	for _, r := range rows {
		at := unitIdx[r.SampleID]*nc + coderIdx[r.Annotator]
		if t.cells[at] != missing {
			return nil, fmt.Errorf("sample %q has two labels from annotator %q", r.SampleID, r.Annotator)
		}
		t.cells[at] = int32(valueIdx[r.Value])
	}
	return t, nil
}

func sortedKeys(m map[string]int) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	return keys
}

func index(m map[string]int, sorted []string) {
	for i, k := range sorted {
		m[k] = i
	}
}

func (t *table) row(u int) []int32 {
	nc := len(t.coders)
	return t.cells[u*nc : (u+1)*nc]
}

// labelled counts the coders with a value for unit u.
func (t *table) labelled(u int) int {
	n := 0
	for _, v := range t.row(u) {
		if v != missing {
			n++
		}
	}
	return n
}

// unitsWith lists the units with at least k values.
func (t *table) unitsWith(k int) []int {
	var us []int
	for u := range t.units {
		if t.labelled(u) >= k {
			us = append(us, u)
		}
	}
	return us
}

// subset keeps the given units and the coders who labelled any of them.
func (t *table) subset(units []int) *table {
	used := make([]bool, len(t.coders))
	for _, u := range units {
		for c, v := range t.row(u) {
			if v != missing {
				used[c] = true
			}
		}
	}
	s := &table{values: t.values}
	var keep []int
	for c, ok := range used {
		if ok {
			keep = append(keep, c)
			s.coders = append(s.coders, t.coders[c])
		}
	}
	s.units = make([]string, len(units))
	s.cells = make([]int32, 0, len(units)*len(keep))
	for i, u := range units {
		s.units[i] = t.units[u]
		row := t.row(u)
		for _, c := range keep {
			s.cells = append(s.cells, row[c])
		}
	}
	return s
}

// count is how many times a value occurs.
type count struct {
	v int32 // value index
	n int32
}

// profiles groups units by the multiset of values they received. κ and α depend on a unit
// only through that multiset, so a bootstrap resample reduces to a weight per profile and
// the statistics never revisit individual labels.
type profiles struct {
	of   []int32   // of[i] is the profile of the i-th unit in the set
	base []float64 // units per profile in the data
	off  []int32   // profile p's counts are cnt[off[p]:off[p+1]]
	cnt  []count   // sorted by value within a profile
}

func newProfiles(t *table, units []int) *profiles {
	p := &profiles{of: make([]int32, len(units)), off: []int32{0}}
	ids := map[string]int32{}
	var vals []int32
	var key []byte
	for i, u := range units {
		vals = vals[:0]
		for _, v := range t.row(u) {
			if v != missing {
				vals = append(vals, v)
			}
		}
		slices.Sort(vals)
		key = key[:0]
		for _, v := range vals {
			key = binary.AppendUvarint(key, uint64(v))
		}
		id, ok := ids[string(key)]
		if !ok {
			id = int32(len(p.base))
			ids[string(key)] = id
			p.base = append(p.base, 0)
			for j, v := range vals {
				if j > 0 && vals[j-1] == v {
					p.cnt[len(p.cnt)-1].n++
				} else {
					p.cnt = append(p.cnt, count{v, 1})
				}
			}
			p.off = append(p.off, int32(len(p.cnt)))
		}
		p.of[i] = id
		p.base[id]++
	}
	return p
}

func (p *profiles) counts(i int) []count { return p.cnt[p.off[i]:p.off[i+1]] }

func (p *profiles) len() int { return len(p.base) }
