package server

import (
	"bufio"
	"bytes"
	"errors"
	"io"
	"runtime"
	"testing"

	"github.com/tempel-ksi/tempel/ksi"
	"github.com/tempel-ksi/tempel/ksi/pdu"
	"github.com/tempel-ksi/tempel/ksi/tlv"
)

// acceptRequests accepts the headers of request PDUs, as the listener does.
func acceptRequests(typ uint16, tlv16 bool) bool {
	return tlv16 && (typ == pdu.TypeAggregatorRequest || typ == pdu.TypeExtenderRequest)
}

// readFrames reads every frame of stream, and the error that ended it.
func readFrames(stream []byte) (frames [][]byte, err error) {
	r := bufio.NewReaderSize(bytes.NewReader(stream), 16)
	for {
		f, typ, err := ReadKSIFrame(r, acceptRequests, nil)
		if err != nil {
			return frames, err
		}
		if e, rerr := tlv.ReadOne(f); rerr != nil || e.Type != typ {
			panic("frame is not one element of its type")
		}
		frames = append(frames, f)
	}
}

func testRequest(t testing.TB, id uint64) []byte {
	req := &pdu.AggregatorRequest{Envelope: pdu.Envelope{Header: pdu.Header{LoginID: "anon"}},
		Requests: []pdu.AggregationRequest{{RequestID: id, Hash: append(ksi.Imprint{byte(ksi.SHA2_256)}, make([]byte, 32)...)}}}
	b, err := req.Encode(ksi.SHA2_256, []byte("anon"))
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func TestReadKSIFrame(t *testing.T) {
	a, b := testRequest(t, 1), testRequest(t, 2)
	stream := append(append([]byte{}, a...), b...)
	frames, err := readFrames(stream)
	if err != io.EOF || len(frames) != 2 || !bytes.Equal(frames[0], a) || !bytes.Equal(frames[1], b) {
		t.Fatalf("two PDUs back to back: %d frames, %v", len(frames), err)
	}
	for _, tc := range []struct {
		name   string
		stream []byte
		frames int
		bad    bool // a *FrameError
	}{
		{"cut in the header", stream[:len(a)+3], 1, false},
		{"cut in the value", stream[:len(stream)-1], 1, false},
		{"tlv8", append(append([]byte{}, a...), 0x02, 0x01, 0x00), 1, true},
		{"response type", []byte{0x82, 0x21, 0x00, 0x00}, 0, true},
		{"http", []byte("POST / HTTP/1.1\r\n"), 0, true},
	} {
		frames, err := readFrames(tc.stream)
		var fe *FrameError
		if len(frames) != tc.frames || errors.As(err, &fe) != tc.bad || !tc.bad && !errors.Is(err, errStarted) {
			t.Errorf("%s: %d frames, %v", tc.name, len(frames), err)
		}
	}
}

// FuzzReadKSIFrame: on any stream the framing reader returns whole
// elements of accepted types, back to back from the start of the stream,
// and stops with an error at the first thing it cannot frame; it never
// panics or reads past what a header declares.
func FuzzReadKSIFrame(f *testing.F) {
	a := testRequest(f, 1)
	f.Add(a)
	f.Add(append(append([]byte{}, a...), testRequest(f, 2)...))
	f.Add([]byte{0x83, 0x20, 0x00, 0x00})
	f.Add([]byte{0x82, 0x20, 0xFF, 0xFF})
	f.Add([]byte("GET / HTTP/1.1\r\n\r\n"))
	f.Add([]byte{0x02, 0x00})
	f.Fuzz(func(t *testing.T, stream []byte) {
		frames, err := readFrames(stream)
		if err == nil {
			t.Fatal("the stream ended without an error")
		}
		off := 0
		for _, fr := range frames {
			if len(fr) > pdu.MaxSize || !bytes.Equal(fr, stream[off:off+len(fr)]) {
				t.Fatalf("frame at %d is not the stream's bytes", off)
			}
			off += len(fr)
		}
		var fe *FrameError
		switch {
		case errors.Is(err, io.EOF):
			if off != len(stream) {
				t.Fatalf("EOF after %d of %d bytes", off, len(stream))
			}
		case errors.As(err, &fe):
			if acceptRequests(fe.Type, fe.TLV16) {
				t.Fatalf("an accepted header refused: %v", fe)
			}
		case errors.Is(err, errStarted):
			if off == len(stream) {
				t.Fatal("incomplete with nothing left")
			}
		default:
			t.Fatalf("unexpected error %v", err)
		}
	})
}

// stallingReader yields b, then fails as a read timeout would.
type stallingReader struct{ b []byte }

func (s *stallingReader) Read(p []byte) (int, error) {
	if len(s.b) == 0 {
		return 0, errors.New("stalled")
	}
	n := copy(p, s.b)
	s.b = s.b[n:]
	return n, nil
}

// A header declaring the largest PDU must not make the server hold that
// much memory before the bytes arrive: a slow client would otherwise pin
// 64 KB per connection for the read timeout by sending four bytes, and
// the node's connection limit times that is not charged anywhere.
func TestReadKSIFrameAllocatesWhatArrives(t *testing.T) {
	hdr := []byte{0x82, 0x20, 0xFF, 0xFF} // TLV16 0x220, 65,535 bytes
	stream := append(hdr, make([]byte, 100)...)
	least := ^uint64(0)
	for range 5 { // the least of a few runs: other goroutines may allocate meanwhile
		r := bufio.NewReaderSize(&stallingReader{b: stream}, 16)
		var before, after runtime.MemStats
		runtime.ReadMemStats(&before)
		_, _, err := ReadKSIFrame(r, acceptRequests, nil)
		runtime.ReadMemStats(&after)
		if !errors.Is(err, errStarted) {
			t.Fatalf("a PDU cut short: %v, want errStarted", err)
		}
		least = min(least, after.TotalAlloc-before.TotalAlloc)
	}
	if least > 8<<10 {
		t.Fatalf("reading 100 bytes of a PDU declared 65,535 bytes long allocated %d bytes", least)
	}
}
