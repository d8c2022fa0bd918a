package store_test

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/mhannotator/mha/internal/store"
)

// samples makes samples whose text is derived from the ID; Position is set to junk to show
// that imports ignore it.
func samples(ids ...string) []store.Sample {
	out := make([]store.Sample, len(ids))
	for i, id := range ids {
		out[i] = store.Sample{ID: id, Text: "text of " + id, Position: 1000 - i}
	}
	return out
}

func storedIDs(t *testing.T, s store.Store) []string {
	t.Helper()
	all, err := s.Samples(context.Background(), 0, 1<<30)
	if err != nil {
		t.Fatal(err)
	}
	ids := make([]string, len(all))
	for i, sm := range all {
		if sm.Position != i {
			t.Errorf("sample %q has position %d, want %d (positions must be consecutive)", sm.ID, sm.Position, i)
		}
		if sm.Text != "text of "+sm.ID {
			t.Errorf("sample %q has text %q", sm.ID, sm.Text)
		}
		ids[i] = sm.ID
	}
	return ids
}

func exportAll(t *testing.T, s store.Store, f store.Filter) []store.ExportRow {
	t.Helper()
	var rows []store.ExportRow
	if err := s.Export(context.Background(), f, func(r store.ExportRow) error {
		rows = append(rows, r)
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	return rows
}

func TestMigrationsAreAppliedOnce(t *testing.T) {
	forEachBackend(t, func(t *testing.T, b backend) {
		ctx := context.Background()
		dsn := b.newDSN(t)
		// Two opens of the new database at once, and a third after both are closed.
		var first, second store.Store
		var firstErr, secondErr error
		var wg sync.WaitGroup
		wg.Go(func() { first, firstErr = store.Open(ctx, dsn) })
		wg.Go(func() { second, secondErr = store.Open(ctx, dsn) })
		wg.Wait()
		if err := errors.Join(firstErr, secondErr); err != nil {
			t.Fatal(err)
		}
		if err := errors.Join(first.Close(), second.Close()); err != nil {
			t.Fatal(err)
		}
		third, err := store.Open(ctx, dsn)
		if err != nil {
			t.Fatal(err)
		}
		if err := third.Close(); err != nil {
			t.Fatal(err)
		}

		rows, err := b.rawDB(t, dsn).Query(b.versionsSQL)
		if err != nil {
			t.Fatal(err)
		}
		defer rows.Close()
		var versions []int
		for rows.Next() {
			var v, n int
			if err := rows.Scan(&v, &n); err != nil {
				t.Fatal(err)
			}
			if n != 1 {
				t.Errorf("version %d recorded %d times", v, n)
			}
			versions = append(versions, v)
		}
		if err := rows.Err(); err != nil {
			t.Fatal(err)
		}
		if len(versions) == 0 || versions[0] != 1 {
			t.Errorf("versions = %v, want 1, 2, ...", versions)
		}
	})
}

func TestOpenRefusesASchemaNewerThanItKnows(t *testing.T) {
	forEachBackend(t, func(t *testing.T, b backend) {
		dsn := b.newDSN(t)
		s, err := store.Open(context.Background(), dsn)
		if err != nil {
			t.Fatal(err)
		}
		s.Close()
		if _, err := b.rawDB(t, dsn).Exec(b.recordVersionSQL, 9999); err != nil {
			t.Fatal(err)
		}
		if s, err := store.Open(context.Background(), dsn); err == nil || !strings.Contains(err.Error(), "9999") {
			if err == nil {
				s.Close()
			}
			t.Fatalf("err = %v, want a refusal naming version 9999", err)
		}
	})
}

func TestImportSamples(t *testing.T) {
	forEachBackend(t, func(t *testing.T, b backend) {
		type step struct {
			samples       []store.Sample
			want          store.ImportResult
			wantConflicts []string // IDs the *ImportConflictError must name
		}
		changed := store.Sample{ID: "b", Text: "another text"}
		tests := []struct {
			name  string
			steps []step
			want  []string // stored IDs in position order
		}{
			{
				name:  "keeps the order of the input",
				steps: []step{{samples: samples("z", "a", "m", "b"), want: store.ImportResult{Added: 4}}},
				want:  []string{"z", "a", "m", "b"},
			},
			{
				name: "importing the same samples twice changes nothing",
				steps: []step{
					{samples: samples("a", "b", "c"), want: store.ImportResult{Added: 3}},
					{samples: samples("a", "b", "c"), want: store.ImportResult{Unchanged: 3}},
				},
				want: []string{"a", "b", "c"},
			},
			{
				name: "appends new IDs after the stored ones",
				steps: []step{
					{samples: samples("a", "b"), want: store.ImportResult{Added: 2}},
					{samples: samples("d", "a", "c", "b"), want: store.ImportResult{Added: 2, Unchanged: 2}},
				},
				want: []string{"a", "b", "d", "c"},
			},
			{
				name: "refuses a changed text and writes nothing of that import",
				steps: []step{
					{samples: samples("a", "b"), want: store.ImportResult{Added: 2}},
					{samples: append(append(samples("c", "a"), changed), samples("d")...), wantConflicts: []string{"b"}},
				},
				want: []string{"a", "b"},
			},
			{
				name: "treats an ID repeated in the input like a stored one",
				steps: []step{
					{samples: samples("a", "b", "a"), want: store.ImportResult{Added: 2, Unchanged: 1}},
					{samples: append(samples("c", "b"), changed), wantConflicts: []string{"b"}},
				},
				want: []string{"a", "b"},
			},
			{
				name:  "accepts an empty import",
				steps: []step{{samples: nil, want: store.ImportResult{}}},
				want:  []string{},
			},
		}
		for _, tt := range tests {
			t.Run(tt.name, func(t *testing.T) {
				s := b.open(t)
				for i, st := range tt.steps {
					got, err := s.ImportSamples(context.Background(), st.samples)
					if st.wantConflicts != nil {
						var ce *store.ImportConflictError
						if !errors.As(err, &ce) {
							t.Fatalf("step %d: err = %v, want an *ImportConflictError", i, err)
						}
						var ids []string
						for _, c := range ce.Conflicts {
							ids = append(ids, c.ID)
							if !strings.Contains(err.Error(), fmt.Sprintf("%q", c.ID)) {
								t.Errorf("step %d: message %q does not name %q", i, err, c.ID)
							}
						}
						if fmt.Sprint(ids) != fmt.Sprint(st.wantConflicts) {
							t.Errorf("step %d: conflicts %v, want %v", i, ids, st.wantConflicts)
						}
						continue
					}
					if err != nil {
						t.Fatalf("step %d: %v", i, err)
					}
					if got != st.want {
						t.Errorf("step %d: result %+v, want %+v", i, got, st.want)
					}
				}
				if got := storedIDs(t, s); fmt.Sprint(got) != fmt.Sprint(tt.want) {
					t.Errorf("stored %v, want %v", got, tt.want)
				}
				n, err := s.CountSamples(context.Background())
				if err != nil {
					t.Fatal(err)
				}
				if n != len(tt.want) {
					t.Errorf("CountSamples = %d, want %d", n, len(tt.want))
				}
			})
		}
	})
}

func TestImportSamplesRejectsAnEmptyID(t *testing.T) {
	forEachBackend(t, func(t *testing.T, b backend) {
		s := b.open(t)
		_, err := s.ImportSamples(context.Background(), []store.Sample{{ID: "a"}, {ID: ""}})
		if err == nil || !strings.Contains(err.Error(), "sample 2 of 2 has an empty ID") {
			t.Fatalf("err = %v, want one naming sample 2", err)
		}
		if ids := storedIDs(t, s); len(ids) != 0 {
			t.Errorf("stored %v, want nothing", ids)
		}
	})
}

func TestImportConflictErrorNamesTenAndCountsTheRest(t *testing.T) {
	var e store.ImportConflictError
	for i := range 13 {
		e.Conflicts = append(e.Conflicts, store.ImportConflict{ID: fmt.Sprintf("id-%d", i), StoredPosition: i})
	}
	msg := e.Error()
	for _, want := range []string{"13 sample ID(s)", `"id-0" (position 0)`, `"id-9" (position 9)`, "and 3 more", "nothing was imported"} {
		if !strings.Contains(msg, want) {
			t.Errorf("message %q lacks %q", msg, want)
		}
	}
	if strings.Contains(msg, `"id-10"`) {
		t.Errorf("message %q names more than ten IDs", msg)
	}
}

func TestSamplesReturnsAWindowInDatasetOrder(t *testing.T) {
	forEachBackend(t, func(t *testing.T, b backend) {
		s := b.open(t)
		if _, err := s.ImportSamples(context.Background(), samples("a", "b", "c", "d", "e")); err != nil {
			t.Fatal(err)
		}
		tests := []struct {
			name          string
			offset, limit int
			want          string
		}{
			{"from the start", 0, 2, "[a b]"},
			{"from the middle", 2, 2, "[c d]"},
			{"past the end is cut short", 3, 10, "[d e]"},
			{"beyond the end is empty", 9, 3, "[]"},
			{"a zero limit is empty", 0, 0, "[]"},
		}
		for _, tt := range tests {
			t.Run(tt.name, func(t *testing.T) {
				got, err := s.Samples(context.Background(), tt.offset, tt.limit)
				if err != nil {
					t.Fatal(err)
				}
				ids := []string{}
				for _, sm := range got {
					ids = append(ids, sm.ID)
				}
				if fmt.Sprint(ids) != tt.want {
					t.Errorf("got %v, want %s", ids, tt.want)
				}
			})
		}
		if _, err := s.Samples(context.Background(), -1, 1); err == nil {
			t.Error("a negative offset was accepted")
		}
	})
}

func annotation(annotator, domain, sampleID, status string) store.Annotation {
	return store.Annotation{Annotator: annotator, Domain: domain, SampleID: sampleID, Status: status}
}

func TestUpsertAnnotationKeepsTheBestLatestWrite(t *testing.T) {
	forEachBackend(t, func(t *testing.T, b backend) {
		type write struct{ status, model string }
		tests := []struct {
			name       string
			writes     []write
			wantStatus string
			wantModel  string
		}{
			{"stores the first write", []write{{"malformed", "m1"}}, "malformed", "m1"},
			{"does not downgrade ok to malformed", []write{{"ok", "m1"}, {"malformed", "m2"}}, "ok", "m1"},
			{"does not downgrade ok to error", []write{{"ok", "m1"}, {"error", "m2"}}, "ok", "m1"},
			{"does not downgrade ok to blocked", []write{{"ok", "m1"}, {"blocked", "m2"}}, "ok", "m1"},
			{"upgrades malformed to ok", []write{{"malformed", "m1"}, {"ok", "m2"}}, "ok", "m2"},
			{"upgrades error to ok", []write{{"error", "m1"}, {"ok", "m2"}}, "ok", "m2"},
			{"replaces ok with a later ok", []write{{"ok", "m1"}, {"ok", "m2"}}, "ok", "m2"},
			{"replaces error with a later malformed", []write{{"error", "m1"}, {"malformed", "m2"}}, "malformed", "m2"},
			{"keeps ok through a mix", []write{{"error", "m1"}, {"ok", "m2"}, {"malformed", "m3"}, {"blocked", "m4"}}, "ok", "m2"},
		}
		for _, tt := range tests {
			t.Run(tt.name, func(t *testing.T) {
				s := b.open(t)
				ctx := context.Background()
				if _, err := s.ImportSamples(ctx, samples("s1")); err != nil {
					t.Fatal(err)
				}
				for _, w := range tt.writes {
					a := annotation("1", "urgency", "s1", w.status)
					a.Model = w.model
					if err := s.UpsertAnnotation(ctx, a); err != nil {
						t.Fatal(err)
					}
				}
				rows := exportAll(t, s, store.Filter{})
				if len(rows) != 1 {
					t.Fatalf("%d rows, want 1", len(rows))
				}
				if rows[0].Status != tt.wantStatus || rows[0].Model != tt.wantModel {
					t.Errorf("stored (%s, %s), want (%s, %s)", rows[0].Status, rows[0].Model, tt.wantStatus, tt.wantModel)
				}
			})
		}
	})
}

func TestUpsertAnnotationKeepsOneRowPerKey(t *testing.T) {
	forEachBackend(t, func(t *testing.T, b backend) {
		s := b.open(t)
		ctx := context.Background()
		if _, err := s.ImportSamples(ctx, samples("s1", "s2")); err != nil {
			t.Fatal(err)
		}
		statuses := []string{store.StatusError, store.StatusMalformed, store.StatusOK, store.StatusBlocked}
		for i := range 100 {
			for _, key := range []store.Annotation{
				annotation("1", "urgency", "s1", ""), annotation("1", "urgency", "s2", ""),
				annotation("2", "urgency", "s1", ""), annotation("1", "intensity", "s1", ""),
			} {
				key.Status = statuses[i%len(statuses)]
				key.Attempt = i
				if err := s.UpsertAnnotation(ctx, key); err != nil {
					t.Fatal(err)
				}
			}
		}
		if rows := exportAll(t, s, store.Filter{}); len(rows) != 4 {
			t.Errorf("%d rows, want 4", len(rows))
		}
	})
}

func TestUpsertAnnotationRoundTripsEveryField(t *testing.T) {
	forEachBackend(t, func(t *testing.T, b backend) {
		s := b.open(t)
		ctx := context.Background()
		text := "Ich fühle mich seit Wochen erschöpft — 心が疲れた 🙂, \"quoted\"\nsecond line"
		if _, err := s.ImportSamples(ctx, []store.Sample{{ID: "ид-1", Text: text}}); err != nil {
			t.Fatal(err)
		}
		raw := strings.Repeat("Überlegung: 不安 → LEVEL_2 ✓\n", 100*1024/32+1)
		if len(raw) < 100*1024 {
			t.Fatalf("raw reply is only %d bytes", len(raw))
		}
		want := store.Annotation{
			Annotator:     "annotator ü",
			Domain:        "urgency",
			SampleID:      "ид-1",
			Label:         "LEVEL_2",
			Status:        store.StatusMalformed,
			RawReply:      raw + "<<LEVEL_9>>",
			ParseError:    "parse: ß",
			ValidityError: "LEVEL_9 is not a level",
			Error:         "provider: 503 — überlastet",
			Model:         "gemini-2.5-flash",
			PromptHash:    "sha256:abc",
			LatencyMS:     1 << 40,
			InputTokens:   1234,
			OutputTokens:  567,
			Attempt:       3,
			CreatedAt:     time.Date(2025, 3, 4, 5, 6, 7, 123456789, time.FixedZone("CET", 3600)),
		}
		if err := s.UpsertAnnotation(ctx, want); err != nil {
			t.Fatal(err)
		}
		rows := exportAll(t, s, store.Filter{})
		if len(rows) != 1 {
			t.Fatalf("%d rows, want 1", len(rows))
		}
		got := rows[0]
		// The backend keeps CreatedAt to its precision, cut toward the past.
		if wantAt := want.CreatedAt.Truncate(b.precision); !got.CreatedAt.Equal(wantAt) || got.CreatedAt.Location() != time.UTC {
			t.Errorf("CreatedAt = %v, want %v in UTC", got.CreatedAt, wantAt)
		}
		got.CreatedAt = want.CreatedAt
		if got.Annotation != want {
			t.Errorf("annotation differs:\n got %+v\nwant %+v", got.Annotation, want)
		}
		if got.Text != text || got.Position != 0 {
			t.Errorf("sample (%q, %d), want (%q, 0)", got.Text, got.Position, text)
		}
	})
}

func TestUpsertAnnotationDatesAZeroCreatedAtNow(t *testing.T) {
	forEachBackend(t, func(t *testing.T, b backend) {
		s := b.open(t)
		ctx := context.Background()
		if _, err := s.ImportSamples(ctx, samples("s1")); err != nil {
			t.Fatal(err)
		}
		before := time.Now()
		if err := s.UpsertAnnotation(ctx, annotation("1", "urgency", "s1", store.StatusOK)); err != nil {
			t.Fatal(err)
		}
		after := time.Now()
		got := exportAll(t, s, store.Filter{})[0].CreatedAt
		if got.Before(before.Truncate(b.precision)) || got.After(after) {
			t.Errorf("CreatedAt = %v, want between %v and %v", got, before, after)
		}
	})
}

// createdAt is a valid annotation created at t.
func createdAt(t time.Time) store.Annotation {
	a := annotation("1", "urgency", "s1", "ok")
	a.CreatedAt = t
	return a
}

func TestUpsertAnnotationRejectsBadInput(t *testing.T) {
	forEachBackend(t, func(t *testing.T, b backend) {
		s := b.open(t)
		ctx := context.Background()
		if _, err := s.ImportSamples(ctx, samples("s1")); err != nil {
			t.Fatal(err)
		}
		tests := []struct {
			name    string
			a       store.Annotation
			wantErr string
		}{
			{"an empty annotator", annotation("", "urgency", "s1", "ok"), "field Annotator is empty"},
			{"an empty domain", annotation("1", "", "s1", "ok"), "field Domain is empty"},
			{"an empty sample ID", annotation("1", "urgency", "", "ok"), "field SampleID is empty"},
			{"an unknown status", annotation("1", "urgency", "s1", "done"), `field Status "done"`},
			{"an empty status", annotation("1", "urgency", "s1", ""), `field Status ""`},
			{"a sample that is not stored", annotation("1", "urgency", "nope", "ok"), `sample "nope" is not stored`},
			{"a CreatedAt after the year 9999", createdAt(time.Date(10000, 1, 1, 0, 0, 0, 0, time.UTC)), "field CreatedAt"},
			{"a CreatedAt before the year 0", createdAt(time.Date(-1, 12, 31, 0, 0, 0, 0, time.UTC)), "field CreatedAt"},
		}
		for _, tt := range tests {
			t.Run("rejects "+tt.name, func(t *testing.T) {
				err := s.UpsertAnnotation(ctx, tt.a)
				if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
					t.Errorf("err = %v, want one containing %q", err, tt.wantErr)
				}
			})
		}
		if rows := exportAll(t, s, store.Filter{}); len(rows) != 0 {
			t.Errorf("%d rows stored, want none", len(rows))
		}
	})
}

func TestAnnotatedIDsAcrossManyChunks(t *testing.T) {
	forEachBackend(t, func(t *testing.T, b backend) {
		s := b.open(t)
		ctx := context.Background()
		const n = 1234
		ids := make([]string, n)
		for i := range ids {
			ids[i] = fmt.Sprintf("s%04d", i)
		}
		if _, err := s.ImportSamples(ctx, samples(ids...)); err != nil {
			t.Fatal(err)
		}
		for i := 0; i < n; i += 3 {
			if err := s.UpsertAnnotation(ctx, annotation("1", "urgency", ids[i], store.StatusMalformed)); err != nil {
				t.Fatal(err)
			}
		}
		// Annotations of other runs must not count.
		for _, a := range []store.Annotation{annotation("2", "urgency", ids[1], "ok"), annotation("1", "intensity", ids[2], "ok")} {
			if err := s.UpsertAnnotation(ctx, a); err != nil {
				t.Fatal(err)
			}
		}
		got, err := s.AnnotatedIDs(ctx, "1", "urgency", append(ids, "unknown"))
		if err != nil {
			t.Fatal(err)
		}
		if len(got) != (n+2)/3 {
			t.Errorf("%d IDs annotated, want %d", len(got), (n+2)/3)
		}
		for i, id := range ids {
			if got[id] != (i%3 == 0) {
				t.Errorf("%s annotated = %v", id, got[id])
			}
		}
		// A short list, filled out to a fixed length with its last ID (annotated) repeated.
		short, err := s.AnnotatedIDs(ctx, "1", "urgency", []string{ids[1], ids[3]})
		if err != nil || len(short) != 1 || !short[ids[3]] {
			t.Errorf("AnnotatedIDs(%s, %s) = %v, %v; want %s only", ids[1], ids[3], short, err, ids[3])
		}
		none, err := s.AnnotatedIDs(ctx, "1", "urgency", nil)
		if err != nil || len(none) != 0 {
			t.Errorf("no IDs: got %v, %v", none, err)
		}
	})
}

func TestCountAnnotations(t *testing.T) {
	forEachBackend(t, func(t *testing.T, b backend) {
		s := b.open(t)
		ctx := context.Background()
		if _, err := s.ImportSamples(ctx, samples("s0", "s1", "s2", "s3", "s4", "s5")); err != nil {
			t.Fatal(err)
		}
		for i, status := range []string{"ok", "ok", "malformed", "error", "blocked", "ok"} {
			if err := s.UpsertAnnotation(ctx, annotation("1", "urgency", fmt.Sprintf("s%d", i), status)); err != nil {
				t.Fatal(err)
			}
		}
		if err := s.UpsertAnnotation(ctx, annotation("2", "urgency", "s0", "ok")); err != nil {
			t.Fatal(err)
		}
		tests := []struct {
			name  string
			limit int
			want  store.Counts
		}{
			{"counts all samples without a limit", 0, store.Counts{OK: 3, Malformed: 1, Error: 1, Blocked: 1}},
			{"counts all samples with a negative limit", -1, store.Counts{OK: 3, Malformed: 1, Error: 1, Blocked: 1}},
			{"counts only the first samples with a limit", 3, store.Counts{OK: 2, Malformed: 1}},
			{"counts all with a limit past the end", 100, store.Counts{OK: 3, Malformed: 1, Error: 1, Blocked: 1}},
		}
		for _, tt := range tests {
			t.Run(tt.name, func(t *testing.T) {
				got, err := s.CountAnnotations(ctx, "1", "urgency", tt.limit)
				if err != nil {
					t.Fatal(err)
				}
				if got != tt.want {
					t.Errorf("got %+v, want %+v", got, tt.want)
				}
			})
		}
		if got, err := s.CountAnnotations(ctx, "3", "urgency", 0); err != nil || got.Total() != 0 {
			t.Errorf("a run without annotations: got %+v, %v", got, err)
		}
	})
}

func TestExportOrdersAndFilters(t *testing.T) {
	forEachBackend(t, func(t *testing.T, b backend) {
		s := b.open(t)
		ctx := context.Background()
		if _, err := s.ImportSamples(ctx, samples("c", "a", "b")); err != nil {
			t.Fatal(err)
		}
		// Written out of order, so that the order comes from the query.
		for _, key := range [][3]string{
			{"2", "urgency", "b"}, {"1", "urgency", "b"}, {"1", "intensity", "a"}, {"1", "urgency", "c"},
			{"2", "intensity", "c"}, {"1", "urgency", "a"},
		} {
			if err := s.UpsertAnnotation(ctx, annotation(key[0], key[1], key[2], "ok")); err != nil {
				t.Fatal(err)
			}
		}
		tests := []struct {
			name string
			f    store.Filter
			want string
		}{
			{"exports everything by annotator, domain and position", store.Filter{},
				"[1/intensity/a 1/urgency/c 1/urgency/a 1/urgency/b 2/intensity/c 2/urgency/b]"},
			{"filters by annotator", store.Filter{Annotator: "2"}, "[2/intensity/c 2/urgency/b]"},
			{"filters by domain", store.Filter{Domain: "urgency"}, "[1/urgency/c 1/urgency/a 1/urgency/b 2/urgency/b]"},
			{"filters by both", store.Filter{Annotator: "1", Domain: "intensity"}, "[1/intensity/a]"},
			{"exports nothing for an unknown annotator", store.Filter{Annotator: "9"}, "[]"},
		}
		for _, tt := range tests {
			t.Run(tt.name, func(t *testing.T) {
				keys := []string{}
				for _, r := range exportAll(t, s, tt.f) {
					keys = append(keys, r.Annotator+"/"+r.Domain+"/"+r.SampleID)
				}
				if fmt.Sprint(keys) != tt.want {
					t.Errorf("got %v, want %s", keys, tt.want)
				}
			})
		}

		stop := errors.New("stop")
		calls := 0
		err := s.Export(ctx, store.Filter{}, func(store.ExportRow) error { calls++; return stop })
		if err != stop || calls != 1 {
			t.Errorf("Export returned %v after %d calls, want fn's error after 1", err, calls)
		}
	})
}

func TestDeleteAnnotationsDeletesOnlyTheRunsRowsOfTheGivenStatuses(t *testing.T) {
	forEachBackend(t, func(t *testing.T, b backend) {
		ids := []string{"s0", "s1", "s2", "s3", "s4", "s5"}
		// key is annotator/domain/sample → status
		stored := map[string]string{
			"1/urgency/s0": "ok", "1/urgency/s1": "malformed", "1/urgency/s2": "error",
			"1/urgency/s3": "blocked", "1/urgency/s4": "error", "1/urgency/s5": "malformed",
			"2/urgency/s0": "error", "2/urgency/s1": "malformed",
			"1/intensity/s0": "error", "1/intensity/s2": "blocked",
		}
		tests := []struct {
			name              string
			annotator, domain string
			statuses          []string
			want              int
			wantGone          []string
			wantErr           string
		}{
			{name: "errors and malformed of one run go, everything else stays", annotator: "1", domain: "urgency",
				statuses: []string{"error", "malformed"}, want: 4,
				wantGone: []string{"1/urgency/s1", "1/urgency/s2", "1/urgency/s4", "1/urgency/s5"}},
			{name: "only blocked goes", annotator: "1", domain: "intensity",
				statuses: []string{"blocked"}, want: 1, wantGone: []string{"1/intensity/s2"}},
			{name: "a status named twice counts its rows once", annotator: "1", domain: "urgency",
				statuses: []string{"error", "error"}, want: 2, wantGone: []string{"1/urgency/s2", "1/urgency/s4"}},
			{name: "an empty list deletes nothing", annotator: "1", domain: "urgency", statuses: nil, want: 0},
			{name: "a run without such rows deletes nothing", annotator: "3", domain: "urgency",
				statuses: []string{"error", "malformed", "blocked"}, want: 0},
			{name: "ok rows go only when asked for", annotator: "1", domain: "urgency",
				statuses: []string{"ok"}, want: 1, wantGone: []string{"1/urgency/s0"}},
			{name: "an unknown status is refused and nothing goes", annotator: "1", domain: "urgency",
				statuses: []string{"error", "eror"}, wantErr: `"eror"`},
		}
		for _, tt := range tests {
			t.Run(tt.name, func(t *testing.T) {
				s := b.open(t)
				ctx := context.Background()
				if _, err := s.ImportSamples(ctx, samples(ids...)); err != nil {
					t.Fatal(err)
				}
				for key, status := range stored {
					k := strings.Split(key, "/")
					if err := s.UpsertAnnotation(ctx, annotation(k[0], k[1], k[2], status)); err != nil {
						t.Fatal(err)
					}
				}
				n, err := s.DeleteAnnotations(ctx, tt.annotator, tt.domain, tt.statuses)
				switch {
				case tt.wantErr != "" && (err == nil || !strings.Contains(err.Error(), tt.wantErr)):
					t.Fatalf("DeleteAnnotations(%s, %s, %q) = %d, %v; want an error naming %s", tt.annotator, tt.domain, tt.statuses, n, err, tt.wantErr)
				case tt.wantErr == "" && err != nil:
					t.Fatalf("DeleteAnnotations(%s, %s, %q): %v", tt.annotator, tt.domain, tt.statuses, err)
				case n != tt.want:
					t.Errorf("DeleteAnnotations(%s, %s, %q) = %d, want %d", tt.annotator, tt.domain, tt.statuses, n, tt.want)
				}

				want := maps.Clone(stored)
				for _, key := range tt.wantGone {
					delete(want, key)
				}
				got := map[string]string{}
				for _, r := range exportAll(t, s, store.Filter{}) {
					got[r.Annotator+"/"+r.Domain+"/"+r.SampleID] = r.Status
				}
				if !maps.Equal(got, want) {
					t.Errorf("stored after the delete:\n%v\nwant:\n%v", got, want)
				}
				if tt.wantErr != "" {
					return
				}
				if again, err := s.DeleteAnnotations(ctx, tt.annotator, tt.domain, tt.statuses); err != nil || again != 0 {
					t.Errorf("the same delete again = %d, %v; want 0", again, err)
				}
			})
		}
	})
}

// Cached input tokens are kept per annotation and summed per run.
func TestCachedTokensAreStoredAndSummed(t *testing.T) {
	forEachBackend(t, func(t *testing.T, b backend) {
		ctx := context.Background()
		s := b.open(t)
		if _, err := s.ImportSamples(ctx, []store.Sample{{ID: "c1", Text: "one"}, {ID: "c2", Text: "two"}}); err != nil {
			t.Fatal(err)
		}
		for i, id := range []string{"c1", "c2"} {
			a := store.Annotation{Annotator: "1", Domain: "urgency", SampleID: id, Status: store.StatusOK, Label: "LEVEL_1",
				InputTokens: 1000, OutputTokens: 10, CachedTokens: 600 + i*100, CreatedAt: time.Now()}
			if err := s.UpsertAnnotation(ctx, a); err != nil {
				t.Fatal(err)
			}
		}
		_, rows, err := s.Sample(ctx, "c2")
		if err != nil || len(rows) != 1 || rows[0].CachedTokens != 700 {
			t.Fatalf("sample c2: %+v (%v); want 700 cached tokens", rows, err)
		}
		stats, err := s.Stats(ctx, store.Filter{})
		if err != nil || len(stats) != 1 || stats[0].CachedTokens != 1300 || stats[0].InputTokens != 2000 {
			t.Fatalf("stats %+v (%v); want 1 300 of 2 000 input tokens cached", stats, err)
		}
	})
}

func TestBatchHaltedSeesOnlyTheRunsLatestHaltedBatch(t *testing.T) {
	forEachBackend(t, func(t *testing.T, b backend) {
		s := b.open(t)
		ctx := context.Background()
		halted := func(wf, key string) bool {
			t.Helper()
			ok, err := s.BatchHalted(ctx, wf, key)
			if err != nil {
				t.Fatal(err)
			}
			return ok
		}
		if halted("run-a", "r1/1") {
			t.Fatal("a batch nobody halted is halted")
		}
		if err := s.HaltBatch(ctx, "run-a", "r1/1"); err != nil {
			t.Fatal(err)
		}
		if !halted("run-a", "r1/1") || halted("run-a", "r1/2") || halted("run-b", "r1/1") {
			t.Fatal("after halting run-a's batch r1/1: want it alone halted")
		}
		// A resumed run's next batch has a new key; halting it replaces the record.
		if err := s.HaltBatch(ctx, "run-a", "r1/2"); err != nil {
			t.Fatal(err)
		}
		if !halted("run-a", "r1/2") || halted("run-a", "r1/1") {
			t.Fatal("after halting run-a's batch r1/2: want it halted, and r1/1 no more recorded")
		}
		// A batch's write reads the same record in its own transaction.
		if _, err := s.ImportSamples(ctx, samples("s1", "s2")); err != nil {
			t.Fatal(err)
		}
		for _, w := range []struct {
			sample, key string
			want        bool
		}{{"s1", "r1/1", false}, {"s2", "r1/2", true}} {
			got, err := s.UpsertAnnotationCheckingHalt(ctx, annotation("1", "urgency", w.sample, "ok"), "run-a", w.key)
			if err != nil || got != w.want {
				t.Errorf("write of %s checking batch %s: halted %v, %v; want %v", w.sample, w.key, got, err, w.want)
			}
		}
		if c, err := s.CountAnnotations(ctx, "1", "urgency", 0); err != nil || c.OK != 2 {
			t.Errorf("counts after the checking writes: %+v, %v; want 2 ok", c, err)
		}
	})
}
