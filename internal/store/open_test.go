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
		dsn      func(dir string) string
		wantFile string // relative to dir, for DSNs that open
		wantErr  []string
	}{
		{name: "opens the default file under data when the DSN is empty",
			dsn: func(string) string { return "" }, wantFile: "data/mha.db"},
		{name: "opens a plain path and creates its directory",
			dsn: func(dir string) string { return filepath.Join(dir, "a", "b", "x.db") }, wantFile: "a/b/x.db"},
		{name: "opens a relative plain path",
			dsn: func(string) string { return "rel.db" }, wantFile: "rel.db"},
		{name: "opens sqlite:PATH",
			dsn: func(dir string) string { return "sqlite:" + filepath.Join(dir, "y.db") }, wantFile: "y.db"},
		{name: "opens sqlite://PATH with an absolute path",
			dsn: func(dir string) string { return "sqlite://" + filepath.Join(dir, "z.db") }, wantFile: "z.db"},
		{name: "opens sqlite://PATH with a relative path",
			dsn: func(string) string { return "sqlite://sub/w.db" }, wantFile: "sub/w.db"},
		{name: "says PostgreSQL is not built yet for postgres://",
			dsn:     func(string) string { return "postgres://u:p@localhost/mha" },
			wantErr: []string{"PostgreSQL support is not built yet"}},
		{name: "says PostgreSQL is not built yet for postgresql://",
			dsn:     func(string) string { return "postgresql://localhost/mha" },
			wantErr: []string{"PostgreSQL support is not built yet"}},
		{name: "refuses an unknown scheme without echoing its password",
			dsn:     func(string) string { return "mysql://root:secret@localhost/mha" },
			wantErr: []string{`"mysql:"`, "sqlite:PATH", "postgres://"}},
		{name: "refuses sqlite: without a path",
			dsn: func(string) string { return "sqlite:" }, wantErr: []string{"names no file"}},
		{name: "refuses an in-memory database",
			dsn: func(string) string { return "sqlite::memory:" }, wantErr: []string{"file path"}},
		{name: "refuses a path with a question mark",
			dsn: func(string) string { return "what?.db" }, wantErr: []string{"'?'"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			dir := t.TempDir()
			t.Chdir(dir)
			s, err := store.Open(context.Background(), tt.dsn(dir))
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
			if _, err := os.Stat(filepath.Join(dir, tt.wantFile)); err != nil {
				t.Errorf("database file: %v", err)
			}
			if n, err := s.CountSamples(context.Background()); err != nil || n != 0 {
				t.Errorf("CountSamples = %d, %v", n, err)
			}
		})
	}
}
