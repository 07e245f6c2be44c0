package cli

import (
	"errors"
	"strconv"
	"strings"
)

// sizeUnits are the suffixes parseSize takes, longest first.
var sizeUnits = []struct {
	suffix string
	mult   int64
}{
	{"GiB", 1 << 30}, {"MiB", 1 << 20}, {"KiB", 1 << 10},
	{"GB", 1e9}, {"MB", 1e6}, {"KB", 1e3}, {"B", 1},
}

// formatSize writes a byte count in the largest binary unit that holds
// it exactly, as parseSize reads it: 1792MiB, 4GiB, 1000B.
func formatSize(n int64) string {
	for _, u := range sizeUnits {
		if strings.HasSuffix(u.suffix, "iB") && n != 0 && n%u.mult == 0 {
			return strconv.FormatInt(n/u.mult, 10) + u.suffix
		}
	}
	return strconv.FormatInt(n, 10) + "B"
}

// parseSize reads a byte count such as 1536MiB, 4GiB or 2000000000 (the
// GOMEMLIMIT spellings, and decimal units).
func parseSize(s string) (int64, error) {
	s = strings.TrimSpace(s)
	mult := int64(1)
	for _, u := range sizeUnits {
		if rest, ok := strings.CutSuffix(s, u.suffix); ok {
			s, mult = strings.TrimSpace(rest), u.mult
			break
		}
	}
	n, err := strconv.ParseInt(s, 10, 64)
	if err != nil || n < 0 {
		return 0, errors.New("cli: not a size")
	}
	if n > (1<<62)/mult {
		return 0, errors.New("cli: size too large")
	}
	return n * mult, nil
}
