package main

import (
	"context"
	"encoding/csv"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/xuri/excelize/v2"

	"github.com/mhannotator/mha/internal/store"
)

// annotated imports three samples and stores four annotations directly, as a worker would.
func annotated(t *testing.T) fixture {
	t.Helper()
	f := newFixture(t)
	f.run(t, "import", f.write(t, "data.csv", dataCSV)).expect(t, exitOK)
	st := f.openStore(t)
	for _, a := range []store.Annotation{
		{Annotator: "1", Domain: "urgency", SampleID: "S1", Label: "LEVEL_2", Status: store.StatusOK, RawReply: "... <<LEVEL_2>>"},
		{Annotator: "1", Domain: "urgency", SampleID: "S3", Status: store.StatusMalformed, RawReply: "no tag", ParseError: "no << >> tag"},
		{Annotator: "1", Domain: "therapeutic", SampleID: "S1", Label: "TA-1, TA-3", Status: store.StatusOK},
		{Annotator: "2", Domain: "urgency", SampleID: "S4", Label: "LEVEL_0", Status: store.StatusOK},
	} {
		if err := st.UpsertAnnotation(context.Background(), a); err != nil {
			t.Fatal(err)
		}
	}
	return f
}

func TestExportJSONL(t *testing.T) {
	f := annotated(t)
	out := filepath.Join(f.dir, "out.jsonl")
	o := f.run(t, "export", "--format", "jsonl", "--out", out, "--annotator", "1", "--domain", "URGENCY")
	o.expect(t, exitOK)
	if o.stderr != "exported 2 annotations to "+out+"\n" || o.stdout != "" {
		t.Errorf("stdout %q, stderr %q", o.stdout, o.stderr)
	}
	data, err := os.ReadFile(out)
	if err != nil {
		t.Fatal(err)
	}
	lines := strings.Split(strings.TrimSuffix(string(data), "\n"), "\n")
	if len(lines) != 2 {
		t.Fatalf("%d lines:\n%s", len(lines), data)
	}
	var first, second map[string]any
	if err := json.Unmarshal([]byte(lines[0]), &first); err != nil {
		t.Fatal(err)
	}
	if err := json.Unmarshal([]byte(lines[1]), &second); err != nil {
		t.Fatal(err)
	}
	if first["sample_id"] != "S1" || first["label"] != "LEVEL_2" || first["text"] != "first text" || first["domain"] != "urgency" {
		t.Errorf("first line: %v", first)
	}
	if second["sample_id"] != "S3" || second["status"] != "malformed" || second["parse_error"] != "no << >> tag" {
		t.Errorf("second line: %v", second)
	}
}

func TestExportCSVReplacesTheFile(t *testing.T) {
	f := annotated(t)
	out := f.write(t, "out.csv", strings.Repeat("old content\n", 100))
	o := f.run(t, "export", "--format", "CSV", "--out", out)
	o.expect(t, exitOK)
	if o.stderr != "exported 4 annotations to "+out+"\n" {
		t.Errorf("stderr %q", o.stderr)
	}
	file, err := os.Open(out)
	if err != nil {
		t.Fatal(err)
	}
	defer file.Close()
	records, err := csv.NewReader(file).ReadAll()
	if err != nil {
		t.Fatal(err)
	}
	if len(records) != 5 || records[0][0] != "annotator" {
		t.Fatalf("records: %v", records)
	}
	var got []string
	for _, r := range records[1:] {
		got = append(got, r[0]+"/"+r[1]+"/"+r[2])
	}
	// Ordered by annotator, domain (by name) and dataset position.
	want := "1/therapeutic/S1 1/urgency/S1 1/urgency/S3 2/urgency/S4"
	if strings.Join(got, " ") != want {
		t.Errorf("rows %v, want %s", got, want)
	}
}

