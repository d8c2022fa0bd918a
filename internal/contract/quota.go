package contract

import (
	"fmt"
	"time"
)

// Quota workflow names.
const (
	QuotaName     = "Quota"
	UpdateReserve = "reserve"
	// UpdateBatchAdmit and UpdateBatchRelease account a batch-mode run's chunks against the
	// pool's batch limits: admitted at submission, released once final. Both are idempotent
	// by the chunk's name, so a retried submit or poll never counts a batch twice.
	UpdateBatchAdmit   = "batch_admit"
	UpdateBatchRelease = "batch_release"
	SignalPenalize     = "penalize"
	SignalConfigure    = "configure"
	QueryQuotaState    = "state"
	DefaultDayZone     = "America/Los_Angeles" // Gemini's daily quotas reset at midnight Pacific
)

// QuotaID is the workflow ID of a quota pool's workflow. The pool is a name from the config,
// never the key itself.
func QuotaID(pool string) string { return "quota-" + pool }

// QuotaLimits are a pool's provider limits.
type QuotaLimits struct {
	RequestsPerMinute int
	RequestsPerDay    int
	TokensPerMinute   int    // 0 = no token limit
	DayZone           string // IANA zone whose midnight resets the daily count; "" = DefaultDayZone
	// Batch limits: jobs at the provider at once, and their input tokens enqueued; 0 = none.
	MaxBatches        int `json:",omitempty"`
	MaxEnqueuedTokens int `json:",omitempty"`
}

// Validate checks limits before they are applied.
func (l QuotaLimits) Validate() error {
	if l.RequestsPerMinute < 1 || l.RequestsPerDay < 1 || l.TokensPerMinute < 0 || l.MaxBatches < 0 || l.MaxEnqueuedTokens < 0 {
		return fmt.Errorf("quota limits must be positive (requests/min %d, requests/day %d, tokens/min %d)",
			l.RequestsPerMinute, l.RequestsPerDay, l.TokensPerMinute)
	}
	if _, err := l.Location(); err != nil {
		return fmt.Errorf("quota day zone %q: %w", l.DayZone, err)
	}
	return nil
}

// Zone is the name of the zone whose midnight resets the daily count.
func (l QuotaLimits) Zone() string {
	if l.DayZone == "" {
		return DefaultDayZone
	}
	return l.DayZone
}

// Location loads Zone from the embedded time zone database.
func (l QuotaLimits) Location() (*time.Location, error) { return LoadZone(l.Zone()) }

// ReserveRequest asks a pool for call slots.
//
// Asks (with Horizon) is how workers ask: each ask is one run's request for up to Count
// slots (Count may exceed the per-minute limit: the pool grants what it can, never refuses
// for size); only slots that start by the pool's now + Horizon are granted, and an ask that
// gets none holds the pool's next free slot instead. A requester holds at most one slot. Its
// held slot is answered again, alone, on each of its requests until the slot starts within
// Horizon, when it is handed over; one that passed by more than a quarter second before its
// requester came back is wasted. A run thus never waits long inside an activity, and runs
// that wait are served in turn. Limits, when set, are the asking worker's config; the pool
// adopts them (invalid ones are ignored).
//
// Requester, Requesters and Count are the previous release's form, still answered for runs
// that started before it: Count slots at whatever time they fall.
type ReserveRequest struct {
	Requester  string   `json:",omitempty"`
	Requesters []string `json:",omitempty"`
	Count      int      `json:",omitempty"`
	Tokens     int      `json:",omitempty"`

	Asks    []Ask         `json:",omitempty"`
	Horizon time.Duration `json:",omitempty"`
	Limits  *QuotaLimits  `json:",omitempty"`
}

// Ask is one requester's share of a ReserveRequest.
type Ask struct {
	Requester string
	Count     int
	Tokens    int // expected tokens per call
}

