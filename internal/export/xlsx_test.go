package export_test

import (
	"archive/zip"
	"bytes"
	"context"
	"fmt"
	"io"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"
	"unicode/utf16"

	"github.com/xuri/excelize/v2"

	"github.com/mhannotator/mha/internal/export"
	"github.com/mhannotator/mha/internal/store"
)

// wantSummaryColumns is the summary's documented header.
var wantSummaryColumns = []string{"annotator", "domain", "ok", "malformed", "error", "blocked", "total", "malformed %"}

// catalogue is the domains' display order (internal/labels), written out.
var catalogue = []string{"urgency", "therapeutic", "intensity", "adjunct", "modality", "redressal"}

// xlsxOut is an XLSX export read back.
type xlsxOut struct {
	n     int
	data  []byte
	x     *excelize.File
	start time.Time // just before Write
	end   time.Time // just after it
}

func writeXLSX(t *testing.T, s store.Store, f store.Filter) xlsxOut {
	t.Helper()
	var buf bytes.Buffer
	start := time.Now()
	n, err := export.Write(context.Background(), s, f, export.XLSX, &buf)
	end := time.Now()
	if err != nil {
		t.Fatal(err)
	}
	x, err := excelize.OpenReader(bytes.NewReader(buf.Bytes()))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { x.Close() })
	return xlsxOut{n: n, data: buf.Bytes(), x: x, start: start, end: end}
}

// raw returns a sheet's rows as stored: numbers and dates unformatted.
func (o xlsxOut) raw(t *testing.T, sheet string) [][]string {
	t.Helper()
	rows, err := o.x.GetRows(sheet, excelize.Options{RawCellValue: true})
	if err != nil {
		t.Fatal(err)
	}
	return rows
}

var contHeader = regexp.MustCompile(`^(.+) \(cont\. (\d+)\)$`)

// domainRows reads a domain sheet: it checks the header (the columns, then continuation columns
// named "<column> (cont. N)", N counting up from 2 per column, in the columns' order) and
// returns the rows as maps from column to value, continuations joined. cont lists the
// continuation columns.
func (o xlsxOut) domainRows(t *testing.T, sheet string) (rows []map[string]string, cont []string) {
	t.Helper()
	raw := o.raw(t, sheet)
	if len(raw) == 0 {
		t.Fatalf("sheet %s is empty", sheet)
	}
	header := raw[0]
	if len(header) < len(wantColumns) || fmt.Sprint(header[:len(wantColumns)]) != fmt.Sprint(wantColumns) {
		t.Fatalf("sheet %s header %q, want it to start with %q", sheet, header, wantColumns)
	}
	base := make([]string, len(header))
	copy(base, wantColumns)
	prevCol, prevN := -1, 1
	for i := len(wantColumns); i < len(header); i++ {
		m := contHeader.FindStringSubmatch(header[i])
		if m == nil || indexOf(wantColumns, m[1]) < 0 {
			t.Fatalf("sheet %s column %d is %q, not a continuation", sheet, i+1, header[i])
		}
		col := indexOf(wantColumns, m[1])
		n, _ := strconv.Atoi(m[2])
		if col == prevCol && n != prevN+1 || col != prevCol && (col < prevCol || n != 2) {
			t.Fatalf("sheet %s continuation columns out of order: %q", sheet, header[len(wantColumns):])
		}
		prevCol, prevN = col, n
		base[i] = m[1]
		cont = append(cont, header[i])
	}
	for r, cells := range raw[1:] {
		row := map[string]string{}
		for i, v := range cells {
			if i >= len(header) {
				t.Fatalf("sheet %s row %d has a cell beyond the header", sheet, r+2)
			}
			if units := len(utf16.Encode([]rune(v))); units > 32767 {
				t.Errorf("sheet %s row %d column %d holds %d UTF-16 units", sheet, r+2, i+1, units)
			}
			row[base[i]] += v
		}
		rows = append(rows, row)
	}
	return rows, cont
}

func indexOf(list []string, s string) int {
	for i, v := range list {
		if v == s {
			return i
		}
	}
	return -1
}

