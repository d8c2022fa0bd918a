package dataset

import (
	"fmt"
	"io"
	"strings"

	"github.com/xuri/excelize/v2"
)

// ReadXLSX reads an Excel workbook: the sheet named in opts (any letter case), or the first one.
// Row 1 is the header. Cells are read as stored, without their number format, so a numeric ID 12
// reads "12" and 1.5 reads "1.5" whatever the cell's display format.
func ReadXLSX(r io.Reader, opts Options) (Result, error) {
	f, err := excelize.OpenReader(r)
	if err != nil {
		return Result{}, fmt.Errorf("open xlsx: %w", err)
	}
	defer f.Close()

	sheets := f.GetSheetList()
	if len(sheets) == 0 {
		return Result{}, fmt.Errorf("xlsx: the workbook has no sheets")
	}
	sheet := sheets[0]
	if opts.Sheet != "" {
		sheet = ""
		for _, s := range sheets {
			// Excel treats sheet names case-insensitively, so at most one can match.
			if strings.EqualFold(s, strings.TrimSpace(opts.Sheet)) {
				sheet = s
			}
		}
		if sheet == "" {
			return Result{}, fmt.Errorf("xlsx: %w", &SheetError{Sheet: opts.Sheet, Sheets: sheets})
		}
	}

	// GetRows puts row n at index n-1, padding gaps with empty rows, so indexes map to row numbers.
	rows, err := f.GetRows(sheet, excelize.Options{RawCellValue: true})
	if err != nil {
		return Result{}, fmt.Errorf("xlsx: sheet %q: %w", sheet, err)
	}
	if len(rows) == 0 {
		return Result{}, fmt.Errorf("xlsx: sheet %q is empty", sheet)
	}
	idCol, textCol, err := findColumns(rows[0])
	if err != nil {
		return Result{}, fmt.Errorf("xlsx: sheet %q: %w", sheet, err)
	}
	c := newCollector()
	for i, cells := range rows[1:] {
		c.addCells(i+2, cells, idCol, textCol)
	}
	return c.res, nil
}

// SheetError names a worksheet (Options.Sheet) the workbook does not have.
type SheetError struct {
	Sheet  string
	Sheets []string // the workbook's sheets
}

func (e *SheetError) Error() string {
	return fmt.Sprintf("no sheet named %q (sheets: %s)", e.Sheet, strings.Join(e.Sheets, ", "))
}
