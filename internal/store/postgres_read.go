package store

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/jackc/pgx/v5"
)

// scanPgAnnotation reads annotationColumns into a, then the columns that follow into extra.
func scanPgAnnotation(row rowScanner, a *Annotation, extra ...any) error {
	if err := row.Scan(annotationDest(a, &a.CreatedAt, extra...)...); err != nil {
		return err
	}
	a.CreatedAt = a.CreatedAt.UTC() // pgx gives timestamptz in the local zone
	return nil
}

// filterSQL returns the WHERE clause (empty, or starting with " WHERE ") that selects f over
// annotations a joined with samples s, and args with f's values appended for its placeholders.
// It selects what the SQLite one does; only the SQL differs.
func (p *Postgres) filterSQL(f Filter, args []any) (string, []any) {
	for _, v := range []string{f.Annotator, f.Domain, f.Status, f.Label, f.Text} {
		if !pgStorable(v) {
			// No stored text holds it. PostgreSQL would refuse it as a parameter.
			return " WHERE FALSE", args
		}
	}
	w := whereClause{args: args}
	w.addKeys(f)
	if f.Label != "" {
		// ",TA-1,TA-3," holds ",TA-3," but not ",TA-30,"; labels join codes with ", ".
		w.add("(a.label = %s OR strpos(',' || replace(a.label, ', ', ',') || ',', %s) > 0)",
			f.Label, ","+f.Label+",")
	}
	if f.Text != "" {
		// strpos has no wildcards, so % and _ in the text are plain characters. Both sides are
		// lower-cased by the same function.
		w.add("(strpos("+fmt.Sprintf(p.lower, "s.text")+", "+fmt.Sprintf(p.lower, "%[1]s")+") > 0 OR strpos("+
			fmt.Sprintf(p.lower, "a.raw_reply")+", "+fmt.Sprintf(p.lower, "%[1]s")+") > 0)", f.Text)
	}
	w.addTimes(f, "FALSE", "a.created_at", func(t time.Time) any { return pgTimeCeil(t) })
	return w.sql()
}

// Export implements Store. fn's own error is returned as it is.
func (p *Postgres) Export(ctx context.Context, f Filter, fn func(ExportRow) error) error {
	where, args := p.filterSQL(f, nil)
	rows, err := p.pool.Query(ctx, exportQuery(where), args...)
	if err != nil {
		return fmt.Errorf("store: export: %w", err)
	}
	defer rows.Close()
	return exportRows(rows, scanPgAnnotation, fn)
}

// Changes implements Store.
func (p *Postgres) Changes(ctx context.Context, after int64, limit int) ([]Change, error) {
	if limit <= 0 {
		return nil, nil
	}
	rows, err := p.pool.Query(ctx, changesQuery, after, limit)
	if err != nil {
		return nil, fmt.Errorf("store: changes: %w", err)
	}
	defer rows.Close()
	out, err := collectChanges(rows, scanPgAnnotation)
	if err != nil {
		return nil, fmt.Errorf("store: changes: %w", err)
	}
	return out, nil
}

// LastSeq implements Store.
func (p *Postgres) LastSeq(ctx context.Context) (int64, error) {
	return scanValue[int64](p.pool.QueryRow(ctx, lastSeqQuery), "last seq")
}

// Annotations implements Store.
func (p *Postgres) Annotations(ctx context.Context, f Filter, before int64, limit int) ([]Row, error) {
	where, args := p.filterSQL(f, nil)
	query, args := annotationsQuery(where, args, before, limit)
	rows, err := p.pool.Query(ctx, query, args...)
	if err != nil {
		return nil, fmt.Errorf("store: annotations: %w", err)
	}
	defer rows.Close()
	out, err := collectRows(rows, scanPgAnnotation)
	if err != nil {
		return nil, fmt.Errorf("store: annotations: %w", err)
	}
	return out, nil
}

// Sample implements Store. Both reads share one repeatable-read transaction, so the
// annotations are those of the moment the sample was read.
func (p *Postgres) Sample(ctx context.Context, id string) (Sample, []Row, error) {
	if !pgStorable(id) {
		return Sample{}, nil, fmt.Errorf("store: sample %q: %w", id, ErrNotFound)
	}
	tx, err := p.pool.BeginTx(ctx, pgx.TxOptions{IsoLevel: pgx.RepeatableRead, AccessMode: pgx.ReadOnly})
	if err != nil {
		return Sample{}, nil, fmt.Errorf("store: sample %q: %w", id, err)
	}
	defer tx.Rollback(context.WithoutCancel(ctx)) // read only: nothing to commit
	sm := Sample{ID: id}
	err = tx.QueryRow(ctx, sampleQuery, id).Scan(&sm.Text, &sm.Position)
	if errors.Is(err, pgx.ErrNoRows) {
		return Sample{}, nil, fmt.Errorf("store: sample %q: %w", id, ErrNotFound)
	}
	if err != nil {
		return Sample{}, nil, fmt.Errorf("store: sample %q: %w", id, err)
	}
	rows, err := tx.Query(ctx, sampleRowsQuery, id)
	if err != nil {
		return Sample{}, nil, fmt.Errorf("store: sample %q: %w", id, err)
	}
	defer rows.Close()
	out, err := collectRows(rows, scanPgAnnotation)
	if err != nil {
		return Sample{}, nil, fmt.Errorf("store: sample %q: %w", id, err)
	}
	return sm, out, nil
}

// Stats implements Store. The database sums per (annotator, domain, status, label of an ok
// row); the groups are folded into one RunStats per run here.
func (p *Postgres) Stats(ctx context.Context, f Filter) ([]RunStats, error) {
	where, args := p.filterSQL(f, nil)
	rows, err := p.pool.Query(ctx, statsQuery(`COALESCE(SUM(%s), 0)::bigint`, "a.created_at", where), args...)
	if err != nil {
		return nil, fmt.Errorf("store: stats: %w", err)
	}
	var (
		out                              []RunStats
		annotator, domain, status, label string
		n                                int
		t                                tokenSums
		last                             time.Time
	)
	if _, err := pgx.ForEachRow(rows, []any{&annotator, &domain, &status, &label, &n, &t.in, &t.out, &t.cached, &last}, func() error {
		out = addStatsGroup(out, annotator, domain, status, label, n, t, last.UTC())
		return nil
	}); err != nil {
		return nil, fmt.Errorf("store: stats: %w", err)
	}
	return out, nil
}
