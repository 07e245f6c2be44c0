package cli

import (
	"bufio"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"strings"

	ucli "github.com/urfave/cli/v2"
)

// flagConfig names the configuration file; every command with a flag the
// file can set has it.
const flagConfig = "config"

// maxConfigSize bounds the configuration file: a few lines of settings,
// never megabytes.
const maxConfigSize = 64 << 10

// configHelp documents the configuration file; verify's help shows it.
const configHelp = `CONFIGURATION FILE:
   Settings that rarely change (the publications file and why to trust it,
   the server and credentials) can live in a file, as ksi-tool's KSI_CONF:
   --config FILE, or TEMPEL_CONFIG, or else $XDG_CONFIG_HOME/tempel/config
   (by default ~/.config/tempel/config) when it exists. One setting per
   line, NAME = VALUE (the value may be quoted), with the long flag's name;
   # starts a comment line (the format of tempel serve's --config).
   Relative paths are relative to the file's directory. A flag beats its
   environment variable, which beats the file. Names: pubfile, trust-root,
   cnstr, server, tls-ca (these four repeatable), user, key, machine-id,
   timeout. A file holding a key should be readable by its owner only.

      # ~/.config/tempel/config
      pubfile    = https://tempel.example.org/publications.bin
      trust-root = root.pem
      cnstr      = E=publications@example.org

   Then 'tempel verify doc.pdf' needs no flag.`

// configKey is a setting the configuration file may hold.
type configKey struct {
	repeat bool // may be given on several lines, as the flag may be repeated
	path   bool // a file name, relative to the configuration file's directory
}

var configKeys = map[string]configKey{
	flagPubfile:   {path: true},
	flagTrustRoot: {repeat: true, path: true},
	flagCnstr:     {repeat: true},
	flagServer:    {repeat: true},
	flagTLSCA:     {repeat: true, path: true},
	flagUser:      {},
	flagKey:       {},
	flagMachineID: {},
	flagTimeout:   {},
}

// configSetting is one NAME = VALUE line.
type configSetting struct {
	name, value string
	line        int
}

// configFile is a parsed configuration file.
type configFile struct {
	path     string
	settings []configSetting
	hasKey   bool
	mode     fs.FileMode
}

// configFlag is the --config flag added to the commands that read the file.
func configFlag() ucli.Flag {
	return &ucli.StringFlag{
		Name:    flagConfig,
		EnvVars: []string{"TEMPEL_CONFIG"},
		Usage:   "read settings from `FILE` (default $XDG_CONFIG_HOME/tempel/config or ~/.config/tempel/config, when it exists)",
	}
}

// configCommands are the client commands that read the file. tempel
// serve has a --config of its own (the server's settings); bench is a
// load tool whose target should never come from a citizen's settings.
var configCommands = map[string]bool{"sign": true, "verify": true, "extend": true, "pubfile": true}

// takesConfig reports whether a command reads the configuration file.
func takesConfig(c *ucli.Command) bool { return configCommands[c.Name] }

// defaultConfigPath is where the file is looked for without --config;
// "" when neither XDG_CONFIG_HOME nor HOME says.
func defaultConfigPath() string {
	if d := os.Getenv("XDG_CONFIG_HOME"); filepath.IsAbs(d) {
		return filepath.Join(d, "tempel", "config")
	}
	if h, err := os.UserHomeDir(); err == nil && h != "" {
		return filepath.Join(h, ".config", "tempel", "config")
	}
	return ""
}

// defaultConfigHint names the default file for messages.
func defaultConfigHint() string {
	if p := defaultConfigPath(); p != "" {
		return p
	}
	return "~/.config/tempel/config"
}

// applyConfig reads the configuration file and sets every flag of the
// running command that neither the command line nor the environment set.
func applyConfig(c *ucli.Context) error {
	if c.Command == nil || !takesConfig(c.Command) {
		return nil
	}
	cf, err := loadConfig(c)
	if cf == nil || err != nil {
		return err
	}
	if cf.hasKey && cf.mode.Perm()&0o077 != 0 {
		fmt.Fprintf(c.App.ErrWriter, "%s: WARNING: the config file %s holds a key and can be read by other users (mode %04o): chmod 600 %s\n",
			commandName(c), cf.path, cf.mode.Perm(), cf.path)
	}
	has := make(map[string]bool)
	for _, f := range c.Command.Flags {
		has[f.Names()[0]] = true
	}
	for _, s := range cf.settings {
		if !has[s.name] || setByUser(c, s.name) {
			continue
		}
		if err := c.Set(s.name, s.value); err != nil {
			return usageErrorf("config %s:%d: %s: %v", cf.path, s.line, s.name, err)
		}
	}
	return nil
}

// loadConfig reads the file of --config, else the default one when it
// exists; nil when there is none.
func loadConfig(c *ucli.Context) (*configFile, error) {
	path, explicit := c.String(flagConfig), true
	if path == "" {
		path, explicit = defaultConfigPath(), false
	}
	if path == "" {
		return nil, nil
	}
	cf, err := readConfig(path)
	switch {
	case err != nil && !explicit && errors.Is(err, fs.ErrNotExist):
		return nil, nil
	case err != nil:
		return nil, inputErrorf("%v", err)
	}
	return cf, nil
}

