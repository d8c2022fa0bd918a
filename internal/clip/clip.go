// Package clip shortens text for messages, so a huge value or reply body cannot bury the
// message it appears in.
package clip

import "unicode/utf8"

// String returns s cut to at most limit bytes, on a character boundary, with "…" appended
// when it was cut.
func String(s string, limit int) string {
	if len(s) <= limit {
		return s
	}
	cut := limit
	for cut > 0 && !utf8.RuneStart(s[cut]) {
		cut--
	}
	return s[:cut] + "…"
}
