package aggregator

import "time"

// Defaults of [Config] that `tempel serve` shows in its flags.
const (
	// DefaultPeriod is the round length: a request waits half of it on
	// average before its round closes.
	DefaultPeriod = 100 * time.Millisecond
	// DefaultMaxQueue bounds the requests waiting for a round; more are
	// refused at once.
	DefaultMaxQueue = 1_000_000
)
