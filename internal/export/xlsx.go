package export

// The XLSX workbook
//
// The first sheet, "summary", has a bold frozen header and one row per (annotator, domain):
// counts by status (ok, malformed, error, blocked), total and malformed % (malformed / total, a
// number shown as a percentage); then, after an empty row, the export time (UTC) and the filter.
// One sheet per domain with rows follows, named after the domain, in the order of
// labels.Domains (a domain the catalogue does not know comes last). Each has a bold frozen header
// of columns, then the domain's annotations in the order Store.Export gives them.
//
// Cells: position, latency_ms, the token counts and attempt are number cells; created_at is a
// date-time cell in UTC shown to the millisecond (an Excel date keeps about a microsecond; the
// exact value is in JSONL and CSV; a time before 1900, which Excel cannot show as a date, is
// RFC 3339 text). Every text is an inline string cell with the Text number format: it is never a
// formula, so "=1+1", "0012" or "TRUE" stay literal text, and stay text when edited in Excel.
//
// No text is cut or changed, though Excel limits what a cell and a sheet hold:
//
//   - A cell holds at most 32 767 characters (UTF-16 code units). A longer value continues in
//     extra columns named "<column> (cont. 2)", "<column> (cont. 3)", ...: the value is its
//     column's cell followed by its continuation cells, concatenated in order. Continuation
//     columns come after the standard columns, so these keep their places, and a domain's
//     sheets have them only when one of its values needs them. A split never falls inside a
//     surrogate pair. Since they must be in the header, written before the first row, and which
//     are needed is known only from the rows, an export first assumes none; when a value needs
//     more, that attempt only measures the rest, and the export is read and written again with
//     the columns now known (again if values grew meanwhile, up to maxAttempts).
//   - A sheet holds at most 1 048 576 rows. A domain with more continues on sheets named
//     "<domain> (2)", "<domain> (3)", ... with the same header; so it does before a sheet's XML
//     nears 4 GiB, past which Excel wants ZIP64 headers that a streamed zip does not have.
//   - XML 1.0 cannot hold the control characters other than tab, line feed and carriage
//     return, nor U+FFFE and U+FFFF; excelize would write them as U+FFFD. They are written as
//     the spreadsheet escape _xHHHH_ that Excel and excelize decode (see escapeMarks). An
//     invalid UTF-8 byte becomes U+FFFD, as in JSONL (the dataset import refuses them).
//
// Memory stays flat: rows go straight into excelize StreamWriters, one per sheet being written,
// each of which moves to a temporary file past 16 MiB; and the finished workbook is zipped
// straight into w rather than into a buffer first.

import (
	"archive/zip"
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"reflect"
	"sort"
	"strconv"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/xuri/excelize/v2"

	"github.com/mhannotator/mha/internal/labels"
	"github.com/mhannotator/mha/internal/store"
)

const (
	summarySheet = "summary"
	// maxAttempts bounds how often an export is read again because values outgrew the
	// continuation columns of the attempt before.
	maxAttempts = 4
	// dateTimeFormat shows created_at and the export time.
	dateTimeFormat = "yyyy-mm-dd hh:mm:ss.000"
	// maxSheetNameBase leaves room for " (NNNN)" in Excel's 31-character sheet names.
	maxSheetNameBase = excelize.MaxSheetNameLength - 7
)

// Excel's limits; variables so that tests can lower them.
var (
	maxCellUnits        = excelize.TotalCellChars // UTF-16 code units in a cell
	maxSheetRows        = excelize.TotalRows      // rows in a sheet, the header included
	maxSheetBytes int64 = 3 << 30                 // estimated XML of a sheet, below 4 GiB
)

// summaryColumns head the summary's rows.
var summaryColumns = []string{
	"annotator", "domain", store.StatusOK, store.StatusMalformed, store.StatusError,
	store.StatusBlocked, "total", "malformed %",
}

