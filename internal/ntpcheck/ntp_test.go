package ntpcheck

import (
	"context"
	"encoding/binary"
	"errors"
	"net"
	"strings"
	"sync/atomic"
	"testing"
	"time"
)

// responder is an NTP server on loopback UDP that answers with its clock
// moved by a settable offset, or with what reply makes of the request.
type responder struct {
	conn   *net.UDPConn
	offset atomic.Int64
	// reply, when set, makes the answers from the request instead.
	reply atomic.Pointer[func(req []byte) [][]byte]
}

func newResponder(t *testing.T) *responder {
	t.Helper()
	conn, err := net.ListenUDP("udp", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
	if err != nil {
		t.Fatal(err)
	}
	r := &responder{conn: conn}
	done := make(chan struct{})
	go func() {
		defer close(done)
		buf := make([]byte, 512)
		for {
			k, from, err := conn.ReadFromUDP(buf)
			if err != nil {
				return
			}
			out := [][]byte{r.answer(buf[:k])}
			if f := r.reply.Load(); f != nil {
				out = (*f)(buf[:k])
			}
			for _, p := range out {
				conn.WriteToUDP(p, from)
			}
		}
	}()
	t.Cleanup(func() { conn.Close(); <-done })
	return r
}

func (r *responder) addr() string { return r.conn.LocalAddr().String() }

func (r *responder) set(f func(req []byte) [][]byte) { r.reply.Store(&f) }

// answer is a stratum-2 server's reply whose clock is off by r.offset.
func (r *responder) answer(req []byte) []byte {
	now := time.Now().Add(time.Duration(r.offset.Load()))
	p := make([]byte, packetLen)
	p[0] = 0<<6 | 4<<3 | 4
	p[1] = 2
	copy(p[12:16], "LOCL")
	if len(req) >= packetLen {
		copy(p[24:32], req[40:48])
	}
	binary.BigEndian.PutUint64(p[32:], uint64(toTimestamp(now)))
	binary.BigEndian.PutUint64(p[40:], uint64(toTimestamp(now)))
	return p
}

func query(t *testing.T, addr string) (Sample, error) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	return Query(ctx, addr, time.Now)
}

func TestQueryMeasuresOffset(t *testing.T) {
	r := newResponder(t)
	for _, off := range []time.Duration{0, 1234 * time.Millisecond, -3 * time.Second, 40 * 365 * 24 * time.Hour} {
		r.offset.Store(int64(off))
		s, err := query(t, r.addr())
		if err != nil {
			t.Fatal(err)
		}
		// Loopback: the offset is exact to within the round trip.
		if d := s.Offset - off; d < -s.Delay-time.Millisecond || d > s.Delay+time.Millisecond {
			t.Errorf("offset %v: measured %v (delay %v)", off, s.Offset, s.Delay)
		}
		if s.Delay < 0 || s.Delay > time.Second {
			t.Errorf("delay %v", s.Delay)
		}
	}
}

// TestSampleArithmetic checks RFC 5905's offset and delay on timestamps
// with known answers, across the 2036 wrap of the NTP seconds.
func TestSampleArithmetic(t *testing.T) {
	base := time.Date(2036, 2, 7, 6, 28, 15, 0, time.UTC) // one second before the era ends
	ts := func(d time.Duration) timestamp { return toTimestamp(base.Add(d)) }
	cases := []struct {
		t1, t2, t3, t4 time.Duration
		offset, delay  time.Duration
	}{
		{0, 10 * time.Millisecond, 11 * time.Millisecond, 21 * time.Millisecond, 0, 20 * time.Millisecond},
		// Server 2 s ahead, 100 ms each way, 5 ms inside it: crosses the wrap.
		{0, 2100 * time.Millisecond, 2105 * time.Millisecond, 205 * time.Millisecond, 2 * time.Second, 200 * time.Millisecond},
		// Server 1.5 s behind.
		{time.Second, -490 * time.Millisecond, -490 * time.Millisecond, 1020 * time.Millisecond, -1500 * time.Millisecond, 20 * time.Millisecond},
		// Timestamps rounded so the trip looks negative: delay is 0.
		{0, 5 * time.Millisecond, 10 * time.Millisecond, 2 * time.Millisecond, 6500 * time.Microsecond, 0},
	}
	for i, c := range cases {
		s := sample(ts(c.t1), ts(c.t2), ts(c.t3), ts(c.t4))
		near := func(a, b time.Duration) bool { return (a - b).Abs() <= 2*time.Nanosecond }
		if !near(s.Offset, c.offset) || !near(s.Delay, c.delay) {
			t.Errorf("case %d: offset %v delay %v, want %v %v", i, s.Offset, s.Delay, c.offset, c.delay)
		}
	}
	if got := toTimestamp(base.Add(2 * time.Second)); uint64(got)>>32 != 1 {
		t.Errorf("2036-02-07 06:28:17 is second %d of era 1, want 1", uint64(got)>>32)
	}
}

