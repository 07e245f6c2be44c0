package calendar

import (
	"encoding/binary"
	"fmt"

	"github.com/tempel-ksi/tempel/ksi"
)

// A replicated calendar publishes through its log: the leader proposes
// the publication, and every member applies it the same way, so every
// member serves the byte-identical publications file
// (docs/design/replication.md#publications).
//
// Encoding, version 1, kind 2 (after the head "TS" version kind):
//
//	time(8) root length(1) root  creation time(8)
//	uri length(uvarint) uri  record length(uvarint) record  signature length(uvarint) signature
//
// The record is the publication record's TLV; the signature is the
// leader's detached PKCS#7 signature over the file's content, which every
// member rebuilds from its publications, the new record, the creation
// time and the URI, with the certificates in one order. The signature
// travels in the entry because it is not deterministic.
const (
	kindPublication = 2
	// maxPubEntryField bounds each variable field of a publication entry.
	maxPubEntryField = 64 << 10
)

// PublicationEntry is the log entry for a publication at Time.
type PublicationEntry struct {
	Time          uint64
	Root          ksi.Imprint
	CreationTime  uint64
	RepositoryURI string
	Record        []byte
	Signature     []byte
}

// Encode appends the entry's bytes to dst.
func (e *PublicationEntry) Encode(dst []byte) ([]byte, error) {
	if len(e.Root) != imprintLen || e.Root.Alg() != calendarAlg {
		return nil, fmt.Errorf("%w: publication root is not a SHA-256 imprint", ErrBadEntry)
	}
	for _, f := range [][]byte{[]byte(e.RepositoryURI), e.Record, e.Signature} {
		if len(f) > maxPubEntryField {
			return nil, fmt.Errorf("%w: publication entry field of %d bytes, at most %d", ErrBadEntry, len(f), maxPubEntryField)
		}
	}
	dst = append(dst, entryMagic...)
	dst = append(dst, entryVersion, kindPublication)
	dst = binary.BigEndian.AppendUint64(dst, e.Time)
	dst = append(dst, byte(len(e.Root)))
	dst = append(dst, e.Root...)
	dst = binary.BigEndian.AppendUint64(dst, e.CreationTime)
	for _, f := range [][]byte{[]byte(e.RepositoryURI), e.Record, e.Signature} {
		dst = binary.AppendUvarint(dst, uint64(len(f)))
		dst = append(dst, f...)
	}
	return dst, nil
}

// entryKind returns the kind of a log entry after checking its head.
func entryKind(b []byte) (byte, error) {
	if len(b) < len(entryMagic)+2 || string(b[:2]) != entryMagic {
		return 0, fmt.Errorf("%w: not a Tempel log entry", ErrBadEntry)
	}
	if b[2] != entryVersion {
		return 0, fmt.Errorf("%w: version %d, this build reads %d", ErrBadEntry, b[2], entryVersion)
	}
	switch b[3] {
	case kindSecond, kindPublication:
		return b[3], nil
	}
	return 0, fmt.Errorf("%w: unknown kind %d", ErrBadEntry, b[3])
}

// DecodePublicationEntry parses an entry written by Encode. Its fields
// alias b.
func DecodePublicationEntry(b []byte) (*PublicationEntry, error) {
	kind, err := entryKind(b)
	if err != nil {
		return nil, err
	}
	if kind != kindPublication {
		return nil, fmt.Errorf("%w: kind %d is not a publication", ErrBadEntry, kind)
	}
	b = b[4:]
	if len(b) < 8+1+imprintLen+8 || b[8] != imprintLen || ksi.HashAlg(b[9]) != calendarAlg {
		return nil, fmt.Errorf("%w: publication entry truncated or its root is not a SHA-256 imprint", ErrBadEntry)
	}
	e := &PublicationEntry{Time: binary.BigEndian.Uint64(b), Root: ksi.Imprint(b[9 : 9+imprintLen : 9+imprintLen])}
	b = b[9+imprintLen:]
	e.CreationTime = binary.BigEndian.Uint64(b)
	b = b[8:]
	var fields [3][]byte
	for i := range fields {
		n, k := uvarint(b)
		if k <= 0 || n > maxPubEntryField || n > uint64(len(b)-k) {
			return nil, fmt.Errorf("%w: publication entry field %d: bad length", ErrBadEntry, i)
		}
		fields[i] = b[k : k+int(n) : k+int(n)]
		b = b[k+int(n):]
	}
	if len(b) != 0 {
		return nil, fmt.Errorf("%w: %d bytes after the publication entry", ErrBadEntry, len(b))
	}
	e.RepositoryURI, e.Record, e.Signature = string(fields[0]), fields[1], fields[2]
	return e, nil
}
