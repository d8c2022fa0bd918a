package store

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/jackc/pgx/v5"
)

// scanPgAnnotation reads annotationColumns into a, then the columns that follow into extra.
func scanPgAnnotation(rows pgx.Rows, a *Annotation, extra ...any) error {
	dest := append([]any{&a.Annotator, &a.Domain, &a.SampleID, &a.Label, &a.Status, &a.RawReply,
		&a.ParseError, &a.ValidityError, &a.Error, &a.Model, &a.PromptHash, &a.LatencyMS,
		&a.InputTokens, &a.OutputTokens, &a.Attempt, &a.CreatedAt}, extra...)
	if err := rows.Scan(dest...); err != nil {
		return err
	}
	a.CreatedAt = a.CreatedAt.UTC() // pgx gives timestamptz in the local zone
	return nil
}

// filterSQL returns the WHERE clause (empty, or starting with " WHERE ") that selects f over
// annotations a joined with samples s, and args with f's values appended for its placeholders.
// It selects what the SQLite one does; only the SQL differs.
func (p *Postgres) filterSQL(f Filter, args []any) (string, []any) {
	var conds []string
	// add appends cond, whose %s verbs become the placeholders of vals.
	add := func(cond string, vals ...any) {
		marks := make([]any, len(vals))
		for i, v := range vals {
			args = append(args, v)
			marks[i] = fmt.Sprintf("$%d", len(args))
		}
		conds = append(conds, fmt.Sprintf(cond, marks...))
	}
	for _, v := range []string{f.Annotator, f.Domain, f.Status, f.Label, f.Text} {
		if !pgStorable(v) {
			// No stored text holds it. PostgreSQL would refuse it as a parameter.
			return " WHERE FALSE", args
		}
	}
	if f.Annotator != "" {
		add("a.annotator = %s", f.Annotator)
	}
	if f.Domain != "" {
		add("a.domain = %s", f.Domain)
	}
	if f.Status != "" {
		add("a.status = %s", f.Status)
	}
	if f.Label != "" {
		// ",TA-1,TA-3," holds ",TA-3," but not ",TA-30,"; labels join codes with ", ".
		add("(a.label = %s OR strpos(',' || replace(a.label, ', ', ',') || ',', %s) > 0)",
			f.Label, ","+f.Label+",")
	}
	if f.Text != "" {
		// strpos has no wildcards, so % and _ in the text are plain characters. Both sides are
		// lower-cased by the same function.
		add("(strpos("+fmt.Sprintf(p.lower, "s.text")+", "+fmt.Sprintf(p.lower, "%[1]s")+") > 0 OR strpos("+
			fmt.Sprintf(p.lower, "a.raw_reply")+", "+fmt.Sprintf(p.lower, "%[1]s")+") > 0)", f.Text)
	}
	if !f.From.IsZero() {
		switch {
		case f.From.After(maxStorableTime):
			add("FALSE") // later than anything stored
		case !f.From.Before(minStorableTime):
			add("a.created_at >= %s", pgTimeCeil(f.From))
		}
	}
	if !f.To.IsZero() {
		switch {
		case !f.To.After(minStorableTime):
			add("FALSE") // no stored time is earlier
		case !f.To.After(maxStorableTime):
			add("a.created_at < %s", pgTimeCeil(f.To))
		}
	}
	if len(conds) == 0 {
		return "", args
	}
	return " WHERE " + strings.Join(conds, " AND "), args
}

// Export implements Store. fn's own error is returned as it is.
func (p *Postgres) Export(ctx context.Context, f Filter, fn func(ExportRow) error) error {
	where, args := p.filterSQL(f, nil)
	rows, err := p.pool.Query(ctx, `SELECT `+annotationColumns+`, s.text, s.position
		FROM annotations a JOIN samples s ON s.id = a.sample_id`+where+`
		ORDER BY a.annotator, a.domain, s.position`, args...)
	if err != nil {
		return fmt.Errorf("store: export: %w", err)
	}
	defer rows.Close()
	for rows.Next() {
		var r ExportRow
		if err := scanPgAnnotation(rows, &r.Annotation, &r.Text, &r.Position); err != nil {
			return fmt.Errorf("store: export: %w", err)
		}
		if err := fn(r); err != nil {
			return err
		}
	}
	if err := rows.Err(); err != nil {
		return fmt.Errorf("store: export: %w", err)
	}
	return nil
}