// columnWidths are the widths of columns on a domain sheet, in Excel's character units.
var columnWidths = map[string]float64{
	"annotator": 10, "domain": 12, "sample_id": 14, "position": 9, "text": 60, "label": 18,
	"status": 10, "raw_reply": 60, "parse_error": 28, "validity_error": 28, "error": 28,
	"model": 18, "prompt_hash": 16, "latency_ms": 11, "input_tokens": 12, "output_tokens": 13,
	"attempt": 8, "created_at": 24,
}

// cellValues is r as cell values in the order of columns: a string for a text column, an
// integer for a number and a time.Time for created_at.
func cellValues(r store.ExportRow) []any {
	return []any{
		r.Annotator, r.Domain, r.SampleID, r.Position, r.Text, r.Label, r.Status,
		r.RawReply, r.ParseError, r.ValidityError, r.Error, r.Model, r.PromptHash,
		r.LatencyMS, r.InputTokens, r.OutputTokens, r.Attempt, r.CreatedAt.UTC(),
	}
}

// writeXLSX writes the workbook described at the top of this file.
func writeXLSX(ctx context.Context, s store.Store, f store.Filter, w io.Writer) (int, error) {
	need := map[string][]int{}
	for attempt := 1; ; attempt++ {
		exportedAt := time.Now().UTC()
		b, err := newBook(need)
		if err != nil {
			return 0, err
		}
		err = s.Export(ctx, f, func(r store.ExportRow) error {
			// The store may not look at ctx between rows; a cancelled export must stop.
			if err := ctx.Err(); err != nil {
				return err
			}
			return b.add(r)
		})
		if err == nil && !b.grown {
			err = b.finish(f, exportedAt, w)
		}
		if cerr := b.f.Close(); err == nil {
			err = cerr // the temporary files of the stream writers
		}
		switch {
		case err != nil:
			return 0, err
		case !b.grown:
			return b.n, nil
		case attempt == maxAttempts:
			return 0, fmt.Errorf("xlsx: values outgrew their cells on each of %d reads, as annotations "+
				"changed during the export; try again", maxAttempts)
		}
	}
}

// styles are the cell styles of a workbook.
type styles struct {
	header, text, dateTime, percent int
}

// book is one attempt at the workbook.
type book struct {
	f     *excelize.File
	style styles
	// need is, per domain, how many cells each column takes (absent: one each). add raises it
	// when a value needs more, which voids this attempt (grown) but tells the next one.
	need    map[string][]int
	grown   bool
	domains map[string]*domainSheets
	names   map[string]bool // sheet names taken, in lower case
	runs    map[[2]string]*run
	order   []*run // runs by first row
	n       int    // annotations written
}

// domainSheets are the sheets of one domain: more than one when it outgrows a sheet.
type domainSheets struct {
	base    string   // the first sheet's name
	header  []string // columns, then the continuation columns
	contCol []int    // per column, the index of its first continuation cell
	names   []string // the sheets written, in order
	sw      *excelize.StreamWriter
	rows    int   // rows on the current sheet, header included
	bytes   int64 // the current sheet's estimated XML size
}

// run counts the rows of one (annotator, domain) for the summary.
type run struct {
	annotator, domain string
	counts            store.Counts
	total             int
}

func newBook(need map[string][]int) (*book, error) {
	f := excelize.NewFile()
	b := &book{f: f, need: need, domains: map[string]*domainSheets{}, names: map[string]bool{},
		runs: map[[2]string]*run{}}
	err := f.SetSheetName("Sheet1", summarySheet)
	if err == nil {
		b.style.header, err = f.NewStyle(&excelize.Style{Font: &excelize.Font{Bold: true}, NumFmt: 49})
	}
	if err == nil {
		b.style.text, err = f.NewStyle(&excelize.Style{NumFmt: 49}) // "@": Text
	}
	if err == nil {
		format := dateTimeFormat
		b.style.dateTime, err = f.NewStyle(&excelize.Style{CustomNumFmt: &format})
	}
	if err == nil {
		b.style.percent, err = f.NewStyle(&excelize.Style{NumFmt: 10}) // 0.00%
	}
	if err != nil {
		_ = f.Close()
		return nil, fmt.Errorf("xlsx: %w", err)
	}
	b.names[summarySheet] = true
	b.names["history"] = true // reserved by Excel
	return b, nil
}

