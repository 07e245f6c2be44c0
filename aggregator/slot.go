package aggregator

// SlotUpstream is an Upstream that can reserve, when a round closes, the
// round's place in the upstream's current period: the in-process
// calendar's second (calendar.Slot). The round's root then counts for the
// second the round closed in even when building the round outlasts the
// calendar's grace period, which would otherwise cost its requests a
// whole second more.
type SlotUpstream interface {
	Upstream
	// Reserve returns the Upstream to sign this round's root with and a
	// release function, called once the round is done with it.
	Reserve() (Upstream, func())
}

// slot is a round's way upstream: Config.Upstream, or a place reserved
// in its current period.
type slot struct {
	up      Upstream
	release func()
}

func noRelease() {}

// reserve takes the round's place upstream as it closes.
func reserve(up Upstream) slot {
	if su, ok := up.(SlotUpstream); ok {
		u, release := su.Reserve()
		return slot{u, release}
	}
	return slot{up, noRelease}
}

// drop gives the place up, to sign through up without one: a round that
// waits for a place in flight must not hold its calendar slot meanwhile,
// since the rounds holding the places may be waiting for that very second
// to close. It takes its chances with the grace period instead.
func (s *slot) drop(up Upstream) {
	s.release()
	s.up, s.release = up, noRelease
}
