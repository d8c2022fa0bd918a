package store_test

import (
	"context"
	"database/sql"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"

	"github.com/mhannotator/mha/internal/store"
)

// allChanges is every stored annotation in seq order, checking that the seqs ascend.
func allChanges(t *testing.T, s store.Store) []store.Change {
	t.Helper()
	cs, err := s.Changes(context.Background(), 0, 1<<30)
	if err != nil {
		t.Fatal(err)
	}
	for i := 1; i < len(cs); i++ {
		if cs[i].Seq <= cs[i-1].Seq {
			t.Fatalf("Changes: seq %d follows seq %d", cs[i].Seq, cs[i-1].Seq)
		}
	}
	return cs
}

// seqs maps annotator/sample of every stored urgency annotation to its seq.
func seqs(t *testing.T, s store.Store) map[string]int64 {
	t.Helper()
	out := map[string]int64{}
	for _, c := range allChanges(t, s) {
		out[c.Annotator+"/"+c.SampleID] = c.Seq
	}
	return out
}

func lastSeq(t *testing.T, s store.Store) int64 {
	t.Helper()
	n, err := s.LastSeq(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	return n
}

func TestUpsertAnnotationAssignsSeqs(t *testing.T) {
	forEachBackend(t, func(t *testing.T, b backend) {
		// A step writes (or, when del is set, deletes that status of) annotator's urgency annotation
		// of sample s1 or s2. wantNew: the write must give the annotation a seq greater than every
		// seq seen before; otherwise it must keep the seq it had.
		type step struct {
			annotator, sample, status string
			del                       bool
			wantNew                   bool
		}
		put := func(annotator, sample, status string, wantNew bool) step {
			return step{annotator: annotator, sample: sample, status: status, wantNew: wantNew}
		}
		del := func(annotator, status string) step { return step{annotator: annotator, status: status, del: true} }
		tests := []struct {
			name  string
			steps []step
		}{
			{"a first insert gets a seq", []step{put("1", "s1", "ok", true)}},
			{"every insert gets a greater seq", []step{
				put("1", "s1", "ok", true), put("1", "s2", "error", true), put("2", "s1", "malformed", true)}},
			{"replacing an annotation gives it a new seq", []step{
				put("1", "s1", "malformed", true), put("1", "s2", "ok", true), put("1", "s1", "ok", true)}},
			{"replacing ok with ok gives a new seq", []step{
				put("1", "s1", "ok", true), put("1", "s2", "ok", true), put("1", "s1", "ok", true)}},
			{"a refused downgrade of ok keeps the seq", []step{
				put("1", "s1", "ok", true), put("1", "s2", "ok", true), put("1", "s1", "malformed", false),
				put("1", "s1", "error", false), put("1", "s1", "blocked", false)}},
			{"a write after a refused one still gets a greater seq", []step{
				put("1", "s1", "ok", true), put("1", "s1", "error", false), put("1", "s2", "ok", true)}},
			{"a seq is not reused after the newest annotation is deleted", []step{
				put("1", "s1", "error", true), put("2", "s1", "error", true), del("2", "error"),
				put("2", "s1", "ok", true)}},
			{"a seq is not reused after every annotation is deleted", []step{
				put("1", "s1", "error", true), put("1", "s2", "error", true), del("1", "error"),
				put("1", "s2", "ok", true)}},
		}
		for _, tt := range tests {
			t.Run(tt.name, func(t *testing.T) {
				s := b.open(t)
				ctx := context.Background()
				if _, err := s.ImportSamples(ctx, samples("s1", "s2")); err != nil {
					t.Fatal(err)
				}
				var highest int64 // the highest seq seen so far, deleted ones included
				for i, st := range tt.steps {
					key := st.annotator + "/" + st.sample
					before := seqs(t, s)
					if st.del {
						if _, err := s.DeleteAnnotations(ctx, st.annotator, "urgency", []string{st.status}); err != nil {
							t.Fatal(err)
						}
					} else if err := s.UpsertAnnotation(ctx, annotation(st.annotator, "urgency", st.sample, st.status)); err != nil {
						t.Fatal(err)
					}
					after := seqs(t, s)
					switch {
					case st.del:
					case st.wantNew && after[key] <= highest:
						t.Errorf("step %d: %s got seq %d, want one above %d", i, key, after[key], highest)
					case !st.wantNew && after[key] != before[key]:
						t.Errorf("step %d: %s seq moved from %d to %d, want it kept", i, key, before[key], after[key])
					}
					for k, seq := range after {
						if k != key && seq != before[k] {
							t.Errorf("step %d: %s seq moved from %d to %d by a write of %s", i, k, before[k], seq, key)
						}
						highest = max(highest, seq)
					}
					var want int64
					for _, seq := range after {
						want = max(want, seq)
					}
					if got := lastSeq(t, s); got != want {
						t.Errorf("step %d: LastSeq = %d, want %d (the highest stored seq)", i, got, want)
					}
				}
			})
		}
	})
}

// Concurrent writes share transactions: each written row still gets a seq of its own, seqs
// stay dense, and a row whose sample is missing fails alone, taking no seq.
func TestConcurrentWritesGetTheirOwnSeqsAndABadRowFailsAlone(t *testing.T) {
	forEachBackend(t, func(t *testing.T, b backend) {
		s := b.open(t)
		ctx := context.Background()
		const n = 200
		ids := make([]string, n)
		for i := range ids {
			ids[i] = fmt.Sprintf("s%03d", i)
		}
		if _, err := s.ImportSamples(ctx, samples(ids...)); err != nil {
			t.Fatal(err)
		}
		errs := make([]error, n+1)
		var wg sync.WaitGroup
		for i := range errs {
			id := "missing"
			if i < n {
				id = ids[i]
			}
			wg.Go(func() { errs[i] = s.UpsertAnnotation(ctx, annotation("1", "urgency", id, "ok")) })
		}
		wg.Wait()
		for i, err := range errs[:n] {
			if err != nil {
				t.Errorf("write of %s: %v", ids[i], err)
			}
		}
		if err := errs[n]; err == nil || !strings.Contains(err.Error(), `sample "missing" is not stored`) {
			t.Errorf("write of a missing sample = %v, want it named as not stored", err)
		}
		got := seqs(t, s)
		seen := map[int64]bool{}
		for key, seq := range got {
			if seq < 1 || seq > n || seen[seq] {
				t.Errorf("%s has seq %d: want distinct seqs 1..%d", key, seq, n)
			}
			seen[seq] = true
		}
		if len(got) != n || lastSeq(t, s) != n {
			t.Errorf("%d annotations, LastSeq %d; want %d and %d", len(got), lastSeq(t, s), n, n)
		}
	})
}

func TestLastSeqIsZeroWithoutAnnotations(t *testing.T) {
	forEachBackend(t, func(t *testing.T, b backend) {
		s := b.open(t)
		if _, err := s.ImportSamples(context.Background(), samples("s1")); err != nil {
			t.Fatal(err)
		}
		if got := lastSeq(t, s); got != 0 {
			t.Errorf("LastSeq = %d, want 0", got)
		}
	})
}

func TestSeqKeepsGrowingAcrossReopens(t *testing.T) {
	forEachBackend(t, func(t *testing.T, b backend) {
		ctx := context.Background()
		dsn := b.newDSN(t)
		first, err := store.Open(ctx, dsn)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := first.ImportSamples(ctx, samples("s1", "s2", "s3")); err != nil {
			t.Fatal(err)
		}
		for _, a := range []store.Annotation{annotation("1", "urgency", "s1", "ok"), annotation("2", "urgency", "s2", "error")} {
			if err := first.UpsertAnnotation(ctx, a); err != nil {
				t.Fatal(err)
			}
		}
		highest := lastSeq(t, first)
		// The newest annotation goes, so the stored rows no longer hold the highest seq.
		if n, err := first.DeleteAnnotations(ctx, "2", "urgency", []string{"error"}); err != nil || n != 1 {
			t.Fatalf("DeleteAnnotations = %d, %v", n, err)
		}
		if err := first.Close(); err != nil {
			t.Fatal(err)
		}

		second := openDSN(t, dsn)
		if err := second.UpsertAnnotation(ctx, annotation("3", "urgency", "s3", "ok")); err != nil {
			t.Fatal(err)
		}
		if got := seqs(t, second)["3/s3"]; got <= highest {
			t.Errorf("seq after reopening = %d, want one above %d", got, highest)
		}
	})
}

// createVersion1 makes the database of a program that knew only the first migration.
func createVersion1(t *testing.T, path string) *sql.DB {
	t.Helper()
	schema, err := os.ReadFile(filepath.Join("migrations", "sqlite", "0001_init.sql"))
	if err != nil {
		t.Fatal(err)
	}
	db, err := sql.Open("sqlite", path)
	if err != nil {
		t.Fatal(err)
	}
	for _, q := range []string{
		string(schema),
		`CREATE TABLE schema_migrations (version INTEGER PRIMARY KEY, applied_at TEXT NOT NULL)`,
		`INSERT INTO schema_migrations (version, applied_at) VALUES (1, '2025-01-01T00:00:00Z')`,
	} {
		if _, err := db.Exec(q); err != nil {
			db.Close()
			t.Fatal(err)
		}
	}
	return db
}

// TestMigrationNumbersExistingAnnotationsInCreatedOrder opens an SQLite database made before
// the change sequence, with the migrator that made it. Only SQLite has such databases:
// PostgreSQL's schema starts with the seq.
func TestMigrationNumbersExistingAnnotationsInCreatedOrder(t *testing.T) {
	type row struct{ sample, createdAt string }
	tests := []struct {
		name string
		rows []row  // in insertion order
		want string // samples in seq order
	}{
		{"numbers by created time, not by insertion",
			[]row{{"s1", "2025-03-01T10:00:02Z"}, {"s2", "2025-03-01T10:00:01Z"}, {"s3", "2025-03-01T10:00:03Z"}},
			"[s2 s1 s3]"},
		{"puts a whole second before its fractions, though the text sorts the other way",
			[]row{{"s1", "2025-03-01T10:00:00.5Z"}, {"s2", "2025-03-01T10:00:00Z"},
				{"s3", "2025-03-01T10:00:00.25Z"}, {"s4", "2025-03-01T09:59:59.999999999Z"}},
			"[s4 s2 s3 s1]"},
		{"keeps insertion order for equal times",
			[]row{{"s2", "2025-03-01T10:00:00Z"}, {"s1", "2025-03-01T10:00:00Z"}, {"s3", "2025-03-01T10:00:00Z"}},
			"[s2 s1 s3]"},
		{"numbers nothing in an empty table", nil, "[]"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			path := filepath.Join(t.TempDir(), "mha.db")
			db := createVersion1(t, path)
			for i, id := range []string{"s1", "s2", "s3", "s4"} {
				if _, err := db.Exec(`INSERT INTO samples (id, position, text, imported_at) VALUES ($1, $2, $3, '2025-01-01T00:00:00Z')`,
					id, i, "text of "+id); err != nil {
					t.Fatal(err)
				}
			}
			for _, r := range tt.rows {
				if _, err := db.Exec(`INSERT INTO annotations (annotator, domain, sample_id, status, created_at, updated_at)
					VALUES ('1', 'urgency', $1, 'ok', $2, $2)`, r.sample, r.createdAt); err != nil {
					t.Fatal(err)
				}
			}
			if err := db.Close(); err != nil {
				t.Fatal(err)
			}

			s := openDSN(t, path)
			got := []string{}
			for i, c := range allChanges(t, s) {
				got = append(got, c.SampleID)
				if c.Seq != int64(i+1) {
					t.Errorf("%s has seq %d, want %d (numbered from 1)", c.SampleID, c.Seq, i+1)
				}
			}
			if fmt.Sprint(got) != tt.want {
				t.Errorf("seq order %v, want %s", got, tt.want)
			}
			if last := lastSeq(t, s); last != int64(len(tt.rows)) {
				t.Errorf("LastSeq = %d, want %d", last, len(tt.rows))
			}
			if err := s.UpsertAnnotation(context.Background(), annotation("2", "urgency", "s1", "ok")); err != nil {
				t.Fatal(err)
			}
			if got := seqs(t, s)["2/s1"]; got != int64(len(tt.rows))+1 {
				t.Errorf("the first write after the migration got seq %d, want %d", got, len(tt.rows)+1)
			}
			var indexed int
			if err := sqliteBackend.rawDB(t, path).QueryRow(`SELECT COUNT(*) FROM pragma_index_list('annotations') l
				JOIN pragma_index_info(l.name) i WHERE i.name = 'seq'`).Scan(&indexed); err != nil || indexed != 1 {
				t.Errorf("indexes on annotations.seq: %d, %v; want 1", indexed, err)
			}
		})
	}
}

