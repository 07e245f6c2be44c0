package cli

import (
	"fmt"

	ucli "github.com/urfave/cli/v2"

	"github.com/tempel-ksi/tempel/internal/buildinfo"
)

// versionFlag is the app-wide --version; the root action answers it, so
// that it prints the same line as the version command.
var versionFlag = &ucli.BoolFlag{Name: "version", Usage: "print the version, VCS revision and Go version, and exit"}

func versionCommand() *ucli.Command {
	return &ucli.Command{
		Name:  "version",
		Usage: "print the version, VCS revision and Go version",
		Description: "Prints one line: the release version (\"devel\" for a build outside the\n" +
			"Makefile), the VCS revision (\"-dirty\" when the tree had uncommitted\n" +
			"changes) and commit time, and the Go version. /metrics carries the same\n" +
			"as tempel_build_info.",
		Action: func(c *ucli.Context) error {
			if c.Args().Present() {
				return usageErrorf("version takes no arguments")
			}
			return printVersion(c)
		},
	}
}

func printVersion(c *ucli.Context) error {
	_, err := fmt.Fprintln(c.App.Writer, buildinfo.Get())
	return err
}
