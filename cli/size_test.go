package cli

import "testing"

func TestParseSize(t *testing.T) {
	for in, want := range map[string]int64{"1536MiB": 1536 << 20, "4GiB": 4 << 30, "2000000000": 2e9, "512 MB": 512e6, "64KiB": 64 << 10} {
		if got, err := parseSize(in); err != nil || got != want {
			t.Errorf("parseSize(%q) = %d, %v; want %d", in, got, err, want)
		}
	}
	for n, want := range map[int64]string{1792 << 20: "1792MiB", 4 << 30: "4GiB", 1536 << 10: "1536KiB", 1000: "1000B", 0: "0B"} {
		got := formatSize(n)
		if got != want {
			t.Errorf("formatSize(%d) = %q, want %q", n, got, want)
		}
		if back, err := parseSize(got); err != nil || back != n {
			t.Errorf("parseSize(formatSize(%d)) = %d, %v", n, back, err)
		}
	}
	for _, in := range []string{"", "GiB", "-1MiB", "1.5GiB", "12TB", "99999999999GiB"} {
		if got, err := parseSize(in); err == nil {
			t.Errorf("parseSize(%q) = %d, want an error", in, got)
		}
	}
}
