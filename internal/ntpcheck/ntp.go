// Package ntpcheck asks an NTP server how far the local clock is off
// (an SNTP client, RFC 4330 and RFC 5905 §8) and watches that offset.
//
// The calendar decides time for every signature it issues, so a node
// whose clock has drifted must stop signing rather than stamp documents
// with a wrong second; Monitor says when and why. The client never sets
// the clock: it only measures.
package ntpcheck

import (
	"context"
	"crypto/rand"
	"encoding/binary"
	"errors"
	"fmt"
	"net"
	"os"
	"strings"
	"time"
)

// DefaultPort is the NTP port used when the server names none.
const DefaultPort = "123"

// packetLen is the length of an NTP header without extensions.
const packetLen = 48

// ntpEpoch is the seconds from NTP's epoch (1900-01-01) to Unix's (1970-01-01).
const ntpEpoch = 2208988800

// maxReply bounds what one read takes: a server's reply with extension
// fields or a MAC is longer than the header, and only the header is read.
const maxReply = 1024

// Errors of a reply the client refuses.
var (
	ErrShort       = errors.New("ntpcheck: reply shorter than 48 bytes")
	ErrMode        = errors.New("ntpcheck: reply is not a server reply (mode 4)")
	ErrVersion     = errors.New("ntpcheck: reply has an unknown NTP version")
	ErrUnsynced    = errors.New("ntpcheck: server is not synchronized")
	ErrKissOfDeath = errors.New("ntpcheck: server sent a kiss-o'-death")
	ErrOrigin      = errors.New("ntpcheck: reply does not answer our request (origin timestamp differs)")
	ErrNoTime      = errors.New("ntpcheck: reply carries no transmit timestamp")
)

// Sample is one measurement: how far the local clock is behind the
// server's (positive Offset: the server is ahead) and the round trip.
type Sample struct {
	Offset time.Duration
	Delay  time.Duration
}

// timestamp is an NTP 64-bit timestamp: seconds since 1900 (modulo the
// era) in the high 32 bits, the fraction in the low 32.
type timestamp uint64

func toTimestamp(t time.Time) timestamp {
	secs := uint64(t.Unix() + ntpEpoch)
	frac := uint64(t.Nanosecond()) << 32 / 1e9
	return timestamp(secs<<32 | frac)
}

// sub is a - b. NTP timestamps wrap every 136 years; the difference as
// a signed 64-bit number is right across a wrap when the two are less
// than 68 years apart (RFC 5905 §6), so no era needs to be guessed.
func (a timestamp) sub(b timestamp) time.Duration {
	d := int64(a - b)
	secs := d >> 32 // arithmetic shift: the fraction below is always positive
	frac := uint64(d) & 0xffffffff
	return time.Duration(secs)*time.Second + time.Duration(frac*1e9>>32)
}

// request builds a client request (version 4, mode 3) whose transmit
// timestamp is nonce: a server copies it into its reply's origin
// timestamp, which ties the reply to this request without telling the
// network the local time.
func request(nonce timestamp) []byte {
	p := make([]byte, packetLen)
	p[0] = 4<<3 | 3
	binary.BigEndian.PutUint64(p[40:], uint64(nonce))
	return p
}

// reply is what the client reads from a server's answer.
type reply struct {
	received, transmit timestamp // T2 and T3
}

// parseReply checks a server's answer to the request with nonce and
// returns its timestamps. Whatever the bytes, it returns an error
// rather than a time it cannot vouch for.
func parseReply(p []byte, nonce timestamp) (reply, error) {
	if len(p) < packetLen {
		return reply{}, fmt.Errorf("%w (%d bytes)", ErrShort, len(p))
	}
	leap, version, mode := p[0]>>6, p[0]>>3&7, p[0]&7
	stratum := p[1]
	switch {
	case mode != 4:
		return reply{}, fmt.Errorf("%w: mode %d", ErrMode, mode)
	case version < 3 || version > 4:
		return reply{}, fmt.Errorf("%w: %d", ErrVersion, version)
	case stratum == 0:
		return reply{}, fmt.Errorf("%w: %s", ErrKissOfDeath, kissCode(p[12:16]))
	case leap == 3 || stratum > 15:
		return reply{}, fmt.Errorf("%w (leap indicator %d, stratum %d)", ErrUnsynced, leap, stratum)
	}
	if timestamp(binary.BigEndian.Uint64(p[24:])) != nonce {
		return reply{}, ErrOrigin
	}
	r := reply{received: timestamp(binary.BigEndian.Uint64(p[32:])), transmit: timestamp(binary.BigEndian.Uint64(p[40:]))}
	if r.transmit == 0 {
		return reply{}, ErrNoTime
	}
	return r, nil
}

