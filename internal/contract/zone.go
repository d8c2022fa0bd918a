package contract

import (
	"archive/zip"
	"bytes"
	_ "embed"
	"fmt"
	"io"
	"sync"
	"time"
)

// zoneinfo is Go's copy of the IANA time zone database, embedded so that every worker
// decides a quota day's midnight the same way, whatever zoneinfo its host has installed
// (time.LoadLocation prefers the host's files, which differ between machines).
//
//go:embed zoneinfo.zip
var zoneinfo []byte

var zones sync.Map // name → *time.Location

// LoadZone returns the named zone from the embedded database ("UTC" and "" are UTC).
func LoadZone(name string) (*time.Location, error) {
	if name == "" || name == "UTC" {
		return time.UTC, nil
	}
	if loc, ok := zones.Load(name); ok {
		return loc.(*time.Location), nil
	}
	r, err := zip.NewReader(bytes.NewReader(zoneinfo), int64(len(zoneinfo)))
	if err != nil {
		return nil, fmt.Errorf("embedded time zone database: %w", err)
	}
	f, err := r.Open(name)
	if err != nil {
		return nil, fmt.Errorf("unknown time zone %q", name)
	}
	defer f.Close()
	data, err := io.ReadAll(f)
	if err != nil {
		return nil, fmt.Errorf("time zone %q: %w", name, err)
	}
	loc, err := time.LoadLocationFromTZData(name, data)
	if err != nil {
		return nil, fmt.Errorf("time zone %q: %w", name, err)
	}
	zones.Store(name, loc)
	return loc, nil
}
