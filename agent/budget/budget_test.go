package budget_test

import (
	"errors"
	"testing"
	"time"

	"github.com/tokenagent/tokenagent/agent/budget"
)

func TestParse(t *testing.T) {
	for _, tc := range []struct {
		in   string
		want budget.Budget
		err  error
	}{
		{"1000/day", budget.Budget{Limit: 1000, Period: budget.Day}, nil},
		{"5/hour", budget.Budget{Limit: 5, Period: budget.Hour}, nil},
		{" 10_000 / month ", budget.Budget{Limit: 10000, Period: budget.Month}, nil},
		{"0/day", budget.Budget{}, budget.ErrZero},
		{"-3/day", budget.Budget{}, budget.ErrNumber},
		{"+3/day", budget.Budget{}, budget.ErrNumber},
		{"ten/day", budget.Budget{}, budget.ErrNumber},
		{"1.5/day", budget.Budget{}, budget.ErrNumber},
		{"99999999999999999999/day", budget.Budget{}, budget.ErrNumber},
		{"5/week", budget.Budget{}, budget.ErrPeriod},
		{"5/minute", budget.Budget{}, budget.ErrPeriod},
		{"5", budget.Budget{}, budget.ErrPeriod},
		{"", budget.Budget{}, budget.ErrPeriod},
		{"/", budget.Budget{}, budget.ErrPeriod},
	} {
		got, err := budget.Parse(tc.in)
		if got != tc.want || !errors.Is(err, tc.err) || (tc.err == nil) != (err == nil) {
			t.Errorf("Parse(%q) = %v, %v; want %v, %v", tc.in, got, err, tc.want, tc.err)
		}
	}
}

func FuzzParse(f *testing.F) {
	for _, s := range []string{"1000/day", "5/hour", "0/month", "x/y", "1_0/ month"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		b, err := budget.Parse(s)
		if err == nil && (b.Limit < 1 || b.Period < budget.Hour || b.Period > budget.Month) {
			t.Errorf("Parse(%q) = %v with no error", s, b)
		}
		if err == nil {
			if again, err := budget.Parse(b.String()); err != nil || again != b {
				t.Errorf("Parse(%q) = %v, whose String parses as %v, %v", s, b, again, err)
			}
		}
	})
}

func TestPeriods(t *testing.T) {
	at := time.Date(2026, 12, 31, 23, 59, 30, 0, time.FixedZone("CET", 3600)) // 22:59:30 UTC
	for _, tc := range []struct {
		p          budget.Period
		start, end time.Time
		key        string
	}{
		{budget.Hour, time.Date(2026, 12, 31, 22, 0, 0, 0, time.UTC), time.Date(2026, 12, 31, 23, 0, 0, 0, time.UTC), "2026-12-31T22"},
		{budget.Day, time.Date(2026, 12, 31, 0, 0, 0, 0, time.UTC), time.Date(2027, 1, 1, 0, 0, 0, 0, time.UTC), "2026-12-31"},
		{budget.Month, time.Date(2026, 12, 1, 0, 0, 0, 0, time.UTC), time.Date(2027, 1, 1, 0, 0, 0, 0, time.UTC), "2026-12"},
	} {
		start := tc.p.Start(at)
		if !start.Equal(tc.start) || !tc.p.End(start).Equal(tc.end) || tc.p.Key(start) != tc.key {
			t.Errorf("%v of %v: start %v, end %v, key %q; want %v, %v, %q", tc.p, at, start, tc.p.End(start), tc.p.Key(start), tc.start, tc.end, tc.key)
		}
	}
}

