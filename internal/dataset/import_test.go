package dataset

import (
	"bytes"
	"context"
	"errors"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"

	"github.com/xuri/excelize/v2"

	"github.com/mhannotator/mha/internal/store"
)

func TestReadFromChecksTheContentAgainstTheExtension(t *testing.T) {
	xlsx, err := os.ReadFile(writeXLSX(t, func(f *excelize.File, s string) error {
		return setRows(f, s, []any{"ID", "Text"}, []any{"1", "from a workbook"})
	}))
	if err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name, content string
		want
	}{
		{"book.xlsx", string(xlsx), want{samples: samples("1", "from a workbook")}},
		{"data.csv", "ID,Text\n1,csv\n", want{samples: samples("1", "csv")}},
		{"empty.csv", "", want{err: "csv: the file is empty"}},
		{"book.csv", string(xlsx), want{err: "book.csv: the content is a zip archive (an .xlsx workbook?), not .csv text"}},
		{"data.xlsx", "ID,Text\n1,csv\n", want{err: "data.xlsx: the content is not an .xlsx workbook"}},
		{"old.xlsx", "\xD0\xCF\x11\xE0\xA1\xB1\x1A\xE1", want{err: "old-style .xls workbook"}},
		{"wide.jsonl", "\xFF\xFE{\x00\"\x00", want{err: "UTF-16"}},
		{"nul.csv", "ID,Text\n1,a\x00b\n", want{err: "the content is binary"}},
		{"doc.jsonl", "%PDF-1.7\n", want{err: "a PDF document"}},
		{"notes.txt", "ID,Text\n1,x\n", want{err: `notes.txt: unsupported file extension ".txt"`}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := ReadFrom(strings.NewReader(tt.content), tt.name, Options{})
			check(t, got, err, tt.want)
			var fe *FormatError
			if isFormat := tt.err != "" && !strings.HasPrefix(tt.err, "csv:"); isFormat != errors.As(err, &fe) {
				t.Errorf("err = %v: *FormatError %v, want %v", err, errors.As(err, &fe), isFormat)
			}
		})
	}
}

func TestReadFromNamesAMissingSheet(t *testing.T) {
	xlsx, err := os.ReadFile(writeXLSX(t, func(f *excelize.File, s string) error {
		return setRows(f, s, []any{"ID", "Text"}, []any{"1", "x"})
	}))
	if err != nil {
		t.Fatal(err)
	}
	_, err = ReadFrom(bytes.NewReader(xlsx), "book.xlsx", Options{Sheet: "Answers"})
	var se *SheetError
	if !errors.As(err, &se) || se.Sheet != "Answers" || !reflect.DeepEqual(se.Sheets, []string{"Sheet1"}) ||
		!strings.Contains(err.Error(), `no sheet named "Answers" (sheets: Sheet1)`) {
		t.Fatalf("err = %v", err)
	}
}

// memStore is an Importer that records what it was given.
type memStore struct {
	got []store.Sample
	err error
}

func (m *memStore) ImportSamples(_ context.Context, s []store.Sample) (store.ImportResult, error) {
	if m.err != nil {
		return store.ImportResult{}, m.err
	}
	m.got = append(m.got, s...)
	return store.ImportResult{Added: len(s) - 1, Unchanged: 1}, nil
}

func TestImportStoresTheSamplesAndReportsSkippedRows(t *testing.T) {
	data := "ID,Text\nA,alpha\nB,\nC,gamma\n"
	st := &memStore{}
	rep, err := Import(t.Context(), st, strings.NewReader(data), "upload.csv", Options{})
	want := Report{Added: 1, Unchanged: 1, Skipped: []Skipped{{Row: 3, Reason: "empty Text"}}}
	if err != nil || !reflect.DeepEqual(rep, want) || !reflect.DeepEqual(st.got, samples("A", "alpha", "C", "gamma")) {
		t.Fatalf("Import = %+v, %v; stored %+v", rep, err, st.got)
	}

	path := filepath.Join(t.TempDir(), "same.csv")
	if err := os.WriteFile(path, []byte(data), 0o600); err != nil {
		t.Fatal(err)
	}
	if rep, err := ImportFile(t.Context(), &memStore{}, path, Options{}); err != nil || !reflect.DeepEqual(rep, want) {
		t.Fatalf("ImportFile = %+v, %v", rep, err)
	}

	conflict := &store.ImportConflictError{Conflicts: []store.ImportConflict{{ID: "A"}}}
	if _, err := Import(t.Context(), &memStore{err: conflict}, strings.NewReader(data), "upload.csv", Options{}); !errors.As(err, &conflict) {
		t.Fatalf("conflict: err = %v, want the store's *ImportConflictError", err)
	}
	st = &memStore{}
	_, err = Import(t.Context(), st, strings.NewReader("Key\n1\n"), "upload.csv", Options{})
	var re *ReadError
	if !errors.As(err, &re) || len(st.got) != 0 || err.Error() != `read dataset upload.csv: csv: missing columns "ID" and "Text" (found columns: Key)` {
		t.Fatalf("unreadable file: err = %v, stored %v", err, st.got)
	}
	if _, err := Import(t.Context(), &memStore{err: conflict}, strings.NewReader(data), "upload.csv", Options{}); errors.As(err, &re) {
		t.Fatalf("a store error is not a read error: %v", err)
	}
}
