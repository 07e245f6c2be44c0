// Package ntptest is an NTP server on loopback UDP for tests: it answers
// every request with the wall clock moved by an offset the test sets, or
// stays silent.
package ntptest

import (
	"encoding/binary"
	"net"
	"sync/atomic"
	"time"
)

// Server answers NTP requests on loopback UDP.
type Server struct {
	conn   *net.UDPConn
	offset atomic.Int64
	mute   atomic.Bool
	done   chan struct{}
}

// Start listens on a free loopback port and answers until Close.
func Start() (*Server, error) {
	conn, err := net.ListenUDP("udp", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
	if err != nil {
		return nil, err
	}
	s := &Server{conn: conn, done: make(chan struct{})}
	go s.serve()
	return s, nil
}

func (s *Server) serve() {
	defer close(s.done)
	buf := make([]byte, 512)
	for {
		k, from, err := s.conn.ReadFromUDP(buf)
		if err != nil {
			return
		}
		if k < 48 || s.mute.Load() {
			continue
		}
		ts := Timestamp(time.Now().Add(time.Duration(s.offset.Load())))
		p := make([]byte, 48)
		p[0], p[1] = 4<<3|4, 1 // version 4, server; stratum 1
		copy(p[12:16], "GPS\x00")
		copy(p[24:32], buf[40:48]) // origin: the client's transmit timestamp
		binary.BigEndian.PutUint64(p[32:], ts)
		binary.BigEndian.PutUint64(p[40:], ts)
		s.conn.WriteToUDP(p, from)
	}
}

// Addr is the server's HOST:PORT.
func (s *Server) Addr() string { return s.conn.LocalAddr().String() }

// SetOffset sets how far the server's clock is ahead of the wall clock.
func (s *Server) SetOffset(d time.Duration) { s.offset.Store(int64(d)) }

// Mute makes the server answer nothing (true) or answer again.
func (s *Server) Mute(on bool) { s.mute.Store(on) }

// Close stops the server and waits for it.
func (s *Server) Close() {
	s.conn.Close()
	<-s.done
}

// Timestamp is t as an NTP timestamp (seconds since 1900, 32.32 fixed
// point).
func Timestamp(t time.Time) uint64 {
	return uint64(t.Unix()+2208988800)<<32 | uint64(t.Nanosecond())<<32/1e9
}
