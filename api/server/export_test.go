package server

import (
	"bufio"
	"bytes"
	"encoding/csv"
	"encoding/json"
	"fmt"
	"net/http"
	"net/http/httptest"
	"regexp"
	"slices"
	"strings"
	"testing"

	"github.com/xuri/excelize/v2"

	"github.com/mhannotator/mha/internal/store"
)

// wantDownload checks the headers of a download in format.
func wantDownload(t *testing.T, rec *httptest.ResponseRecorder, format, contentType string) {
	t.Helper()
	if got := rec.Header().Get("Content-Type"); got != contentType {
		t.Errorf("%s: Content-Type %q, want %q", format, got, contentType)
	}
	disposition := regexp.MustCompile(`^attachment; filename="annotations-\d{8}-\d{6}\.` + format + `"$`)
	if got := rec.Header().Get("Content-Disposition"); !disposition.MatchString(got) {
		t.Errorf("%s: Content-Disposition %q", format, got)
	}
}

// exportedRow is a JSONL line of an export.
type exportedRow struct {
	Annotator, Domain, Text, Label, Status, Error string
	SampleID                                      string `json:"sample_id"`
	Position                                      int
	RawReply                                      string `json:"raw_reply"`
	ParseError                                    string `json:"parse_error"`
	ValidityError                                 string `json:"validity_error"`
	InputTokens                                   int    `json:"input_tokens"`
	Attempt                                       int
	CreatedAt                                     string `json:"created_at"`
}

func (r exportedRow) key() string { return r.Annotator + "/" + r.Domain + "/" + r.SampleID }

func jsonlRows(t *testing.T, body []byte) []exportedRow {
	t.Helper()
	var out []exportedRow
	sc := bufio.NewScanner(bytes.NewReader(body))
	sc.Buffer(nil, 1<<24)
	for sc.Scan() {
		var r exportedRow
		dec := json.NewDecoder(bytes.NewReader(sc.Bytes()))
		if err := dec.Decode(&r); err != nil {
			t.Fatalf("line %q: %v", sc.Text(), err)
		}
		out = append(out, r)
	}
	return out
}

// exportFilters are filter queries with the rows of seedData they select, in export order
// (annotator, domain, dataset position).
var exportFilters = []struct {
	query string
	want  []string
}{
	{"", []string{"1/therapeutic/S1", "1/therapeutic/S2", "1/urgency/S1", "1/urgency/S2", "1/urgency/S3",
		"2/therapeutic/S3", "2/therapeutic/S5", "2/urgency/S1", "2/urgency/S3"}},
	{"&annotator=2", []string{"2/therapeutic/S3", "2/therapeutic/S5", "2/urgency/S1", "2/urgency/S3"}},
	{"&domain=urgency", []string{"1/urgency/S1", "1/urgency/S2", "1/urgency/S3", "2/urgency/S1", "2/urgency/S3"}},
	{"&status=ok&annotator=1", []string{"1/therapeutic/S1", "1/therapeutic/S2", "1/urgency/S1", "1/urgency/S3"}},
	{"&label=TA-3", []string{"1/therapeutic/S1", "2/therapeutic/S5"}},
	{"&q=PANIC", []string{"1/urgency/S2", "2/therapeutic/S5"}},
	{"&from=" + minute(4) + "&to=" + minute(6), []string{"2/urgency/S1", "2/urgency/S3"}},
	{"&annotator=7", nil},
}

func TestExportJSONLIsADownloadOfTheFilteredRows(t *testing.T) {
	f := newConfigFixture(t)
	seedData(f)
	for _, tt := range exportFilters {
		rec := f.get("/api/export?format=jsonl"+tt.query, http.StatusOK)
		wantDownload(t, rec, "jsonl", "application/x-ndjson")
		var keys []string
		for _, r := range jsonlRows(t, rec.Body.Bytes()) {
			keys = append(keys, r.key())
		}
		if !slices.Equal(keys, tt.want) {
			t.Errorf("jsonl%s: %v, want %v", tt.query, keys, tt.want)
		}
	}
	rows := jsonlRows(t, f.get("/api/export?format=jsonl&status=malformed", http.StatusOK).Body.Bytes())
	want := exportedRow{Annotator: "1", Domain: "urgency", SampleID: "S2", Position: 1, Text: "Exam stress again", Status: "malformed",
		RawReply: "maybe panic, LEVEL_2?", ParseError: "no JSON object in the reply", InputTokens: 120, Attempt: 2, CreatedAt: "2026-03-01T09:01:00Z"}
	if len(rows) != 1 || rows[0] != want {
		t.Errorf("row = %+v, want %+v", rows, want)
	}
}

