package ksi

import (
	"bytes"
	"errors"
	"fmt"
	"time"

	"github.com/tempel-ksi/tempel/ksi/tlv"
)

// Metadata element children (docs/design/formats.md#metadata).
const (
	tagMetaClientID  = 0x01
	tagMetaMachineID = 0x02
	tagMetaSeqNr     = 0x03
	tagMetaReqTime   = 0x04
	tagMetaPadding   = 0x1E
	// metaPaddingHeader is the header byte of the padding element: TLV8,
	// non-critical and forward flags, type 0x1E.
	metaPaddingHeader = 0x7E
)

// Metadata is the structured client identity an aggregator puts into an
// aggregation chain link in place of a sibling hash. Value is the content
// that is hashed: the metadata element's value bytes as stored.
type Metadata struct {
	ClientID       string
	MachineID      string
	HasMachineID   bool
	SequenceNumber uint64
	HasSequence    bool
	RequestTime    uint64 // microseconds since the epoch
	HasRequestTime bool
	Value          []byte
}

func parseMetadata(e tlv.Element) (*Metadata, error) {
	children, err := e.Children()
	if err != nil {
		return nil, err
	}
	m := &Metadata{Value: e.Value}
	var seenClient bool
	for i, c := range children {
		switch c.Type {
		case tagMetaPadding:
			// Padding after another child is malformed; repeated leading
			// padding parses and fails the INT-11 rule instead.
			if i > 0 && children[i-1].Type != tagMetaPadding {
				return nil, errors.New("metadata padding must be the first element")
			}
		case tagMetaClientID:
			if err := once(&seenClient, "client id"); err != nil {
				return nil, err
			}
			if m.ClientID, err = c.UTF8(); err != nil {
				return nil, fmt.Errorf("client id: %w", err)
			}
		case tagMetaMachineID:
			if err := once(&m.HasMachineID, "machine id"); err != nil {
				return nil, err
			}
			if m.MachineID, err = c.UTF8(); err != nil {
				return nil, fmt.Errorf("machine id: %w", err)
			}
		case tagMetaSeqNr:
			if err := once(&m.HasSequence, "sequence number"); err != nil {
				return nil, err
			}
			if m.SequenceNumber, err = c.Uint(); err != nil {
				return nil, fmt.Errorf("sequence number: %w", err)
			}
		case tagMetaReqTime:
			if err := once(&m.HasRequestTime, "request time"); err != nil {
				return nil, err
			}
			if m.RequestTime, err = c.Uint(); err != nil {
				return nil, fmt.Errorf("request time: %w", err)
			}
		default:
			if !c.NonCritical {
				return nil, fmt.Errorf("unknown critical metadata element %#x", c.Type)
			}
		}
	}
	if !seenClient {
		return nil, errors.New("metadata client id is required")
	}
	return m, nil
}

// ErrMetadataPadding is returned by CheckPadding (rule INT-11).
var ErrMetadataPadding = errors.New("ksi: metadata may be confused with an imprint")

// CheckPadding applies the metadata padding rule (docs/design/formats.md#metadata): metadata
// hashed in place of a sibling imprint must not be readable as one.
func (m *Metadata) CheckPadding() error {
	v := m.Value
	first, rest, err := tlv.Read(v)
	if err == nil && first.Type == tagMetaPadding {
		if v[0] != metaPaddingHeader {
			return fmt.Errorf("%w: padding must be a TLV8 element with header 0x7e, got 0x%02x", ErrMetadataPadding, v[0])
		}
		if !bytes.Equal(first.Value, []byte{1}) && !bytes.Equal(first.Value, []byte{1, 1}) {
			return fmt.Errorf("%w: padding value must be 01 or 01 01", ErrMetadataPadding)
		}
		if next, _, err := tlv.Read(rest); err == nil && next.Type == tagMetaPadding {
			return fmt.Errorf("%w: more than one padding element", ErrMetadataPadding)
		}
		if len(v)%2 != 0 {
			return fmt.Errorf("%w: padded metadata must have even length, got %d", ErrMetadataPadding, len(v))
		}
		return nil
	}
	if len(v) > 0 && HashAlg(v[0]).Known() && len(v) == 1+HashAlg(v[0]).Size() {
		return fmt.Errorf("%w: no padding and the value has the form of a %s imprint", ErrMetadataPadding, HashAlg(v[0]))
	}
	return nil
}

// RequestUTC returns the request time, if present.
func (m *Metadata) RequestUTC() (time.Time, bool) {
	if !m.HasRequestTime {
		return time.Time{}, false
	}
	return time.UnixMicro(int64(m.RequestTime)).UTC(), true
}

// MetadataFields are the identity fields an aggregator records.
type MetadataFields struct {
	ClientID       string
	MachineID      string // empty: omitted
	SequenceNumber *uint64
	RequestTime    *uint64 // microseconds since the epoch
}

// AppendMetadataValue appends the value of a metadata element (its
// children, with padding first) so that its length is even, which no
// imprint has (docs/design/formats.md#metadata).
func AppendMetadataValue(dst []byte, f MetadataFields) ([]byte, error) {
	// Sizes first, then one pass of appends: this runs once per signing
	// request.
	n := 2 + len(f.ClientID) + 1
	if len(f.ClientID)+1 > 0xFF {
		n += 2
	}
	if f.MachineID != "" {
		n += tlv.HeaderSize(tagMetaMachineID, len(f.MachineID)+1) + len(f.MachineID) + 1
	}
	if f.SequenceNumber != nil {
		n += 2 + tlv.UintLen(*f.SequenceNumber)
	}
	if f.RequestTime != nil {
		n += 2 + tlv.UintLen(*f.RequestTime)
	}
	// Padding of 3 bytes (7E 01 01) or 4 bytes (7E 02 01 01) makes the
	// total even: no imprint has an even length.
	pad := 3 + (n+1)%2
	if n+pad > tlv.MaxValueLen {
		return nil, errors.New("ksi: metadata too large")
	}
	if pad == 3 {
		dst = append(dst, metaPaddingHeader, 1, 1)
	} else {
		dst = append(dst, metaPaddingHeader, 2, 1, 1)
	}
	dst, _ = tlv.AppendHeader(dst, tagMetaClientID, false, false, len(f.ClientID)+1)
	dst = append(append(dst, f.ClientID...), 0)
	if f.MachineID != "" {
		dst, _ = tlv.AppendHeader(dst, tagMetaMachineID, false, false, len(f.MachineID)+1)
		dst = append(append(dst, f.MachineID...), 0)
	}
	if f.SequenceNumber != nil {
		dst = append(dst, tagMetaSeqNr, byte(tlv.UintLen(*f.SequenceNumber)))
		dst = tlv.AppendUintValue(dst, *f.SequenceNumber)
	}
	if f.RequestTime != nil {
		dst = append(dst, tagMetaReqTime, byte(tlv.UintLen(*f.RequestTime)))
		dst = tlv.AppendUintValue(dst, *f.RequestTime)
	}
	return dst, nil
}