// kissCode is a kiss-o'-death's code ("RATE", "DENY"...), printable
// whatever the server sent.
func kissCode(b []byte) string {
	code := strings.TrimRight(string(b), "\x00")
	for _, c := range code {
		if c < 0x20 || c > 0x7e {
			return fmt.Sprintf("code %x", b)
		}
	}
	return fmt.Sprintf("code %q", code)
}

// sample computes offset and delay from the four timestamps: the request
// left at t1, reached the server at t2, the answer left it at t3 and
// came back at t4 (RFC 5905 §8). The network is taken as symmetric, so
// the offset is off by at most half the delay.
func sample(t1, t2, t3, t4 timestamp) Sample {
	offset := (t2.sub(t1) + t3.sub(t4)) / 2
	delay := t4.sub(t1) - t3.sub(t2)
	if delay < 0 {
		// The server's clock runs faster than ours over the exchange,
		// or its timestamps are rounded: there was no negative trip.
		delay = 0
	}
	return Sample{Offset: offset, Delay: delay}
}

// HostPort is server with DefaultPort when it names no port.
func HostPort(server string) string {
	if _, _, err := net.SplitHostPort(server); err == nil {
		return server
	}
	return net.JoinHostPort(strings.Trim(server, "[]"), DefaultPort)
}

// Query asks server (HOST or HOST:PORT) once, with now as the local
// clock, and waits for its answer until ctx ends.
func Query(ctx context.Context, server string, now func() time.Time) (Sample, error) {
	var d net.Dialer
	// A connected socket: the kernel drops datagrams from anyone else.
	conn, err := d.DialContext(ctx, "udp", HostPort(server))
	if err != nil {
		return Sample{}, fmt.Errorf("ntpcheck: %w", err)
	}
	defer conn.Close()
	if dl, ok := ctx.Deadline(); ok {
		conn.SetDeadline(dl)
	}
	stop := context.AfterFunc(ctx, func() { conn.SetDeadline(time.Now()) })
	defer stop()
	var n [8]byte
	rand.Read(n[:])
	nonce := timestamp(binary.BigEndian.Uint64(n[:]))
	t1 := toTimestamp(now())
	if _, err := conn.Write(request(nonce)); err != nil {
		return Sample{}, fmt.Errorf("ntpcheck: send to %s: %w", server, err)
	}
	buf := make([]byte, maxReply)
	for {
		k, err := conn.Read(buf)
		if err != nil {
			if errors.Is(err, os.ErrDeadlineExceeded) || ctx.Err() != nil {
				// The socket's deadline is the context's: it may
				// fire a moment before the context says so.
				cause := ctx.Err()
				if cause == nil {
					cause = context.DeadlineExceeded
				}
				return Sample{}, fmt.Errorf("ntpcheck: no answer from %s: %w", server, cause)
			}
			return Sample{}, fmt.Errorf("ntpcheck: read from %s: %w", server, err)
		}
		t4 := toTimestamp(now())
		r, err := parseReply(buf[:k], nonce)
		if errors.Is(err, ErrOrigin) {
			// A late answer to an earlier request, or a forgery: keep
			// waiting for ours.
			continue
		}
		if err != nil {
			return Sample{}, fmt.Errorf("%w (from %s)", err, server)
		}
		return sample(t1, r.received, r.transmit, t4), nil
	}
}