// excelTime reads a raw date-time cell: days since 1899-12-30 (in UTC), for dates after
// February 1900. excelize.ExcelDateToTime would round it to the second.
func excelTime(t *testing.T, raw string) time.Time {
	t.Helper()
	days, err := strconv.ParseFloat(raw, 64)
	if err != nil || days < 61 {
		t.Fatalf("date-time cell %q is not a number of days since 1900", raw)
	}
	return time.Date(1899, 12, 30, 0, 0, 0, 0, time.UTC).Add(time.Duration(days * float64(24*time.Hour)))
}

// check compares an exported row with what was stored, column by column.
func checkRow(t *testing.T, where string, got map[string]string, want store.ExportRow) {
	t.Helper()
	w := fields(want)
	for c, col := range wantColumns {
		if col == "created_at" {
			at := excelTime(t, got[col])
			if d := at.Sub(want.CreatedAt.UTC()); d < -time.Millisecond || d > time.Millisecond {
				t.Errorf("%s created_at = %v, want %v", where, at, want.CreatedAt.UTC())
			}
			continue
		}
		if got[col] != w[c] {
			t.Errorf("%s %s = %.80q (%d bytes), want %.80q (%d bytes)", where, col, got[col], len(got[col]), w[c], len(w[c]))
		}
	}
}

// wantRows is what fx stored that f selects (Annotator, Domain and Status), in export order.
func wantRows(fx fixture, f store.Filter) []store.ExportRow {
	var out []store.ExportRow
	for _, r := range fx.stored {
		if (f.Annotator == "" || r.Annotator == f.Annotator) && (f.Domain == "" || r.Domain == f.Domain) &&
			(f.Status == "" || r.Status == f.Status) {
			out = append(out, r)
		}
	}
	return out
}

// summary is the summary sheet read back.
type summary struct {
	runs       [][]string // rows of counts, raw
	exportedAt time.Time
	filter     string
}

func (o xlsxOut) summary(t *testing.T) summary {
	t.Helper()
	raw := o.raw(t, "summary")
	if len(raw) == 0 || fmt.Sprint(raw[0]) != fmt.Sprint(wantSummaryColumns) {
		t.Fatalf("summary header %q, want %q", raw, wantSummaryColumns)
	}
	var s summary
	i := 1
	for ; i < len(raw) && len(raw[i]) > 0; i++ {
		s.runs = append(s.runs, raw[i])
	}
	if len(raw) != i+3 || len(raw[i+1]) != 2 || raw[i+1][0] != "exported at (UTC)" || len(raw[i+2]) != 2 || raw[i+2][0] != "filter" {
		t.Fatalf("summary ends %q, want an empty row, the export time and the filter", raw[i:])
	}
	s.exportedAt = excelTime(t, raw[i+1][1])
	s.filter = raw[i+2][1]
	return s
}

