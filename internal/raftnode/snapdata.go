package raftnode

import (
	"encoding/binary"
	"errors"
	"fmt"
	"maps"
	"slices"
)

// The data of a snapshot in the raft log is the member's address book
// followed by the state machine's bytes, so that the addresses of
// members added at run time survive the compaction of the conf changes
// that carried them:
//
//	"TRS1" | uvarint count | count × (uvarint id | uvarint len | address) | machine data
//
// Written and read by hand (no reflection); the version is in the magic.
const snapMagic = "TRS1"

// maxSnapPeers bounds the address book read from a snapshot.
const maxSnapPeers = 1024

func encodeSnapData(peers map[uint64]string, machine []byte) []byte {
	b := append([]byte(snapMagic), 0)[:len(snapMagic)]
	b = binary.AppendUvarint(b, uint64(len(peers)))
	for _, id := range slices.Sorted(maps.Keys(peers)) {
		b = binary.AppendUvarint(b, id)
		b = binary.AppendUvarint(b, uint64(len(peers[id])))
		b = append(b, peers[id]...)
	}
	return append(b, machine...)
}

var errSnapData = errors.New("raftnode: snapshot data damaged")

func decodeSnapData(b []byte) (map[uint64]string, []byte, error) {
	if len(b) < len(snapMagic) || string(b[:len(snapMagic)]) != snapMagic {
		return nil, nil, fmt.Errorf("%w: no %s header", errSnapData, snapMagic)
	}
	b = b[len(snapMagic):]
	uv := func(what string) (uint64, error) {
		v, n := binary.Uvarint(b)
		if n <= 0 {
			return 0, fmt.Errorf("%w: bad %s", errSnapData, what)
		}
		b = b[n:]
		return v, nil
	}
	count, err := uv("member count")
	if err != nil {
		return nil, nil, err
	}
	if count > maxSnapPeers {
		return nil, nil, fmt.Errorf("%w: %d members, at most %d", errSnapData, count, maxSnapPeers)
	}
	peers := make(map[uint64]string, count)
	for range count {
		id, err := uv("member id")
		if err != nil {
			return nil, nil, err
		}
		n, err := uv("address length")
		if err != nil {
			return nil, nil, err
		}
		if id == 0 || n == 0 || n > uint64(len(b)) {
			return nil, nil, fmt.Errorf("%w: member %d with an address of %d bytes", errSnapData, id, n)
		}
		peers[id] = string(b[:n])
		b = b[n:]
	}
	return peers, b, nil
}
