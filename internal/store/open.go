package store

import (
	"context"
	"fmt"
	"regexp"
	"strings"
)

// DefaultDSN is the database used when none is given: an SQLite file under ./data.
const DefaultDSN = "data/mha.db"

// dsnForms lists the accepted DSNs for error messages.
const dsnForms = `"" (` + DefaultDSN + `), "sqlite:PATH", "sqlite://PATH" or a plain file path ` +
	`(SQLite), "postgres://..." or "postgresql://..." (PostgreSQL)`

// schemePrefix matches a URL-like scheme. Two letters at least, so that a Windows drive
// ("C:\data\mha.db") stays a plain path.
var schemePrefix = regexp.MustCompile(`^[A-Za-z][A-Za-z0-9+.-]+:`)

// Open opens the store that dsn names:
//
//	""                          SQLite at DefaultDSN
//	sqlite:PATH, sqlite://PATH  SQLite at PATH (sqlite:///abs/path is /abs/path)
//	PATH                        SQLite at PATH
//	postgres://, postgresql://  PostgreSQL, the URL as pgx reads it (see OpenPostgres)
//
// The schemes are matched without regard to case. The SQLite file and its directory are
// created when missing; the PostgreSQL database, and the schema a search_path parameter names,
// must exist. Either way the store's schema is migrated.
func Open(ctx context.Context, dsn string) (Store, error) {
	if isPostgresDSN(dsn) {
		// pgx knows the schemes in lower case only.
		scheme, rest, _ := strings.Cut(dsn, "://")
		p, err := OpenPostgres(ctx, strings.ToLower(scheme)+"://"+rest)
		if err != nil {
			return nil, err
		}
		return p, nil
	}
	path, err := sqlitePath(dsn)
	if err != nil {
		return nil, err
	}
	s, err := OpenSQLite(ctx, path)
	if err != nil {
		return nil, err
	}
	return s, nil
}

func isPostgresDSN(dsn string) bool {
	lower := strings.ToLower(dsn)
	return strings.HasPrefix(lower, "postgres://") || strings.HasPrefix(lower, "postgresql://")
}

// sqlitePath returns the SQLite file that dsn names, or why dsn names none.
func sqlitePath(dsn string) (string, error) {
	lower := strings.ToLower(dsn)
	var path string
	switch {
	case dsn == "":
		return DefaultDSN, nil
	case strings.HasPrefix(lower, "sqlite://"):
		path = dsn[len("sqlite://"):]
	case strings.HasPrefix(lower, "sqlite:"):
		path = dsn[len("sqlite:"):]
	case schemePrefix.MatchString(dsn):
		// Only the scheme: the rest of a DSN may hold a password.
		return "", fmt.Errorf("store: unknown database DSN scheme %q; accepted: %s", schemePrefix.FindString(dsn), dsnForms)
	default:
		path = dsn
	}
	if path == "" {
		return "", fmt.Errorf("store: DSN %q names no file; accepted: %s", dsn, dsnForms)
	}
	return path, nil
}
