// Package budget is the arithmetic of IdP request budgets: a budget
// ("1000/day") parsed, the calendar period (UTC hour, day or month) a
// moment falls in, and a Meter that counts one budget's requests in its
// current period — this agent's own, the fleet's total as last read, the
// thresholds crossed (80 % and 100 %, each reported once per period) and
// the projection to the period's end. It is pure: times in, counts out,
// no goroutines, no locks (the engine holds its own), no I/O.
package budget

import (
	"errors"
	"fmt"
	"strconv"
	"strings"
	"time"
)

// Errors a budget's text can fail with; the configuration wraps them with
// the setting's name.
var (
	// ErrNumber: the part before "/" is not a whole number.
	ErrNumber = errors.New("not a whole number of requests")
	// ErrPeriod: the part after "/" is not hour, day or month.
	ErrPeriod = errors.New("unknown period")
	// ErrZero: a budget of no requests would stop every token.
	ErrZero = errors.New("a budget must allow at least one request")
)

// Period is a calendar period in UTC.
type Period uint8

// The periods a budget may name.
const (
	Hour Period = iota + 1
	Day
	Month
)

// String is the period's name as a budget writes it.
func (p Period) String() string {
	switch p {
	case Hour:
		return "hour"
	case Day:
		return "day"
	case Month:
		return "month"
	}
	return "period(" + strconv.Itoa(int(p)) + ")"
}

// Start is the start of the period t falls in (UTC).
func (p Period) Start(t time.Time) time.Time {
	t = t.UTC()
	switch p {
	case Hour:
		return t.Truncate(time.Hour)
	case Month:
		return time.Date(t.Year(), t.Month(), 1, 0, 0, 0, 0, time.UTC)
	default:
		return time.Date(t.Year(), t.Month(), t.Day(), 0, 0, 0, 0, time.UTC)
	}
}

// End is the end of the period that starts at start (the next one's start).
func (p Period) End(start time.Time) time.Time {
	switch p {
	case Hour:
		return start.Add(time.Hour)
	case Month:
		return start.AddDate(0, 1, 0)
	default:
		return start.AddDate(0, 0, 1)
	}
}

// Key names the period that starts at start, for counters kept
// elsewhere (the fleet, the store): "2026-11-24T12", "2026-11-24",
// "2026-11".
func (p Period) Key(start time.Time) string {
	switch p {
	case Hour:
		return start.UTC().Format("2006-01-02T15")
	case Month:
		return start.UTC().Format("2006-01")
	default:
		return start.UTC().Format("2006-01-02")
	}
}

// Budget is a number of IdP requests allowed per period.
type Budget struct {
	Limit  int64
	Period Period
}

// String writes the budget as it is configured: "1000/day".
func (b Budget) String() string { return fmt.Sprintf("%d/%s", b.Limit, b.Period) }

// maxLimit keeps projections and sums far from overflow.
const maxLimit = 1 << 40

// Parse reads "N/hour", "N/day" or "N/month" (N a whole number from 1;
// blanks around the parts and "_" between digits allowed: "10_000/month").
// Its errors wrap ErrNumber, ErrPeriod or ErrZero.
func Parse(s string) (Budget, error) {
	num, per, ok := strings.Cut(s, "/")
	if !ok {
		return Budget{}, fmt.Errorf("%q: %w; write it like \"1000/day\" (per hour, day or month)", s, ErrPeriod)
	}
	var b Budget
	switch strings.TrimSpace(per) {
	case "hour":
		b.Period = Hour
	case "day":
		b.Period = Day
	case "month":
		b.Period = Month
	default:
		return Budget{}, fmt.Errorf("%q: %w %q; use hour, day or month (calendar periods in UTC)", s, ErrPeriod, strings.TrimSpace(per))
	}
	digits := strings.ReplaceAll(strings.TrimSpace(num), "_", "")
	n, err := strconv.ParseInt(digits, 10, 64)
	switch {
	case err != nil || n < 0 || strings.HasPrefix(digits, "+"):
		return Budget{}, fmt.Errorf("%q: %q is %w; write it like \"1000/day\"", s, strings.TrimSpace(num), ErrNumber)
	case n == 0:
		return Budget{}, fmt.Errorf("%q: %w; remove the budget to count nothing", s, ErrZero)
	case n > maxLimit:
		return Budget{}, fmt.Errorf("%q: %w: at most %d", s, ErrNumber, int64(maxLimit))
	}
	b.Limit = n
	return b, nil
}

// Threshold is a share of the budget whose crossing is reported once per
// period.
type Threshold uint8

// The thresholds a Meter reports.
const (
	None  Threshold = iota
	Warn            // 80 % used
	Spent           // 100 % used
)

