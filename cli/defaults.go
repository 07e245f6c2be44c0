package cli

// Defaults that belong to the command line rather than to a package: the
// packages' own defaults (round length, queue bound, timeouts, …) are
// taken from their exported constants where the flags are defined.
const (
	// defaultServer is where `tempel serve` listens by default and where
	// the client commands look for it, so that the tour works without any
	// flag.
	defaultServer = "127.0.0.1:8080"

	// defaultDataDir is the data directory of serve, keys and calendar.
	defaultDataDir = "./data"

	// gcPercent is the GOGC that serve and bench set unless GOGC is in
	// the environment: rounds (and the load generator's calls in flight)
	// allocate in bursts that die together, so collecting less often
	// trades memory for throughput.
	gcPercent = 400
)
