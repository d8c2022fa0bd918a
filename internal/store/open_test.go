package store_test

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/mhannotator/mha/internal/store"
)

func TestOpenDSNForms(t *testing.T) {
	tests := []struct {
		name     string
		dsn      func(t *testing.T, dir string) string
		wantFile string // relative to dir, for SQLite DSNs that open
		postgres bool   // the DSN opens a PostgreSQL store
		wantErr  []string
	}{
		{name: "opens the default file under data when the DSN is empty",
			dsn: func(*testing.T, string) string { return "" }, wantFile: "data/mha.db"},
		{name: "opens a plain path and creates its directory",
			dsn: func(_ *testing.T, dir string) string { return filepath.Join(dir, "a", "b", "x.db") }, wantFile: "a/b/x.db"},
		{name: "opens a relative plain path",
			dsn: func(*testing.T, string) string { return "rel.db" }, wantFile: "rel.db"},
		{name: "opens sqlite:PATH",
			dsn: func(_ *testing.T, dir string) string { return "sqlite:" + filepath.Join(dir, "y.db") }, wantFile: "y.db"},
		{name: "opens sqlite://PATH with an absolute path",
			dsn: func(_ *testing.T, dir string) string { return "sqlite://" + filepath.Join(dir, "z.db") }, wantFile: "z.db"},
		{name: "opens sqlite://PATH with a relative path",
			dsn: func(*testing.T, string) string { return "sqlite://sub/w.db" }, wantFile: "sub/w.db"},
		{name: "opens postgres://", postgres: true,
			dsn: func(t *testing.T, _ string) string { return newPostgresSchema(t) }},
		{name: "opens postgresql:// in any case", postgres: true,
			dsn: func(t *testing.T, _ string) string {
				return "PostgreSQL" + strings.TrimPrefix(newPostgresSchema(t), "postgres")
			}},
		{name: "refuses a postgres DSN it cannot parse without echoing its password",
			dsn:     func(*testing.T, string) string { return "postgres://u:secret@localhost:port/mha" },
			wantErr: []string{"PostgreSQL DSN", "invalid port"}},
		{name: "names the PostgreSQL server that does not answer without its password",
			dsn:     func(*testing.T, string) string { return "postgres://u:secret@127.0.0.1:1/mha?connect_timeout=5" },
			wantErr: []string{"PostgreSQL at 127.0.0.1:1", `database "mha"`}},
		{name: "refuses a search_path that names no schema",
			dsn: func(t *testing.T, _ string) string {
				return strings.Replace(newPostgresSchema(t), "search_path=", "search_path=no_such_", 1)
			},
			wantErr: []string{"no schema of the search_path", "no_such_"}},
		{name: "refuses an unknown scheme without echoing its password",
			dsn:     func(*testing.T, string) string { return "mysql://root:secret@localhost/mha" },
			wantErr: []string{`"mysql:"`, "sqlite:PATH", "postgres://"}},
		{name: "refuses sqlite: without a path",
			dsn: func(*testing.T, string) string { return "sqlite:" }, wantErr: []string{"names no file"}},
		{name: "refuses an in-memory database",
			dsn: func(*testing.T, string) string { return "sqlite::memory:" }, wantErr: []string{"file path"}},
		{name: "refuses a path with a question mark",
			dsn: func(*testing.T, string) string { return "what?.db" }, wantErr: []string{"'?'"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			dir := t.TempDir()
			t.Chdir(dir)
			s, err := store.Open(context.Background(), tt.dsn(t, dir))
			if tt.wantErr != nil {
				if err == nil {
					s.Close()
					t.Fatal("opened, want an error")
				}
				for _, want := range tt.wantErr {
					if !strings.Contains(err.Error(), want) {
						t.Errorf("error %q lacks %q", err, want)
					}
				}
				if strings.Contains(err.Error(), "secret") {
					t.Errorf("error %q shows the password", err)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			defer s.Close()
			if _, ok := s.(*store.Postgres); ok != tt.postgres {
				t.Errorf("opened a %T", s)
			}
			if tt.postgres {
				if _, err := os.Stat(filepath.Join(dir, "data")); err == nil {
					t.Error("a PostgreSQL DSN made an SQLite directory")
				}
			} else if _, err := os.Stat(filepath.Join(dir, tt.wantFile)); err != nil {
				t.Errorf("database file: %v", err)
			}
			if n, err := s.CountSamples(context.Background()); err != nil || n != 0 {
				t.Errorf("CountSamples = %d, %v", n, err)
			}
		})
	}
}