// Changes implements Store.
func (p *Postgres) Changes(ctx context.Context, after int64, limit int) ([]Change, error) {
	if limit <= 0 {
		return nil, nil
	}
	rows, err := p.pool.Query(ctx, `SELECT `+annotationColumns+`, a.seq FROM annotations a
		WHERE a.seq > $1 ORDER BY a.seq LIMIT $2`, after, limit)
	if err != nil {
		return nil, fmt.Errorf("store: changes: %w", err)
	}
	defer rows.Close()
	var out []Change
	for rows.Next() {
		var c Change
		if err := scanPgAnnotation(rows, &c.Annotation, &c.Seq); err != nil {
			return nil, fmt.Errorf("store: changes: %w", err)
		}
		out = append(out, c)
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("store: changes: %w", err)
	}
	return out, nil
}

// LastSeq implements Store.
func (p *Postgres) LastSeq(ctx context.Context) (int64, error) {
	var seq int64
	if err := p.pool.QueryRow(ctx, `SELECT COALESCE(MAX(seq), 0) FROM annotations`).Scan(&seq); err != nil {
		return 0, fmt.Errorf("store: last seq: %w", err)
	}
	return seq, nil
}

func collectPgRows(rows pgx.Rows) ([]Row, error) {
	defer rows.Close()
	var out []Row
	for rows.Next() {
		var r Row
		if err := scanPgAnnotation(rows, &r.Annotation, &r.Text, &r.Position, &r.Seq); err != nil {
			return nil, err
		}
		out = append(out, r)
	}
	return out, rows.Err()
}

// Annotations implements Store.
func (p *Postgres) Annotations(ctx context.Context, f Filter, before int64, limit int) ([]Row, error) {
	switch {
	case limit <= 0:
		limit = DefaultAnnotationsLimit
	case limit > MaxAnnotationsLimit:
		limit = MaxAnnotationsLimit
	}
	where, args := p.filterSQL(f, nil)
	if before > 0 {
		args = append(args, before)
		if where == "" {
			where = " WHERE "
		} else {
			where += " AND "
		}
		where += fmt.Sprintf("a.seq < $%d", len(args))
	}
	args = append(args, limit)
	rows, err := p.pool.Query(ctx, rowsQuery+where+fmt.Sprintf(" ORDER BY a.seq DESC LIMIT $%d", len(args)), args...)
	if err != nil {
		return nil, fmt.Errorf("store: annotations: %w", err)
	}
	out, err := collectPgRows(rows)
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
	err = tx.QueryRow(ctx, `SELECT text, position FROM samples WHERE id = $1`, id).Scan(&sm.Text, &sm.Position)
	if errors.Is(err, pgx.ErrNoRows) {
		return Sample{}, nil, fmt.Errorf("store: sample %q: %w", id, ErrNotFound)
	}
	if err != nil {
		return Sample{}, nil, fmt.Errorf("store: sample %q: %w", id, err)
	}
	rows, err := tx.Query(ctx, rowsQuery+` WHERE a.sample_id = $1 ORDER BY a.domain, a.annotator`, id)
	if err != nil {
		return Sample{}, nil, fmt.Errorf("store: sample %q: %w", id, err)
	}
	out, err := collectPgRows(rows)
	if err != nil {
		return Sample{}, nil, fmt.Errorf("store: sample %q: %w", id, err)
	}
	return sm, out, nil
}

// Stats implements Store. The database sums per (annotator, domain, status, label of an ok
// row); the groups are folded into one RunStats per run here.
func (p *Postgres) Stats(ctx context.Context, f Filter) ([]RunStats, error) {
	where, args := p.filterSQL(f, nil)
	rows, err := p.pool.Query(ctx, `SELECT a.annotator, a.domain, a.status,
		CASE WHEN a.status = 'ok' THEN a.label ELSE '' END AS ok_label,
		COUNT(*), COALESCE(SUM(a.input_tokens), 0)::bigint, COALESCE(SUM(a.output_tokens), 0)::bigint,
		MAX(a.created_at)
		FROM annotations a JOIN samples s ON s.id = a.sample_id`+where+`
		GROUP BY a.annotator, a.domain, a.status, ok_label
		ORDER BY a.annotator, a.domain`, args...)
	if err != nil {
		return nil, fmt.Errorf("store: stats: %w", err)
	}
	var (
		out                              []RunStats
		annotator, domain, status, label string
		n                                int
		in, outTokens                    int64
		last                             time.Time
	)
	if _, err := pgx.ForEachRow(rows, []any{&annotator, &domain, &status, &label, &n, &in, &outTokens, &last}, func() error {
		out = addStatsGroup(out, annotator, domain, status, label, n, in, outTokens, last.UTC())
		return nil
	}); err != nil {
		return nil, fmt.Errorf("store: stats: %w", err)
	}
	return out, nil
}