func TestExportCSVIsADownloadOfTheFilteredRowsWithAHeader(t *testing.T) {
	f := newConfigFixture(t)
	seedData(f)
	for _, tt := range exportFilters {
		rec := f.get("/api/export?format=csv"+tt.query, http.StatusOK)
		wantDownload(t, rec, "csv", "text/csv; charset=utf-8")
		records, err := csv.NewReader(rec.Body).ReadAll()
		if err != nil {
			t.Fatal(err)
		}
		if len(records) == 0 || records[0][0] != "annotator" || records[0][2] != "sample_id" || records[0][4] != "text" {
			t.Fatalf("csv%s: header %v", tt.query, records)
		}
		var keys []string
		for _, r := range records[1:] {
			keys = append(keys, r[0]+"/"+r[1]+"/"+r[2])
		}
		if !slices.Equal(keys, tt.want) {
			t.Errorf("csv%s: %v, want %v", tt.query, keys, tt.want)
		}
	}
	records, _ := csv.NewReader(f.get("/api/export?format=csv&label=TA-3&annotator=1", http.StatusOK).Body).ReadAll()
	if len(records) != 2 || records[1][4] != "I feel hopeless and tired" || records[1][5] != "TA-1, TA-3" || records[1][7] != `{"label": "TA-1, TA-3"}` {
		t.Errorf("records = %q", records)
	}
}

func TestExportXLSXHasASummaryAndASheetPerDomainWithTheFilteredRows(t *testing.T) {
	f := newConfigFixture(t)
	seedData(f)
	read := func(query string) *excelize.File {
		t.Helper()
		rec := f.get("/api/export?format=xlsx"+query, http.StatusOK)
		wantDownload(t, rec, "xlsx", "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet")
		book, err := excelize.OpenReader(rec.Body)
		if err != nil {
			t.Fatalf("xlsx%s: %v", query, err)
		}
		t.Cleanup(func() { book.Close() })
		return book
	}
	rowsOf := func(book *excelize.File, sheet string) [][]string {
		t.Helper()
		rows, err := book.GetRows(sheet)
		if err != nil {
			t.Fatalf("sheet %s: %v", sheet, err)
		}
		return rows
	}

	book := read("&status=ok")
	if sheets := book.GetSheetList(); !slices.Equal(sheets, []string{"summary", "urgency", "therapeutic"}) {
		t.Errorf("sheets = %v", sheets)
	}
	var keys []string
	for _, sheet := range []string{"urgency", "therapeutic"} {
		rows := rowsOf(book, sheet)
		if len(rows) == 0 || rows[0][0] != "annotator" || rows[0][4] != "text" {
			t.Fatalf("%s: header %v", sheet, rows)
		}
		for _, r := range rows[1:] {
			keys = append(keys, r[0]+"/"+r[1]+"/"+r[2]+" "+r[5]+" "+r[6])
		}
	}
	want := []string{"1/urgency/S1 LEVEL_3 ok", "1/urgency/S3 LEVEL_3 ok", "2/urgency/S1 LEVEL_2 ok",
		"1/therapeutic/S1 TA-1, TA-3 ok", "1/therapeutic/S2 TA-30 ok", "2/therapeutic/S5 TA-3 ok"}
	if !slices.Equal(keys, want) {
		t.Errorf("rows = %v, want %v", keys, want)
	}
	summary := rowsOf(book, "summary")
	if len(summary) != 8 || summary[0][0] != "annotator" || !slices.Equal(summary[1][:7], []string{"1", "urgency", "2", "0", "0", "0", "2"}) ||
		!slices.Equal(summary[4][:3], []string{"2", "therapeutic", "1"}) || !strings.Contains(strings.Join(summary[7], " "), `Status "ok"`) {
		t.Errorf("summary = %q", summary)
	}

	// Another filter, another workbook: one domain, one annotator.
	book = read("&annotator=2&domain=therapeutic")
	if sheets := book.GetSheetList(); !slices.Equal(sheets, []string{"summary", "therapeutic"}) {
		t.Errorf("sheets = %v", sheets)
	}
	if rows := rowsOf(book, "therapeutic"); len(rows) != 3 || rows[1][2] != "S3" || rows[1][6] != "blocked" || rows[2][3] != "4" {
		t.Errorf("therapeutic = %q", rows)
	}
	// Nothing selected: the summary alone.
	if sheets := read("&annotator=7").GetSheetList(); !slices.Equal(sheets, []string{"summary"}) {
		t.Errorf("sheets = %v", sheets)
	}
}

