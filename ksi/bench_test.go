package ksi_test

import (
	"fmt"
	"testing"

	"github.com/tempel-ksi/tempel/internal/testpack"
	"github.com/tempel-ksi/tempel/ksi"
)

func BenchmarkParseSignature(b *testing.B) {
	data := testpack.Read(b, "tlv", okSigName)
	b.SetBytes(int64(len(data)))
	b.ReportAllocs()
	for b.Loop() {
		if _, err := ksi.ParseSignature(data); err != nil {
			b.Fatal(err)
		}
	}
}

func BenchmarkEncodeSignature(b *testing.B) {
	s, err := ksi.ParseSignature(testpack.Read(b, "tlv", okSigName))
	if err != nil {
		b.Fatal(err)
	}
	b.SetBytes(int64(len(s.Raw)))
	b.ReportAllocs()
	for b.Loop() {
		if _, err := s.Encode(); err != nil {
			b.Fatal(err)
		}
	}
}

// benchPublication is the publication of ok-sig-2014-04-30.1-extended.ksig.
var benchPublication = struct {
	time uint64
	hash string
}{1400112000, "0189C1EF97B3D3A3BD4F57564B0F022595BC52401903D3B1F7F6E52AB08820BA59"}

func benchImprint(b *testing.B) ksi.Imprint {
	m, err := ksi.ParseImprintText(benchPublication.hash)
	if err != nil {
		b.Fatal(err)
	}
	return m
}

func BenchmarkPublicationString(b *testing.B) {
	m := benchImprint(b)
	b.ReportAllocs()
	for b.Loop() {
		_ = ksi.PublicationString(benchPublication.time, m)
	}
}

func BenchmarkParsePublicationString(b *testing.B) {
	s := ksi.PublicationString(benchPublication.time, benchImprint(b))
	b.ReportAllocs()
	for b.Loop() {
		if _, err := ksi.ParsePublicationString(s); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkChainOutput runs an aggregation chain of n SHA-256 links (the
// reference signature's chains have 1, 22 and 3), built in the test so
// that it needs no data files.
func BenchmarkChainOutput(b *testing.B) {
	for _, n := range []int{1, 22, 64} {
		b.Run(fmt.Sprintf("links=%d", n), func(b *testing.B) {
			links := make([]ksi.Link, n)
			for i := range links {
				links[i] = ksi.Link{Left: i%3 == 0, Sibling: direct(ksi.SHA2_256, []byte{byte(i)})}
			}
			in := direct(ksi.SHA2_256, []byte("LAPTOP"))
			var h ksi.Hasher
			b.ReportAllocs()
			for b.Loop() {
				if _, err := ksi.ChainOutput(&h, ksi.SHA2_256, in, 0, links); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}

// BenchmarkCalendarOutput runs the reference signature's 23-link calendar chain.
func BenchmarkCalendarOutput(b *testing.B) {
	s, err := ksi.ParseSignature(testpack.Read(b, "tlv", okSigName))
	if err != nil {
		b.Fatal(err)
	}
	var h ksi.Hasher
	b.ReportAllocs()
	for b.Loop() {
		if _, err := s.CalendarChain.Output(&h); err != nil {
			b.Fatal(err)
		}
	}
}
