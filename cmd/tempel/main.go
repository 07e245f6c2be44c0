// Command tempel is the Tempel KSI service and tool set. Everything is in
// package cli; this file only hands it the command line.
package main

import (
	"os"

	"github.com/tempel-ksi/tempel/cli"
)

func main() {
	os.Exit(cli.Main(os.Args))
}
