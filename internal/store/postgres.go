package store

import (
	"context"
	"errors"
	"fmt"
	"net/url"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgxpool"
)

// Postgres is the Store in a PostgreSQL database, through a pgx connection pool. It keeps its
// tables in the first schema of the connection's search_path (a search_path parameter of the
// DSN sets it), so that several stores can share one database.
//
// It differs from SQLite only where PostgreSQL's types do, as the Store documentation says:
// times are kept to the microsecond, and text must be valid UTF-8 without NUL bytes.
type Postgres struct {
	pool  *pgxpool.Pool
	group *committer
	// lower is the SQL that lower-cases the text expression its %s stands for.
	lower string
}

var _ Store = (*Postgres)(nil)

// OpenPostgres connects to the PostgreSQL database that dsn names (a postgres:// or
// postgresql:// URL, or key=value pairs, as pgx reads them) and brings its schema up to date.
// Pool settings such as pool_max_conns may be given in the DSN.
func OpenPostgres(ctx context.Context, dsn string) (*Postgres, error) {
	cfg, err := pgxpool.ParseConfig(dsn)
	if err != nil {
		return nil, fmt.Errorf("store: PostgreSQL DSN: %s", parseErrorText(dsn, err))
	}
	where := fmt.Sprintf("PostgreSQL at %s:%d (database %q, user %q)",
		cfg.ConnConfig.Host, cfg.ConnConfig.Port, cfg.ConnConfig.Database, cfg.ConnConfig.User)
	pool, err := pgxpool.NewWithConfig(ctx, cfg)
	if err != nil {
		return nil, fmt.Errorf("store: %s: %w", where, err)
	}
	p := &Postgres{pool: pool}
	p.group = newCommitter(p.upsert, p.upsertOne)
	if err := p.init(ctx, cfg); err != nil {
		pool.Close()
		return nil, fmt.Errorf("store: %s: %w", where, err)
	}
	return p, nil
}

func (p *Postgres) init(ctx context.Context, cfg *pgxpool.Config) error {
	var schema *string
	if err := p.pool.QueryRow(ctx, `SELECT current_schema()`).Scan(&schema); err != nil {
		return err
	}
	if schema == nil {
		var path string
		if err := p.pool.QueryRow(ctx, `SHOW search_path`).Scan(&path); err != nil {
			return err
		}
		return fmt.Errorf("no schema of the search_path %q exists; create it first (CREATE SCHEMA)", path)
	}
	if err := migratePostgres(ctx, cfg.ConnConfig); err != nil {
		return fmt.Errorf("migrate schema %q: %w", *schema, err)
	}
	lower, err := pickLower(ctx, p.pool)
	if err != nil {
		return err
	}
	p.lower = lower
	return nil
}

// parseErrorText is why pgx could not parse dsn, without the DSN itself: pgx's message quotes
// it, hiding a password only on a best-effort basis.
func parseErrorText(dsn string, err error) string {
	msg := err.Error()
	var pe *pgconn.ParseConfigError
	if errors.As(err, &pe) {
		// "cannot parse `DSN`: why"
		if i := strings.LastIndex(msg, "`: "); i >= 0 {
			msg = msg[i+len("`: "):]
		}
	}
	if u, uerr := url.Parse(dsn); uerr == nil && u.User != nil {
		if pw, ok := u.User.Password(); ok && pw != "" {
			msg = strings.ReplaceAll(msg, pw, "xxxxx")
		}
	}
	return msg
}

// lowerProbe holds upper-case letters beyond ASCII and what strings.ToLower makes of them.
const lowerProbe = `'ÀÉÎÕÜ ΣΔ ЖЯ ĞŁ'`
const lowerProbeWant = `'àéîõü σδ жя ğł'`

// pickLower returns the SQL that lower-cases text as strings.ToLower does, for the letters
// that matter: lower() when the database's LC_CTYPE folds more than ASCII (such as C.UTF-8 or
// en_US.UTF-8), lower() under the ICU root collation when it does not (LC_CTYPE C).
func pickLower(ctx context.Context, pool *pgxpool.Pool) (string, error) {
	const plain, icu = `lower(%s)`, `lower((%s) COLLATE "und-x-icu")`
	var ok bool
	if err := pool.QueryRow(ctx, `SELECT `+fmt.Sprintf(plain, lowerProbe)+` = `+lowerProbeWant).Scan(&ok); err != nil {
		return "", err
	}
	if ok {
		return plain, nil
	}
	err := pool.QueryRow(ctx, `SELECT `+fmt.Sprintf(icu, lowerProbe)+` = `+lowerProbeWant).Scan(&ok)
	if err == nil && ok {
		return icu, nil
	}
	return "", fmt.Errorf("the database lower-cases only ASCII letters (LC_CTYPE C?) and has no ICU "+
		"collation und-x-icu to do better (%v); create the database with a UTF-8 locale, such as "+
		"LC_CTYPE 'C.UTF-8'", err)
}