// add writes r to its domain's sheet; or, once a value has outgrown its cells, only measures r.
func (b *book) add(r store.ExportRow) error {
	values := cellValues(r)
	parts := make([][]string, len(values))
	for i, v := range values {
		s, ok := v.(string)
		if !ok {
			continue
		}
		parts[i] = cellParts(s)
		if need := b.need[r.Domain]; len(parts[i]) > 1 && (need == nil || len(parts[i]) > need[i]) {
			if need == nil {
				need = make([]int, len(columns))
				for c := range need {
					need[c] = 1
				}
				b.need[r.Domain] = need
			}
			need[i] = len(parts[i])
			b.grown = true
		}
	}
	if b.grown {
		return nil
	}

	ds, err := b.sheets(r.Domain)
	if err != nil {
		return err
	}
	cells := make([]any, len(ds.header))
	size := int64(0)
	for i, v := range values {
		switch v := v.(type) {
		case string:
			for k, p := range parts[i] {
				c := i
				if k > 0 {
					c = ds.contCol[i] + k - 1
				}
				cells[c] = excelize.Cell{StyleID: b.style.text, Value: p}
				size += xmlSize(p)
			}
		case time.Time:
			cells[i] = excelize.Cell{StyleID: b.style.dateTime, Value: v}
		default:
			cells[i] = v
		}
	}
	size += int64(len(cells)) * 48 // the markup around each cell, roughly
	if err := b.writeRow(ds, cells, size); err != nil {
		return err
	}
	b.count(r)
	return nil
}

// sheets returns the sheets of domain, starting the first one at the domain's first row.
func (b *book) sheets(domain string) (*domainSheets, error) {
	if ds := b.domains[domain]; ds != nil {
		return ds, nil
	}
	ds := &domainSheets{base: b.claim(sheetName(domain)),
		header: append([]string(nil), columns...), contCol: make([]int, len(columns))}
	for i, name := range columns {
		ds.contCol[i] = len(ds.header)
		if need := b.need[domain]; need != nil {
			for k := 2; k <= need[i]; k++ {
				ds.header = append(ds.header, fmt.Sprintf("%s (cont. %d)", name, k))
			}
		}
	}
	if err := b.startSheet(ds, ds.base); err != nil {
		return nil, err
	}
	b.domains[domain] = ds
	return ds, nil
}

// startSheet adds a sheet named name to ds and writes its header.
func (b *book) startSheet(ds *domainSheets, name string) error {
	if _, err := b.f.NewSheet(name); err != nil {
		return fmt.Errorf("xlsx: sheet %q: %w", name, err)
	}
	sw, err := b.f.NewStreamWriter(name)
	if err != nil {
		return fmt.Errorf("xlsx: sheet %q: %w", name, err)
	}
	for i, h := range ds.header {
		width, ok := columnWidths[h]
		if !ok {
			width = 28 // a continuation column
		}
		if err := sw.SetColWidth(i+1, i+1, width); err != nil {
			return fmt.Errorf("xlsx: sheet %q: %w", name, err)
		}
	}
	if err := b.writeHeader(sw, ds.header); err != nil {
		return fmt.Errorf("xlsx: sheet %q: %w", name, err)
	}
	ds.names = append(ds.names, name)
	ds.sw, ds.rows, ds.bytes = sw, 1, 0
	return nil
}

// writeHeader freezes the first row of sw and writes header there in bold.
func (b *book) writeHeader(sw *excelize.StreamWriter, header []string) error {
	err := sw.SetPanes(&excelize.Panes{Freeze: true, YSplit: 1, TopLeftCell: "A2", ActivePane: "bottomLeft",
		Selection: []excelize.Selection{{SQRef: "A2", ActiveCell: "A2", Pane: "bottomLeft"}}})
	if err != nil {
		return err
	}
	cells := make([]any, len(header))
	for i, h := range header {
		cells[i] = excelize.Cell{StyleID: b.style.header, Value: h}
	}
	return sw.SetRow("A1", cells)
}

