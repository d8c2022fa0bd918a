package export

import "testing"

// SetXLSXLimits lowers Excel's limits for one test: the UTF-16 code units of a cell and the rows
// of a sheet, header included. Zero keeps a limit.
func SetXLSXLimits(t testing.TB, cellUnits, sheetRows int) {
	t.Helper()
	oldUnits, oldRows := maxCellUnits, maxSheetRows
	t.Cleanup(func() { maxCellUnits, maxSheetRows = oldUnits, oldRows })
	if cellUnits > 0 {
		maxCellUnits = cellUnits
	}
	if sheetRows > 0 {
		maxSheetRows = sheetRows
	}
}