// Close closes the connection pool.
func (p *Postgres) Close() error {
	p.group.close()
	p.pool.Close()
	return nil
}

// pgStorable tells whether PostgreSQL can store s as text: valid UTF-8 without NUL bytes.
func pgStorable(s string) bool {
	return utf8.ValidString(s) && !strings.ContainsRune(s, 0)
}

// pgText makes s storable: invalid bytes and NUL become U+FFFD, the replacement character.
func pgText(s string) string {
	if pgStorable(s) {
		return s
	}
	return strings.ReplaceAll(strings.ToValidUTF8(s, "\uFFFD"), "\x00", "\uFFFD")
}

const pgTextRule = "is not valid UTF-8 or holds a NUL byte, which PostgreSQL cannot store"

// ImportSamples implements Store.
func (p *Postgres) ImportSamples(ctx context.Context, samples []Sample) (ImportResult, error) {
	for i, sm := range samples {
		switch {
		case sm.ID == "":
			return ImportResult{}, fmt.Errorf("store: import samples: sample %d of %d has an empty ID", i+1, len(samples))
		case !pgStorable(sm.ID):
			return ImportResult{}, fmt.Errorf("store: import samples: sample %d of %d: the ID %s", i+1, len(samples), pgTextRule)
		case !pgStorable(sm.Text):
			return ImportResult{}, fmt.Errorf("store: import samples: sample %q: the text %s", sm.ID, pgTextRule)
		}
	}
	return importDone(p.importSamples(ctx, samples))
}

func (p *Postgres) importSamples(ctx context.Context, samples []Sample) (ImportResult, error) {
	tx, err := p.pool.Begin(ctx)
	if err != nil {
		return ImportResult{}, err
	}
	defer tx.Rollback(context.WithoutCancel(ctx)) // a no-op after Commit
	// One import at a time, so that two do not give the same positions. The mode lets
	// readers and annotation writers (whose foreign key checks lock sample rows) go on.
	if _, err := tx.Exec(ctx, `LOCK TABLE samples IN SHARE ROW EXCLUSIVE MODE`); err != nil {
		return ImportResult{}, err
	}
	var next int
	if err := tx.QueryRow(ctx, nextPosQuery).Scan(&next); err != nil {
		return ImportResult{}, err
	}
	type stored struct {
		text string
		pos  int
	}
	ids := make([]string, len(samples))
	for i, sm := range samples {
		ids[i] = sm.ID
	}
	known := make(map[string]stored)
	rows, err := tx.Query(ctx, `SELECT id, text, position FROM samples WHERE id = ANY($1)`, ids)
	if err != nil {
		return ImportResult{}, err
	}
	var id string
	var st stored
	if _, err := pgx.ForEachRow(rows, []any{&id, &st.text, &st.pos}, func() error {
		known[id] = st
		return nil
	}); err != nil {
		return ImportResult{}, err
	}

	now := time.Now()
	var res ImportResult
	var conflicts []ImportConflict
	var add [][]any
	for _, sm := range samples {
		// Samples added earlier in this loop are known too, so an ID repeated in the input is
		// treated like one already stored.
		st, ok := known[sm.ID]
		switch {
		case !ok:
			known[sm.ID] = stored{text: sm.Text, pos: next}
			add = append(add, []any{sm.ID, next, sm.Text, now})
			next++
			res.Added++
		case st.text == sm.Text:
			res.Unchanged++
		default:
			conflicts = append(conflicts, ImportConflict{ID: sm.ID, StoredPosition: st.pos})
		}
	}
	if len(conflicts) > 0 {
		return ImportResult{}, &ImportConflictError{Conflicts: conflicts}
	}
	if len(add) > 0 {
		if _, err := tx.CopyFrom(ctx, pgx.Identifier{"samples"}, []string{"id", "position", "text", "imported_at"},
			pgx.CopyFromRows(add)); err != nil {
			return ImportResult{}, err
		}
	}
	return res, tx.Commit(ctx)
}

