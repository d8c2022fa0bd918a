package server

import (
	"bytes"
	"io"
	"mime/multipart"
	"net/http"
	"net/http/httptest"
	"reflect"
	"strings"
	"testing"

	"github.com/xuri/excelize/v2"
)

// uploadForm builds a multipart body with the dataset as the field file (when name is not
// empty) and the other fields.
func uploadForm(t *testing.T, name string, content []byte, fields map[string]string) (io.Reader, string) {
	t.Helper()
	var b bytes.Buffer
	w := multipart.NewWriter(&b)
	for k, v := range fields {
		if err := w.WriteField(k, v); err != nil {
			t.Fatal(err)
		}
	}
	if name != "" {
		part, err := w.CreateFormFile("file", name)
		if err != nil {
			t.Fatal(err)
		}
		part.Write(content)
	}
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}
	return &b, w.FormDataContentType()
}

func (f *configFixture) upload(name string, content []byte, fields map[string]string, status int) *httptest.ResponseRecorder {
	f.t.Helper()
	body, ct := uploadForm(f.t, name, content, fields)
	rec := f.send(http.MethodPost, "/api/dataset", ct, body)
	if rec.Code != status {
		f.t.Fatalf("upload %s: status %d, want %d:\n%s", name, rec.Code, status, rec.Body.String())
	}
	return rec
}

type datasetReply struct {
	Samples int
	First   []DatasetSample
}

// datasetCSV has a row with an empty Text (row 3) and a repeated ID (row 5), as starter's
// import test does.
const datasetCSV = "ID,Text\n" +
	"S1,first text\n" +
	"S2,\n" +
	"S3,third text\n" +
	"S1,again\n" +
	"S4,\"fourth, with a comma\"\n"

func TestImportDatasetReportsRowsAndGetShowsTheFirstSamples(t *testing.T) {
	f := newConfigFixture(t)
	if got := decodeInto[datasetReply](t, f.call(http.MethodGet, "/api/dataset", nil, http.StatusOK)); got.Samples != 0 || len(got.First) != 0 {
		t.Fatalf("empty store: %+v", got)
	}
	rep := decodeInto[ImportReport](t, f.upload("students.csv", []byte(datasetCSV), nil, http.StatusOK))
	want := ImportReport{File: "students.csv", Added: 3, Rejected: []RejectedRow{
		{Row: 3, Reason: "empty Text"},
		{Row: 5, Reason: `duplicate ID "S1" at row 5 (first seen at row 2)`},
	}}
	if !reflect.DeepEqual(rep, want) {
		t.Errorf("report = %+v, want %+v", rep, want)
	}
	rep = decodeInto[ImportReport](t, f.upload("students.csv", []byte(datasetCSV), nil, http.StatusOK))
	if rep.Added != 0 || rep.Unchanged != 3 {
		t.Errorf("second import = %+v", rep)
	}
	var lines []string
	for i := range 8 {
		lines = append(lines, `{"id": "J`+string(rune('0'+i))+`", "text": "line `+string(rune('0'+i))+`"}`)
	}
	rep = decodeInto[ImportReport](t, f.upload("more.JSONL", []byte(strings.Join(lines, "\n")+"\nnot json\n"), nil, http.StatusOK))
	if rep.Added != 8 || len(rep.Rejected) != 1 || rep.Rejected[0].Row != 9 || !strings.Contains(rep.Rejected[0].Reason, "invalid JSON") {
		t.Errorf("jsonl report = %+v", rep)
	}
	got := decodeInto[datasetReply](t, f.call(http.MethodGet, "/api/dataset", nil, http.StatusOK))
	wantFirst := []DatasetSample{{"S1", "first text", 0}, {"S3", "third text", 1}, {"S4", "fourth, with a comma", 2}, {"J0", "line 0", 3}, {"J1", "line 1", 4}}
	if got.Samples != 11 || !reflect.DeepEqual(got.First, wantFirst) {
		t.Errorf("dataset = %+v", got)
	}
	if !strings.Contains(f.logs.String(), "dataset imported") {
		t.Errorf("no log line:\n%s", f.logs.String())
	}
}

func TestImportDatasetReadsAWorkbookSheet(t *testing.T) {
	wb := excelize.NewFile()
	if _, err := wb.NewSheet("Answers"); err != nil {
		t.Fatal(err)
	}
	for cell, v := range map[string]any{"A1": "ID", "B1": "Text", "A2": 12, "B2": "from the sheet", "A3": "", "B3": "no id"} {
		if err := wb.SetCellValue("Answers", cell, v); err != nil {
			t.Fatal(err)
		}
	}
	var b bytes.Buffer
	if err := wb.Write(&b); err != nil {
		t.Fatal(err)
	}
	f := newConfigFixture(t)
	rep := decodeInto[ImportReport](t, f.upload("book.xlsx", b.Bytes(), map[string]string{"sheet": "answers"}, http.StatusOK))
	if rep.Added != 1 || !reflect.DeepEqual(rep.Rejected, []RejectedRow{{Row: 3, Reason: "empty ID"}}) {
		t.Errorf("report = %+v", rep)
	}
	rec := f.upload("book.xlsx", b.Bytes(), map[string]string{"sheet": "Responses"}, http.StatusUnprocessableEntity)
	wantProblem(t, rec, "body.sheet", `no sheet named "Responses" (sheets: Sheet1, Answers)`)
	// The first sheet is empty.
	rec = f.upload("book.xlsx", b.Bytes(), nil, http.StatusUnprocessableEntity)
	wantProblem(t, rec, "body.file", `sheet "Sheet1" is empty`)
}

