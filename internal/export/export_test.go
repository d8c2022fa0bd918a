package export_test

import (
	"bytes"
	"context"
	"encoding/csv"
	"encoding/json"
	"fmt"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/mhannotator/mha/internal/export"
	"github.com/mhannotator/mha/internal/store"
)

// wantColumns is the documented column order, written out rather than taken from the package.
var wantColumns = []string{
	"annotator", "domain", "sample_id", "position", "text", "label", "status", "raw_reply",
	"parse_error", "validity_error", "error", "model", "prompt_hash", "latency_ms",
	"input_tokens", "output_tokens", "attempt", "created_at",
}

// numeric are the columns JSONL writes as numbers.
var numeric = map[string]bool{"position": true, "latency_ms": true, "input_tokens": true, "output_tokens": true, "attempt": true}

var texts = []string{
	"plain",
	"commas, and \"double quotes\", and 'single'",
	"line one\nline two\n\nline four",
	"Ich fühle mich erschöpft — 心が疲れた 🙂 <b>&amp;</b>",
	"  leading and trailing spaces\t",
	"",
	strings.Repeat("fünfzig KB, \"quoted\"\n", 50*1024/21+1),
}

type fixture struct {
	s      store.Store
	stored []store.ExportRow // everything stored, in export order
}

func newFixture(t *testing.T) fixture {
	t.Helper()
	ctx := context.Background()
	s, err := store.OpenSQLite(ctx, filepath.Join(t.TempDir(), "mha.db"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })

	var samples []store.Sample
	for i, text := range texts {
		samples = append(samples, store.Sample{ID: fmt.Sprintf("id,%d \"ü\"", i), Text: text})
	}
	if _, err := s.ImportSamples(ctx, samples); err != nil {
		t.Fatal(err)
	}
	var stored []store.ExportRow
	for _, annotator := range []string{"2", "1"} {
		for _, domain := range []string{"urgency", "redressal"} {
			for pos := len(samples) - 1; pos >= 0; pos-- {
				a := store.Annotation{
					Annotator:     annotator,
					Domain:        domain,
					SampleID:      samples[pos].ID,
					Label:         `["talk, to someone", "sleep"]`,
					Status:        []string{store.StatusOK, store.StatusMalformed, store.StatusError, store.StatusBlocked}[pos%4],
					RawReply:      "Reasoning, \"quoted\"\nüber <<" + samples[pos].Text + ">>",
					ParseError:    "no <<tag>>, sorry",
					ValidityError: "LEVEL_9 \"unknown\"",
					Error:         "503 Service Unavailable\nretry",
					Model:         "gemini-2.5-flash",
					PromptHash:    "sha256:0123",
					LatencyMS:     int64(1500 + pos),
					InputTokens:   100 + pos,
					OutputTokens:  20 + pos,
					Attempt:       pos % 3,
					CreatedAt:     time.Date(2025, 1, 2, 3, 4, 5, 6789+pos, time.FixedZone("IST", 5*3600+1800)),
				}
				if err := s.UpsertAnnotation(ctx, a); err != nil {
					t.Fatal(err)
				}
				stored = append(stored, store.ExportRow{Annotation: a, Text: samples[pos].Text, Position: pos})
			}
		}
	}
	sort.Slice(stored, func(i, j int) bool {
		a, b := stored[i], stored[j]
		if a.Annotator != b.Annotator {
			return a.Annotator < b.Annotator
		}
		if a.Domain != b.Domain {
			return a.Domain < b.Domain
		}
		return a.Position < b.Position
	})
	return fixture{s: s, stored: stored}
}

// fields is what an exported row must hold, column by column, as text.
func fields(r store.ExportRow) []string {
	return []string{
		r.Annotator, r.Domain, r.SampleID, strconv.Itoa(r.Position), r.Text, r.Label, r.Status,
		r.RawReply, r.ParseError, r.ValidityError, r.Error, r.Model, r.PromptHash,
		strconv.FormatInt(r.LatencyMS, 10), strconv.Itoa(r.InputTokens), strconv.Itoa(r.OutputTokens),
		strconv.Itoa(r.Attempt), r.CreatedAt.UTC().Format(time.RFC3339Nano),
	}
}

func (fx fixture) want(f store.Filter) [][]string {
	var out [][]string
	for _, r := range fx.stored {
		if (f.Annotator == "" || r.Annotator == f.Annotator) && (f.Domain == "" || r.Domain == f.Domain) {
			out = append(out, fields(r))
		}
	}
	return out
}

func readCSV(t *testing.T, data []byte) [][]string {
	t.Helper()
	recs, err := csv.NewReader(bytes.NewReader(data)).ReadAll()
	if err != nil {
		t.Fatal(err)
	}
	if len(recs) == 0 {
		t.Fatal("no header row")
	}
	if fmt.Sprint(recs[0]) != fmt.Sprint(wantColumns) {
		t.Fatalf("header %v, want %v", recs[0], wantColumns)
	}
	return recs[1:]
}

