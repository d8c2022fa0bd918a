package store

import (
	"context"
	"database/sql"
	"embed"
	"errors"
	"fmt"
	"io/fs"
	"path"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/stdlib"
	"github.com/pressly/goose/v3"
)

// Each backend has a directory of versioned migrations, embedded in the binary:
//
//   - migrations/sqlite/NNNN_name.sql are applied by migrate below and recorded in the table
//     schema_migrations. SQLite keeps this migrator of its own rather than goose: goose has no
//     lock for SQLite, so two processes opening a new file at once would both apply a
//     migration, while migrate checks and applies each one in a single BEGIN IMMEDIATE
//     transaction. Existing databases carry their history in schema_migrations and go on as
//     they are.
//   - migrations/postgres/NNNNN_name.sql are goose migrations (-- +goose Up), applied by
//     goose and recorded in goose_db_version, under an advisory lock (pgMigrationLock).
//
//go:embed migrations/sqlite/*.sql
var sqliteMigrations embed.FS

//go:embed migrations/postgres/*.sql
var postgresMigrations embed.FS

// migration is one schema change, applied once, in version order.
type migration struct {
	version int
	name    string
	sql     string
}

// loadMigrations reads the files NNNN_name.sql in dir of fsys, ordered by version.
func loadMigrations(fsys fs.FS, dir string) ([]migration, error) {
	entries, err := fs.ReadDir(fsys, dir)
	if err != nil {
		return nil, err
	}
	var ms []migration
	seen := map[int]string{}
	for _, e := range entries {
		name := e.Name()
		prefix, _, ok := strings.Cut(name, "_")
		v, err := strconv.Atoi(prefix)
		if !ok || err != nil || v <= 0 || !strings.HasSuffix(name, ".sql") {
			return nil, fmt.Errorf("migration file %q is not named NNNN_name.sql", name)
		}
		if other, dup := seen[v]; dup {
			return nil, fmt.Errorf("migrations %q and %q have the same version %d", other, name, v)
		}
		seen[v] = name
		body, err := fs.ReadFile(fsys, path.Join(dir, name))
		if err != nil {
			return nil, err
		}
		ms = append(ms, migration{version: v, name: name, sql: string(body)})
	}
	if len(ms) == 0 {
		return nil, fmt.Errorf("no migrations in %s", dir)
	}
	sort.Slice(ms, func(i, j int) bool { return ms[i].version < ms[j].version })
	return ms, nil
}

// migrate applies the migrations not yet recorded in schema_migrations, each in its own
// transaction together with its record. db must begin transactions with the write lock held
// (SQLite's BEGIN IMMEDIATE), so that processes opening the same database at once apply each
// migration exactly once: the second one waits, then sees the record.
func migrate(ctx context.Context, db *sql.DB, ms []migration) error {
	if _, err := db.ExecContext(ctx, `CREATE TABLE IF NOT EXISTS schema_migrations (
		version    INTEGER PRIMARY KEY,
		applied_at TEXT NOT NULL
	)`); err != nil {
		return fmt.Errorf("create schema_migrations: %w", err)
	}
	for _, m := range ms {
		if err := applyMigration(ctx, db, m); err != nil {
			return fmt.Errorf("migration %s: %w", m.name, err)
		}
	}
	// A database written by a newer program may hold tables this one would misuse.
	var newest int
	if err := db.QueryRowContext(ctx, `SELECT COALESCE(MAX(version), 0) FROM schema_migrations`).Scan(&newest); err != nil {
		return fmt.Errorf("read schema version: %w", err)
	}
	if known := ms[len(ms)-1].version; newest > known {
		return fmt.Errorf("database schema version %d is newer than this program knows (%d); upgrade the program", newest, known)
	}
	return nil
}

func applyMigration(ctx context.Context, db *sql.DB, m migration) error {
	tx, err := db.BeginTx(ctx, nil)
	if err != nil {
		return err
	}
	defer tx.Rollback() // a no-op after Commit
	var n int
	if err := tx.QueryRowContext(ctx, `SELECT COUNT(*) FROM schema_migrations WHERE version = $1`, m.version).Scan(&n); err != nil {
		return err
	}
	if n > 0 {
		return nil
	}
	if _, err := tx.ExecContext(ctx, m.sql); err != nil {
		return err
	}
	if _, err := tx.ExecContext(ctx, `INSERT INTO schema_migrations (version, applied_at) VALUES ($1, $2)`,
		m.version, formatTime(time.Now())); err != nil {
		return err
	}
	return tx.Commit()
}

// migratePostgres applies the goose migrations of migrations/postgres that the schema lacks,
// through a connection of its own. Processes that open the same schema at once take turns
// (pgMigrationLock), so each migration is applied once.
func migratePostgres(ctx context.Context, cfg *pgx.ConnConfig) (err error) {
	fsys, err := fs.Sub(postgresMigrations, "migrations/postgres")
	if err != nil {
		return err
	}
	db := stdlib.OpenDB(*cfg)
	defer func() { err = errors.Join(err, db.Close()) }()
	p, err := goose.NewProvider(goose.DialectPostgres, db, fsys,
		goose.WithSessionLocker(pgMigrationLock{}), goose.WithDisableGlobalRegistry(true))
	if err != nil {
		return err
	}
	if _, err := p.Up(ctx); err != nil {
		return err
	}
	// A schema written by a newer program may hold tables this one would misuse.
	current, err := p.GetDBVersion(ctx)
	if err != nil {
		return fmt.Errorf("read schema version: %w", err)
	}
	sources := p.ListSources()
	if known := sources[len(sources)-1].Version; current > known {
		return fmt.Errorf("database schema version %d is newer than this program knows (%d); upgrade the program", current, known)
	}
	return nil
}

// pgMigrationLock is a goose session locker: a PostgreSQL advisory lock on the pair
// (this program's migrations, the schema), held by the connection that migrates. Unlike goose's
// own lock, which polls every few seconds, pg_advisory_lock waits, and schemas of their own do
// not wait for each other.
type pgMigrationLock struct{}

const pgMigrationLockKey = `hashtext('mha store migrations'), hashtext(COALESCE(current_schema(), ''))`

func (pgMigrationLock) SessionLock(ctx context.Context, conn *sql.Conn) error {
	_, err := conn.ExecContext(ctx, `SELECT pg_advisory_lock(`+pgMigrationLockKey+`)`)
	return err
}

func (pgMigrationLock) SessionUnlock(ctx context.Context, conn *sql.Conn) error {
	var released bool
	if err := conn.QueryRowContext(ctx, `SELECT pg_advisory_unlock(`+pgMigrationLockKey+`)`).Scan(&released); err != nil {
		return err
	}
	if !released {
		return errors.New("the migration lock was not held")
	}
	return nil
}
