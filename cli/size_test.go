package cli

import "testing"

func TestParseSize(t *testing.T) {
	for in, want := range map[string]int64{"1536MiB": 1536 << 20, "4GiB": 4 << 30, "2000000000": 2e9, "512 MB": 512e6, "64KiB": 64 << 10} {
		if got, err := parseSize(in); err != nil || got != want {
			t.Errorf("parseSize(%q) = %d, %v; want %d", in, got, err, want)
		}
	}
	for _, in := range []string{"", "GiB", "-1MiB", "1.5GiB", "12TB", "99999999999GiB"} {
		if got, err := parseSize(in); err == nil {
			t.Errorf("parseSize(%q) = %d, want an error", in, got)
		}
	}
}
