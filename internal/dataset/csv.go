package dataset

import (
	"bufio"
	"encoding/csv"
	"errors"
	"fmt"
	"io"
	"strings"
)

// ReadCSV reads comma-separated UTF-8 text, with or without a byte order mark. The first record
// is the header. Quoted fields may hold commas, quotes ("") and line breaks; a record with fewer
// fields than the header has its missing cells empty. A record that cannot be parsed (such as an
// unclosed quote) refuses the file: where the broken record ends, and so which rows follow it,
// would only be a guess.
//
// Rows are numbered as a spreadsheet shows the file: a record is one row however many lines its
// quoted cells span, and a blank line is an empty row.
func ReadCSV(r io.Reader) (Result, error) {
	br := bufio.NewReader(r)
	skipBOM(br)
	cr := csv.NewReader(br)
	cr.FieldsPerRecord = -1

	header, err := cr.Read()
	if errors.Is(err, io.EOF) {
		return Result{}, fmt.Errorf("csv: %w", errEmpty)
	}
	if err != nil {
		return Result{}, fmt.Errorf("csv: header: %w", err)
	}
	idCol, textCol, err := findColumns(header)
	if err != nil {
		return Result{}, fmt.Errorf("csv: %w", err)
	}
	// The reader skips blank lines, so counting records would put every row after one a row
	// too high. The line a record starts on counts them; the line breaks inside the cells of
	// the records before it are the lines a spreadsheet does not show as rows.
	inCells := lineBreaks(header)
	c := newCollector()
	for {
		cells, err := cr.Read()
		if errors.Is(err, io.EOF) {
			return c.res, nil
		}
		var pe *csv.ParseError
		if errors.As(err, &pe) {
			return Result{}, fmt.Errorf("csv: row %d: %w", pe.StartLine-inCells, err)
		}
		if err != nil {
			return Result{}, fmt.Errorf("csv: %w", err)
		}
		line, _ := cr.FieldPos(0)
		c.addCells(line-inCells, cells, idCol, textCol)
		inCells += lineBreaks(cells)
	}
}

// lineBreaks counts the line breaks inside a record's cells. The reader turns each one, CRLF
// included, into a single "\n", and a cell gets no "\n" any other way.
func lineBreaks(cells []string) int {
	n := 0
	for _, s := range cells {
		n += strings.Count(s, "\n")
	}
	return n
}