// readConfig parses the configuration file at path. Unknown names, lines
// that are not NAME = VALUE and a non-repeatable name given twice are
// errors naming the line: a setting silently ignored (a typo in
// "trust-root") would leave a citizen wondering why nothing is trusted.
func readConfig(path string) (*configFile, error) {
	f, fi, err := openConfig(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	cf := &configFile{path: path, mode: fi.Mode()}
	seen := make(map[string]int)
	sc := bufio.NewScanner(f)
	for n := 1; sc.Scan(); n++ {
		line := strings.TrimSpace(sc.Text())
		if line == "" || strings.HasPrefix(line, "#") {
			continue
		}
		s, err := parseConfigLine(path, n, line, seen)
		if err != nil {
			return nil, err
		}
		cf.hasKey = cf.hasKey || s.name == flagKey
		cf.settings = append(cf.settings, s)
	}
	if err := sc.Err(); err != nil {
		return nil, fmt.Errorf("cannot read the config file %s: %w", path, err)
	}
	return cf, nil
}

// openConfig opens the configuration file, refusing anything but a
// regular file of at most [maxConfigSize] bytes.
func openConfig(path string) (*os.File, fs.FileInfo, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, nil, fmt.Errorf("cannot read the config file: %w", err)
	}
	fi, err := f.Stat()
	if err != nil {
		f.Close()
		return nil, nil, fmt.Errorf("cannot read the config file: %w", err)
	}
	if !fi.Mode().IsRegular() || fi.Size() > maxConfigSize {
		f.Close()
		return nil, nil, fmt.Errorf("the config file %s is not a regular file of at most %d bytes", path, maxConfigSize)
	}
	return f, fi, nil
}

// parseConfigLine reads line n of the file at path, a NAME = VALUE line;
// seen maps the names set so far to their lines. A relative path is taken
// from the file's directory.
func parseConfigLine(path string, n int, line string, seen map[string]int) (configSetting, error) {
	name, value, ok := strings.Cut(line, "=")
	name, value = strings.TrimSpace(name), unquote(strings.TrimSpace(value))
	if !ok || name == "" || value == "" {
		return configSetting{}, fmt.Errorf("config %s:%d: want NAME = VALUE, got %q", path, n, line)
	}
	key, known := configKeys[name]
	switch {
	case name == flagPubfileNoVerify:
		return configSetting{}, fmt.Errorf("config %s:%d: %s cannot be set in a config file: it turns off the check that makes a publications file trustworthy", path, n, name)
	case !known:
		return configSetting{}, fmt.Errorf("config %s:%d: unknown setting %q (known: %s)", path, n, name, strings.Join(knownConfigKeys(), ", "))
	case seen[name] > 0 && !key.repeat:
		return configSetting{}, fmt.Errorf("config %s:%d: %s is already set on line %d", path, n, name, seen[name])
	}
	seen[name] = n
	if key.path && !filepath.IsAbs(value) && !(name == flagPubfile && isURL(value)) {
		value = filepath.Join(filepath.Dir(path), value)
	}
	return configSetting{name: name, value: value, line: n}, nil
}

// unquote drops the quotes around a value, which are allowed as in
// tempel serve's --config file.
func unquote(v string) string {
	if len(v) >= 2 && v[0] == '"' && v[len(v)-1] == '"' {
		return v[1 : len(v)-1]
	}
	return v
}

func knownConfigKeys() []string {
	ks := make([]string, 0, len(configKeys))
	for k := range configKeys {
		ks = append(ks, k)
	}
	slices.Sort(ks)
	return ks
}

// argsKey is where [Run] keeps the command line in the app's metadata,
// for [setByUser].
const argsKey = "tempel.args"

// setByUser reports whether the flag name of the running command was
// given on the command line or in a non-empty environment variable.
// urfave's IsSet also counts a variable set to "", which is how people
// clear one (TEMPEL_CNSTR=), and must not hide the file's setting.
func setByUser(c *ucli.Context, name string) bool {
	var f ucli.Flag
	for _, cf := range c.Command.Flags {
		if cf.Names()[0] == name {
			f = cf
		}
	}
	if f == nil {
		return false
	}
	if ev, ok := f.(interface{ GetEnvVars() []string }); ok {
		for _, e := range ev.GetEnvVars() {
			if strings.TrimSpace(os.Getenv(e)) != "" {
				return true
			}
		}
	}
	args, _ := c.App.Metadata[argsKey].([]string)
	for _, a := range args {
		if a == "--" {
			break
		}
		if !strings.HasPrefix(a, "-") {
			continue
		}
		a, _, _ = strings.Cut(strings.TrimLeft(a, "-"), "=")
		if slices.Contains(f.Names(), a) {
			return true
		}
	}
	return false
}