// readJSONL checks each line's field names, their order and JSON types, and returns the values
// as text.
func readJSONL(t *testing.T, data []byte) [][]string {
	t.Helper()
	var out [][]string
	if len(data) == 0 {
		return out
	}
	if !bytes.HasSuffix(data, []byte("\n")) {
		t.Fatal("output does not end with a newline")
	}
	for i, line := range bytes.Split(bytes.TrimSuffix(data, []byte("\n")), []byte("\n")) {
		dec := json.NewDecoder(bytes.NewReader(line))
		dec.UseNumber()
		if tok, err := dec.Token(); err != nil || tok != json.Delim('{') {
			t.Fatalf("line %d: not an object: %v %v", i+1, tok, err)
		}
		var rec []string
		for dec.More() {
			key, err := dec.Token()
			if err != nil {
				t.Fatalf("line %d: %v", i+1, err)
			}
			name := key.(string)
			if len(rec) >= len(wantColumns) || name != wantColumns[len(rec)] {
				t.Fatalf("line %d: field %d is %q, want the order %v", i+1, len(rec), name, wantColumns)
			}
			val, err := dec.Token()
			if err != nil {
				t.Fatalf("line %d: %v", i+1, err)
			}
			switch v := val.(type) {
			case json.Number:
				if !numeric[name] {
					t.Errorf("line %d: %s is a number", i+1, name)
				}
				rec = append(rec, v.String())
			case string:
				if numeric[name] {
					t.Errorf("line %d: %s is a string", i+1, name)
				}
				rec = append(rec, v)
			default:
				t.Fatalf("line %d: %s is %T", i+1, name, val)
			}
		}
		if len(rec) != len(wantColumns) {
			t.Fatalf("line %d: %d fields, want %d", i+1, len(rec), len(wantColumns))
		}
		out = append(out, rec)
	}
	return out
}

func TestWriteRoundTrips(t *testing.T) {
	fx := newFixture(t)
	filters := []struct {
		name string
		f    store.Filter
	}{
		{"everything", store.Filter{}},
		{"one annotator", store.Filter{Annotator: "1"}},
		{"one domain", store.Filter{Domain: "redressal"}},
		{"one run", store.Filter{Annotator: "2", Domain: "urgency"}},
		{"no match", store.Filter{Annotator: "9"}},
	}
	formats := []struct {
		format export.Format
		read   func(*testing.T, []byte) [][]string
	}{
		{export.JSONL, readJSONL},
		{export.CSV, readCSV},
	}
	for _, ft := range formats {
		for _, tt := range filters {
			t.Run(fmt.Sprintf("%s gives back what was stored for %s", ft.format, tt.name), func(t *testing.T) {
				var buf bytes.Buffer
				n, err := export.Write(context.Background(), fx.s, tt.f, ft.format, &buf)
				if err != nil {
					t.Fatal(err)
				}
				want := fx.want(tt.f)
				got := ft.read(t, buf.Bytes())
				if n != len(want) || len(got) != len(want) {
					t.Fatalf("wrote %d rows, read back %d, want %d", n, len(got), len(want))
				}
				for i := range want {
					for c, col := range wantColumns {
						if got[i][c] != want[i][c] {
							t.Errorf("row %d %s = %.80q (%d bytes), want %.80q (%d bytes)",
								i, col, got[i][c], len(got[i][c]), want[i][c], len(want[i][c]))
						}
					}
				}
			})
		}
	}
}

func TestWriteOfNothing(t *testing.T) {
	fx := newFixture(t)
	tests := []struct {
		name   string
		format export.Format
		want   string
	}{
		{"csv writes only the header", export.CSV, strings.Join(wantColumns, ",") + "\n"},
		{"jsonl writes nothing", export.JSONL, ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var buf bytes.Buffer
			n, err := export.Write(context.Background(), fx.s, store.Filter{Domain: "nope"}, tt.format, &buf)
			if err != nil || n != 0 || buf.String() != tt.want {
				t.Errorf("got %d rows, %q, %v", n, buf.String(), err)
			}
		})
	}
}

func TestWriteKeepsHTMLCharacters(t *testing.T) {
	fx := newFixture(t)
	var buf bytes.Buffer
	if _, err := export.Write(context.Background(), fx.s, store.Filter{}, export.JSONL, &buf); err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(buf.String(), "<b>&amp;</b>") {
		t.Error("< > & were escaped")
	}
}

func TestWriteRefusesAnUnknownFormat(t *testing.T) {
	fx := newFixture(t)
	var buf bytes.Buffer
	if _, err := export.Write(context.Background(), fx.s, store.Filter{}, "xml", &buf); err == nil || buf.Len() != 0 {
		t.Errorf("err = %v, wrote %d bytes; want an error and nothing written", err, buf.Len())
	}
}

func TestWriteStopsWhenCancelled(t *testing.T) {
	fx := newFixture(t)
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if _, err := export.Write(ctx, fx.s, store.Filter{}, export.JSONL, &bytes.Buffer{}); err == nil {
		t.Error("a cancelled export succeeded")
	}
}

func TestParseFormat(t *testing.T) {
	tests := []struct {
		in      string
		want    export.Format
		wantErr string
	}{
		{in: "jsonl", want: export.JSONL},
		{in: "csv", want: export.CSV},
		{in: " CSV ", want: export.CSV},
		{in: "JSONL", want: export.JSONL},
		{in: "xlsx", want: export.XLSX},
		{in: " XLSX", want: export.XLSX},
		{in: "json", wantErr: `unknown export format "json"; use jsonl, csv or xlsx`},
		{in: "", wantErr: "unknown export format"},
	}
	for _, tt := range tests {
		t.Run(fmt.Sprintf("parses %q", tt.in), func(t *testing.T) {
			got, err := export.ParseFormat(tt.in)
			if tt.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
					t.Errorf("err = %v, want one containing %q", err, tt.wantErr)
				}
				return
			}
			if err != nil || got != tt.want {
				t.Errorf("got %q, %v; want %q", got, err, tt.want)
			}
		})
	}
}
