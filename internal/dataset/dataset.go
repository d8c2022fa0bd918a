// Package dataset reads a dataset file (.xlsx, .csv or .jsonl) into samples.
//
// Every format follows the same rules, so a team gets the same samples whichever way it exports:
//   - The ID and Text columns (jsonl: keys) are found by name, ignoring letter case and
//     surrounding spaces; other columns are ignored.
//   - IDs are kept as written, trimmed of surrounding spaces: a numeric 12 stays "12", never
//     "12.0" as the Python loader made it. Text is kept exactly as written.
//   - A row with an empty ID or a blank Text, a later row repeating an ID, or a row whose ID or
//     Text is not valid UTF-8 is skipped and reported with its row number; the first row with an
//     ID wins. Rows whose cells are all empty are skipped silently, because spreadsheets often
//     end in blank rows.
//   - Samples keep file order; Position counts them from 0.
package dataset

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"unicode/utf8"

	"github.com/mhannotator/mha/internal/store"
)

// Options tune how a file is read.
type Options struct {
	// Sheet names the worksheet to read (xlsx only); "" reads the first one.
	Sheet string
}

// Skipped is a row that was not imported, and why.
type Skipped struct {
	// Row is the number a person sees in the file: the spreadsheet row number for xlsx (the
	// header is row 1); for csv the row a spreadsheet shows (a header on the first line is row
	// 1, a blank line is a row, a record whose quoted cells span several lines is one row); the
	// line number for jsonl (from 1, blank lines counted).
	Row    int
	Reason string
}

// Result is what a file yielded.
type Result struct {
	Samples []store.Sample
	Skipped []Skipped
}

// The column (jsonl: key) names, as shown in messages.
const (
	idName   = "ID"
	textName = "Text"
)

// supported lists the file extensions Read accepts, as shown in messages.
const supported = ".xlsx, .csv, .jsonl"

// Read reads the dataset at path, choosing the format by its extension (any letter case).
func Read(path string, opts Options) (Result, error) {
	if _, err := formatOf(path); err != nil {
		return Result{}, fmt.Errorf("read dataset %s: %w", path, err)
	}
	f, err := os.Open(path)
	if err != nil {
		return Result{}, fmt.Errorf("read dataset: %w", err)
	}
	defer f.Close()
	return ReadFrom(f, path, opts)
}

// ReadFrom reads a dataset from r, choosing the format by the extension of name (any letter
// case) and checking that the content is of that format, so a workbook renamed .csv or a
// UTF-16 export is refused with a *FormatError instead of read as garbage. Errors name name.
func ReadFrom(r io.Reader, name string, opts Options) (Result, error) {
	ext, err := formatOf(name)
	if err != nil {
		return Result{}, fmt.Errorf("read dataset %s: %w", name, err)
	}
	br := bufio.NewReader(r)
	if err := sniff(br, ext); err != nil {
		return Result{}, fmt.Errorf("read dataset %s: %w", name, err)
	}
	var res Result
	switch ext {
	case ".xlsx":
		res, err = ReadXLSX(br, opts)
	case ".csv":
		res, err = ReadCSV(br)
	default:
		res, err = ReadJSONL(br)
	}
	if err != nil {
		return Result{}, fmt.Errorf("read dataset %s: %w", name, err)
	}
	return res, nil
}

// FormatError refuses a file whose type is not supported, or whose content is not of the type
// its extension says.
type FormatError struct {
	Ext    string // the extension, lower case
	Reason string // "" for an unsupported extension
}

func (e *FormatError) Error() string {
	if e.Reason == "" {
		return fmt.Sprintf("unsupported file extension %q (supported: %s)", e.Ext, supported)
	}
	return e.Reason
}

// formatOf returns the lower-case extension of name when it is a supported one.
func formatOf(name string) (string, error) {
	ext := strings.ToLower(filepath.Ext(name))
	if ext != ".xlsx" && ext != ".csv" && ext != ".jsonl" {
		return "", &FormatError{Ext: ext}
	}
	return ext, nil
}

// Signatures of the binary files most often picked by mistake.
var (
	zipMagic = []byte("PK\x03\x04")
	oleMagic = []byte("\xD0\xCF\x11\xE0") // .xls and other pre-2007 Office files
	pdfMagic = []byte("%PDF-")
)

