// Package web holds the dashboard: a static page (HTML, CSS and plain JavaScript modules, no
// build step) that the api service serves at "/". It talks to the REST routes under /api and
// to the live event stream at /api/ws described in api/API.md; it keeps no state of its own
// beyond the browser's localStorage (theme and API token).
package web

import (
	"crypto/sha256"
	"embed"
	"encoding/hex"
	"io/fs"
	"net/http"
	"path"
	"strings"
)

// Static is the dashboard's files, under the directory "static".
//
//go:embed static
var Static embed.FS

// Handler serves the dashboard's files with index.html at "/". Every response carries a
// content hash as its ETag and "Cache-Control: no-cache", so browsers revalidate on each load
// (a 304 when nothing changed) and never run a stale script after an upgrade.
func Handler() http.Handler {
	files, err := fs.Sub(Static, "static")
	if err != nil {
		panic("web: " + err.Error()) // cannot happen: the directory is embedded
	}
	etags := map[string]string{}
	_ = fs.WalkDir(files, ".", func(p string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return err
		}
		b, err := fs.ReadFile(files, p)
		if err != nil {
			return err
		}
		sum := sha256.Sum256(b)
		etags[p] = `"` + hex.EncodeToString(sum[:12]) + `"`
		return nil
	})
	server := http.FileServerFS(files)
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		name := strings.TrimPrefix(path.Clean("/"+r.URL.Path), "/")
		if name == "" || strings.HasSuffix(r.URL.Path, "/") {
			name = path.Join(name, "index.html")
		}
		h := w.Header()
		if tag, ok := etags[name]; ok {
			h.Set("ETag", tag)
		}
		h.Set("Cache-Control", "no-cache")
		h.Set("X-Content-Type-Options", "nosniff")
		server.ServeHTTP(w, r)
	})
}