func TestExportKeepsLongTextsWhole(t *testing.T) {
	f := newConfigFixture(t)
	long := strings.Repeat("a long answer, ", 3000) // 45 000 characters: more than an XLSX cell holds
	f.importSamples([]string{"L1"}, map[string]string{"L1": long})
	f.annotate(store.Annotation{Annotator: "1", Domain: "urgency", SampleID: "L1", Status: store.StatusMalformed, RawReply: long})
	rows := jsonlRows(t, f.get("/api/export?format=jsonl", http.StatusOK).Body.Bytes())
	if len(rows) != 1 || rows[0].Text != long || rows[0].RawReply != long {
		t.Errorf("jsonl cut the text")
	}
	records, err := csv.NewReader(f.get("/api/export?format=csv", http.StatusOK).Body).ReadAll()
	if err != nil || len(records) != 2 || records[1][4] != long || records[1][7] != long {
		t.Errorf("csv cut the text (%v)", err)
	}
	book, err := excelize.OpenReader(f.get("/api/export?format=xlsx", http.StatusOK).Body)
	if err != nil {
		t.Fatal(err)
	}
	defer book.Close()
	sheet, _ := book.GetRows("urgency")
	var text strings.Builder
	for i, name := range sheet[0] {
		if name == "text" || strings.HasPrefix(name, "text (cont.") {
			text.WriteString(sheet[1][i])
		}
	}
	if text.String() != long {
		t.Errorf("xlsx: the text and its continuation cells hold %d characters of %d", text.Len(), len(long))
	}
}

func TestExportRefusesABadFormatOrFilterBeforeWritingAnything(t *testing.T) {
	f := newConfigFixture(t)
	seedData(f)
	for _, tt := range []struct{ query, location string }{
		{"format=pdf", "query.format"},
		{"format=JSONL", "query.format"},
		{"format=", "query.format"},
		{"", "query.format"},
		{"format=csv&from=" + minute(3) + "&to=" + minute(3), "query.to"},
		{"format=csv&domain=mood", "query.domain"},
		{"format=xlsx&status=done", "query.status"},
		{"format=jsonl&to=tomorrow", "query.to"},
	} {
		rec := f.get("/api/export?"+tt.query, http.StatusUnprocessableEntity)
		wantProblem(t, rec, tt.location)
		if rec.Header().Get("Content-Disposition") != "" {
			t.Errorf("?%s: a refused export is a download", tt.query)
		}
	}
}

type previewReply struct {
	Rows  []Annotation `json:"rows"`
	Total int          `json:"total"`
}

func TestExportPreviewShowsTheFirstTwentyRowsAndTheTotal(t *testing.T) {
	f := newConfigFixture(t)
	if body := strings.TrimSpace(f.get("/api/export/preview", http.StatusOK).Body.String()); body != `{"rows":[],"total":0}` {
		t.Errorf("an empty store: %s", body)
	}
	var ids []string
	for i := range 25 {
		ids = append(ids, fmt.Sprintf("P%02d", i))
	}
	f.importSamples(ids, nil)
	// Stored in reverse order: the preview follows the dataset, not the writes.
	for i := len(ids) - 1; i >= 0; i-- {
		f.annotate(store.Annotation{Annotator: "2", Domain: "urgency", SampleID: ids[i], Status: store.StatusOK, Label: "LEVEL_1"})
	}
	for _, id := range ids[:3] {
		f.annotate(store.Annotation{Annotator: "1", Domain: "intensity", SampleID: id, Status: store.StatusError, Error: "timeout"})
	}

	got := decodeInto[previewReply](t, f.get("/api/export/preview", http.StatusOK))
	var keys []string
	for _, r := range got.Rows {
		keys = append(keys, fmt.Sprintf("%s/%s/%s", r.Annotator, r.Domain, r.SampleID))
	}
	want := []string{"1/intensity/P00", "1/intensity/P01", "1/intensity/P02"}
	for _, id := range ids[:17] {
		want = append(want, "2/urgency/"+id)
	}
	if got.Total != 28 || !slices.Equal(keys, want) {
		t.Errorf("preview: total %d, rows %v", got.Total, keys)
	}
	if r := got.Rows[0]; r.Text != "text of P00" || r.Error != "timeout" || r.Status != store.StatusError || r.Position != 0 {
		t.Errorf("first row = %+v", r)
	}

	got = decodeInto[previewReply](t, f.get("/api/export/preview?annotator=2&status=ok", http.StatusOK))
	if got.Total != 25 || len(got.Rows) != 20 || got.Rows[0].SampleID != "P00" || got.Rows[19].SampleID != "P19" {
		t.Errorf("annotator 2: total %d, %d rows", got.Total, len(got.Rows))
	}
	got = decodeInto[previewReply](t, f.get("/api/export/preview?status=error", http.StatusOK))
	if got.Total != 3 || len(got.Rows) != 3 {
		t.Errorf("errors: total %d, %d rows", got.Total, len(got.Rows))
	}
	got = decodeInto[previewReply](t, f.get("/api/export/preview?label=LEVEL_9", http.StatusOK))
	if got.Total != 0 || got.Rows == nil || len(got.Rows) != 0 {
		t.Errorf("nothing selected: %+v", got)
	}
}

func TestExportPreviewRefusesBadFilters(t *testing.T) {
	f := newConfigFixture(t)
	for query, location := range map[string]string{
		"from=" + minute(3) + "&to=" + minute(1): "query.to",
		"domain=mood":                            "query.domain",
		"status=fine":                            "query.status",
		"q=" + strings.Repeat("q", 201):          "query.q",
	} {
		wantProblem(t, f.get("/api/export/preview?"+query, http.StatusUnprocessableEntity), location)
	}
}