// writeRow writes cells as the next row of ds, on a new sheet when the current one is full.
func (b *book) writeRow(ds *domainSheets, cells []any, size int64) error {
	if ds.rows >= maxSheetRows || (ds.rows > 1 && ds.bytes+size > maxSheetBytes) {
		if err := ds.sw.Flush(); err != nil {
			return fmt.Errorf("xlsx: sheet %q: %w", ds.names[len(ds.names)-1], err)
		}
		name := b.claim(fmt.Sprintf("%s (%d)", ds.base, len(ds.names)+1))
		if err := b.startSheet(ds, name); err != nil {
			return err
		}
	}
	ds.rows++
	ds.bytes += size
	cell, err := excelize.CoordinatesToCellName(1, ds.rows)
	if err == nil {
		err = ds.sw.SetRow(cell, cells)
	}
	if err != nil {
		return fmt.Errorf("xlsx: sheet %q row %d: %w", ds.names[len(ds.names)-1], ds.rows, err)
	}
	b.n++
	return nil
}

func (b *book) count(r store.ExportRow) {
	key := [2]string{r.Annotator, r.Domain}
	ru := b.runs[key]
	if ru == nil {
		ru = &run{annotator: r.Annotator, domain: r.Domain}
		b.runs[key] = ru
		b.order = append(b.order, ru)
	}
	switch r.Status {
	case store.StatusOK:
		ru.counts.OK++
	case store.StatusMalformed:
		ru.counts.Malformed++
	case store.StatusError:
		ru.counts.Error++
	case store.StatusBlocked:
		ru.counts.Blocked++
	}
	ru.total++ // any status
}

// finish ends the domain sheets, writes the summary, puts the sheets in order and zips the
// workbook into w.
func (b *book) finish(f store.Filter, exportedAt time.Time, w io.Writer) error {
	for _, ds := range b.domains {
		if err := ds.sw.Flush(); err != nil {
			return fmt.Errorf("xlsx: sheet %q: %w", ds.names[len(ds.names)-1], err)
		}
	}
	if err := b.writeSummary(f, exportedAt); err != nil {
		return fmt.Errorf("xlsx: sheet %s: %w", summarySheet, err)
	}
	if err := b.orderSheets(); err != nil {
		return fmt.Errorf("xlsx: %w", err)
	}
	return b.writeTo(w)
}

func (b *book) writeSummary(f store.Filter, exportedAt time.Time) error {
	sw, err := b.f.NewStreamWriter(summarySheet)
	if err != nil {
		return err
	}
	for i, width := range []float64{18, 12, 10, 10, 10, 10, 10, 12} {
		if err := sw.SetColWidth(i+1, i+1, width); err != nil {
			return err
		}
	}
	if err := b.writeHeader(sw, summaryColumns); err != nil {
		return err
	}
	runs := append([]*run(nil), b.order...)
	annotatorRank := map[string]int{}
	for _, ru := range b.order {
		if _, ok := annotatorRank[ru.annotator]; !ok {
			annotatorRank[ru.annotator] = len(annotatorRank)
		}
	}
	sort.SliceStable(runs, func(i, j int) bool {
		a, c := runs[i], runs[j]
		if a.annotator != c.annotator {
			return annotatorRank[a.annotator] < annotatorRank[c.annotator]
		}
		return domainLess(a.domain, c.domain)
	})
	row := 1
	next := func(values ...any) error {
		row++
		var cells []any
		for _, v := range values {
			switch v := v.(type) {
			case string:
				for _, p := range cellParts(v) {
					cells = append(cells, excelize.Cell{StyleID: b.style.text, Value: p})
				}
			case float64:
				cells = append(cells, excelize.Cell{StyleID: b.style.percent, Value: v})
			case time.Time:
				cells = append(cells, excelize.Cell{StyleID: b.style.dateTime, Value: v})
			default:
				cells = append(cells, v)
			}
		}
		cell, err := excelize.CoordinatesToCellName(1, row)
		if err != nil {
			return err
		}
		return sw.SetRow(cell, cells)
	}
	for _, ru := range runs {
		c := ru.counts
		if err := next(ru.annotator, ru.domain, c.OK, c.Malformed, c.Error, c.Blocked, ru.total,
			float64(c.Malformed)/float64(ru.total)); err != nil {
			return err
		}
	}
	row++ // an empty row between the counts and how they were made
	if err := next("exported at (UTC)", exportedAt); err != nil {
		return err
	}
	if err := next("filter", describeFilter(f)); err != nil {
		return err
	}
	return sw.Flush()
}

