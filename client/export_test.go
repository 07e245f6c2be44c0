package client

import "time"

// SetPublicationsClock makes c's publications cache read the time from now.
func SetPublicationsClock(c *Client, now func() time.Time) { c.pubs.clock.Store(&now) }
