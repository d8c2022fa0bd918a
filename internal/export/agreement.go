package export

// The agreement workbook: a summary sheet (each domain's headline figure), an agreement sheet
// (every figure with its interval, and the pairwise κ matrix) and a sheet per coded domain with
// each sample's full text, every annotator's label, the consensus and the agreement share. It is
// built in memory: it holds one row per sample and domain, not every annotation.
//
// A text longer than a cell holds continues in columns "text (cont. 2)", ... after the others,
// as in the annotations workbook. Characters XML cannot hold become U+FFFD here.

import (
	"context"
	"fmt"
	"io"
	"strings"

	"github.com/xuri/excelize/v2"

	"github.com/mhannotator/mha/internal/agreement"
	"github.com/mhannotator/mha/internal/analysis"
	"github.com/mhannotator/mha/internal/labels"
	"github.com/mhannotator/mha/internal/store"
)

// AgreementBook is what the agreement workbook shows.
type AgreementBook struct {
	Domains []analysis.Agreement
	// Samples holds each coded domain's consensus samples; a domain without any gets no sheet.
	Samples map[labels.Domain][]analysis.Sample
}

// ReadAgreementBook gathers every domain's figures and consensus from a.
func ReadAgreementBook(ctx context.Context, a *analysis.Analyzer) (AgreementBook, error) {
	b := AgreementBook{Samples: map[labels.Domain][]analysis.Sample{}}
	var err error
	if b.Domains, err = a.Agreement(ctx, labels.Domains); err != nil {
		return b, err
	}
	for _, d := range b.Domains {
		if d.Report == nil || d.Domain == labels.Redressal {
			continue
		}
		if b.Samples[d.Domain], err = a.Consensus(ctx, d.Domain); err != nil {
			return b, err
		}
	}
	return b, nil
}

// WriteAgreementXLSX writes the workbook to w.
func WriteAgreementXLSX(w io.Writer, b AgreementBook) error {
	f := excelize.NewFile()
	defer f.Close()
	bold, err := f.NewStyle(&excelize.Style{Font: &excelize.Font{Bold: true}})
	if err != nil {
		return err
	}
	s := &sheetWriter{f: f, bold: bold}
	if err := f.SetSheetName("Sheet1", summarySheet); err != nil {
		return err
	}
	s.sheet, s.row = summarySheet, 0
	s.header("domain", "scale", "headline", "value", "95% low", "95% high", "samples labelled", "labelled by 2+", "labelled by all", "annotators", "note")
	for _, d := range b.Domains {
		if d.Report == nil {
			s.line(string(d.Domain), "", "", "", "", "", "", "", "", "", d.Error)
			continue
		}
		r := d.Report
		c := r.Coverage
		cells := []any{string(d.Domain), r.Scale, "", "", "", "", c.Samples, c.Pairable, c.Complete, strings.Join(r.Annotators, ", "), r.Note}
		if r.Headline != nil {
			cells[2] = r.Headline.Statistic
			cells[3], cells[4], cells[5] = figureCells(*r.Headline)
		}
		s.line(cells...)
	}

	if err := s.newSheet("agreement"); err != nil {
		return err
	}
	for _, d := range b.Domains {
		if d.Report == nil {
			continue
		}
		r := d.Report
		s.header(string(d.Domain), "value", "95% low", "95% high", "samples", "reason")
		for _, fig := range []*agreement.Figure{r.AlphaOrdinal, r.AlphaMASI, r.AlphaJaccard, r.AlphaNominal, r.Fleiss} {
			if fig != nil {
				s.figure(fig.Statistic, *fig)
			}
		}
		if r.Cohen != nil {
			s.figure(r.Cohen.Light.Statistic, r.Cohen.Light)
			s.header(append([]string{"Cohen's κ"}, r.Cohen.Annotators...)...)
			for _, a := range r.Cohen.Annotators {
				cells := []any{a}
				for _, o := range r.Cohen.Annotators {
					cells = append(cells, kappaCell(r.Cohen, a, o))
				}
				s.line(cells...)
			}
		}
		for _, cf := range r.Codes {
			s.figure("binary α "+cf.Code, cf.Alpha)
		}
		for _, p := range r.Points {
			s.line("points of "+p.Annotator, p.MeanPoints, "", "", p.Labels, fmt.Sprintf("mean; median %.1f", p.MedianPoints))
		}
		s.row++ // an empty row between domains
	}

	for _, d := range labels.Domains {
		samples := b.Samples[d]
		if len(samples) == 0 {
			continue
		}
		if err := s.newSheet(string(d)); err != nil {
			return err
		}
		s.consensusSheet(annotatorsOf(b.Domains, d), samples)
	}
	if s.err != nil {
		return s.err
	}
	return f.Write(w)
}

