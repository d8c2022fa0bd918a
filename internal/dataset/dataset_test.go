package dataset

import (
	"bytes"
	"fmt"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"

	"github.com/xuri/excelize/v2"

	"github.com/mhannotator/mha/internal/store"
)

// samples builds the expected samples from ID, Text pairs, numbering positions from 0.
func samples(idText ...string) []store.Sample {
	var out []store.Sample
	for i := 0; i+1 < len(idText); i += 2 {
		out = append(out, store.Sample{ID: idText[i], Text: idText[i+1], Position: i / 2})
	}
	return out
}

type want struct {
	samples []store.Sample
	skipped []Skipped
	err     string // a part of the error message; "" means no error
}

func check(t *testing.T, got Result, err error, w want) {
	t.Helper()
	if w.err != "" {
		if err == nil || !strings.Contains(err.Error(), w.err) {
			t.Fatalf("error = %v, want one containing %q", err, w.err)
		}
		return
	}
	if err != nil {
		t.Fatalf("unexpected error: %v", err)
	}
	if !reflect.DeepEqual(got.Samples, w.samples) {
		t.Errorf("samples:\n got %+v\nwant %+v", got.Samples, w.samples)
	}
	if !reflect.DeepEqual(got.Skipped, w.skipped) {
		t.Errorf("skipped:\n got %+v\nwant %+v", got.Skipped, w.skipped)
	}
}

// writeXLSX saves a workbook built by fill into a temporary file; fill gets the first sheet's name.
func writeXLSX(t *testing.T, fill func(f *excelize.File, sheet string) error) string {
	t.Helper()
	f := excelize.NewFile()
	defer f.Close()
	if err := fill(f, f.GetSheetName(0)); err != nil {
		t.Fatalf("building the workbook: %v", err)
	}
	path := filepath.Join(t.TempDir(), "data.xlsx")
	if err := f.SaveAs(path); err != nil {
		t.Fatal(err)
	}
	return path
}

// setRows writes rows of cell values from A1 down; nil cells are left unset.
func setRows(f *excelize.File, sheet string, rows ...[]any) error {
	for r, row := range rows {
		for c, v := range row {
			if v == nil {
				continue
			}
			name, err := excelize.CoordinatesToCellName(c+1, r+1)
			if err != nil {
				return err
			}
			if err := f.SetCellValue(sheet, name, v); err != nil {
				return err
			}
		}
	}
	return nil
}