// describeFilter lists the fields of f that are set, as Go names them, such as
// `Annotator "1", Domain "urgency"`. It reads the fields by reflection so that a field added
// to store.Filter shows without a change here.
func describeFilter(f store.Filter) string {
	v := reflect.ValueOf(f)
	var set []string
	for i := 0; i < v.NumField(); i++ {
		field, fv := v.Type().Field(i), v.Field(i)
		if !field.IsExported() || fv.IsZero() {
			continue
		}
		for fv.Kind() == reflect.Pointer && !fv.IsNil() {
			fv = fv.Elem()
		}
		var s string
		switch x := fv.Interface().(type) {
		case time.Time:
			s = x.UTC().Format(time.RFC3339Nano)
		case string:
			s = strconv.Quote(x)
		case []string:
			s = fmt.Sprintf("%q", x)
		case fmt.Stringer:
			s = strconv.Quote(x.String())
		default:
			s = fmt.Sprint(x)
		}
		set = append(set, field.Name+" "+s)
	}
	if len(set) == 0 {
		return "none: all annotations"
	}
	return strings.Join(set, ", ")
}

// domainLess orders domains as labels.Domains does, then unknown ones by name.
func domainLess(a, b string) bool {
	ra, rb := domainRank(a), domainRank(b)
	if ra != rb {
		return ra < rb
	}
	return a < b
}

func domainRank(d string) int {
	for i, known := range labels.Domains {
		if string(known) == d {
			return i
		}
	}
	return len(labels.Domains)
}

// orderSheets puts the summary first, then the domains' sheets in domainLess order.
func (b *book) orderSheets() error {
	var domains []string
	for d := range b.domains {
		domains = append(domains, d)
	}
	sort.Slice(domains, func(i, j int) bool { return domainLess(domains[i], domains[j]) })
	want := []string{summarySheet}
	for _, d := range domains {
		want = append(want, b.domains[d].names...)
	}
	for i, name := range want {
		// Every sheet before i is in place, so name is at i or after it.
		if at := b.f.GetSheetList()[i]; at != name {
			if err := b.f.MoveSheet(name, at); err != nil {
				return err
			}
		}
	}
	b.f.SetActiveSheet(0)
	return nil
}

// sheetName makes domain a valid sheet name with room for a " (N)" suffix: Excel refuses
// : \ / ? * [ ], a leading or trailing apostrophe and more than 31 characters. The store's
// domains are all valid as they are.
func sheetName(domain string) string {
	name := strings.Map(func(r rune) rune {
		if strings.ContainsRune(`:\/?*[]`, r) || r < 0x20 {
			return '_'
		}
		return r
	}, domain)
	units := 0
	for i, r := range name {
		if units += utf16Units(r); units > maxSheetNameBase {
			name = name[:i]
			break
		}
	}
	name = strings.Trim(strings.TrimSpace(name), "'")
	if name == "" {
		name = "domain"
	}
	return name
}

// claim returns name, or name with a " (N)" suffix if it is taken, and takes it. Excel compares
// sheet names ignoring case.
func (b *book) claim(name string) string {
	got := name
	for k := 2; b.names[strings.ToLower(got)]; k++ {
		got = fmt.Sprintf("%s (%d)", name, k)
	}
	b.names[strings.ToLower(got)] = true
	return got
}

