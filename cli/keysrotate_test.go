package cli

import (
	"testing"
	"time"
)

// The old calendar key retires at the newest root it signed: not before
// (even when the clock has gone back behind the calendar), and not at the
// later time of the rotation, which would let a thief sign the seconds
// the server stood still.
func TestRetirementTime(t *testing.T) {
	now := time.Unix(1_800_000_000, 500_000_000)
	for _, tc := range []struct {
		last uint64
		want time.Time
	}{
		{0, now},
		{1_700_000_000, time.Unix(1_700_000_000, 0)},
		{1_799_999_999, time.Unix(1_799_999_999, 0)},
		{1_800_000_000, time.Unix(1_800_000_000, 0)},
		{1_800_000_007, time.Unix(1_800_000_007, 0)},
		{1 << 63, time.Unix(1<<62, 0)},
	} {
		if got := retirementTime(now, tc.last); !got.Equal(tc.want) {
			t.Errorf("retirementTime(%d) = %v, want %v", tc.last, got, tc.want)
		}
	}
}