func TestExportXLSX(t *testing.T) {
	f := annotated(t)
	out := f.write(t, "out.xlsx", "not a workbook")
	o := f.run(t, "export", "--format", "xlsx", "--out", out, "--annotator", "1")
	o.expect(t, exitOK)
	if o.stderr != "exported 3 annotations to "+out+"\n" || o.stdout != "" {
		t.Errorf("stdout %q, stderr %q", o.stdout, o.stderr)
	}
	x, err := excelize.OpenFile(out)
	if err != nil {
		t.Fatal(err)
	}
	defer x.Close()
	// The summary, then the domains in the catalogue's order (urgency before therapeutic).
	if got := fmt.Sprint(x.GetSheetList()); got != "[summary urgency therapeutic]" {
		t.Fatalf("sheets %s", got)
	}
	rows := func(sheet string) [][]string {
		t.Helper()
		rows, err := x.GetRows(sheet)
		if err != nil {
			t.Fatal(err)
		}
		return rows
	}
	urgency := rows("urgency")
	if len(urgency) != 3 || urgency[0][0] != "annotator" || urgency[0][7] != "raw_reply" {
		t.Fatalf("urgency: %q", urgency)
	}
	var got []string
	for _, r := range urgency[1:] {
		got = append(got, strings.Join(r[:8], "|"))
	}
	want := "1|urgency|S1|0|first text|LEVEL_2|ok|... <<LEVEL_2>> 1|urgency|S3|1|third text||malformed|no tag"
	if strings.Join(got, " ") != want {
		t.Errorf("urgency rows %q, want %s", got, want)
	}
	if th := rows("therapeutic"); len(th) != 2 || th[1][5] != "TA-1, TA-3" {
		t.Errorf("therapeutic: %q", th)
	}
	summary := rows("summary")
	if len(summary) < 3 || strings.Join(summary[1][:7], "|") != "1|urgency|1|1|0|0|2" ||
		strings.Join(summary[2][:7], "|") != "1|therapeutic|1|0|0|0|1" {
		t.Errorf("summary: %q", summary)
	}
	if last := summary[len(summary)-1]; len(last) != 2 || last[0] != "filter" || last[1] != `Annotator "1"` {
		t.Errorf("summary ends %q", last)
	}
}

func TestExportXLSXToStdout(t *testing.T) {
	f := annotated(t)
	o := f.run(t, "export", "--format", "XLSX", "--domain", "urgency")
	o.expect(t, exitOK)
	x, err := excelize.OpenReader(strings.NewReader(o.stdout))
	if err != nil {
		t.Fatal(err)
	}
	defer x.Close()
	if got := fmt.Sprint(x.GetSheetList()); got != "[summary urgency]" {
		t.Errorf("sheets %s", got)
	}
	if o.stderr != "exported 3 annotations to standard output\n" {
		t.Errorf("stderr %q", o.stderr)
	}
}

func TestExportToStdout(t *testing.T) {
	f := annotated(t)
	o := f.run(t, "export", "--annotator", "2")
	o.expect(t, exitOK)
	if strings.Count(o.stdout, "\n") != 1 || !strings.Contains(o.stdout, `"label":"LEVEL_0"`) {
		t.Errorf("stdout:\n%s", o.stdout)
	}
	if o.stderr != "exported 1 annotations to standard output\n" {
		t.Errorf("stderr %q", o.stderr)
	}
}

func TestExportFailureLeavesNoFile(t *testing.T) {
	f := annotated(t)
	out := filepath.Join(f.dir, "out.jsonl")
	// A store that cannot be opened fails before the file is created.
	f.write(t, "notadir", "")
	o := runStarter(t, "export", "--out", out, "--config", f.config, "--db", filepath.Join(f.dir, "notadir", "x.db"))
	o.expect(t, exitFail)
	if _, err := os.Stat(out); !os.IsNotExist(err) {
		t.Errorf("%s exists after a failed export: %v", out, err)
	}

	// A failing write removes what was written.
	out = filepath.Join(f.dir, "partial.jsonl")
	_, err := writeFile(out, func(w io.Writer) (int, error) {
		w.Write([]byte("half"))
		return 0, errors.New("disk full")
	})
	if err == nil || !strings.Contains(err.Error(), "disk full") {
		t.Fatalf("err = %v", err)
	}
	if _, err := os.Stat(out); !os.IsNotExist(err) {
		t.Errorf("%s exists after a failed write: %v", out, err)
	}
}