func TestReadXLSX(t *testing.T) {
	tests := []struct {
		name  string
		sheet string
		fill  func(f *excelize.File, sheet string) error
		want
	}{
		{
			name: "numeric IDs read as written, never with a trailing .0",
			fill: func(f *excelize.File, s string) error {
				if err := setRows(f, s, []any{"ID", "Text"}, []any{12, "int"}, []any{nil, "float"}, []any{7.0, "whole float"}, []any{nil, "formatted"}, []any{" S-1 ", "text id"}); err != nil {
					return err
				}
				if err := f.SetCellFloat(s, "A3", 1.5, -1, 64); err != nil {
					return err
				}
				if err := f.SetCellValue(s, "A5", 3); err != nil {
					return err
				}
				// A display format of 0.00 shows 3.00; the ID is still 3.
				style, err := f.NewStyle(&excelize.Style{NumFmt: 2})
				if err != nil {
					return err
				}
				return f.SetCellStyle(s, "A5", "A5", style)
			},
			want: want{samples: samples("12", "int", "1.5", "float", "7", "whole float", "3", "formatted", "S-1", "text id")},
		},
		{
			name:  "a sheet chosen by name, in any letter case, is read instead of the first",
			sheet: "data",
			fill: func(f *excelize.File, s string) error {
				if err := setRows(f, s, []any{"ID", "Text"}, []any{"first", "from the first sheet"}); err != nil {
					return err
				}
				if _, err := f.NewSheet("Data"); err != nil {
					return err
				}
				return setRows(f, "Data", []any{"ID", "Text"}, []any{"second", "from the second sheet"})
			},
			want: want{samples: samples("second", "from the second sheet")},
		},
		{
			name:  "a sheet that does not exist is refused with the sheets that do",
			sheet: "Responses",
			fill: func(f *excelize.File, s string) error {
				_, err := f.NewSheet("Data")
				return err
			},
			want: want{err: `no sheet named "Responses" (sheets: Sheet1, Data)`},
		},
		{
			name: "headers match in any letter case and with spaces around, other columns ignored",
			fill: func(f *excelize.File, s string) error {
				return setRows(f, s, []any{"Notes", " TEXT ", "id"}, []any{"ignored", "hello", "A"})
			},
			want: want{samples: samples("A", "hello")},
		},
		{
			name: "a missing column is refused with the columns found",
			fill: func(f *excelize.File, s string) error {
				return setRows(f, s, []any{"ID", "Body"}, []any{"A", "hello"})
			},
			want: want{err: `missing column "Text" (found columns: ID, Body)`},
		},
		{
			name: "two ID columns are refused rather than guessed between",
			fill: func(f *excelize.File, s string) error {
				return setRows(f, s, []any{"ID", "Text", "id"}, []any{"A", "hello", "B"})
			},
			want: want{err: `more than one "ID" column (found columns: ID, Text, id)`},
		},
		{
			name: "an empty sheet is refused",
			fill: func(*excelize.File, string) error { return nil },
			want: want{err: `sheet "Sheet1" is empty`},
		},
		{
			name: "bad rows are reported by spreadsheet row number and blank rows skipped silently",
			fill: func(f *excelize.File, s string) error {
				if err := setRows(f, s,
					[]any{"ID", "Text", "Note"},
					[]any{"A", "fine"},      // row 2
					[]any{nil, "no id"},     // row 3
					[]any{"B", "   \n "},    // row 4: blank text
					[]any{},                 // row 5: fully empty
					[]any{nil, nil, "x"},    // row 6: only another column
					[]any{"A", "again"},     // row 7: duplicate
					[]any{"C", "also fine"}, // row 8
				); err != nil {
					return err
				}
				// Trailing rows with only formatting, as Excel leaves them.
				return f.SetRowHeight(s, 20, 30)
			},
			want: want{
				samples: samples("A", "fine", "C", "also fine"),
				skipped: []Skipped{
					{3, "empty ID"},
					{4, "empty Text"},
					{6, "empty ID"},
					{7, `duplicate ID "A" at row 7 (first seen at row 2)`},
				},
			},
		},
		{
			name: "text is kept exactly, non-ASCII and surrounding spaces included",
			fill: func(f *excelize.File, s string) error {
				return setRows(f, s, []any{"ID", "Text"},
					[]any{"hi", "मुझे नींद नहीं आती 😞"},
					[]any{"zh", "我很焦虑"},
					[]any{"fr", "  café, naïve\nsecond line  "},
					[]any{"ид-1", "¿Qué hago?"},
				)
			},
			want: want{samples: samples(
				"hi", "मुझे नींद नहीं आती 😞",
				"zh", "我很焦虑",
				"fr", "  café, naïve\nsecond line  ",
				"ид-1", "¿Qué hago?",
			)},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			path := writeXLSX(t, tt.fill)
			got, err := Read(path, Options{Sheet: tt.sheet})
			check(t, got, err, tt.want)
		})
	}
}

func TestReadXLSXRefusesAFileThatIsNotAWorkbook(t *testing.T) {
	_, err := ReadXLSX(strings.NewReader("ID,Text\n1,hello\n"), Options{})
	if err == nil || !strings.Contains(err.Error(), "open xlsx") {
		t.Fatalf("error = %v, want an open xlsx error", err)
	}
}

