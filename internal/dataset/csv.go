package dataset

import (
	"bufio"
	"encoding/csv"
	"errors"
	"fmt"
	"io"
)

// ReadCSV reads comma-separated UTF-8 text, with or without a byte order mark. The first record
// is the header. Quoted fields may hold commas, quotes ("") and line breaks; a record with fewer
// fields than the header has its missing cells empty. A record that cannot be parsed (such as an
// unclosed quote) refuses the file: where the broken record ends, and so which rows follow it,
// would only be a guess.
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
	c := newCollector()
	for record := 2; ; record++ {
		cells, err := cr.Read()
		if errors.Is(err, io.EOF) {
			return c.res, nil
		}
		if err != nil {
			return Result{}, fmt.Errorf("csv: record %d: %w", record, err)
		}
		c.addCells(record, cells, idCol, textCol)
	}
}
