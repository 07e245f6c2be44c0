package pdu

import (
	"unicode/utf8"

	"github.com/tempel-ksi/tempel/ksi"
	"github.com/tempel-ksi/tempel/ksi/tlv"
)

// Encoded sizes. A response PDU is one TLV16 element (at most MaxSize
// bytes), so a server must know before it does any work how many answers
// it can send back in one: a request signed and then not answered is lost
// to its client. These functions give exact lengths of what the encoders
// write, and upper bounds for integers whose values are not known yet.

// MaxErrorMessageLen bounds the error messages a server should put in a
// response (see TruncateMessage): an error response then has a known
// upper size however long the underlying error was.
const MaxErrorMessageLen = 200

// maxUintLen is the longest encoded integer (uint64).
const maxUintLen = 8

// TruncateMessage shortens msg to at most MaxErrorMessageLen bytes of
// valid UTF-8 without zero bytes, so that it can be encoded as an error
// message of known size.
func TruncateMessage(msg string) string {
	b := make([]byte, 0, min(len(msg), MaxErrorMessageLen))
	for _, r := range msg {
		if r == 0 || r == utf8.RuneError {
			r = '?'
		}
		if len(b)+utf8.RuneLen(r) > MaxErrorMessageLen {
			break
		}
		b = utf8.AppendRune(b, r)
	}
	return string(b)
}

// elementLen is the encoded length of an element of type typ with n value
// bytes (shortest header, as the encoders write it).
func elementLen(typ uint16, n int) int { return tlv.HeaderSize(typ, n) + n }

func uintElementLen(typ uint16, x uint64) int { return 2 + tlv.UintLen(x) }

func stringElementLen(typ uint16, s string) int { return elementLen(typ, len(s)+1) }

// responseInner is the length of what a 0x02 response payload holds
// besides its own fields: request id, status, error message.
func responseInner(id, status uint64, msg string) int {
	n := uintElementLen(0x01, id) + uintElementLen(0x04, status)
	if msg != "" {
		n += stringElementLen(0x05, msg)
	}
	return n
}

// EncodedLen returns the length of the payload element (0x02) Encode
// writes for r.
func (r *AggregationResponse) EncodedLen() int {
	n := responseInner(r.RequestID, r.Status, r.ErrorMessage)
	for _, s := range r.SignatureElements {
		n += len(s)
	}
	for _, u := range r.Unknown {
		n += len(u)
	}
	return elementLen(tagPayload, n)
}

// EncodedLen returns the length of the payload element (0x02) Encode
// writes for r.
func (r *ExtendResponse) EncodedLen() int {
	n := responseInner(r.RequestID, r.Status, r.ErrorMessage)
	if r.HasCalendarLastTime {
		n += uintElementLen(0x12, r.CalendarLastTime)
	}
	n += len(r.CalendarChain)
	for _, u := range r.Unknown {
		n += len(u)
	}
	return elementLen(tagPayload, n)
}

// EncodedLen returns the length of the config payload (0x04) Encode
// writes for c.
func (c *Config) EncodedLen() int {
	n := 0
	if c.HasMaxLevel {
		n += uintElementLen(0x01, c.MaxLevel)
	}
	if c.HasAggregationAlgorithm {
		n += uintElementLen(0x02, uint64(c.AggregationAlgorithm))
	}
	if c.HasAggregationPeriodMS {
		n += uintElementLen(0x03, c.AggregationPeriodMS)
	}
	if c.HasMaxRequests {
		n += uintElementLen(0x04, c.MaxRequests)
	}
	for _, u := range c.ParentURIs {
		n += stringElementLen(0x10, u)
	}
	if c.HasCalendarFirstTime {
		n += uintElementLen(0x11, c.CalendarFirstTime)
	}
	if c.HasCalendarLastTime {
		n += uintElementLen(0x12, c.CalendarLastTime)
	}
	return elementLen(tagConfig, n)
}

// EncodedLen returns the length of the error payload (0x03) Encode writes
// for p.
func (p *ErrorPayload) EncodedLen() int {
	n := uintElementLen(0x04, p.Status)
	if p.Message != "" {
		n += stringElementLen(0x05, p.Message)
	}
	return elementLen(tagError, n)
}

