package server

import (
	"bufio"
	"errors"
	"fmt"
	"io"
	"slices"
)

// FrameError says that a ksi+tcp stream holds something other than a
// request PDU where the next one must start: the server cannot find the
// PDU after it, so it answers 0x101 and closes the connection.
type FrameError struct {
	Type  uint16
	TLV16 bool
}

func (e *FrameError) Error() string {
	form := "TLV8"
	if e.TLV16 {
		form = "TLV16"
	}
	return fmt.Sprintf("a %s element of type %#x where a KSI PDU v2 request must start (TLV16 of type 0x220 or 0x320)", form, e.Type)
}

// errStarted marks a read that failed inside a PDU (its read timeout, or
// the stream ending in its middle).
var errStarted = errors.New("server: ksi+tcp: the stream ended or stalled inside a PDU")

// ReadKSIFrame reads the next TLV element of a ksi+tcp stream whole: its
// header (two bytes, or four with the TLV16 flag), which says its length,
// then its value. accept decides from the header whether the element may
// be read: a refused header ends with a *[FrameError] before its value is
// read. started, if set, is called once the element's first byte has
// arrived (the server starts the PDU's read timeout there).
//
// It returns io.EOF when the stream ends between elements, and an error
// wrapping errStarted when it ends or fails inside one. A TLV16 header
// cannot declare more than pdu.MaxSize bytes in all, the bound of a PDU
// over HTTP, so that bound holds here without a check.
func ReadKSIFrame(r *bufio.Reader, accept func(typ uint16, tlv16 bool) bool, started func()) (frame []byte, typ uint16, err error) {
	b0, err := r.ReadByte()
	if err != nil {
		return nil, 0, err
	}
	if started != nil {
		started()
	}
	var hdr [4]byte
	hdr[0] = b0
	tlv16 := b0&0x80 != 0
	n := 2
	if tlv16 {
		n = 4
	}
	if _, err := io.ReadFull(r, hdr[1:n]); err != nil {
		return nil, 0, incomplete(err)
	}
	var length int
	if tlv16 {
		typ, length = uint16(b0&0x1F)<<8|uint16(hdr[1]), int(hdr[2])<<8|int(hdr[3])
	} else {
		typ, length = uint16(b0&0x1F), int(hdr[1])
	}
	if !accept(typ, tlv16) {
		return nil, typ, &FrameError{Type: typ, TLV16: tlv16}
	}
	frame, err = readValue(r, hdr[:n], length)
	if err != nil {
		return nil, 0, incomplete(err)
	}
	return frame, typ, nil
}

// frameChunk is what a frame's buffer starts with, and its least growth.
const frameChunk = 4 << 10

// readValue returns hdr followed by the length bytes of value that r
// yields next. The buffer grows as the bytes arrive (doubling), rather
// than to the length the header declares: a client that declares 64 KB
// and sends little holds little, however many connections it opens.
func readValue(r io.Reader, hdr []byte, length int) ([]byte, error) {
	total := len(hdr) + length
	frame := make([]byte, len(hdr), min(total, len(hdr)+frameChunk))
	copy(frame, hdr)
	for len(frame) < total {
		if len(frame) == cap(frame) {
			frame = slices.Grow(frame, min(max(len(frame), frameChunk), total-len(frame)))
		}
		m, err := r.Read(frame[len(frame):min(cap(frame), total)])
		frame = frame[:len(frame)+m]
		if err != nil && len(frame) < total {
			if errors.Is(err, io.EOF) {
				err = io.ErrUnexpectedEOF
			}
			return nil, err
		}
	}
	return frame, nil
}

func incomplete(err error) error {
	if errors.Is(err, io.EOF) {
		err = io.ErrUnexpectedEOF
	}
	return fmt.Errorf("%w: %w", errStarted, err)
}
