package main

import (
	"context"
	"path/filepath"
	"strings"
	"testing"

	"github.com/mhannotator/mha/internal/store"
)

// dataCSV has a row with an empty Text (record 3) and a repeated ID (record 5).
const dataCSV = "ID,Text\n" +
	"S1,first text\n" +
	"S2,\n" +
	"S3,third text\n" +
	"S1,again\n" +
	"S4,\"fourth, with a comma\"\n"

func storedSamples(t *testing.T, st store.Store) []store.Sample {
	t.Helper()
	all, err := st.Samples(context.Background(), 0, 1000)
	if err != nil {
		t.Fatal(err)
	}
	return all
}

func TestImport(t *testing.T) {
	f := newFixture(t)
	data := f.write(t, "data.csv", dataCSV)

	o := f.run(t, "import", data)
	o.expect(t, exitOK)
	want := "imported 3 new samples (0 already stored) from " + data + "\n" +
		"  row 3: empty Text\n" +
		"  row 5: duplicate ID \"S1\" at row 5 (first seen at row 2)\n" +
		"skipped 2 rows\n"
	if o.stdout != want {
		t.Errorf("stdout:\n%s\nwant:\n%s", o.stdout, want)
	}
	got := storedSamples(t, f.openStore(t))
	wantSamples := []store.Sample{
		{ID: "S1", Text: "first text", Position: 0},
		{ID: "S3", Text: "third text", Position: 1},
		{ID: "S4", Text: "fourth, with a comma", Position: 2},
	}
	if len(got) != len(wantSamples) {
		t.Fatalf("stored %v, want %v", got, wantSamples)
	}
	for i := range got {
		if got[i] != wantSamples[i] {
			t.Errorf("sample %d = %+v, want %+v", i, got[i], wantSamples[i])
		}
	}

	o = f.run(t, "import", data)
	o.expect(t, exitOK)
	if !strings.HasPrefix(o.stdout, "imported 0 new samples (3 already stored) from "+data+"\n") {
		t.Errorf("second import:\n%s", o.stdout)
	}

	o = f.run(t, "import", "--if-empty", f.write(t, "more.csv", "ID,Text\nS9,ninth\n"))
	o.expect(t, exitOK)
	if o.stdout != "store already holds 3 samples; nothing imported\n" {
		t.Errorf("--if-empty:\n%s", o.stdout)
	}
	if n := len(storedSamples(t, f.openStore(t))); n != 3 {
		t.Errorf("--if-empty imported anyway: %d samples", n)
	}
}

func TestImportIfEmptyIntoAnEmptyStore(t *testing.T) {
	f := newFixture(t)
	data := f.write(t, "d.jsonl", `{"id": "a", "text": "alpha"}`+"\n")
	o := f.run(t, "import", "--if-empty", data)
	o.expect(t, exitOK)
	if o.stdout != "imported 1 new samples (0 already stored) from "+data+"\nskipped 0 rows\n" {
		t.Errorf("stdout:\n%s", o.stdout)
	}
}

func TestImportWithoutFileReadsTheConfiguredDatasetPath(t *testing.T) {
	f := newFixture(t)
	data := f.write(t, "configured.jsonl", `{"id": "a", "text": "alpha"}`+"\n"+`{"id": "b", "text": "beta"}`+"\n")
	f.write(t, "config/settings.json", `{"global": {"dataset_path": "`+data+`"}, "annotators": {"1": {}}}`)
	o := f.run(t, "import", "--if-empty")
	o.expect(t, exitOK)
	if !strings.Contains(o.stdout, "imported 2 new samples") || !strings.Contains(o.stdout, data) {
		t.Errorf("stdout:\n%s", o.stdout)
	}
}

func TestImportConflictChangesNothing(t *testing.T) {
	f := newFixture(t)
	f.run(t, "import", f.write(t, "data.csv", dataCSV)).expect(t, exitOK)

	o := f.run(t, "import", f.write(t, "changed.csv", "ID,Text\nS5,new sample\nS3,a different third text\n"))
	o.expect(t, exitFail, "import refused", `"S3"`)
	if o.stdout != "" {
		t.Errorf("stdout: %q", o.stdout)
	}
	got := storedSamples(t, f.openStore(t))
	if len(got) != 3 || got[1].Text != "third text" {
		t.Errorf("store changed: %+v", got)
	}
}

func TestImportUnreadableFile(t *testing.T) {
	f := newFixture(t)
	f.run(t, "import", filepath.Join(f.dir, "missing.csv")).expect(t, exitFail, "missing.csv")
	f.run(t, "import", f.write(t, "cols.csv", "Key,Body\n1,x\n")).expect(t, exitFail, `missing columns "ID" and "Text"`)
	f.run(t, "import", f.write(t, "data.txt", "hello")).expect(t, exitFail, "unsupported file extension")
}