// headerLen is the length of the header element Encode writes for h.
func headerLen(h *Header) int {
	n := stringElementLen(0x01, h.LoginID)
	if h.HasInstanceID {
		n += uintElementLen(0x02, h.InstanceID)
	}
	if h.HasMessageID {
		n += uintElementLen(0x03, h.MessageID)
	}
	return elementLen(tagHeader, n)
}

// ResponseLen returns the length of a response PDU with header h, an HMAC
// with alg and payloads taking payloads bytes in total (responses, error,
// config, acks, unknown payloads, each with its element header). The PDU
// can be encoded if the result is at most MaxSize.
func ResponseLen(h *Header, alg ksi.HashAlg, payloads int) int {
	// Response types are above 0x1F: the envelope always has a TLV16 header.
	return 4 + headerLen(h) + payloads + elementLen(tagHMAC, 1+alg.Size())
}

// MaxAggregationResponseLen returns the most bytes an aggregation response
// payload can take whose signature elements take sigElements bytes in
// total: any request id and status, no error message. An error response
// (no signature elements, a message cut by TruncateMessage) takes at most
// MaxAggregationResponseLen(MaxErrorMessageLen + 4).
func MaxAggregationResponseLen(sigElements int) int {
	return elementLen(tagPayload, 2*(2+maxUintLen)+sigElements)
}

// MaxExtendResponseLen returns the most bytes an extension response
// payload can take with a calendar chain of chainLen bytes: any request
// id, status and calendar last time, no error message. An error response
// with a calendar last time and a message cut by TruncateMessage takes at
// most MaxExtendResponseLen(MaxErrorMessageLen + 4).
func MaxExtendResponseLen(chainLen int) int {
	return elementLen(tagPayload, 3*(2+maxUintLen)+chainLen)
}

// maxConfigLen is the most a config payload takes that has every integer
// field (of any value) and no parent URIs, as Tempel's servers send it.
var maxConfigLen = (&Config{
	MaxLevel: ^uint64(0), HasMaxLevel: true, AggregationAlgorithm: 0xFF, HasAggregationAlgorithm: true,
	AggregationPeriodMS: ^uint64(0), HasAggregationPeriodMS: true, MaxRequests: ^uint64(0), HasMaxRequests: true,
	CalendarFirstTime: ^uint64(0), HasCalendarFirstTime: true, CalendarLastTime: ^uint64(0), HasCalendarLastTime: true,
}).EncodedLen()

// MaxResponses returns how many response payloads of at most payloadMax
// bytes each fit in one response PDU to loginID, whatever its instance
// and message ids and its HMAC algorithm (up to a 64-byte digest), beside
// a config payload without parent URIs. A server that refuses PDUs with
// more requests than this, and keeps each answer within payloadMax, can
// always answer every request of a PDU it accepts. It returns 0 when not
// even one fits.
func MaxResponses(loginID string, payloadMax int) int {
	if payloadMax <= 0 {
		return 0
	}
	h := Header{LoginID: loginID, InstanceID: ^uint64(0), HasInstanceID: true, MessageID: ^uint64(0), HasMessageID: true}
	room := MaxSize - (4 + headerLen(&h) + maxConfigLen + elementLen(tagHMAC, 1+64))
	if room < payloadMax {
		return 0
	}
	return room / payloadMax
}

// encodedLener is a response payload that knows its encoded length.
type encodedLener interface{ EncodedLen() int }

// FitAnswers makes a list of responses fit in room bytes by replacing
// answers (those with answered true) by their error form (noRoom), from
// the last one back, keeping as many answers in order as fit. It returns
// how many were replaced.
func FitAnswers[T any, P interface {
	*T
	encodedLener
}](rs []T, room int, answered func(P) bool, noRoom func(P) T) int {
	need := 0
	for i := range rs {
		r := P(&rs[i])
		if answered(r) {
			x := noRoom(r)
			need += P(&x).EncodedLen()
		} else {
			need += r.EncodedLen()
		}
	}
	lost := 0
	for i := range rs {
		r := P(&rs[i])
		if !answered(r) {
			continue
		}
		x := noRoom(r)
		if extra := r.EncodedLen() - P(&x).EncodedLen(); need+extra <= room {
			need += extra
			continue
		}
		rs[i] = x
		lost++
	}
	return lost
}
