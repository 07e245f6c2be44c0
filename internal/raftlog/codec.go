package raftlog

import (
	"encoding/binary"
	"errors"
	"fmt"
	"hash/crc32"

	pb "go.etcd.io/raft/v3/raftpb"
	"google.golang.org/protobuf/proto"
)

// ErrCorrupt is wrapped by every error about a damaged log: a checksum
// that does not match, an entry stored under the wrong index, a gap, a
// commit index past the end of the log. The member must not run on such a
// log; it is repaired from its peers (or restored from a backup).
var ErrCorrupt = errors.New("raftlog: log damaged")

// Keys. One byte of kind, then for entries the index in big-endian order,
// so that Pebble's byte order is log order.
const (
	keyFormat   = 'F' // formatMarker: this directory is a raft log of this layout
	keyHard     = 'H' // the hard state
	keySnapshot = 'S' // the latest snapshot
	keyDummy    = 'D' // index and term of the entry before the first kept one
	keyEntry    = 'E' // + 8-byte big-endian index: one entry
)

// formatMarker is the value of keyFormat; a change of layout changes it,
// and a directory with another marker (or none) is refused.
const formatMarker = "tempel raftlog v1"

var crcTable = crc32.MakeTable(crc32.Castagnoli)

func entryKey(i uint64) []byte {
	k := make([]byte, 9)
	k[0] = keyEntry
	binary.BigEndian.PutUint64(k[1:], i)
	return k
}

// entryBounds are the iteration bounds covering every entry key.
var entryLower, entryUpper = []byte{keyEntry}, []byte{keyEntry + 1}

// seal prefixes payload with its CRC-32C.
func seal(payload []byte) []byte {
	v := make([]byte, 4+len(payload))
	binary.BigEndian.PutUint32(v, crc32.Checksum(payload, crcTable))
	copy(v[4:], payload)
	return v
}

// unseal checks a value's CRC-32C and returns its payload.
func unseal(what string, v []byte) ([]byte, error) {
	if len(v) < 4 {
		return nil, fmt.Errorf("%w: %s: value of %d bytes, shorter than its checksum", ErrCorrupt, what, len(v))
	}
	if got, want := crc32.Checksum(v[4:], crcTable), binary.BigEndian.Uint32(v); got != want {
		return nil, fmt.Errorf("%w: %s: checksum mismatch (stored %08x, computed %08x)", ErrCorrupt, what, want, got)
	}
	return v[4:], nil
}

// encodeEntry is the stored form of an entry: its term (so Term needs no
// protobuf decoding), then the entry's protobuf encoding, sealed.
func encodeEntry(e *pb.Entry) ([]byte, error) {
	body, err := proto.Marshal(e)
	if err != nil {
		return nil, fmt.Errorf("raftlog: encode entry %d: %w", e.GetIndex(), err)
	}
	payload := make([]byte, 8+len(body))
	binary.BigEndian.PutUint64(payload, e.GetTerm())
	copy(payload[8:], body)
	return seal(payload), nil
}

// entryTerm reads the term of the entry stored at index i.
func entryTerm(i uint64, v []byte) (uint64, error) {
	p, err := unseal(fmt.Sprintf("entry %d", i), v)
	if err != nil {
		return 0, err
	}
	if len(p) < 8 {
		return 0, fmt.Errorf("%w: entry %d: %d bytes, no term", ErrCorrupt, i, len(p))
	}
	return binary.BigEndian.Uint64(p), nil
}

// decodeEntry decodes the entry stored at index i and checks that it is
// the entry of that index.
func decodeEntry(i uint64, v []byte) (*pb.Entry, error) {
	term, err := entryTerm(i, v)
	if err != nil {
		return nil, err
	}
	e := new(pb.Entry)
	if err := proto.Unmarshal(v[4+8:], e); err != nil {
		return nil, fmt.Errorf("%w: entry %d: %v", ErrCorrupt, i, err)
	}
	if e.GetIndex() != i || e.GetTerm() != term {
		return nil, fmt.Errorf("%w: entry stored at index %d holds index %d term %d (header term %d)",
			ErrCorrupt, i, e.GetIndex(), e.GetTerm(), term)
	}
	return e, nil
}

func encodeDummy(index, term uint64) []byte {
	p := make([]byte, 16)
	binary.BigEndian.PutUint64(p, index)
	binary.BigEndian.PutUint64(p[8:], term)
	return seal(p)
}

func decodeDummy(v []byte) (index, term uint64, err error) {
	p, err := unseal("first index", v)
	if err != nil {
		return 0, 0, err
	}
	if len(p) != 16 {
		return 0, 0, fmt.Errorf("%w: first index: %d bytes, want 16", ErrCorrupt, len(p))
	}
	return binary.BigEndian.Uint64(p), binary.BigEndian.Uint64(p[8:]), nil
}

// encodeMessage seals a protobuf message (hard state, snapshot).
func encodeMessage(what string, m proto.Message) ([]byte, error) {
	body, err := proto.Marshal(m)
	if err != nil {
		return nil, fmt.Errorf("raftlog: encode %s: %w", what, err)
	}
	return seal(body), nil
}

func decodeMessage(what string, v []byte, m proto.Message) error {
	p, err := unseal(what, v)
	if err != nil {
		return err
	}
	if err := proto.Unmarshal(p, m); err != nil {
		return fmt.Errorf("%w: %s: %v", ErrCorrupt, what, err)
	}
	return nil
}
