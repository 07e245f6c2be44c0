package ksi_test

import (
	"errors"
	"testing"

	"github.com/tempel-ksi/tempel/ksi"
)

// TestCalendarStep checks the calendar step against its definition
// (docs/design/formats.md#calendar-hash-chains): H(left || right || 0xFF) in the right child's
// algorithm, whatever the left child's is.
func TestCalendarStep(t *testing.T) {
	ff := []byte{0xFF}
	for _, tc := range []struct {
		name        string
		left, right ksi.Imprint
		alg         ksi.HashAlg
	}{
		{"sha256 both", direct(ksi.SHA2_256, []byte("l")), direct(ksi.SHA2_256, []byte("r")), ksi.SHA2_256},
		{"right decides", direct(ksi.SHA2_256, []byte("l")), direct(ksi.SHA2_512, []byte("r")), ksi.SHA2_512},
		{"left ignored", direct(ksi.SHA2_512, []byte("l")), direct(ksi.SHA1, []byte("r")), ksi.SHA1},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var h ksi.Hasher
			got, err := h.CalendarStep(tc.left, tc.right)
			if err != nil {
				t.Fatal(err)
			}
			if want := direct(tc.alg, tc.left, tc.right, ff); !got.Equal(want) {
				t.Errorf("CalendarStep = %s, want %s", got, want)
			}
		})
	}
	var h ksi.Hasher
	if _, err := h.CalendarStep(direct(ksi.SHA2_256, []byte("l")), ksi.Imprint{0x03, 1}); !errors.Is(err, ksi.ErrUnknownAlg) {
		t.Errorf("step into an unknown algorithm: %v, want ErrUnknownAlg", err)
	}
}
