//go:build race

package agent_test

// raceEnabled: the race detector's shadow memory makes RSS meaningless.
const raceEnabled = true