// writeTo zips the workbook into w. excelize would build the whole zip in a buffer first; its
// ZipWriter hook hands it one that writes into w instead, and also turns escape marks into
// escapes (see escapeMarks).
func (b *book) writeTo(w io.Writer) error {
	sw := &stickyWriter{w: w}
	z := &markZip{zw: zip.NewWriter(sw)}
	b.f.SetZipWriter(func(io.Writer) excelize.ZipWriter { return z })
	buf, err := b.f.WriteToBuffer()
	switch {
	case sw.err != nil:
		return sw.err
	case err != nil:
		return fmt.Errorf("xlsx: %w", err)
	case buf.Len() != 0:
		// A later excelize may write around the hook; better to fail than to lose the bytes.
		return errors.New("xlsx: excelize wrote the workbook to its own buffer")
	}
	return nil
}

// stickyWriter remembers the first error of w, which excelize may not pass on.
type stickyWriter struct {
	w   io.Writer
	err error
}

func (s *stickyWriter) Write(p []byte) (int, error) {
	if s.err != nil {
		return 0, s.err
	}
	n, err := s.w.Write(p)
	s.err = err
	return n, err
}

// Escapes of characters that XML cannot hold
//
// A spreadsheet string stores such a character c as "_xHHHH_" (HHHH: c in hex), and a
// literal "_xHHHH_" with its first "_" escaped as "_x005F_". excelize does the latter but
// not the former: it writes c as U+FFFD, and escapes any "_xHHHH_" it is given. So cellParts
// writes c as escMark and four hex digits, which excelize passes through untouched, and markZip
// turns each mark with its digits into "_xHHHH_" as the sheets' XML is zipped. escMark is a
// Unicode noncharacter, meant for such internal use; one that is in a value is marked too.
//
// A mark's escape starts with "_": when the text before it ends in "_x" and four hex digits,
// the two would read as an escape of their own, so that "_" is marked as well (see appendMark).

// escMark starts an escape in a text given to excelize: it and the four hex digits after it
// stand for the character they spell.
const escMark = '\uFDD0'

var escMarkBytes = []byte(string(escMark))

// escMarkLen is the length of a mark and its digits, in bytes.
const escMarkLen = 3 + 4

// needsMark tells the characters that cellParts marks.
func needsMark(r rune) bool {
	switch {
	case r == '\t' || r == '\n' || r == '\r':
		return false
	case r < 0x20 || r == 0xFFFE || r == 0xFFFF || r == escMark:
		return true
	}
	return false
}

// cellParts returns s as the texts of the cells that hold it, each within maxCellUnits as
// excelize counts: one cell when it fits, none when s is empty. Characters that XML cannot
// hold are marked (see escapeMarks).
func cellParts(s string) []string {
	if s == "" {
		return nil
	}
	units, marks := 0, false
	for _, r := range s {
		if needsMark(r) {
			marks = true
			break
		}
		units += utf16Units(r)
	}
	if !marks && units <= maxCellUnits {
		return []string{s}
	}
	if marks {
		s = escapeMarks(s)
	}
	// Split s where a cell is full, never inside a mark or a character.
	var parts []string
	start, units := 0, 0
	for i := 0; i < len(s); {
		r, size := utf8.DecodeRuneInString(s[i:])
		cost := utf16Units(r)
		if r == escMark {
			size, cost = escMarkLen, 5 // what excelize counts; Excel counts the escape as 1
		}
		if units > 0 && units+cost > maxCellUnits {
			parts = append(parts, s[start:i])
			start, units = i, 0
		}
		units += cost
		i += size
	}
	return append(parts, s[start:])
}

// escapeMarks returns s with each character that needsMark marked.
func escapeMarks(s string) string {
	b := make([]byte, 0, len(s)+64)
	for _, r := range s {
		if needsMark(r) {
			b = appendMark(b, r)
		} else {
			b = utf8.AppendRune(b, r)
		}
	}
	return string(b)
}

