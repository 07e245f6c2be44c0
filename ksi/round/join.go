package round

import "github.com/tempel-ksi/tempel/ksi"

// Leg is a request's own part of its signature in the shared-round form
// (Writer.AppendLeg made it), waiting for its round's shared part.
type Leg struct {
	ID    uint64      // the caller's name for the request
	Hash  ksi.Imprint // the hash that was signed, as it was sent
	Shape uint64      // the shape of the request's chain
	Links []byte      // the request's encoded links, lowest first
}

// Joiner matches the legs of a shared-round stream with their rounds'
// shared parts and joins them into complete signatures. A sender sends a
// round's shared part after every leg of that round, so a Joiner keeps a
// leg only until its round comes; how many legs wait is bounded by how
// many requests its caller has outstanding.
//
// The zero Joiner is ready to use. It is not safe for concurrent use:
// one per stream, fed by the stream's reader.
type Joiner struct {
	waiting map[uint64][]Leg // by round id
	n       int
}

// Add keeps leg l until round's shared part comes.
func (j *Joiner) Add(round uint64, l Leg) {
	if j.waiting == nil {
		j.waiting = make(map[uint64][]Leg)
	}
	j.waiting[round] = append(j.waiting[round], l)
	j.n++
}

// Len returns the number of legs waiting for their round.
func (j *Joiner) Len() int { return j.n }

// take removes and returns the legs waiting for round.
func (j *Joiner) take(round uint64) []Leg {
	legs := j.waiting[round]
	delete(j.waiting, round)
	j.n -= len(legs)
	return legs
}

// Join takes the legs waiting for round, whose shared part is alg and
// ans, and calls done for each in the order they came with its complete
// signature, or with the reason it could not be encoded (err non-nil,
// sig nil). It returns how many legs it took.
func (j *Joiner) Join(round uint64, alg ksi.HashAlg, ans *Answer, done func(l *Leg, sig []byte, err error)) int {
	legs := j.take(round)
	for i := range legs {
		l := &legs[i]
		sig, err := AppendJoined(nil, ans, alg, l.Hash, l.Shape, l.Links)
		done(l, sig, err)
	}
	return len(legs)
}

// Fail takes the legs waiting for round, whose shared part failed
// upstream, and calls failed for each in the order they came. It returns
// how many legs it took.
func (j *Joiner) Fail(round uint64, failed func(l *Leg)) int {
	legs := j.take(round)
	for i := range legs {
		failed(&legs[i])
	}
	return len(legs)
}
