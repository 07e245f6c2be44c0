package cli

import (
	"fmt"
	"io"

	ucli "github.com/urfave/cli/v2"
)

// The completion scripts ask the binary itself for the candidates
// (urfave's hidden --generate-bash-completion flag), so they stay right
// as commands and flags change.
const bashCompletion = `# bash completion for tempel; load with: source <(tempel completion bash)
_tempel_complete() {
	local cur words
	cur="${COMP_WORDS[COMP_CWORD]}"
	words=("${COMP_WORDS[@]:1:COMP_CWORD-1}")
	if [[ "$cur" == -* ]]; then
		words+=("$cur")
	fi
	COMPREPLY=($(compgen -W "$("${COMP_WORDS[0]}" "${words[@]}" --generate-bash-completion 2>/dev/null)" -- "$cur"))
	return 0
}
complete -o default -F _tempel_complete tempel
`

const zshCompletion = `#compdef tempel
# zsh completion for tempel; load with: source <(tempel completion zsh)
_tempel() {
	local -a opts
	local cur="${words[CURRENT]}"
	local -a args=("${(@)words[2,CURRENT-1]}")
	if [[ "$cur" == -* ]]; then
		args+=("$cur")
	fi
	opts=("${(@f)$(${words[1]} "${(@)args}" --generate-bash-completion 2>/dev/null)}")
	if [[ -n "${opts[1]}" ]]; then
		compadd -a opts
	else
		_files
	fi
}
if [[ "$funcstack[1]" == "_tempel" ]]; then
	_tempel "$@"
else
	compdef _tempel tempel
fi
`

const fishCompletion = `# fish completion for tempel; load with: tempel completion fish | source
function __tempel_complete
	set -l args (commandline -opc)
	set -l cur (commandline -ct)
	set -e args[1]
	if string match -q -- '-*' $cur
		set -a args $cur
	end
	tempel $args --generate-bash-completion 2>/dev/null
end
complete -c tempel -f -a '(__tempel_complete)'
`

var completionScripts = map[string]string{"bash": bashCompletion, "zsh": zshCompletion, "fish": fishCompletion}

func completionCommand() *ucli.Command {
	return &ucli.Command{
		Name:      "completion",
		Usage:     "print a shell completion script (bash, zsh or fish)",
		ArgsUsage: "bash|zsh|fish",
		Description: "Prints a script that completes tempel's commands and flags.\n\n" +
			"   bash: source <(tempel completion bash)   (or save it in /etc/bash_completion.d/tempel)\n" +
			"   zsh:  source <(tempel completion zsh)    (or save it as _tempel on $fpath)\n" +
			"   fish: tempel completion fish | source    (or save it in ~/.config/fish/completions/tempel.fish)",
		Action: func(c *ucli.Context) error {
			if c.NArg() != 1 {
				return usageErrorf("name one shell: bash, zsh or fish")
			}
			script, ok := completionScripts[c.Args().First()]
			if !ok {
				return usageErrorf("unknown shell %q: want bash, zsh or fish", c.Args().First())
			}
			_, err := fmt.Fprint(c.App.Writer, script)
			return err
		},
	}
}

// completionFlag is urfave's hidden flag that lists the candidates for
// the word after the ones before it.
const completionFlag = "--generate-bash-completion"

// completeDashes answers a completion request that urfave would get
// wrong, and reports whether it did. After a bare "-" or "--" urfave runs
// the command itself (reading standard input, signing a file named
// --generate-bash-completion); a completion request must never run
// anything. A bare dash as the word being completed lists the command's
// flags; a dash anywhere else ends the flags, so nothing is offered.
func completeDashes(app *ucli.App, args []string, w io.Writer) bool {
	n := len(args)
	if n < 2 || args[n-1] != completionFlag {
		return false
	}
	words := args[1 : n-1]
	dash := -1
	for i, a := range words {
		if a == "-" || a == "--" {
			dash = i
			break
		}
	}
	if dash < 0 {
		return false
	}
	if dash != len(words)-1 {
		return true
	}
	flags, subs := app.Flags, app.Commands
	for _, a := range words[:dash] {
		if c := findCommand(subs, a); c != nil {
			flags, subs = c.Flags, c.Subcommands
		}
	}
	for _, f := range flags {
		if vf, ok := f.(ucli.VisibleFlag); ok && !vf.IsVisible() {
			continue
		}
		fmt.Fprintf(w, "--%s\n", f.Names()[0])
	}
	return true
}