// sniff checks the start of the content against the format ext promises: a workbook is a zip
// archive; csv and jsonl are UTF-8 text, which holds no NUL bytes.
func sniff(br *bufio.Reader, ext string) error {
	head, err := br.Peek(512)
	if err != nil && !errors.Is(err, io.EOF) && !errors.Is(err, bufio.ErrBufferFull) {
		return err
	}
	fail := func(format string, args ...any) error {
		return &FormatError{Ext: ext, Reason: fmt.Sprintf(format, args...)}
	}
	if ext == ".xlsx" {
		switch {
		case bytes.HasPrefix(head, zipMagic):
			return nil
		case bytes.HasPrefix(head, oleMagic):
			return fail("the content is an old-style .xls workbook, not .xlsx: save it as .xlsx")
		}
		return fail("the content is not an .xlsx workbook (an .xlsx file is a zip archive)")
	}
	switch {
	case bytes.HasPrefix(head, zipMagic):
		return fail("the content is a zip archive (an .xlsx workbook?), not %s text: give the file its own extension", ext)
	case bytes.HasPrefix(head, oleMagic):
		return fail("the content is an old-style Office file (.xls?), not %s text", ext)
	case bytes.HasPrefix(head, pdfMagic):
		return fail("the content is a PDF document, not %s text", ext)
	case bytes.HasPrefix(head, []byte("\xFF\xFE")), bytes.HasPrefix(head, []byte("\xFE\xFF")):
		return fail("the content is UTF-16 text: save the file with UTF-8 encoding")
	case bytes.IndexByte(head, 0) >= 0:
		return fail("the content is binary (or UTF-16), not %s text: save the file as UTF-8 text", ext)
	}
	return nil
}

// collector applies the row rules shared by every format.
type collector struct {
	res       Result
	firstSeen map[string]int // ID → row number of the sample kept for it; rows count from 1
}

func newCollector() *collector {
	return &collector{firstSeen: map[string]int{}}
}

// add keeps the row as a sample or records why it was skipped.
func (c *collector) add(row int, id, text string) {
	id = strings.TrimSpace(id)
	switch {
	case !utf8.ValidString(id) || !utf8.ValidString(text):
		c.skip(row, "not valid UTF-8 (save the file with UTF-8 encoding)")
	case id == "":
		c.skip(row, "empty ID")
	case strings.TrimSpace(text) == "":
		c.skip(row, "empty Text")
	case c.firstSeen[id] != 0:
		c.skip(row, fmt.Sprintf("duplicate ID %q at row %d (first seen at row %d)", id, row, c.firstSeen[id]))
	default:
		c.firstSeen[id] = row
		c.res.Samples = append(c.res.Samples, store.Sample{ID: id, Text: text, Position: len(c.res.Samples)})
	}
}

func (c *collector) skip(row int, reason string) {
	c.res.Skipped = append(c.res.Skipped, Skipped{Row: row, Reason: reason})
}

// addCells handles one row of a table (xlsx or csv); cells may be shorter than the header.
func (c *collector) addCells(row int, cells []string, idCol, textCol int) {
	if allBlank(cells) {
		return
	}
	c.add(row, cell(cells, idCol), cell(cells, textCol))
}

func cell(cells []string, i int) string {
	if i < len(cells) {
		return cells[i]
	}
	return ""
}

func allBlank(cells []string) bool {
	for _, s := range cells {
		if strings.TrimSpace(s) != "" {
			return false
		}
	}
	return true
}

// sameName reports whether a header cell or key names the wanted column.
func sameName(got, want string) bool {
	return strings.EqualFold(strings.TrimSpace(got), want)
}

// findColumns locates the ID and Text columns of a header row.
func findColumns(header []string) (idCol, textCol int, err error) {
	idCol, textCol = -1, -1
	for i, name := range header {
		for _, col := range []struct {
			name string
			at   *int
		}{{idName, &idCol}, {textName, &textCol}} {
			if !sameName(name, col.name) {
				continue
			}
			if *col.at >= 0 {
				// Guessing which of two ID columns is meant could import the wrong data.
				return 0, 0, fmt.Errorf("more than one %q column (found columns: %s)", col.name, nameList(header))
			}
			*col.at = i
		}
	}
	if err := missing("column", idCol >= 0, textCol >= 0, header); err != nil {
		return 0, 0, err
	}
	return idCol, textCol, nil
}

// missing builds the error for a file that lacks the ID or Text column (kind "column" or "key"),
// or returns nil when it has both.
func missing(kind string, hasID, hasText bool, found []string) error {
	var what string
	switch {
	case !hasID && !hasText:
		what = fmt.Sprintf("missing %ss %q and %q", kind, idName, textName)
	case !hasID:
		what = fmt.Sprintf("missing %s %q", kind, idName)
	case !hasText:
		what = fmt.Sprintf("missing %s %q", kind, textName)
	default:
		return nil
	}
	return fmt.Errorf("%s (found %ss: %s)", what, kind, nameList(found))
}

// nameList shows the non-empty names, trimmed, for messages.
func nameList(names []string) string {
	var shown []string
	for _, n := range names {
		if n = strings.TrimSpace(n); n != "" {
			shown = append(shown, n)
		}
	}
	if len(shown) == 0 {
		return "none"
	}
	return strings.Join(shown, ", ")
}

var errEmpty = errors.New("the file is empty")

// skipBOM drops a UTF-8 byte order mark, which Excel writes at the start of "CSV UTF-8" files.
func skipBOM(r *bufio.Reader) {
	if b, err := r.Peek(3); err == nil && string(b) == "\uFEFF" {
		_, _ = r.Discard(3)
	}
}