// WarnRatio is the share of the budget at which Warn is reported.
const WarnRatio = 0.8

// Meter is one budget's count in its current period. The zero value with
// a Budget is ready; Roll (which Count and Observe call) starts the
// period. A meter counted across a fleet knows the fleet's total as last
// read (Fleet) and this agent's requests not yet added to it (Unsent);
// Used is their sum, never less than the agent's own count.
type Meter struct {
	Budget Budget
	// Start is the current period's start (zero until the first Roll).
	Start time.Time
	// Own counts this agent's requests in the period.
	Own int64
	// Fleet is the fleet's counter for the period as last read or
	// returned by an add (this agent's added requests included).
	Fleet int64
	// Unsent counts this agent's requests in the period not yet added to
	// the fleet's counter (in flight or failed).
	Unsent int64
	// Warned and Spent say the 80 % and 100 % thresholds were reported
	// in this period.
	Warned, Spent bool
}

// Roll moves the meter to the period now falls in, starting it afresh
// when that is a new period; it reports whether it did. Requests not
// yet added to the fleet for the old period are dropped with it.
func (m *Meter) Roll(now time.Time) bool {
	start := m.Budget.Period.Start(now)
	if start.Equal(m.Start) {
		return false
	}
	if !m.Start.IsZero() && start.Before(m.Start) {
		// The wall clock stepped back into an earlier period: keep
		// counting in the later one rather than forget its requests.
		return false
	}
	*m = Meter{Budget: m.Budget, Start: start}
	return true
}

// Count counts one request made at now and returns the threshold it
// crossed, if any (each once per period).
func (m *Meter) Count(now time.Time) Threshold {
	m.Roll(now)
	m.Own++
	m.Unsent++
	return m.crossed()
}

// Sent notes that n of the Unsent requests of the period that starts at
// start were added to the fleet's counter, whose total is now total; it
// returns the threshold that crossed, if any. An answer for another
// period than the current one changes nothing.
func (m *Meter) Sent(start time.Time, n, total int64) Threshold {
	if !start.Equal(m.Start) {
		return None
	}
	m.Unsent = max(m.Unsent-n, 0)
	m.Fleet = max(m.Fleet, total)
	return m.crossed()
}

// Observe notes the fleet's counter of the period that starts at start,
// read at now without adding to it; it returns the threshold that
// crossed, if any.
func (m *Meter) Observe(now, start time.Time, total int64) Threshold {
	m.Roll(now)
	return m.Sent(start, 0, total)
}

// Rebudget applies a new limit to the period's count (a reload) and
// returns the threshold the count has now reached and not reported: a
// lower limit may be spent at once. A threshold reported under the old
// limit and reached under the new one is not reported again; one no
// longer reached (a higher limit) will be, when it is.
func (m *Meter) Rebudget(limit int64) Threshold {
	m.Budget.Limit = limit
	used := m.Used()
	m.Warned = m.Warned && float64(used) >= WarnRatio*float64(limit)
	m.Spent = m.Spent && used >= limit
	return m.crossed()
}

// crossed reports a threshold newly reached, once per period.
func (m *Meter) crossed() Threshold {
	used := m.Used()
	switch {
	case used >= m.Budget.Limit && !m.Spent:
		m.Spent, m.Warned = true, true
		return Spent
	case float64(used) >= WarnRatio*float64(m.Budget.Limit) && !m.Warned:
		m.Warned = true
		return Warn
	}
	return None
}

// Used is the period's count: the fleet's last known total plus this
// agent's requests not yet added to it, and never less than this agent's
// own.
func (m *Meter) Used() int64 { return max(m.Fleet+m.Unsent, m.Own) }

// Ratio is Used over the limit (1 and more: the budget is spent).
func (m *Meter) Ratio() float64 { return float64(m.Used()) / float64(m.Budget.Limit) }

// Over reports whether the budget is spent in the period now falls in
// (a meter whose period has ended is not).
func (m *Meter) Over(now time.Time) bool {
	return m.Budget.Period.Start(now).Equal(m.Start) && m.Used() >= m.Budget.Limit
}

// End is the current period's end.
func (m *Meter) End() time.Time { return m.Budget.Period.End(m.Start) }

// minElapsed keeps the projection of a period's first minute from
// multiplying one request into thousands.
const minElapsed = time.Minute

// Projection is the count the period will end with if requests go on at
// the rate seen so far (Used over the time elapsed since its start, at
// least a minute).
func (m *Meter) Projection(now time.Time) int64 {
	if m.Start.IsZero() {
		return 0
	}
	length := m.End().Sub(m.Start)
	elapsed := min(max(now.Sub(m.Start), minElapsed), length)
	return int64(float64(m.Used()) * float64(length) / float64(elapsed))
}
