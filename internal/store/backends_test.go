package store_test

import (
	"context"
	"crypto/rand"
	"database/sql"
	"encoding/hex"
	"fmt"
	"net/url"
	"os"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/mhannotator/mha/internal/store"
)

// The store's tests are one contract suite: each behaviour is tested once, through
// forEachBackend, and must hold on SQLite and on PostgreSQL alike.
//
// PostgreSQL is the server that MHA_TEST_POSTGRES names (a postgres:// URL), by default
// defaultTestPostgres. Every test gets a schema of its own, dropped at cleanup. When the server
// does not answer, the PostgreSQL tests fail; MHA_TEST_POSTGRES=off skips them instead.
const (
	testPostgresEnv     = "MHA_TEST_POSTGRES"
	defaultTestPostgres = "postgres://postgres@127.0.0.1:5432/test?sslmode=disable"
)

// backend is one implementation of store.Store under test.
type backend struct {
	name string
	// precision is how finely the backend keeps CreatedAt: a stored time is the written one
	// truncated to it (see Store.UpsertAnnotation).
	precision time.Duration
	// newDSN returns the DSN of a new, empty database, removed at the end of the test.
	newDSN func(t *testing.T) string
	// driver is the database/sql driver that rawDB opens a DSN with.
	driver string
	// versionsSQL lists (version, times recorded) of the applied migrations, by version.
	versionsSQL string
	// recordVersionSQL records migration version $1 as applied, as a newer program would.
	recordVersionSQL string
	// integritySQL returns one row, "ok" when the database is consistent.
	integritySQL string
	// ready fails (or skips) the test when the backend's server is not there; nil when
	// the backend needs no server.
	ready func(t *testing.T)
}

var sqliteBackend = backend{
	name:      "sqlite",
	precision: time.Nanosecond,
	newDSN: func(t *testing.T) string {
		return filepath.Join(t.TempDir(), "mha.db")
	},
	driver:           "sqlite",
	versionsSQL:      `SELECT version, COUNT(*) FROM schema_migrations GROUP BY version ORDER BY version`,
	recordVersionSQL: `INSERT INTO schema_migrations (version, applied_at) VALUES ($1, 'x')`,
	integritySQL:     `PRAGMA integrity_check`,
}

var postgresBackend = backend{
	name:      "postgres",
	precision: time.Microsecond,
	newDSN:    newPostgresSchema,
	driver:    "pgx", // registered by pgx/v5/stdlib, which the store imports
	versionsSQL: `SELECT version_id, COUNT(*) FROM goose_db_version WHERE version_id > 0
		GROUP BY version_id ORDER BY version_id`,
	recordVersionSQL: `INSERT INTO goose_db_version (version_id, is_applied) VALUES ($1, true)`,
	ready:            func(t *testing.T) { testPostgres(t) },
	integritySQL: `SELECT CASE WHEN last_seq >= (SELECT COALESCE(MAX(seq), 0) FROM annotations)
		THEN 'ok' ELSE 'annotation_seq is behind the stored seqs' END FROM annotation_seq`,
}

var backends = []backend{sqliteBackend, postgresBackend}

// forEachBackend runs test once per backend, as the subtests "sqlite" and "postgres".
func forEachBackend(t *testing.T, test func(t *testing.T, b backend)) {
	t.Helper()
	for _, b := range backends {
		t.Run(b.name, func(t *testing.T) {
			if b.ready != nil {
				b.ready(t)
			}
			test(t, b)
		})
	}
}

// open returns a new, empty store, closed at the end of the test.
func (b backend) open(t *testing.T) store.Store {
	t.Helper()
	return openDSN(t, b.newDSN(t))
}

// openDSN opens dsn with store.Open, closing the store at the end of the test.
func openDSN(t *testing.T, dsn string) store.Store {
	t.Helper()
	s, err := store.Open(context.Background(), dsn)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := s.Close(); err != nil {
			t.Error(err)
		}
	})
	return s
}

// rawDB opens dsn with database/sql, bypassing the store.
func (b backend) rawDB(t *testing.T, dsn string) *sql.DB {
	t.Helper()
	db, err := sql.Open(b.driver, dsn)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { db.Close() })
	return db
}

var (
	postgresOnce sync.Once
	postgresBase *url.URL // nil when the tests are off
	postgresErr  error
)

// testPostgres returns the URL of the test server, failing the test when it does not answer
// and skipping it when MHA_TEST_POSTGRES=off. The server is asked once per process.
func testPostgres(t *testing.T) *url.URL {
	t.Helper()
	postgresOnce.Do(func() {
		dsn := os.Getenv(testPostgresEnv)
		switch dsn {
		case "off":
			return
		case "":
			dsn = defaultTestPostgres
		}
		u, err := url.Parse(dsn)
		if err != nil || (u.Scheme != "postgres" && u.Scheme != "postgresql") {
			postgresErr = fmt.Errorf("%s must be a postgres:// URL or off (%v)", testPostgresEnv, err)
			return
		}
		postgresBase = u
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		conn, err := pgx.Connect(ctx, dsn)
		if err == nil {
			err = conn.Ping(ctx)
			conn.Close(ctx)
		}
		if err != nil {
			postgresErr = fmt.Errorf("PostgreSQL at %s does not answer: %v\n"+
				"The store's contract tests run on PostgreSQL too. Start the server (.ci/run shows how), "+
				"point %s at another one, or set %s=off to skip the PostgreSQL tests.",
				u.Redacted(), err, testPostgresEnv, testPostgresEnv)
		}
	})
	switch {
	case postgresErr != nil:
		t.Fatal(postgresErr)
	case postgresBase == nil:
		t.Skipf("%s=off", testPostgresEnv)
	}
	return postgresBase
}

// pgAdmin runs statements on the test server outside any test schema.
func pgAdmin(t *testing.T, base *url.URL, stmts ...string) error {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	conn, err := pgx.Connect(ctx, base.String())
	if err != nil {
		return err
	}
	defer conn.Close(ctx)
	for _, s := range stmts {
		if _, err := conn.Exec(ctx, s); err != nil {
			return fmt.Errorf("%s: %w", s, err)
		}
	}
	return nil
}

func randomName(prefix string) string {
	b := make([]byte, 6)
	rand.Read(b)
	return prefix + hex.EncodeToString(b)
}

// newPostgresSchema creates a schema of its own on the test server, dropped with everything in
// it at the end of the test, and returns a DSN whose search_path is that schema.
func newPostgresSchema(t *testing.T) string {
	t.Helper()
	base := testPostgres(t)
	schema := randomName("mha_test_")
	if err := pgAdmin(t, base, `CREATE SCHEMA `+schema); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := pgAdmin(t, base, `DROP SCHEMA `+schema+` CASCADE`); err != nil {
			t.Errorf("drop the test schema: %v", err)
		}
	})
	u := *base
	q := u.Query()
	q.Set("search_path", schema)
	u.RawQuery = q.Encode()
	return u.String()
}