func TestXLSXRoundTrips(t *testing.T) {
	fx := newFixture(t)
	tests := []struct {
		name       string
		f          store.Filter
		wantFilter string
	}{
		{"everything", store.Filter{}, "none: all annotations"},
		{"one annotator", store.Filter{Annotator: "1"}, `Annotator "1"`},
		{"one domain", store.Filter{Domain: "redressal"}, `Domain "redressal"`},
		{"one run", store.Filter{Annotator: "2", Domain: "urgency"}, `Annotator "2", Domain "urgency"`},
		{"one status", store.Filter{Status: store.StatusMalformed}, `Status "malformed"`},
		// Every stored annotation is of 2025: From selects them all.
		{"a time", store.Filter{Annotator: "1", From: time.Date(2024, 1, 1, 5, 30, 0, 0, time.FixedZone("IST", 5*3600+1800))},
			`Annotator "1", From 2024-01-01T00:00:00Z`},
		{"no match", store.Filter{Annotator: "9"}, `Annotator "9"`},
	}
	for _, tt := range tests {
		t.Run(fmt.Sprintf("gives back what was stored for %s", tt.name), func(t *testing.T) {
			out := writeXLSX(t, fx.s, tt.f)
			want := wantRows(fx, tt.f)
			if out.n != len(want) {
				t.Errorf("Write says %d rows, want %d", out.n, len(want))
			}

			// One sheet per domain with rows, after the summary, in the catalogue's order.
			byDomain := map[string][]store.ExportRow{}
			for _, r := range want {
				byDomain[r.Domain] = append(byDomain[r.Domain], r)
			}
			wantSheets := []string{"summary"}
			for _, d := range catalogue {
				if len(byDomain[d]) > 0 {
					wantSheets = append(wantSheets, d)
				}
			}
			if got := out.x.GetSheetList(); fmt.Sprint(got) != fmt.Sprint(wantSheets) {
				t.Fatalf("sheets %q, want %q", got, wantSheets)
			}

			for _, sheet := range wantSheets[1:] {
				rows, cont := out.domainRows(t, sheet)
				if len(rows) != len(byDomain[sheet]) {
					t.Fatalf("sheet %s has %d rows, want %d", sheet, len(rows), len(byDomain[sheet]))
				}
				long := false
				for i, r := range byDomain[sheet] {
					checkRow(t, fmt.Sprintf("sheet %s row %d", sheet, i+2), rows[i], r)
					long = long || len(r.Text) > 32767
				}
				// The 50 KB text needs a second cell, in text and in the raw reply that quotes it.
				wantCont := ""
				if long {
					wantCont = "[text (cont. 2) raw_reply (cont. 2)]"
				}
				if fmt.Sprint(cont) != wantCont && !(cont == nil && wantCont == "") {
					t.Errorf("sheet %s continuation columns %q, want %s", sheet, cont, wantCont)
				}
			}

			// The summary: a row per (annotator, domain), annotators in export order and domains in
			// the catalogue's.
			s := out.summary(t)
			var wantRuns [][]string
			for _, a := range []string{"1", "2"} {
				for _, d := range catalogue {
					var c store.Counts
					for _, r := range byDomain[d] {
						if r.Annotator != a {
							continue
						}
						switch r.Status {
						case store.StatusOK:
							c.OK++
						case store.StatusMalformed:
							c.Malformed++
						case store.StatusError:
							c.Error++
						case store.StatusBlocked:
							c.Blocked++
						}
					}
					if c.Total() > 0 {
						wantRuns = append(wantRuns, []string{a, d, strconv.Itoa(c.OK), strconv.Itoa(c.Malformed),
							strconv.Itoa(c.Error), strconv.Itoa(c.Blocked), strconv.Itoa(c.Total()),
							strconv.FormatFloat(float64(c.Malformed)/float64(c.Total()), 'g', 6, 64)})
					}
				}
			}
			for _, r := range s.runs {
				if len(r) == 8 {
					pct, err := strconv.ParseFloat(r[7], 64)
					if err != nil {
						t.Fatalf("malformed %% %q is not a number", r[7])
					}
					r[7] = strconv.FormatFloat(pct, 'g', 6, 64)
				}
			}
			if fmt.Sprint(s.runs) != fmt.Sprint(wantRuns) {
				t.Errorf("summary rows\n%q\nwant\n%q", s.runs, wantRuns)
			}
			if s.exportedAt.Before(out.start.UTC().Add(-time.Millisecond)) || s.exportedAt.After(out.end.UTC().Add(time.Millisecond)) {
				t.Errorf("exported at %v, not between %v and %v", s.exportedAt, out.start.UTC(), out.end.UTC())
			}
			if s.filter != tt.wantFilter {
				t.Errorf("filter %q, want %q", s.filter, tt.wantFilter)
			}
		})
	}
}

