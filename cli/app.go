package cli

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"runtime/debug"
	"slices"
	"strings"

	ucli "github.com/urfave/cli/v2"
)

// Exit codes of every tempel command. Scripts depend on them: never
// renumber.
const (
	ExitOK           = 0 // verified, or the command succeeded
	ExitFailed       = 1 // verification failed
	ExitInconclusive = 2 // verification inconclusive (KSI result NA)
	ExitError        = 3 // usage error, unreadable or untrusted input, other error
)

// exitCodesHelp is appended to the help of the app and of commands whose
// outcome is a verdict, so that the codes are documented where people look.
const exitCodesHelp = `EXIT CODES:
   0  verified / success
   1  verification failed (wrong document, broken or forged signature)
   2  verification inconclusive (not enough data to decide)
   3  usage error, unreadable or untrusted input, or another error`

// commands lists the constructors of the top-level commands, in the order
// of the help text. A new command goes in its own file and is added here;
// nothing else needs to change.
var commands = []func() *ucli.Command{
	serveCommand,
	signCommand,
	verifyCommand,
	extendCommand,
	pubfileCommand,
	inspectCommand,
	keysCommand,
	clusterCommand,
	calendarCommand,
	benchCommand,
	versionCommand,
	completionCommand,
	verifyPageCommand,
	manCommand,
}

// App builds the tempel command tree, writing to os.Stdout and os.Stderr.
// Run it with [Run], which maps its errors to exit codes; urfave's own
// handler would call os.Exit from inside the library.
func App() *ucli.App {
	app := &ucli.App{
		Name:  "tempel",
		Usage: "KSI keyless signature service and tools",
		Description: "Tempel verifies and inspects KSI (Guardtime keyless) signatures,\n" +
			"byte-compatible with the reference KSI tools.\n\n" + exitCodesHelp,
		HideVersion: true,
		// Values such as certificate constraints (--cnstr O=Acme, Inc.)
		// may contain commas: one flag occurrence is one value.
		DisableSliceFlagSeparator: true,
		// Run turns errors into exit codes; the default handler would
		// exit the process from inside the library.
		ExitErrHandler:       func(*ucli.Context, error) {},
		OnUsageError:         onUsageError,
		Action:               rootAction,
		Flags:                []ucli.Flag{versionFlag},
		EnableBashCompletion: true,
		Writer:               os.Stdout,
		ErrWriter:            os.Stderr,
	}
	for _, mk := range commands {
		c := mk()
		prepare(c)
		app.Commands = append(app.Commands, c)
	}
	return app
}

// prepare gives a command and its subcommands the app-wide error
// behaviour: usage errors as one line, errors labelled with the command.
func prepare(c *ucli.Command) {
	c.OnUsageError = onUsageError
	if takesConfig(c) {
		c.Flags = append(c.Flags, configFlag())
	}
	if act := c.Action; act != nil {
		c.Action = func(ctx *ucli.Context) error {
			// The configuration file fills in what the command line and
			// the environment left unset, before the command reads it.
			if err := applyConfig(ctx); err != nil {
				return withCommand(ctx, err)
			}
			return withCommand(ctx, act(ctx))
		}
	}
	for _, s := range c.Subcommands {
		prepare(s)
	}
}

// Main runs tempel with os.Args-style arguments and returns the exit code.
func Main(args []string) int {
	return Run(context.Background(), args, os.Stdout, os.Stderr)
}

// Run runs the command tree with args (args[0] is the program name) and
// the given output streams, and returns the exit code. It never panics:
// a panic inside a command is reported as one line and exit code 3.
func Run(ctx context.Context, args []string, stdout, stderr io.Writer) (code int) {
	defer func() {
		if r := recover(); r != nil {
			// A panic is a bug in tempel, never the user's fault; the
			// stack goes only where a developer asked for it.
			fmt.Fprintf(stderr, "tempel: internal error: %v\n", r)
			if os.Getenv("TEMPEL_DEBUG") != "" {
				stderr.Write(debug.Stack())
			}
			code = ExitError
		}
	}()
	app := App()
	app.Writer, app.ErrWriter = stdout, stderr
	if len(args) == 0 {
		args = []string{app.Name}
	}
	if completeDashes(app, args, stdout) {
		return ExitOK
	}
	args = permuteArgs(app, args)
	app.Metadata = map[string]any{argsKey: args}
	err := app.RunContext(ctx, args)
	return exitCode(stderr, err)
}

// exitError ends a command with an exit code. A nil err means the command
// has already said everything (for example a verification report), so
// nothing more is printed.
type exitError struct {
	code int
	cmd  string // command name for the error line; "" for the app
	err  error
}

func (e *exitError) Error() string {
	if e.err == nil {
		return fmt.Sprintf("exit code %d", e.code)
	}
	return e.err.Error()
}

func (e *exitError) Unwrap() error { return e.err }

// usageErrorf reports a mistake in the command line (exit code 3).
func usageErrorf(format string, args ...any) error {
	return &exitError{code: ExitError, err: fmt.Errorf(format, args...)}
}

// inputErrorf reports input that cannot be read or used (exit code 3).
func inputErrorf(format string, args ...any) error {
	return &exitError{code: ExitError, err: fmt.Errorf(format, args...)}
}

// silentExit ends a command whose output already explains the outcome.
func silentExit(code int) error {
	if code == ExitOK {
		return nil
	}
	return &exitError{code: code}
}