func TestReadCSV(t *testing.T) {
	tests := []struct {
		name  string
		input string
		want
	}{
		{
			name:  "a byte order mark before the header is ignored",
			input: "\uFEFFID,Text\n1,hello\n",
			want:  want{samples: samples("1", "hello")},
		},
		{
			name:  "quoted fields keep commas, quotes, braces and line breaks",
			input: "ID,Text\nq1,\"I said \"\"fine\"\", but, honestly {text} {}\"\nq2,\"line one\nline two\n\"\n",
			want:  want{samples: samples("q1", `I said "fine", but, honestly {text} {}`, "q2", "line one\nline two\n")},
		},
		{
			name:  "numeric IDs are kept as text, trimmed, and Text is not trimmed",
			input: "ID,Text\n 12 ,  spaced  \n12.0,other\n007,lead\n",
			want:  want{samples: samples("12", "  spaced  ", "12.0", "other", "007", "lead")},
		},
		{
			name:  "headers match in any letter case, in any order, with extra columns",
			input: "text , Extra ,  Id\nhello,x,A\n",
			want:  want{samples: samples("A", "hello")},
		},
		{
			name:  "a ragged row has its missing cells empty",
			input: "Extra,ID,Text\nx,A\ny,B,fine\n",
			want:  want{samples: samples("B", "fine"), skipped: []Skipped{{2, "empty Text"}}},
		},
		{
			name:  "bad rows are reported by the row a spreadsheet shows, counting the header as 1",
			input: "ID,Text\nA,fine\n,no id\nB,\"  \"\n,,\n\nA,again\nC,\"multi\nline\"\nC,dup\n",
			want: want{
				samples: samples("A", "fine", "C", "multi\nline"),
				skipped: []Skipped{
					{3, "empty ID"},
					{4, "empty Text"},
					// row 5 (",,") is fully empty, and row 6 is the blank line
					{7, `duplicate ID "A" at row 7 (first seen at row 2)`},
					// row 8 is the record on lines 9 and 10; "C,dup" on line 11 is row 9
					{9, `duplicate ID "C" at row 9 (first seen at row 8)`},
				},
			},
		},
		{
			name:  "blank lines count as rows",
			input: "ID,Text\n\n\nA,\n\nB,fine\n,no id\n",
			want:  want{samples: samples("B", "fine"), skipped: []Skipped{{4, "empty Text"}, {7, "empty ID"}}},
		},
		{
			name:  "blank lines count as rows with CRLF line endings too",
			input: "ID,Text\r\n\r\nA,\r\n",
			want:  want{skipped: []Skipped{{3, "empty Text"}}},
		},
		{
			name:  "a record whose quoted text spans several lines is one row",
			input: "ID,Text\r\nA,\"one\r\ntwo\r\n\r\nthree\"\r\n,after\r\n\r\nA,again\r\n",
			want: want{
				samples: samples("A", "one\ntwo\n\nthree"),
				skipped: []Skipped{{3, "empty ID"}, {5, `duplicate ID "A" at row 5 (first seen at row 2)`}},
			},
		},
		{
			name:  "a header spanning two lines is one row",
			input: "ID,Text,\"Note\non two lines\"\n,no id\n",
			want:  want{skipped: []Skipped{{2, "empty ID"}}},
		},
		{
			name:  "blank lines before the header are rows too",
			input: "\n\nID,Text\n,no id\n",
			want:  want{skipped: []Skipped{{4, "empty ID"}}},
		},
		{
			name:  "non-ASCII text round-trips byte for byte",
			input: "ID,Text\n1,\"Estoy muy cansada, no sé qué hacer\"\n2,परीक्षा का डर 😰\n3,一个人很孤独\n",
			want:  want{samples: samples("1", "Estoy muy cansada, no sé qué hacer", "2", "परीक्षा का डर 😰", "3", "一个人很孤独")},
		},
		{
			name:  "a row that is not valid UTF-8 is skipped",
			input: "ID,Text\n1,caf\xe9\n2,café\n",
			want:  want{samples: samples("2", "café"), skipped: []Skipped{{2, "not valid UTF-8 (save the file with UTF-8 encoding)"}}},
		},
		{
			name:  "a header without the columns is refused, naming both",
			input: "Name,Body\nA,hello\n",
			want:  want{err: `missing columns "ID" and "Text" (found columns: Name, Body)`},
		},
		{
			name:  "a header with only ID is refused, naming Text",
			input: "ID\nA\n",
			want:  want{err: `missing column "Text" (found columns: ID)`},
		},
		{
			name:  "an unclosed quote refuses the file with the row where it broke",
			input: "ID,Text\nA,fine\nB,\"never closed\nC,text\n",
			want:  want{err: "csv: row 3: "},
		},
		{
			name:  "an unclosed quote after a blank line and a record of two lines names its row",
			input: "ID,Text\nA,\"two\nlines\"\n\nB,\"never closed\nC,text\n",
			// lines: 1 header, 2-3 A, 4 blank, 5 B; rows: 1 header, 2 A, 3 blank, 4 B
			want: want{err: "csv: row 4: record on line 5"},
		},
		{
			name:  "an empty file is refused",
			input: "",
			want:  want{err: "the file is empty"},
		},
		{
			name:  "a header alone gives no samples and no error",
			input: "ID,Text\n",
			want:  want{},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := ReadCSV(strings.NewReader(tt.input))
			check(t, got, err, tt.want)
		})
	}
}