// TestXLSXCellTypes checks every cell of one row, and the headers' look.
func TestXLSXCellTypes(t *testing.T) {
	fx := newFixture(t)
	out := writeXLSX(t, fx.s, store.Filter{Annotator: "1", Domain: "urgency"})
	want := wantRows(fx, store.Filter{Annotator: "1", Domain: "urgency"})[3] // pos 3: blocked, attempt 0
	x := out.x
	style := func(sheet, cell string) *excelize.Style {
		id, err := x.GetCellStyle(sheet, cell)
		if err != nil {
			t.Fatal(err)
		}
		st, err := x.GetStyle(id)
		if err != nil {
			t.Fatal(err)
		}
		return st
	}
	numeric := map[string]bool{"position": true, "latency_ms": true, "input_tokens": true, "output_tokens": true, "attempt": true}
	w := fields(want)
	for c, col := range wantColumns {
		cell, _ := excelize.CoordinatesToCellName(c+1, 5)
		typ, err := x.GetCellType("urgency", cell)
		if err != nil {
			t.Fatal(err)
		}
		raw, _ := x.GetCellValue("urgency", cell, excelize.Options{RawCellValue: true})
		shown, _ := x.GetCellValue("urgency", cell)
		formula, _ := x.GetCellFormula("urgency", cell)
		if formula != "" {
			t.Errorf("%s %s has a formula %q", col, cell, formula)
		}
		switch {
		case numeric[col]:
			if typ != excelize.CellTypeUnset && typ != excelize.CellTypeNumber || raw != w[c] {
				t.Errorf("%s %s: type %v value %q, want the number %s", col, cell, typ, raw, w[c])
			}
		case col == "created_at":
			if typ != excelize.CellTypeUnset && typ != excelize.CellTypeNumber {
				t.Errorf("created_at is of type %v, not a number", typ)
			}
			if st := style("urgency", cell); st.CustomNumFmt == nil || *st.CustomNumFmt != "yyyy-mm-dd hh:mm:ss.000" {
				t.Errorf("created_at has no date-time format: %+v", st)
			}
			if wantShown := want.CreatedAt.UTC().Format("2006-01-02 15:04:05.000"); shown != wantShown {
				t.Errorf("created_at shows %q, want %q", shown, wantShown)
			}
		default:
			if typ != excelize.CellTypeInlineString || raw != w[c] || shown != w[c] {
				t.Errorf("%s %s: type %v value %.60q shown %.60q, want the text %.60q", col, cell, typ, raw, shown, w[c])
			}
			if st := style("urgency", cell); st.NumFmt != 49 {
				t.Errorf("%s is not formatted as text: NumFmt %d", col, st.NumFmt)
			}
		}
	}
	for _, sheet := range []string{"summary", "urgency"} {
		panes, err := x.GetPanes(sheet)
		if err != nil {
			t.Fatal(err)
		}
		if !panes.Freeze || panes.YSplit != 1 || panes.XSplit != 0 {
			t.Errorf("sheet %s panes %+v, want the first row frozen", sheet, panes)
		}
		if st := style(sheet, "B1"); st.Font == nil || !st.Font.Bold {
			t.Errorf("sheet %s header is not bold", sheet)
		}
	}
	if st := style("summary", "H2"); st.NumFmt != 10 {
		t.Errorf("malformed %% is not formatted as a percentage: %+v", st)
	}
}