// TestMeterThresholdsOncePerPeriod: with 5/hour, the 4th request crosses
// 80 % and the 5th 100 %, each reported once; the next hour starts afresh.
func TestMeterThresholdsOncePerPeriod(t *testing.T) {
	m := budget.Meter{Budget: budget.Budget{Limit: 5, Period: budget.Hour}}
	at := time.Date(2026, 11, 24, 12, 10, 0, 0, time.UTC)
	var got []budget.Threshold
	for range 8 {
		got = append(got, m.Count(at))
	}
	want := []budget.Threshold{budget.None, budget.None, budget.None, budget.Warn, budget.Spent, budget.None, budget.None, budget.None}
	if len(got) != len(want) {
		t.Fatalf("thresholds %v; want %v", got, want)
	}
	for i := range want {
		if got[i] != want[i] {
			t.Fatalf("thresholds %v; want %v", got, want)
		}
	}
	if m.Used() != 8 || !m.Over(at) || m.Ratio() != 1.6 {
		t.Errorf("after 8 of 5: used %d, over %v, ratio %v", m.Used(), m.Over(at), m.Ratio())
	}
	// 8 in the first 10 minutes: 48 by the end of the hour at that rate.
	if p := m.Projection(at); p != 48 {
		t.Errorf("Projection = %d; want 48", p)
	}
	next := at.Add(time.Hour)
	if m.Over(next) {
		t.Error("Over in the next hour before any request there")
	}
	if th := m.Count(next); th != budget.None || m.Used() != 1 {
		t.Errorf("first request of the next hour: %v, used %d; want None, 1", th, m.Used())
	}
	// A wall clock stepped back into the earlier hour keeps the later one.
	if m.Count(at); m.Used() != 2 || !m.Start.Equal(budget.Hour.Start(next)) {
		t.Errorf("after a step back: used %d in the period of %v", m.Used(), m.Start)
	}
}

// TestMeterRebudget: a reload's new limit keeps the count; a lower limit
// already reached reports its threshold at once, a threshold reported
// and still reached is not reported again, and a higher one re-arms it.
func TestMeterRebudget(t *testing.T) {
	at := time.Date(2026, 11, 24, 12, 0, 0, 0, time.UTC)
	m := budget.Meter{Budget: budget.Budget{Limit: 10, Period: budget.Day}}
	for range 8 {
		m.Count(at)
	}
	if th := m.Rebudget(8); th != budget.Spent || m.Used() != 8 {
		t.Errorf("8 used, limit lowered to 8: %v, used %d; want Spent, 8", th, m.Used())
	}
	if th := m.Rebudget(5); th != budget.None {
		t.Errorf("limit lowered again, still spent: %v; want None (reported)", th)
	}
	if th := m.Rebudget(100); th != budget.None || m.Warned || m.Spent {
		t.Errorf("limit raised to 100: %v, warned %v, spent %v; want None and both re-armed", th, m.Warned, m.Spent)
	}
}

// TestMeterFleet: the fleet's total counts other hosts' requests; one
// in flight is counted once, and an answer for an ended period is ignored.
func TestMeterFleet(t *testing.T) {
	m := budget.Meter{Budget: budget.Budget{Limit: 10, Period: budget.Day}}
	at := time.Date(2026, 11, 24, 12, 0, 0, 0, time.UTC)
	m.Count(at)
	m.Count(at)
	if m.Used() != 2 || m.Unsent != 2 {
		t.Fatalf("used %d unsent %d; want 2 2", m.Used(), m.Unsent)
	}
	// Added: the fleet's counter was 5 before (other hosts), 7 with ours.
	if th := m.Sent(m.Start, 2, 7); th != budget.None || m.Used() != 7 || m.Unsent != 0 {
		t.Errorf("after the add: %v, used %d, unsent %d; want None 7 0", th, m.Used(), m.Unsent)
	}
	if th := m.Observe(at, m.Start, 8); th != budget.Warn || m.Used() != 8 {
		t.Errorf("a read of 8 of 10: %v, used %d; want Warn, 8", th, m.Used())
	}
	if th := m.Observe(at, m.Start, 6); th != budget.None || m.Used() != 8 {
		t.Errorf("an older read of 6: %v, used %d; want None, 8 (counters only grow)", th, m.Used())
	}
	if th := m.Sent(m.Start.AddDate(0, 0, -1), 0, 100); th != budget.None || m.Used() != 8 {
		t.Errorf("yesterday's answer: %v, used %d; want None, 8", th, m.Used())
	}
}