// onUsageError turns urfave's flag parsing errors (unknown flag, missing
// value, bad number) into one line with a pointer to the help, instead of
// urfave's default of dumping the whole help text on stdout.
func onUsageError(c *ucli.Context, err error, _ bool) error {
	name := commandName(c)
	return &exitError{code: ExitError, cmd: name, err: fmt.Errorf("%v (see '%s --help')", err, name)}
}

// commandName returns the full name of the running command, "tempel verify".
func commandName(c *ucli.Context) string {
	if c == nil || c.Command == nil || c.Command.Name == "" || c.Command.Name == c.App.Name {
		return "tempel"
	}
	// The lineage runs from this command up to the app; urfave's FullName
	// leaves out the parents of a subcommand (keys rotate).
	var names []string
	for _, ctx := range c.Lineage() {
		if ctx.Command == nil || ctx.Command.Name == "" || ctx.Command.Name == c.App.Name {
			continue
		}
		if len(names) == 0 || names[len(names)-1] != ctx.Command.Name {
			names = append(names, ctx.Command.Name)
		}
	}
	slices.Reverse(names)
	return c.App.Name + " " + strings.Join(names, " ")
}

// rootAction runs when no command was named.
func rootAction(c *ucli.Context) error {
	if c.Bool(versionFlag.Name) {
		return printVersion(c)
	}
	if c.Args().Present() {
		return usageErrorf("unknown command %q (see 'tempel --help')", c.Args().First())
	}
	_ = ucli.ShowAppHelp(c)
	return silentExit(ExitError)
}

// exitCode prints err as one line on stderr and returns its exit code.
func exitCode(stderr io.Writer, err error) int {
	if err == nil {
		return ExitOK
	}
	var ee *exitError
	if errors.As(err, &ee) {
		if ee.err != nil {
			prefix := ee.cmd
			if prefix == "" {
				prefix = "tempel"
			}
			fmt.Fprintf(stderr, "%s: %s\n", prefix, oneLine(ee.err.Error()))
		}
		return ee.code
	}
	code := ExitError
	var ec ucli.ExitCoder
	if errors.As(err, &ec) && ec.ExitCode() != 0 {
		code = ec.ExitCode()
	}
	if msg := oneLine(err.Error()); msg != "" {
		fmt.Fprintf(stderr, "tempel: %s\n", msg)
	}
	return code
}

// oneLine keeps an error message on one line: messages of wrapped errors
// (x509, PKCS#7, HTTP) sometimes contain newlines.
func oneLine(s string) string {
	return strings.Join(strings.Fields(s), " ")
}

// withCommand labels an error from a command's action with the command
// name, so the error line says which command failed.
func withCommand(c *ucli.Context, err error) error {
	if err == nil {
		return nil
	}
	var ee *exitError
	if !errors.As(err, &ee) {
		ee = &exitError{code: ExitError, err: err}
	}
	if ee.cmd == "" {
		ee.cmd = commandName(c)
	}
	return ee
}

// permuteArgs moves every flag before the positional arguments, command
// level by command level. urfave/cli v2 uses the standard flag package,
// which stops at the first positional argument, so without this
// "tempel inspect sig.ksig --json" would treat --json as a file name.
func permuteArgs(app *ucli.App, args []string) []string {
	// The completion scripts' hidden flag must stay last, where urfave
	// looks for it.
	if n := len(args); n > 1 && args[n-1] == completionFlag {
		return append(permuteArgs(app, args[:n-1]), completionFlag)
	}
	out := []string{args[0]}
	return append(out, permute(app.Flags, app.Commands, args[1:])...)
}

// permute reorders the arguments of one command level: its flags (with
// their values) first, then "--" and the positional arguments. At a level
// with subcommands the first positional argument names one; the rest
// belongs to that subcommand and is reordered with its flags. A "--" in
// the input ends the flags as usual.
func permute(flags []ucli.Flag, subs []*ucli.Command, args []string) []string {
	takesValue := valueFlagNames(flags)
	var fl, pos []string
	for i := 0; i < len(args); i++ {
		a := args[i]
		switch {
		case a == "--":
			pos = append(pos, args[i+1:]...)
			i = len(args)
		case len(a) > 1 && a[0] == '-':
			fl = append(fl, a)
			name := strings.TrimLeft(a, "-")
			if !strings.Contains(name, "=") && takesValue[name] && i+1 < len(args) {
				i++
				fl = append(fl, args[i])
			}
		case len(subs) > 0:
			// A command with subcommands takes no positional arguments
			// of its own: a is a subcommand, or a mistake (an unknown
			// command, or "help") that the rest must not hide.
			if sub := findCommand(subs, a); sub != nil {
				fl = append(fl, a)
				return append(fl, permute(sub.Flags, sub.Subcommands, args[i+1:])...)
			}
			pos = append(pos, args[i:]...)
			i = len(args)
		default:
			pos = append(pos, a)
		}
	}
	if len(pos) == 0 {
		return fl
	}
	return append(append(fl, "--"), pos...)
}

func valueFlagNames(flags []ucli.Flag) map[string]bool {
	m := make(map[string]bool)
	for _, f := range flags {
		tv, ok := f.(interface{ TakesValue() bool })
		if !ok || !tv.TakesValue() {
			continue
		}
		for _, n := range f.Names() {
			m[n] = true
		}
	}
	return m
}

func findCommand(cmds []*ucli.Command, name string) *ucli.Command {
	for _, c := range cmds {
		if c.HasName(name) {
			return c
		}
	}
	return nil
}
