package node

import "time"

// Defaults of [Config] that `tempel serve` shows in its flags.
const (
	// DefaultName is the node's client id at its parent.
	DefaultName = "tempel"
	// DefaultPublishEvery is the publication period, aligned to UTC.
	DefaultPublishEvery = 24 * time.Hour
)