// appendMark appends the mark of r to b. When b ends in "_x" and four hex digits, which with
// the escape's "_" would read as an escape, that "_" is marked first (and so on, should the text
// before it end so too).
func appendMark(b []byte, r rune) []byte {
	if n := len(b); n >= 6 && b[n-6] == '_' && b[n-5] == 'x' && isHex(b[n-4:]) {
		tail := string(b[n-5:]) // "xHHHH"
		b = append(appendMark(b[:n-6], '_'), tail...)
	}
	b = append(b, escMarkBytes...)
	return fmt.Appendf(b, "%04X", r)
}

func isHex(b []byte) bool {
	for _, c := range b {
		if !('0' <= c && c <= '9' || 'a' <= c && c <= 'f' || 'A' <= c && c <= 'F') {
			return false
		}
	}
	return true
}

func utf16Units(r rune) int {
	if r >= 0x10000 {
		return 2
	}
	return 1
}

// xmlSize estimates the bytes of s in a sheet's XML: s and its escapes.
func xmlSize(s string) int64 {
	n := int64(len(s)) + 6*int64(strings.Count(s, "_x"))
	for i := 0; i < len(s); i++ {
		switch s[i] {
		case '&', '<', '>', '"', '\'', '\r', '\t':
			n += 4
		}
	}
	return n
}

// markZip writes the workbook's zip, turning the escape marks in its sheets into escapes.
type markZip struct {
	zw  *zip.Writer
	cur *unmarker // the sheet being written
}

func (z *markZip) Create(name string) (io.Writer, error) {
	if err := z.endEntry(); err != nil {
		return nil, err
	}
	w, err := z.zw.Create(name)
	if err != nil {
		return nil, err
	}
	if strings.HasPrefix(name, "xl/worksheets/") && strings.HasSuffix(name, ".xml") {
		z.cur = &unmarker{w: w}
		return z.cur, nil
	}
	return w, nil
}

func (z *markZip) AddFS(fsys fs.FS) error {
	if err := z.endEntry(); err != nil {
		return err
	}
	return z.zw.AddFS(fsys)
}

func (z *markZip) Close() error {
	if err := z.endEntry(); err != nil {
		return err
	}
	return z.zw.Close()
}

func (z *markZip) endEntry() error {
	if z.cur == nil {
		return nil
	}
	u := z.cur
	z.cur = nil
	if len(u.pending) > 0 {
		return errors.New("xlsx: a sheet ends inside an escape mark")
	}
	return nil
}

// unmarker writes to w what is written to it, each escape mark and its digits HHHH as _xHHHH_.
type unmarker struct {
	w       io.Writer
	pending []byte // the start of a mark that a write ended in
}

func (u *unmarker) Write(p []byte) (int, error) {
	n := len(p)
	if len(u.pending) > 0 {
		p = append(u.pending, p...)
		u.pending = nil
	}
	for {
		i := bytes.Index(p, escMarkBytes)
		if i < 0 {
			// p may end in the first bytes of a mark.
			keep := 0
			for k := min(len(escMarkBytes)-1, len(p)); k > 0; k-- {
				if bytes.HasSuffix(p, escMarkBytes[:k]) {
					keep = k
					break
				}
			}
			i = len(p) - keep
		} else if len(p) >= i+escMarkLen {
			if _, err := u.w.Write(p[:i]); err != nil {
				return 0, err
			}
			var esc [7]byte
			esc[0], esc[1], esc[6] = '_', 'x', '_'
			copy(esc[2:6], p[i+3:i+escMarkLen])
			if _, err := u.w.Write(esc[:]); err != nil {
				return 0, err
			}
			p = p[i+escMarkLen:]
			continue
		}
		if _, err := u.w.Write(p[:i]); err != nil {
			return 0, err
		}
		u.pending = append([]byte(nil), p[i:]...)
		return n, nil
	}
}