// CountSamples implements Store.
func (p *Postgres) CountSamples(ctx context.Context) (int, error) {
	return scanValue[int](p.pool.QueryRow(ctx, countSamplesQuery), "count samples")
}

// Samples implements Store.
func (p *Postgres) Samples(ctx context.Context, offset, limit int) ([]Sample, error) {
	if ok, err := checkSamplesWindow(offset, limit); !ok {
		return nil, err
	}
	rows, err := p.pool.Query(ctx, samplesQuery, offset, limit)
	if err != nil {
		return nil, fmt.Errorf("store: samples: %w", err)
	}
	defer rows.Close()
	out, err := collectSamples(rows)
	if err != nil {
		return nil, fmt.Errorf("store: samples: %w", err)
	}
	return out, nil
}

// UpsertAnnotation implements Store. The write locks the counter row of annotation_seq and
// holds it until it commits: the next writer gets its seq only after this one is committed, so
// seqs become visible in order, and a refused write uses up none. CreatedAt is kept to the
// microsecond, cut toward the past. The writes of one process share transactions (see
// committer).
func (p *Postgres) UpsertAnnotation(ctx context.Context, a Annotation) error {
	_, err := p.UpsertAnnotationCheckingHalt(ctx, a, "", "")
	return err
}

// UpsertAnnotationCheckingHalt implements Store; an empty key reads no halt record.
func (p *Postgres) UpsertAnnotationCheckingHalt(ctx context.Context, a Annotation, workflowID, key string) (bool, error) {
	now := time.Now()
	if err := checkAnnotation(&a, now); err != nil {
		return false, err
	}
	// What a provider wrote is kept with its unstorable bytes replaced: refusing it would fail
	// the batch, and its retry would get the same reply.
	for _, f := range []*string{&a.Label, &a.RawReply, &a.ParseError, &a.ValidityError, &a.Error} {
		*f = pgText(*f)
	}
	for _, f := range []struct{ name, value string }{
		{"Annotator", a.Annotator}, {"Domain", a.Domain}, {"SampleID", a.SampleID},
		{"Model", a.Model}, {"PromptHash", a.PromptHash},
	} {
		if !pgStorable(f.value) {
			return false, fmt.Errorf("store: upsert annotation: field %s %s", f.name, pgTextRule)
		}
	}
	return p.group.write(ctx, a, now, newHaltCheck(workflowID, key))
}

// upsertOne writes w alone, with the error it deserves.
func (p *Postgres) upsertOne(ctx context.Context, w *pendingWrite) error {
	a := w.a
	err := p.upsert(ctx, []*pendingWrite{w})
	var pe *pgconn.PgError
	switch {
	case err == nil:
		return nil
	case errors.As(err, &pe) && pe.Code == "23503": // foreign_key_violation
		return fmt.Errorf("store: upsert annotation: sample %q is not stored", a.SampleID)
	}
	return fmt.Errorf("store: upsert annotation (%s, %s, %s): %w", a.Annotator, a.Domain, a.SampleID, err)
}

// upsert writes rows in one transaction, each written one taking the next seq.
func (p *Postgres) upsert(ctx context.Context, rows []*pendingWrite) error {
	return pgx.BeginFunc(ctx, p.pool, func(tx pgx.Tx) error {
		var seq int64
		if err := tx.QueryRow(ctx, `SELECT last_seq + 1 FROM annotation_seq WHERE id = 1 FOR UPDATE`).Scan(&seq); err != nil {
			return fmt.Errorf("next seq: %w", err)
		}
		for _, w := range rows {
			if w.halt != nil {
				var n int
				if err := tx.QueryRow(ctx, batchHaltedSQL, pgText(w.halt.workflowID), pgText(w.halt.key)).Scan(&n); err != nil {
					return fmt.Errorf("halt record: %w", err)
				}
				w.halted = n > 0
			}
		}
		last := int64(0)
		for _, w := range rows {
			tag, err := tx.Exec(ctx, upsertSQL, upsertArgs(w.a, pgTime(w.a.CreatedAt), pgTime(w.now), seq)...)
			if err != nil {
				return err
			}
			if tag.RowsAffected() > 0 { // else refused: an ok annotation stays, with its seq
				last, seq = seq, seq+1
			}
		}
		if last == 0 {
			return nil
		}
		if _, err := tx.Exec(ctx, `UPDATE annotation_seq SET last_seq = $1 WHERE id = 1`, last); err != nil {
			return fmt.Errorf("record seq: %w", err)
		}
		return nil
	})
}