func TestReadJSONL(t *testing.T) {
	long := strings.Repeat("ब", 60_000) // 180 KB on one line
	tests := []struct {
		name  string
		input string
		want
	}{
		{
			name:  "numeric IDs keep their literal text",
			input: `{"ID": 12, "Text": "a"}` + "\n" + `{"ID":1e3,"Text":"b"}` + "\n" + `{"ID":1.50,"Text":"c"}` + "\n" + `{"ID":-4,"Text":"d"}` + "\n",
			want:  want{samples: samples("12", "a", "1e3", "b", "1.50", "c", "-4", "d")},
		},
		{
			name:  "keys match in any letter case, other keys are ignored, blank lines too",
			input: "\n" + `{"meta":{"x":[1,2]}, " id ":"A","TEXT":"hello"}` + "\n\n   \n" + `{"Id":"B","text":"world"}`,
			want:  want{samples: samples("A", "hello", "B", "world")},
		},
		{
			name:  "a broken line is skipped with the JSON error, by line number",
			input: `{"ID":"A","Text":"fine"}` + "\n\n" + `{"ID":"B","Text":"trunc` + "\n" + `{"ID":"C","Text":"fine"}` + "\n",
			want: want{
				samples: samples("A", "fine", "C", "fine"),
				skipped: []Skipped{{3, "invalid JSON: unexpected end of JSON input"}},
			},
		},
		{
			name: "lines that are not objects, lack a key, or hold the wrong types are skipped",
			input: strings.Join([]string{
				`{"ID":"A","Text":"fine"}`,
				`["A","array"]`,
				`{"ID":"B"}`,
				`{"Text":"no id"}`,
				`{}`,
				`{"ID":null,"Text":"null id"}`,
				`{"ID":"C","Text":null}`,
				`{"ID":true,"Text":"bool id"}`,
				`{"ID":"D","Text":42}`,
				`{"id":"E","ID":"F","Text":"two ids"}`,
				`{"ID":"A","Text":"again"}`,
				`{"ID":" G ","Text":"  kept as is "}`,
			}, "\n"),
			want: want{
				samples: samples("A", "fine", "G", "  kept as is "),
				skipped: []Skipped{
					{2, "not a JSON object"},
					{3, `missing key "Text"`},
					{4, `missing key "ID"`},
					{5, `missing keys "ID" and "Text"`},
					{6, "empty ID"},
					{7, "empty Text"},
					{8, "ID must be a string or a number"},
					{9, "Text must be a string"},
					{10, `more than one "ID" key`},
					{11, `duplicate ID "A" at row 11 (first seen at row 1)`},
				},
			},
		},
		{
			name:  "lines of spaces and CRLF blank lines are counted",
			input: `{"ID":"A","Text":"a"}` + "\r\n\r\n \t \r\n" + `{"ID":"A","Text":"b"}` + "\r\n\n" + `{"ID":"B"}`,
			want: want{
				samples: samples("A", "a"),
				skipped: []Skipped{{4, `duplicate ID "A" at row 4 (first seen at row 1)`}, {6, `missing key "Text"`}},
			},
		},
		{
			name:  "CRLF line endings, a byte order mark and a last line without newline work",
			input: "\uFEFF" + `{"ID":"A","Text":"one"}` + "\r\n" + `{"ID":"B","Text":"two"}`,
			want:  want{samples: samples("A", "one", "B", "two")},
		},
		{
			name:  "non-ASCII text and escapes round-trip",
			input: `{"ID":"ü-1","Text":"naïve café 😊 \u00e9\n{text}"}` + "\n" + `{"ID":2,"Text":"मैं ठीक नहीं हूँ"}`,
			want:  want{samples: samples("ü-1", "naïve café 😊 é\n{text}", "2", "मैं ठीक नहीं हूँ")},
		},
		{
			name:  "a line of 180 KB is read whole",
			input: `{"ID":"long","Text":"` + long + `"}` + "\n",
			want:  want{samples: samples("long", long)},
		},
		{
			name:  "a line that is not valid UTF-8 is skipped rather than altered",
			input: `{"ID":"A","Text":"caf` + "\xe9" + `"}` + "\n" + `{"ID":"B","Text":"ok"}`,
			want:  want{samples: samples("B", "ok"), skipped: []Skipped{{1, "not valid UTF-8 (save the file with UTF-8 encoding)"}}},
		},
		{
			name:  "a file where no line has a Text key is refused with the keys found",
			input: `{"ID":"A","Body":"x"}` + "\n" + `{"id":"B","body":"y"}` + "\n",
			want:  want{err: `missing key "Text" (found keys: ID, Body, id, body)`},
		},
		{
			name:  "a file of broken lines only is refused",
			input: "not json\n{\n",
			want:  want{err: `missing keys "ID" and "Text" (found keys: none)`},
		},
		{
			name:  "a file of blank lines is refused as empty",
			input: "\n  \n",
			want:  want{err: "the file is empty"},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := ReadJSONL(strings.NewReader(tt.input))
			check(t, got, err, tt.want)
		})
	}
}