// sheetWriter writes rows one after another, keeping the first error.
type sheetWriter struct {
	f     *excelize.File
	bold  int
	sheet string
	row   int
	err   error
}

func (s *sheetWriter) newSheet(name string) error {
	if _, err := s.f.NewSheet(name); err != nil {
		return err
	}
	s.sheet, s.row = name, 0
	return nil
}

func (s *sheetWriter) line(cells ...any) {
	s.row++
	if s.err != nil {
		return
	}
	cell, err := excelize.CoordinatesToCellName(1, s.row)
	if err == nil {
		err = s.f.SetSheetRow(s.sheet, cell, &cells)
	}
	s.err = err
}

func (s *sheetWriter) header(names ...string) {
	cells := make([]any, len(names))
	for i, n := range names {
		cells[i] = n
	}
	s.line(cells...)
	if s.err != nil {
		return
	}
	end, err := excelize.CoordinatesToCellName(max(len(names), 1), s.row)
	if err == nil {
		err = s.f.SetCellStyle(s.sheet, fmt.Sprintf("A%d", s.row), end, s.bold)
	}
	s.err = err
}

func (s *sheetWriter) figure(name string, fig agreement.Figure) {
	v, lo, hi := figureCells(fig)
	s.line(name, v, lo, hi, fig.Units, fig.Reason)
}

// figureCells are a figure's value and interval; empty when undefined or absent.
func figureCells(fig agreement.Figure) (value, low, high any) {
	value, low, high = "", "", ""
	if fig.Defined {
		value = fig.Value
	}
	if fig.CI != nil {
		low, high = fig.CI.Low, fig.CI.High
	}
	return value, low, high
}

func kappaCell(pw *agreement.Pairwise, a, b string) any {
	if a == b {
		return 1.0
	}
	for _, p := range pw.Pairs {
		if (p.A == a && p.B == b) || (p.A == b && p.B == a) {
			if p.Kappa.Defined {
				return p.Kappa.Value
			}
			return ""
		}
	}
	return ""
}

func (s *sheetWriter) consensusSheet(annotators []string, samples []analysis.Sample) {
	parts := make([][]string, len(samples))
	extra := 0
	for i, sm := range samples {
		parts[i] = cellParts(strings.Map(xmlSafe, sm.Text))
		extra = max(extra, len(parts[i])-1)
	}
	header := []string{"sample_id", "text"}
	for _, a := range annotators {
		header = append(header, "label_"+a)
	}
	header = append(header, "consensus", "tie", "agreement")
	for n := range extra {
		header = append(header, fmt.Sprintf("text (cont. %d)", n+2))
	}
	s.header(header...)
	for i, sm := range samples {
		by := map[string]string{}
		for _, r := range sm.Replies {
			by[r.Annotator] = r.Label
			if r.Status != store.StatusOK {
				by[r.Annotator] = "(" + r.Status + ")"
			}
		}
		text := ""
		if len(parts[i]) > 0 {
			text = parts[i][0]
		}
		cells := []any{sm.SampleID, text}
		for _, a := range annotators {
			cells = append(cells, by[a])
		}
		consensus := sm.Consensus
		if sm.Tie {
			consensus = strings.Join(sm.Tied, " | ")
		}
		cells = append(cells, consensus, sm.Tie, sm.Agreement)
		for n := 1; n < len(parts[i]); n++ {
			cells = append(cells, parts[i][n])
		}
		s.line(cells...)
	}
}

// xmlSafe replaces the characters an XML cell cannot hold.
func xmlSafe(r rune) rune {
	if needsMark(r) {
		return '\uFFFD'
	}
	return r
}

func annotatorsOf(domains []analysis.Agreement, d labels.Domain) []string {
	for _, a := range domains {
		if a.Domain == d && a.Report != nil {
			return a.Report.Annotators
		}
	}
	return nil
}
