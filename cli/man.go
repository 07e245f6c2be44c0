package cli

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"

	ucli "github.com/urfave/cli/v2"
)

// manSection is where command pages belong (man-pages(7)).
const manSection = 1

func manCommand() *ucli.Command {
	return &ucli.Command{
		Name:      "man",
		Usage:     "write the manual pages (tempel.1 and one tempel-COMMAND.1 per command) into a directory",
		ArgsUsage: "DIR",
		Description: "Writes roff manual pages generated from the command tree, so that they\n" +
			"always match the binary: tempel.1 covers every command, and\n" +
			"tempel-sign.1, tempel-verify.1, ... one command each. Install them with\n" +
			"  tempel man /usr/local/share/man/man1\n" +
			"and read them with `man tempel-verify` (or `man -l DIR/tempel-verify.1`).",
		Action: func(c *ucli.Context) error {
			if c.Args().Len() != 1 {
				return usageErrorf("man takes one argument, the output DIR")
			}
			pages, err := manPages(c.App)
			if err != nil {
				return err
			}
			return writeManPages(c, c.Args().First(), pages)
		},
	}
}

// manPages renders the whole tree's page and one page per visible
// top-level command, keyed by file name.
func manPages(app *ucli.App) (map[string]string, error) {
	pages := map[string]string{}
	whole, err := app.ToManWithSection(manSection)
	if err != nil {
		return nil, fmt.Errorf("cli: man page of %s: %w", app.Name, err)
	}
	pages[fmt.Sprintf("%s.%d", app.Name, manSection)] = whole
	for _, cmd := range app.VisibleCommands() {
		if cmd.Name == "help" {
			continue
		}
		name := app.Name + "-" + cmd.Name
		sub := &ucli.App{
			Name:        name,
			Usage:       cmd.Usage,
			UsageText:   commandUsageText(app.Name, cmd),
			Description: cmd.Description,
			Flags:       cmd.Flags,
			Commands:    cmd.Subcommands,
		}
		page, err := sub.ToManWithSection(manSection)
		if err != nil {
			return nil, fmt.Errorf("cli: man page of %s: %w", name, err)
		}
		pages[fmt.Sprintf("%s.%d", name, manSection)] = page
	}
	return pages, nil
}

func commandUsageText(appName string, cmd *ucli.Command) string {
	if cmd.UsageText != "" {
		return cmd.UsageText
	}
	parts := []string{appName, cmd.Name}
	if len(cmd.Subcommands) > 0 {
		parts = append(parts, "command")
	}
	if len(cmd.VisibleFlags()) > 0 {
		parts = append(parts, "[OPTIONS]")
	}
	if cmd.ArgsUsage != "" {
		parts = append(parts, cmd.ArgsUsage)
	}
	return strings.Join(parts, " ")
}

func writeManPages(c *ucli.Context, dir string, pages map[string]string) error {
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return fmt.Errorf("cli: man: %w", err)
	}
	for name, page := range pages {
		if err := os.WriteFile(filepath.Join(dir, name), []byte(page), 0o644); err != nil {
			return fmt.Errorf("cli: man: %w", err)
		}
	}
	_, err := fmt.Fprintf(c.App.Writer, "wrote %d manual pages to %s\n", len(pages), dir)
	return err
}