// pgTime is t as PostgreSQL keeps it: to the microsecond, cut toward the past (pgx would cut
// it the same way; saying so keeps the rule in one place).
func pgTime(t time.Time) time.Time {
	return t.Truncate(time.Microsecond).UTC()
}

// pgTimeCeil is the first microsecond at or after t: a stored time s (whole microseconds)
// satisfies t <= s exactly when pgTimeCeil(t) <= s, and s < t when s < pgTimeCeil(t).
func pgTimeCeil(t time.Time) time.Time {
	c := t.Truncate(time.Microsecond)
	if c.Before(t) {
		c = c.Add(time.Microsecond)
	}
	return c.UTC()
}

// AnnotatedIDs implements Store.
func (p *Postgres) AnnotatedIDs(ctx context.Context, annotator, domain string, ids []string) (map[string]bool, error) {
	found := make(map[string]bool)
	var ask []string
	for _, id := range ids {
		if pgStorable(id) {
			ask = append(ask, id) // others cannot be stored, so are not annotated
		}
	}
	if len(ask) == 0 || !pgStorable(annotator) || !pgStorable(domain) {
		return found, nil
	}
	rows, err := p.pool.Query(ctx, `SELECT sample_id FROM annotations
		WHERE annotator = $1 AND domain = $2 AND sample_id = ANY($3)`, annotator, domain, ask)
	if err != nil {
		return nil, fmt.Errorf("store: annotated IDs: %w", err)
	}
	var id string
	if _, err := pgx.ForEachRow(rows, []any{&id}, func() error {
		found[id] = true
		return nil
	}); err != nil {
		return nil, fmt.Errorf("store: annotated IDs: %w", err)
	}
	return found, nil
}

// CountAnnotations implements Store.
func (p *Postgres) CountAnnotations(ctx context.Context, annotator, domain string, limit int) (Counts, error) {
	if !pgStorable(annotator) || !pgStorable(domain) {
		return Counts{}, nil
	}
	query, args := countAnnotationsQuery(annotator, domain, limit)
	rows, err := p.pool.Query(ctx, query, args...)
	if err != nil {
		return Counts{}, fmt.Errorf("store: count annotations: %w", err)
	}
	defer rows.Close()
	c, err := collectCounts(rows)
	if err != nil {
		return Counts{}, fmt.Errorf("store: count annotations: %w", err)
	}
	return c, nil
}

// DeleteAnnotations implements Store, in one statement.
func (p *Postgres) DeleteAnnotations(ctx context.Context, annotator, domain string, statuses []string) (int, error) {
	if len(statuses) == 0 {
		return 0, nil
	}
	if err := checkStatuses(statuses); err != nil {
		return 0, err
	}
	if !pgStorable(annotator) || !pgStorable(domain) {
		return 0, nil
	}
	tag, err := p.pool.Exec(ctx, `DELETE FROM annotations WHERE annotator = $1 AND domain = $2
		AND status = ANY($3)`, annotator, domain, statuses)
	if err != nil {
		return 0, fmt.Errorf("store: delete annotations (%s, %s): %w", annotator, domain, err)
	}
	return int(tag.RowsAffected()), nil
}

// HaltBatch implements Store.
func (p *Postgres) HaltBatch(ctx context.Context, workflowID, key string) error {
	if _, err := p.pool.Exec(ctx, haltBatchSQL, pgText(workflowID), pgText(key)); err != nil {
		return fmt.Errorf("store: halt batch %s of %s: %w", key, workflowID, err)
	}
	return nil
}

// BatchHalted implements Store.
func (p *Postgres) BatchHalted(ctx context.Context, workflowID, key string) (bool, error) {
	var n int
	if err := p.pool.QueryRow(ctx, batchHaltedSQL, pgText(workflowID), pgText(key)).Scan(&n); err != nil {
		return false, fmt.Errorf("store: is batch %s of %s halted: %w", key, workflowID, err)
	}
	return n > 0, nil
}
