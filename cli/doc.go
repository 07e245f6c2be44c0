// Package cli is the tempel command tree. cmd/tempel only calls [Main].
//
// # Layout
//
// Each command lives in its own file (verify.go, inspect.go, …) as a
// function returning a *cli.Command of github.com/urfave/cli/v2, and is
// registered in the one list in app.go. [App] builds the tree; [Run]
// executes it with explicit arguments and output streams, which is what
// tests use.
//
// What several commands share lives in files named for it:
// serverflags.go (the flags naming a server and its credentials, and
// the one-line remedies for its errors), writefile.go (output checks and
// safe file writing), inputs.go (the inputs of a bulk run and the worker
// pool), report.go (the one loop that reports each input of sign, extend
// and verify, with summary.go and progress.go), trust.go and config.go
// (trust anchors and the configuration file), defaults.go (the defaults
// that belong to the command line; the packages' own defaults are taken
// from their exported constants).
//
// # Exit codes
//
// Every command maps its outcome to one of these codes (see [ExitOK] …):
//
//	0  verified / success
//	1  verification failed (the signature or document is wrong)
//	2  verification inconclusive (not enough data to decide, KSI "NA")
//	3  usage error, unreadable or untrusted input, or any other error
//
// Errors are written to standard error as one line starting with the
// command name; no command panics or prints a stack trace. (A panic, which
// would be a bug, is reported as "internal error" with exit code 3; set
// TEMPEL_DEBUG=1 to get its stack.)
//
// # Flags
//
// Flags may appear before or after positional arguments (urfave/cli v2
// stops at the first positional one, so [Run] moves flags first); "--"
// ends the flags.
package cli