func TestParseReplyRefuses(t *testing.T) {
	const nonce = timestamp(0x0123456789abcdef)
	good := func() []byte {
		p := make([]byte, packetLen)
		p[0], p[1] = 4<<3|4, 1
		binary.BigEndian.PutUint64(p[24:], uint64(nonce))
		binary.BigEndian.PutUint64(p[32:], 1<<32)
		binary.BigEndian.PutUint64(p[40:], 2<<32)
		return p
	}
	if _, err := parseReply(good(), nonce); err != nil {
		t.Fatalf("good reply: %v", err)
	}
	if _, err := parseReply(append(good(), make([]byte, 20)...), nonce); err != nil {
		t.Fatalf("good reply with extension bytes: %v", err)
	}
	with := func(f func(p []byte)) []byte { p := good(); f(p); return p }
	cases := []struct {
		name string
		p    []byte
		want error
		text string
	}{
		{"empty", nil, ErrShort, "0 bytes"},
		{"short", good()[:47], ErrShort, "47 bytes"},
		{"client mode", with(func(p []byte) { p[0] = 4<<3 | 3 }), ErrMode, "mode 3"},
		{"broadcast", with(func(p []byte) { p[0] = 4<<3 | 5 }), ErrMode, "mode 5"},
		{"version 7", with(func(p []byte) { p[0] = 7<<3 | 4 }), ErrVersion, "7"},
		{"kiss RATE", with(func(p []byte) { p[1] = 0; copy(p[12:], "RATE") }), ErrKissOfDeath, `"RATE"`},
		{"kiss DENY", with(func(p []byte) { p[1] = 0; copy(p[12:], "DENY") }), ErrKissOfDeath, `"DENY"`},
		{"kiss binary", with(func(p []byte) { p[1] = 0; copy(p[12:], "\xff\x00\x01\x02") }), ErrKissOfDeath, "ff000102"},
		{"alarm", with(func(p []byte) { p[0] |= 3 << 6 }), ErrUnsynced, "leap indicator 3"},
		{"stratum 16", with(func(p []byte) { p[1] = 16 }), ErrUnsynced, "stratum 16"},
		{"other origin", with(func(p []byte) { p[31]++ }), ErrOrigin, ""},
		{"no transmit time", with(func(p []byte) { clear(p[40:48]) }), ErrNoTime, ""},
	}
	for _, c := range cases {
		_, err := parseReply(c.p, nonce)
		if !errors.Is(err, c.want) || !strings.Contains(fmtErr(err), c.text) {
			t.Errorf("%s: %v, want %v with %q", c.name, err, c.want, c.text)
		}
	}
}

func fmtErr(err error) string {
	if err == nil {
		return ""
	}
	return err.Error()
}

// TestQueryRefusesBadServers: a real server's refusals come back as
// errors naming the server; a reply to someone else's request is
// ignored and ours, when it comes, is used.
func TestQueryRefusesBadServers(t *testing.T) {
	r := newResponder(t)
	r.set(func(req []byte) [][]byte {
		p := r.answer(req)
		p[1] = 0
		copy(p[12:], "RATE")
		return [][]byte{p}
	})
	if _, err := query(t, r.addr()); !errors.Is(err, ErrKissOfDeath) || !strings.Contains(err.Error(), r.addr()) {
		t.Errorf("kiss-o'-death: %v", err)
	}
	r.set(func(req []byte) [][]byte { return [][]byte{{0x24}} })
	if _, err := query(t, r.addr()); !errors.Is(err, ErrShort) {
		t.Errorf("1-byte reply: %v", err)
	}
	// An answer to another request (late, or forged) first, 3 s off;
	// then ours, 1 s off.
	r.set(func(req []byte) [][]byte {
		r.offset.Store(int64(3 * time.Second))
		other := r.answer(req)
		other[24] ^= 0xff
		r.offset.Store(int64(time.Second))
		return [][]byte{other, r.answer(req)}
	})
	s, err := query(t, r.addr())
	if err != nil || (s.Offset-time.Second).Abs() > 100*time.Millisecond {
		t.Errorf("other request's answer first: offset %v, %v; want ours, 1s", s.Offset, err)
	}
	// Only answers to other requests: no answer.
	r.set(func(req []byte) [][]byte {
		other := r.answer(req)
		other[24] ^= 0xff
		return [][]byte{other}
	})
	ctx, cancel := context.WithTimeout(context.Background(), 300*time.Millisecond)
	defer cancel()
	if _, err := Query(ctx, r.addr(), time.Now); !errors.Is(err, context.DeadlineExceeded) || !strings.Contains(err.Error(), "no answer") {
		t.Errorf("only answers to other requests: %v, want no answer", err)
	}
}

func TestQueryNoServer(t *testing.T) {
	// A port with nobody on it: ICMP unreachable or silence, an error either way.
	conn, err := net.ListenUDP("udp", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
	if err != nil {
		t.Fatal(err)
	}
	addr := conn.LocalAddr().String()
	conn.Close()
	ctx, cancel := context.WithTimeout(context.Background(), time.Second)
	defer cancel()
	if _, err := Query(ctx, addr, time.Now); err == nil {
		t.Fatal("no server, no error")
	}
}

func TestHostPort(t *testing.T) {
	for in, want := range map[string]string{
		"pool.ntp.org": "pool.ntp.org:123", "10.0.0.1:1123": "10.0.0.1:1123", "::1": "[::1]:123", "[::1]:5": "[::1]:5",
	} {
		if got := HostPort(in); got != want {
			t.Errorf("HostPort(%q) = %q, want %q", in, got, want)
		}
	}
}

func FuzzParseReply(f *testing.F) {
	f.Add(make([]byte, 48), uint64(0))
	p := make([]byte, 48)
	p[0], p[1] = 4<<3|4, 2
	p[40] = 1
	f.Add(p, uint64(0))
	f.Add([]byte{0x24, 0}, uint64(1))
	f.Fuzz(func(t *testing.T, b []byte, nonce uint64) {
		r, err := parseReply(b, timestamp(nonce))
		if err == nil {
			if len(b) < packetLen || b[0]&7 != 4 || b[1] == 0 || r.transmit == 0 {
				t.Fatalf("accepted %x", b)
			}
			// Any accepted reply gives a sample without a negative delay.
			if s := sample(toTimestamp(time.Now()), r.received, r.transmit, toTimestamp(time.Now())); s.Delay < 0 {
				t.Fatalf("negative delay %v from %x", s.Delay, b)
			}
		}
	})
}
