package store_test

import (
	"context"
	"errors"
	"strings"
	"testing"

	"github.com/mhannotator/mha/internal/store"
)

// What only PostgreSQL does: the contract suite covers everything both backends do.

func TestPostgresRefusesTextItCannotStore(t *testing.T) {
	s := postgresBackend.open(t)
	ctx := context.Background()
	if _, err := s.ImportSamples(ctx, samples("s1")); err != nil {
		t.Fatal(err)
	}
	t.Run("a NUL byte in a key of an annotation", func(t *testing.T) {
		a := annotation("1", "urgency", "s1", store.StatusOK)
		a.Model = "before\x00after"
		err := s.UpsertAnnotation(ctx, a)
		if err == nil || !strings.Contains(err.Error(), "field Model") || !strings.Contains(err.Error(), "NUL") {
			t.Errorf("err = %v, want a refusal naming Model and NUL", err)
		}
	})
	t.Run("what a provider wrote is stored with its unstorable bytes replaced", func(t *testing.T) {
		a := annotation("1", "urgency", "s1", store.StatusMalformed)
		a.RawReply, a.Error = "before\x00after", "bad \xff byte"
		if err := s.UpsertAnnotation(ctx, a); err != nil {
			t.Fatalf("upsert: %v", err)
		}
		_, rows, err := s.Sample(ctx, "s1")
		if err != nil || len(rows) != 1 {
			t.Fatalf("Sample = %v, %v", rows, err)
		}
		if got := rows[0]; got.RawReply != "before\uFFFDafter" || got.Error != "bad \uFFFD byte" {
			t.Errorf("stored %q and %q, want the bad bytes replaced by U+FFFD", got.RawReply, got.Error)
		}
		if _, err := s.DeleteAnnotations(ctx, "1", "urgency", []string{store.StatusMalformed}); err != nil {
			t.Fatal(err)
		}
	})
	t.Run("invalid UTF-8 in a sample, and nothing of that import is written", func(t *testing.T) {
		_, err := s.ImportSamples(ctx, []store.Sample{{ID: "s2", Text: "ok"}, {ID: "s3", Text: "bad \xff"}})
		if err == nil || !strings.Contains(err.Error(), `sample "s3"`) || !strings.Contains(err.Error(), "UTF-8") {
			t.Errorf("err = %v, want a refusal naming s3 and UTF-8", err)
		}
		if n, err := s.CountSamples(ctx); err != nil || n != 1 {
			t.Errorf("CountSamples = %d, %v; want 1", n, err)
		}
	})
	t.Run("such text in a question finds nothing, without an error", func(t *testing.T) {
		if err := s.UpsertAnnotation(ctx, annotation("1", "urgency", "s1", store.StatusOK)); err != nil {
			t.Fatal(err)
		}
		for _, bad := range []string{"\x00", "\xff"} {
			f := store.Filter{Text: bad}
			if rows, err := s.Annotations(ctx, f, 0, 0); err != nil || len(rows) != 0 {
				t.Errorf("Annotations(Text %q) = %d rows, %v", bad, len(rows), err)
			}
			if st, err := s.Stats(ctx, store.Filter{Annotator: bad}); err != nil || len(st) != 0 {
				t.Errorf("Stats(Annotator %q) = %v, %v", bad, st, err)
			}
			if ids, err := s.AnnotatedIDs(ctx, "1", "urgency", []string{"s1", bad}); err != nil || len(ids) != 1 || !ids["s1"] {
				t.Errorf("AnnotatedIDs with %q = %v, %v; want s1 only", bad, ids, err)
			}
			if c, err := s.CountAnnotations(ctx, bad, "urgency", 0); err != nil || c.Total() != 0 {
				t.Errorf("CountAnnotations(%q) = %+v, %v", bad, c, err)
			}
			if n, err := s.DeleteAnnotations(ctx, bad, "urgency", []string{store.StatusOK}); err != nil || n != 0 {
				t.Errorf("DeleteAnnotations(%q) = %d, %v", bad, n, err)
			}
			if _, _, err := s.Sample(ctx, bad); !errors.Is(err, store.ErrNotFound) {
				t.Errorf("Sample(%q): err = %v, want ErrNotFound", bad, err)
			}
		}
	})
}

// TestPostgresFoldsCaseInADatabaseWithoutAUTF8Locale: in a database whose LC_CTYPE is C,
// lower() folds ASCII only; the store lower-cases under the ICU root collation instead.
func TestPostgresFoldsCaseInADatabaseWithoutAUTF8Locale(t *testing.T) {
	base := testPostgres(t)
	name := randomName("mha_test_c_")
	if err := pgAdmin(t, base, `CREATE DATABASE `+name+` LC_CTYPE 'C' LC_COLLATE 'C' TEMPLATE template0`); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := pgAdmin(t, base, `DROP DATABASE `+name+` WITH (FORCE)`); err != nil {
			t.Errorf("drop the test database: %v", err)
		}
	})
	u := *base
	u.Path = "/" + name
	s := openDSN(t, u.String())
	ctx := context.Background()
	if _, err := s.ImportSamples(ctx, []store.Sample{{ID: "s1", Text: "Ich bin ÜBERFORDERT"}}); err != nil {
		t.Fatal(err)
	}
	if err := s.UpsertAnnotation(ctx, annotation("1", "urgency", "s1", store.StatusOK)); err != nil {
		t.Fatal(err)
	}
	for _, text := range []string{"überfordert", "ÜBERFORDERT", "Überfordert"} {
		if rows, err := s.Annotations(ctx, store.Filter{Text: text}, 0, 0); err != nil || len(rows) != 1 {
			t.Errorf("Text %q selected %d rows, %v; want 1", text, len(rows), err)
		}
	}
}
