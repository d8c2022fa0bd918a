package fake

import "time"

// keyWindow is one key's quota state: the accepted requests of the last minute and the count
// of the current day.
type keyWindow struct {
	recent   []time.Time // accepted within the last 60 s, oldest first; kept only when RPM > 0
	day      time.Time   // midnight that starts the counted day, in Options.DayLocation
	dayCount int
}

// admit decides whether the key behind c may be served now and, if so, counts the request.
// Called with s.mu held.
func (s *Server) admit(c *call, now time.Time) apiErr {
	k := s.opts.Keys[c.key]
	if k.NoQuota {
		return noQuota(now)
	}
	q := s.quota[c.key]
	if q == nil {
		q = &keyWindow{}
		s.quota[c.key] = q
	}
	t := now.In(s.opts.DayLocation)
	if day := time.Date(t.Year(), t.Month(), t.Day(), 0, 0, 0, 0, s.opts.DayLocation); !q.day.Equal(day) {
		q.day, q.dayCount = day, 0
	}
	if k.RPD > 0 && q.dayCount >= k.RPD {
		return s.dayLimit(now, k.RPD)
	}
	if k.RPM > 0 {
		// A request accepted at t leaves the window at t+60s exactly.
		gone := 0
		for gone < len(q.recent) && !q.recent[gone].Add(time.Minute).After(now) {
			gone++
		}
		q.recent = q.recent[gone:]
		if len(q.recent) >= k.RPM {
			return apiErr{kind: failRateMinute, limit: k.RPM, retry: q.recent[0].Add(time.Minute).Sub(now)}
		}
		q.recent = append(q.recent, now)
	}
	q.dayCount++
	return apiErr{}
}

// dayLimit is the per-day 429. Like the real Gemini API, its RetryInfo is a short delay that
// says nothing about the day (observed: "47s" on a spent daily quota), so a client must tell
// the two 429s apart by quotaId; reset is the true time to midnight, which OpenAI's message
// names.
func (s *Server) dayLimit(now time.Time, limit int) apiErr {
	t := now.In(s.opts.DayLocation)
	midnight := time.Date(t.Year(), t.Month(), t.Day()+1, 0, 0, 0, 0, s.opts.DayLocation)
	return apiErr{kind: failRateDay, limit: limit, retry: untilNextMinute(now), reset: midnight.Sub(now)}
}

// noQuota is the 429 of a key with no quota for the model at all.
func noQuota(now time.Time) apiErr {
	return apiErr{kind: failNoQuota, retry: untilNextMinute(now)}
}

func untilNextMinute(now time.Time) time.Duration {
	return now.Truncate(time.Minute).Add(time.Minute).Sub(now)
}