func TestChangesReturnsAnnotationsAfterASeq(t *testing.T) {
	forEachBackend(t, func(t *testing.T, b backend) {
		s := b.open(t)
		ctx := context.Background()
		if _, err := s.ImportSamples(ctx, samples("a", "b", "c", "d")); err != nil {
			t.Fatal(err)
		}
		for _, id := range []string{"a", "b", "c", "d"} {
			if err := s.UpsertAnnotation(ctx, annotation("1", "urgency", id, "error")); err != nil {
				t.Fatal(err)
			}
		}
		// b is replaced, so it moves to the end with its new content.
		replaced := annotation("1", "urgency", "b", "ok")
		replaced.Label = "LEVEL_3"
		if err := s.UpsertAnnotation(ctx, replaced); err != nil {
			t.Fatal(err)
		}
		seq := seqs(t, s)
		tests := []struct {
			name  string
			after int64
			limit int
			want  string
		}{
			{"from zero returns everything in seq order", 0, 10, "[a c d b]"},
			{"from a negative seq returns everything", -5, 10, "[a c d b]"},
			{"after a seq returns only later writes", seq["1/c"], 10, "[d b]"},
			{"after a replaced annotation's old seq returns it under its new seq", seq["1/a"], 10, "[c d b]"},
			{"a limit cuts the list from its start", 0, 2, "[a c]"},
			{"after the last seq returns nothing", seq["1/b"], 10, "[]"},
			{"a zero limit returns nothing", 0, 0, "[]"},
			{"a negative limit returns nothing", 0, -1, "[]"},
		}
		for _, tt := range tests {
			t.Run(tt.name, func(t *testing.T) {
				cs, err := s.Changes(ctx, tt.after, tt.limit)
				if err != nil {
					t.Fatal(err)
				}
				got := []string{}
				for _, c := range cs {
					got = append(got, c.SampleID)
					if c.Seq <= tt.after || c.Seq != seq["1/"+c.SampleID] {
						t.Errorf("%s has seq %d, want %d (above %d)", c.SampleID, c.Seq, seq["1/"+c.SampleID], tt.after)
					}
					if c.SampleID == "b" && (c.Status != "ok" || c.Label != "LEVEL_3") {
						t.Errorf("b is (%s, %q), want its replacement (ok, LEVEL_3)", c.Status, c.Label)
					}
				}
				if fmt.Sprint(got) != tt.want {
					t.Errorf("got %v, want %s", got, tt.want)
				}
			})
		}
	})
}