func TestImportDatasetRefusesFilesItCannotRead(t *testing.T) {
	f := newConfigFixture(t)
	wb := excelize.NewFile()
	var xlsx bytes.Buffer
	if err := wb.Write(&xlsx); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name, file, content string
		status              int
		location, msg       string
	}{
		{"another type", "notes.txt", "ID,Text\n1,x\n", 415, "body.file", `unsupported file extension ".txt"`},
		{"no extension", "data", "ID,Text\n1,x\n", 415, "body.file", "unsupported file extension"},
		{"a workbook named csv", "data.csv", xlsx.String(), 415, "body.file", "the content is a zip archive"},
		{"text named xlsx", "data.xlsx", "ID,Text\n1,x\n", 415, "body.file", "not an .xlsx workbook"},
		{"missing columns", "data.csv", "Key,Body\n1,x\n", 422, "body.file", `missing columns "ID" and "Text"`},
		{"an empty file", "data.jsonl", "", 422, "body.file", "the file is empty"},
		{"a broken csv", "data.csv", "ID,Text\n1,\"open\n", 422, "body.file", "row 2"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			rec := f.upload(tc.file, []byte(tc.content), nil, tc.status)
			wantProblem(t, rec, tc.location, tc.msg)
		})
	}
	wantProblem(t, f.upload("", nil, map[string]string{"sheet": "x"}, http.StatusUnprocessableEntity), "body.file", "is required")
	rec := f.send(http.MethodPost, "/api/dataset", "application/json", strings.NewReader(`{"file": "data.csv"}`))
	if rec.Code != http.StatusUnsupportedMediaType {
		t.Errorf("a JSON body: status %d: %s", rec.Code, rec.Body.String())
	}
	if n, _ := f.st.CountSamples(t.Context()); n != 0 {
		t.Errorf("refused uploads stored %d samples", n)
	}
}

func TestImportDatasetConflictImportsNothing(t *testing.T) {
	f := newConfigFixture(t)
	f.upload("data.csv", []byte(datasetCSV), nil, http.StatusOK)
	rec := f.upload("changed.csv", []byte("ID,Text\nS5,new sample\nS3,a different third text\nS4,another fourth\n"), nil, http.StatusConflict)
	p := wantProblem(t, rec, "body.file", `sample ID "S3" is already stored (position 1) with a different text`)
	wantProblem(t, rec, "body.file", `"S4"`)
	if !strings.Contains(p.Detail, "nothing was imported") || len(p.Errors) != 2 {
		t.Errorf("problem = %+v", p)
	}
	got := decodeInto[datasetReply](t, f.call(http.MethodGet, "/api/dataset", nil, http.StatusOK))
	if got.Samples != 3 || got.First[1].Text != "third text" {
		t.Errorf("the store changed: %+v", got)
	}
}

func TestImportDatasetAboveTheLimitIs413(t *testing.T) {
	f := newConfigFixture(t, func(o *Options) { o.MaxUpload = 2048 })
	big := []byte("ID,Text\n" + strings.Repeat("S,some text of a sample\n", 200))
	// With a Content-Length the middleware refuses at once.
	rec := f.upload("big.csv", big, nil, http.StatusRequestEntityTooLarge)
	if !strings.Contains(rec.Body.String(), "2048 bytes") {
		t.Errorf("reply: %s", rec.Body.String())
	}
	// Without one, the body is cut off while it is read.
	body, ct := uploadForm(t, "big.csv", big, nil)
	req := httptest.NewRequest(http.MethodPost, "/api/dataset", io.NopCloser(body))
	req.ContentLength = -1
	req.Header.Set("Content-Type", ct)
	rec = f.serve(req)
	if rec.Code != http.StatusRequestEntityTooLarge {
		t.Fatalf("chunked upload: status %d: %s", rec.Code, rec.Body.String())
	}
	wantProblem(t, rec, "body.file", "at most 2048 bytes")
	if n, _ := f.st.CountSamples(t.Context()); n != 0 {
		t.Errorf("stored %d samples", n)
	}
	f.upload("small.csv", []byte("ID,Text\n1,x\n"), nil, http.StatusOK)
}
