//go:build race

package node

// raceEnabled: the race detector changes what memory a request holds.
const raceEnabled = true
