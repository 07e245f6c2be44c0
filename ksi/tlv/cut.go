package tlv

// CutKnown reads in place the element of type typ at the start of b in
// the one form AppendKnownHeader writes for it: no flags, and the TLV8
// header exactly when both the type and the length fit one. It returns
// the element's value and the bytes after it; ok is false for anything
// else (another type, a flag, the longer header where the shorter fits,
// a truncated value). It checks bytes an encoder of this package wrote,
// so it accepts a single form; Read accepts every form.
func CutKnown(b []byte, typ uint16) (value, rest []byte, ok bool) {
	if typ <= maxType8 && len(b) >= 2 && b[0] == byte(typ) {
		n := int(b[1]) + 2
		if n > len(b) {
			return nil, nil, false
		}
		return b[2:n:n], b[n:], true
	}
	if len(b) < 4 || b[0] != flagTLV16|byte(typ>>8) || b[1] != byte(typ) || typ > MaxType {
		return nil, nil, false
	}
	n := int(b[2])<<8 | int(b[3])
	if (typ <= maxType8 && n <= maxValueLen8) || n+4 > len(b) {
		return nil, nil, false
	}
	return b[4 : n+4 : n+4], b[n+4:], true
}