// newStore opens an empty store in a temporary directory.
func newStore(t *testing.T) store.Store {
	t.Helper()
	s, err := store.Open(context.Background(), filepath.Join(t.TempDir(), "mha.db"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	return s
}

func mustImport(t *testing.T, s store.Store, texts ...string) {
	t.Helper()
	var samples []store.Sample
	for i, text := range texts {
		samples = append(samples, store.Sample{ID: fmt.Sprintf("S%d", i+1), Text: text})
	}
	if _, err := s.ImportSamples(context.Background(), samples); err != nil {
		t.Fatal(err)
	}
}

func mustUpsert(t *testing.T, s store.Store, as ...store.Annotation) {
	t.Helper()
	for _, a := range as {
		if a.Status == "" {
			a.Status = store.StatusOK
		}
		if err := s.UpsertAnnotation(context.Background(), a); err != nil {
			t.Fatal(err)
		}
	}
}

// longReply is 100 000 characters: a surrogate pair where a cell of 32 767 UTF-16 units would
// end, formula-looking text, control characters and escape lookalikes.
func longReply() string {
	var b strings.Builder
	b.WriteString("=SUM(A1:A9) ")
	b.WriteString(strings.Repeat("x", 32767-12-1))
	n := 32767 - 1
	for i := 0; n < 100_000; i++ {
		for _, r := range []rune{'🙂', 'ü', '\x0b', '_', 'x', '0', '0', '4', '1', '_', '\n', 'a', '\x00'} {
			if n == 100_000 {
				break
			}
			b.WriteRune(r)
			n++
		}
	}
	return b.String()
}

func TestXLSXKeepsLongValuesWhole(t *testing.T) {
	s := newStore(t)
	mustImport(t, s, "short", "also short")
	reply := longReply()
	if n := len([]rune(reply)); n != 100_000 {
		t.Fatalf("the reply has %d characters", n)
	}
	mustUpsert(t, s,
		store.Annotation{Annotator: "1", Domain: "urgency", SampleID: "S1", Label: "LEVEL_1", RawReply: "brief"},
		store.Annotation{Annotator: "1", Domain: "urgency", SampleID: "S2", Label: "LEVEL_2", RawReply: reply},
		store.Annotation{Annotator: "1", Domain: "therapeutic", SampleID: "S2", Label: "TA-1", RawReply: "brief"},
	)
	out := writeXLSX(t, s, store.Filter{})
	if got := out.x.GetSheetList(); fmt.Sprint(got) != "[summary urgency therapeutic]" {
		t.Fatalf("sheets %q", got)
	}
	rows, cont := out.domainRows(t, "urgency")
	if len(rows) != 2 {
		t.Fatalf("%d rows", len(rows))
	}
	if got := rows[1]["raw_reply"]; got != reply {
		t.Errorf("the raw reply came back with %d characters, want %d; differs from character %d",
			len([]rune(got)), len([]rune(reply)), commonPrefix(got, reply))
	}
	if rows[0]["raw_reply"] != "brief" || rows[1]["text"] != "also short" || rows[1]["label"] != "LEVEL_2" {
		t.Errorf("rows %.100q", rows)
	}
	if len(cont) < 3 || cont[0] != "raw_reply (cont. 2)" || cont[len(cont)-1] != fmt.Sprintf("raw_reply (cont. %d)", len(cont)+1) {
		t.Errorf("continuation columns %q", cont)
	}
	// Only where needed: the therapeutic sheet has none.
	if _, cont := out.domainRows(t, "therapeutic"); cont != nil {
		t.Errorf("therapeutic has continuation columns %q", cont)
	}
	// The continuation starts a new cell, it is not a formula either.
	for c := len(wantColumns) + 1; c <= len(wantColumns)+len(cont); c++ {
		cell, _ := excelize.CoordinatesToCellName(c, 3)
		if typ, _ := out.x.GetCellType("urgency", cell); typ != excelize.CellTypeInlineString {
			t.Errorf("%s is of type %v", cell, typ)
		}
	}
}

func commonPrefix(a, b string) int {
	ra, rb := []rune(a), []rune(b)
	i := 0
	for i < len(ra) && i < len(rb) && ra[i] == rb[i] {
		i++
	}
	return i
}

func TestXLSXKeepsFormulasAndNumbersAsText(t *testing.T) {
	texts := []string{
		"=1+1", "0012", "+49 30 1234", "-2", "@SUM(A1)", "TRUE", "1E5", " 7 ", "=HYPERLINK(\"https://example.com\",\"x\")",
		"=cmd|' /C calc'!A0", "\tTab first", "\x0b=1+1", "_x003D_1+1",
	}
	s := newStore(t)
	mustImport(t, s, texts...)
	for i, text := range texts {
		mustUpsert(t, s, store.Annotation{Annotator: text, Domain: "urgency", SampleID: fmt.Sprintf("S%d", i+1),
			Label: text, RawReply: text, Error: text, Model: text, LatencyMS: 1})
	}
	out := writeXLSX(t, s, store.Filter{})
	rows, _ := out.domainRows(t, "urgency")
	if len(rows) != len(texts) {
		t.Fatalf("%d rows", len(rows))
	}
	got := map[string]bool{}
	for i, row := range rows {
		for _, col := range []string{"annotator", "text", "label", "raw_reply", "error", "model"} {
			if row[col] != row["text"] {
				t.Errorf("row %d %s = %q, text %q", i+2, col, row[col], row["text"])
			}
			c := indexOf(wantColumns, col) + 1
			cell, _ := excelize.CoordinatesToCellName(c, i+2)
			typ, _ := out.x.GetCellType("urgency", cell)
			formula, _ := out.x.GetCellFormula("urgency", cell)
			shown, _ := out.x.GetCellValue("urgency", cell)
			if typ != excelize.CellTypeInlineString || formula != "" || shown != row["text"] {
				t.Errorf("%s: type %v, formula %q, shows %q; want the text %q", cell, typ, formula, shown, row["text"])
			}
		}
		got[row["text"]] = true
	}
	for _, text := range texts {
		if !got[text] {
			t.Errorf("%q did not come back", text)
		}
	}
	// The summary names the annotators as text too.
	for i, r := range out.summary(t).runs {
		if !got[r[0]] {
			t.Errorf("summary row %d annotator %q", i+2, r[0])
		}
	}
	// No cell of any sheet is a formula.
	zr, err := zip.NewReader(bytes.NewReader(out.data), int64(len(out.data)))
	if err != nil {
		t.Fatal(err)
	}
	for _, zf := range zr.File {
		if !strings.HasPrefix(zf.Name, "xl/worksheets/") {
			continue
		}
		rc, err := zf.Open()
		if err != nil {
			t.Fatal(err)
		}
		xml, err := io.ReadAll(rc)
		rc.Close()
		if err != nil {
			t.Fatal(err)
		}
		if bytes.Contains(xml, []byte("<f>")) || bytes.Contains(xml, []byte("<f ")) {
			t.Errorf("%s holds a formula", zf.Name)
		}
	}
}

func TestXLSXContinuesFullSheets(t *testing.T) {
	export.SetXLSXLimits(t, 0, 3) // a header and two rows
	fx := newFixture(t)
	out := writeXLSX(t, fx.s, store.Filter{})
	want := wantRows(fx, store.Filter{})
	byDomain := map[string][]store.ExportRow{}
	for _, r := range want {
		byDomain[r.Domain] = append(byDomain[r.Domain], r)
	}
	wantSheets := []string{"summary"}
	for _, d := range []string{"urgency", "redressal"} {
		wantSheets = append(wantSheets, d)
		for k := 2; k <= (len(byDomain[d])+1)/2; k++ {
			wantSheets = append(wantSheets, fmt.Sprintf("%s (%d)", d, k))
		}
	}
	if got := out.x.GetSheetList(); fmt.Sprint(got) != fmt.Sprint(wantSheets) {
		t.Fatalf("sheets %q, want %q", got, wantSheets)
	}
	got := map[string][]map[string]string{}
	for _, sheet := range wantSheets[1:] {
		rows, _ := out.domainRows(t, sheet)
		if len(rows) == 0 || len(rows) > 2 {
			t.Errorf("sheet %s has %d rows", sheet, len(rows))
		}
		d := strings.Fields(sheet)[0]
		got[d] = append(got[d], rows...)
	}
	for d, rows := range byDomain {
		if len(got[d]) != len(rows) {
			t.Fatalf("%s: %d rows, want %d", d, len(got[d]), len(rows))
		}
		for i, r := range rows {
			checkRow(t, fmt.Sprintf("%s row %d", d, i+1), got[d][i], r)
		}
	}
	if out.n != len(want) {
		t.Errorf("Write says %d rows, want %d", out.n, len(want))
	}
}

// growingStore makes one raw reply longer on each of the first grow reads, as if it were
// annotated again during the export.
type growingStore struct {
	store.Store
	grow, reads int
}

func (g *growingStore) Export(ctx context.Context, f store.Filter, fn func(store.ExportRow) error) error {
	g.reads++
	return g.Store.Export(ctx, f, func(r store.ExportRow) error {
		if g.reads <= g.grow && r.SampleID == "S2" {
			r.RawReply = strings.Repeat("y", 40_000*g.reads)
		}
		return fn(r)
	})
}

func TestXLSXReadsAgainWhenValuesOutgrowTheirCells(t *testing.T) {
	s := newStore(t)
	mustImport(t, s, "one", "two")
	mustUpsert(t, s,
		store.Annotation{Annotator: "1", Domain: "urgency", SampleID: "S1", RawReply: "r1"},
		store.Annotation{Annotator: "1", Domain: "urgency", SampleID: "S2", RawReply: "r2"},
	)
	t.Run("until they fit", func(t *testing.T) {
		g := &growingStore{Store: s, grow: 2}
		out := writeXLSX(t, g, store.Filter{})
		if g.reads != 3 {
			t.Errorf("%d reads, want 3", g.reads)
		}
		rows, cont := out.domainRows(t, "urgency")
		// The third read found r2 again; the columns the second one needed stay, empty.
		if len(rows) != 2 || rows[1]["raw_reply"] != "r2" || fmt.Sprint(cont) != "[raw_reply (cont. 2) raw_reply (cont. 3)]" {
			t.Errorf("rows %q, continuation columns %q", rows, cont)
		}
	})
	t.Run("not forever", func(t *testing.T) {
		g := &growingStore{Store: s, grow: 100}
		var buf bytes.Buffer
		n, err := export.Write(context.Background(), g, store.Filter{}, export.XLSX, &buf)
		if err == nil || !strings.Contains(err.Error(), "try again") || n != 0 || buf.Len() != 0 {
			t.Errorf("got %d rows, %d bytes, %v; want an error and nothing written", n, buf.Len(), err)
		}
		if g.reads != 4 {
			t.Errorf("%d reads, want 4", g.reads)
		}
	})
}

func TestXLSXStopsWhenCancelled(t *testing.T) {
	fx := newFixture(t)
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	var buf bytes.Buffer
	if _, err := export.Write(ctx, fx.s, store.Filter{}, export.XLSX, &buf); err == nil || buf.Len() != 0 {
		t.Errorf("err = %v, wrote %d bytes; want an error and nothing written", err, buf.Len())
	}
}

// failingWriter fails after limit bytes.
type failingWriter struct{ limit int }

func (w *failingWriter) Write(p []byte) (int, error) {
	if len(p) > w.limit {
		n := w.limit
		w.limit = 0
		return n, io.ErrShortWrite
	}
	w.limit -= len(p)
	return len(p), nil
}

func TestXLSXReportsAFailedWrite(t *testing.T) {
	fx := newFixture(t)
	for _, limit := range []int{0, 100, 5000} {
		if _, err := export.Write(context.Background(), fx.s, store.Filter{}, export.XLSX, &failingWriter{limit: limit}); err == nil {
			t.Errorf("a write failing after %d bytes succeeded", limit)
		}
	}
}

func TestXLSXDateTimes(t *testing.T) {
	s := newStore(t)
	mustImport(t, s, "new", "old")
	at := time.Date(2025, 6, 7, 8, 9, 10, 123456789, time.FixedZone("IST", 5*3600+1800))
	old := time.Date(1850, 3, 4, 5, 6, 7, 8, time.UTC) // before Excel's dates begin
	mustUpsert(t, s,
		store.Annotation{Annotator: "1", Domain: "urgency", SampleID: "S1", CreatedAt: at},
		store.Annotation{Annotator: "1", Domain: "urgency", SampleID: "S2", CreatedAt: old})
	out := writeXLSX(t, s, store.Filter{})

	raw, _ := out.x.GetCellValue("urgency", "R2", excelize.Options{RawCellValue: true})
	if got := excelTime(t, raw); got.Sub(at).Abs() > 5*time.Microsecond {
		t.Errorf("created_at %v, want %v", got, at.UTC())
	}
	// Shown with the date-time format, in UTC. (excelize's formatter drops the milliseconds
	// that Excel shows: it rounds dates to the second.)
	if shown, _ := out.x.GetCellValue("urgency", "R2"); !strings.HasPrefix(shown, "2025-06-07 02:39:10.") {
		t.Errorf("created_at shows %q, want 2025-06-07 02:39:10.123", shown)
	}
	got, err := out.x.GetCellValue("urgency", "R3")
	if err != nil || got != old.Format(time.RFC3339Nano) {
		t.Errorf("created_at %q, %v; want the text %q", got, err, old.Format(time.RFC3339Nano))
	}
}