func TestReadChoosesTheFormatByExtension(t *testing.T) {
	dir := t.TempDir()
	tests := []struct {
		file, content string
		want
	}{
		{"upper.CSV", "ID,Text\n1,csv\n", want{samples: samples("1", "csv")}},
		{"lines.JsonL", `{"ID":1,"Text":"jsonl"}`, want{samples: samples("1", "jsonl")}},
		{"notes.txt", "ID,Text\n1,x\n", want{err: `notes.txt: unsupported file extension ".txt" (supported: .xlsx, .csv, .jsonl)`}},
		{"old.xls", "", want{err: `unsupported file extension ".xls"`}},
		{"bad.csv", "Body\nx\n", want{err: "read dataset " + filepath.Join(dir, "bad.csv") + `: csv: missing columns "ID" and "Text"`}},
	}
	for _, tt := range tests {
		t.Run(tt.file, func(t *testing.T) {
			path := filepath.Join(dir, tt.file)
			if err := os.WriteFile(path, []byte(tt.content), 0o600); err != nil {
				t.Fatal(err)
			}
			got, err := Read(path, Options{})
			check(t, got, err, tt.want)
		})
	}
}

func TestReadNamesTheMissingFile(t *testing.T) {
	path := filepath.Join(t.TempDir(), "absent.csv")
	_, err := Read(path, Options{})
	if err == nil || !strings.Contains(err.Error(), path) {
		t.Fatalf("error = %v, want one naming %s", err, path)
	}
}

func TestTheBundledSampleReadsCleanly(t *testing.T) {
	res, err := Read(filepath.Join("..", "..", "datasets", "sample_students.csv"), Options{})
	if err != nil {
		t.Fatal(err)
	}
	if len(res.Samples) < 60 {
		t.Errorf("got %d samples, want at least 60", len(res.Samples))
	}
	if len(res.Skipped) > 0 {
		t.Errorf("skipped rows: %v", res.Skipped)
	}
	checkInvariants(t, res)
	for i, s := range res.Samples {
		if want := fmt.Sprintf("S-%03d", i+1); s.ID != want {
			t.Errorf("sample %d has ID %q, want %q", i, s.ID, want)
		}
	}
}

// checkRows holds for every successful read of data: skipped rows are in file order, and each
// is a row or line the file has.
func checkRows(t *testing.T, res Result, data []byte) {
	t.Helper()
	lines := bytes.Count(data, []byte("\n")) + 1
	prev := 0
	for _, s := range res.Skipped {
		if s.Row <= prev || s.Row > lines {
			t.Fatalf("skipped row %d (%s) after row %d, in a file of %d lines", s.Row, s.Reason, prev, lines)
		}
		prev = s.Row
	}
}

// checkInvariants holds for every successful read, whatever the input.
func checkInvariants(t *testing.T, res Result) {
	t.Helper()
	seen := map[string]bool{}
	for i, s := range res.Samples {
		if s.Position != i {
			t.Fatalf("sample %d has position %d", i, s.Position)
		}
		if s.ID == "" || s.ID != strings.TrimSpace(s.ID) {
			t.Fatalf("sample %d has ID %q", i, s.ID)
		}
		if strings.TrimSpace(s.Text) == "" {
			t.Fatalf("sample %d (%q) has blank text", i, s.ID)
		}
		if seen[s.ID] {
			t.Fatalf("ID %q appears twice", s.ID)
		}
		seen[s.ID] = true
	}
}

func FuzzReadCSV(f *testing.F) {
	for _, seed := range []string{
		"ID,Text\n1,hello\n",
		"\uFEFFid,TEXT,x\n1,\"a,\"\"b\"\"\nc\"\n,\n2\n1,dup\n",
		"Text,ID\n  ,3\n4, \n",
		"ID,Text\n\"open\n",
	} {
		f.Add([]byte(seed))
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		res, err := ReadCSV(bytes.NewReader(data))
		if err == nil {
			checkInvariants(t, res)
			checkRows(t, res, data)
		}
	})
}

func FuzzReadJSONL(f *testing.F) {
	for _, seed := range []string{
		`{"ID":1,"Text":"hello"}`,
		"{\"id\":\"a\",\"text\":\"x\"}\n\n{\"ID\":1e3,\"Text\":\"y\"}\r\n[1]\n{\"ID\":\"a\",\"Text\":\"dup\"}",
		`{"ID":null,"Text":" "}` + "\n" + `{"ID":"b","ID":"c","Text":"t"}`,
		"\uFEFF{\"ID\":\"x\",\"Text\":\"caf\xe9\"}",
	} {
		f.Add([]byte(seed))
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		res, err := ReadJSONL(bytes.NewReader(data))
		if err == nil {
			checkInvariants(t, res)
			checkRows(t, res, data)
		}
	})
}