// Reservation answers a ReserveRequest at once. Grants[i] are the start times of ask i's
// slots, in order; a slot beyond the request's Horizon is held (ask again shortly before it,
// do not use it before). When the day's budget runs out, fewer slots (maybe none) are
// granted, nothing is held, and ExhaustedUntil says when the budget returns. Slots answers
// the previous release's form.
type Reservation struct {
	Slots          []time.Time   `json:",omitempty"`
	Grants         [][]time.Time `json:",omitempty"`
	ExhaustedUntil time.Time
}

// BatchAdmit asks a pool to let chunk Name, of Tokens input tokens, go to the provider.
type BatchAdmit struct {
	Name   string
	Tokens int
	Limits *QuotaLimits `json:",omitempty"`
}

// BatchAdmission answers BatchAdmit and UpdateBatchRelease: whether the chunk may go (a chunk
// admitted before is admitted again), and the pool's batches afterwards.
type BatchAdmission struct {
	Admitted       bool
	Batches        int
	EnqueuedTokens int
}

// Penalty is a provider's 429: nothing is granted on the pool until Until.
type Penalty struct {
	Until time.Time
	By    string
}

// RequesterStats count a requester's grants.
type RequesterStats struct {
	Granted   int       `json:"granted"`
	LastGrant time.Time `json:"last_grant"`
}

// QuotaStatus is what the `state` query returns.
type QuotaStatus struct {
	Pool              string                    `json:"pool"`
	RequestsPerMinute int                       `json:"requests_per_minute"`
	RequestsPerDay    int                       `json:"requests_per_day"`
	TokensPerMinute   int                       `json:"tokens_per_minute"`
	DayZone           string                    `json:"day_zone"`
	CallsThisMinute   int                       `json:"calls_this_minute"`
	TokensThisMinute  int                       `json:"tokens_this_minute"`
	CallsToday        int                       `json:"calls_today"`
	NextFreeSlot      time.Time                 `json:"next_free_slot"`
	PenaltyUntil      time.Time                 `json:"penalty_until,omitzero"`
	Held              int                       `json:"held"`            // future slots held for waiting runs
	Batches           int                       `json:"batches"`         // chunks at the provider
	EnqueuedTokens    int                       `json:"enqueued_tokens"` // their input tokens
	MaxBatches        int                       `json:"max_batches,omitempty"`
	MaxEnqueuedTokens int                       `json:"max_enqueued_tokens,omitempty"`
	Requesters        map[string]RequesterStats `json:"requesters"`
}

// Grant is one granted call slot (Count slots at the same time, when more than one).
type Grant struct {
	At     time.Time
	Tokens int
	Count  int `json:",omitempty"` // 0 means 1, as the previous release recorded grants
}

// QuotaState is a pool's memory, handed over at continue-as-new so limits hold across it.
type QuotaState struct {
	Pool         string
	Limits       QuotaLimits
	Grants       []Grant // granted slots of the last minute and the future, in time order
	Day          string  // the date (in the day zone) DayCount counts
	DayCount     int
	PenaltyUntil time.Time
	Requesters   map[string]RequesterStats
	// Held are future slots granted to requesters that got none within their horizon.
	Held map[string][]time.Time `json:",omitempty"`
	// Late is how late a call may start after its slot: SlotLateness once the pool answers
	// Asks, zero for the previous release's requests, whose slots were used on time.
	Late time.Duration `json:",omitempty"`
	// Batches are the chunks admitted and not released yet: name → input tokens.
	Batches map[string]int `json:",omitempty"`
}

// SlotLateness is how late a call may start after its slot, by a worker's clock: the pool
// keeps every slot this much longer in its windows, so a batch can reserve for its next
// second of calls at once, and a call that waited that long for a worker's call slot still
// keeps the limits.
const SlotLateness = time.Second

// QuotaInput starts a quota workflow, or continues one.
type QuotaInput struct {
	Pool   string
	Limits QuotaLimits
	State  *QuotaState
}
