package hsm

import (
	"errors"
	"fmt"
	"net/url"
	"strings"
)

// Scheme is the URI scheme of a key in a token (RFC 7512).
const Scheme = "pkcs11:"

// maxURI bounds the length of a URI accepted, so that a wrong argument
// (a file's content pasted) fails fast.
const maxURI = 4096

// IsURI reports whether s names a key in a token rather than a file.
func IsURI(s string) bool {
	return len(s) >= len(Scheme) && strings.EqualFold(s[:len(Scheme)], Scheme)
}

// URI is the part of an RFC 7512 PKCS#11 URI that selects one private
// key: the token (by label or serial number), the object (by label or id)
// and optionally how to reach the module and the PIN.
type URI struct {
	Token  string // CKA token label (path attribute token)
	Serial string // token serial number (serial)
	Object string // CKA_LABEL of the key (object)
	ID     []byte // CKA_ID of the key (id)

	ModulePath string // module-path query attribute: the PKCS#11 library
	PINValue   string // pin-value query attribute; never printed
	PINSource  string // pin-source query attribute: a file holding the PIN
}

// ParseURI parses an RFC 7512 URI naming a private key. It accepts the
// path attributes token, serial, object, id and type (which must be
// private when present) and the query attributes module-path, pin-value
// and pin-source. Any other attribute is refused rather than ignored: an
// attribute meant to narrow the choice of token or key that were ignored
// could select another key. Errors never quote a pin-value.
func ParseURI(s string) (*URI, error) {
	if len(s) > maxURI {
		return nil, fmt.Errorf("hsm: PKCS#11 URI longer than %d bytes", maxURI)
	}
	if !IsURI(s) {
		return nil, errors.New("hsm: not a PKCS#11 URI (want pkcs11:token=...;object=...)")
	}
	rest := s[len(Scheme):]
	path, query, _ := strings.Cut(rest, "?")
	u := &URI{}
	seen := map[string]bool{}
	for _, part := range splitNonEmpty(path, ";") {
		if err := u.setPath(part, seen); err != nil {
			return nil, err
		}
	}
	for _, part := range splitNonEmpty(query, "&") {
		if err := u.setQuery(part, seen); err != nil {
			return nil, err
		}
	}
	if u.Token == "" && u.Serial == "" {
		return nil, fmt.Errorf("hsm: PKCS#11 URI %s names no token (add token=LABEL or serial=NUMBER)", u)
	}
	if u.Token != "" && u.Serial != "" {
		return nil, fmt.Errorf("hsm: PKCS#11 URI %s names the token by label and by serial; give one", u)
	}
	if u.Object == "" && len(u.ID) == 0 {
		return nil, fmt.Errorf("hsm: PKCS#11 URI %s names no key (add object=LABEL or id=...)", u)
	}
	if u.PINValue != "" && u.PINSource != "" {
		return nil, fmt.Errorf("hsm: PKCS#11 URI %s has both pin-value and pin-source; give one", u)
	}
	return u, nil
}

func splitNonEmpty(s, sep string) []string {
	var out []string
	for _, p := range strings.Split(s, sep) {
		if p != "" {
			out = append(out, p)
		}
	}
	return out
}

// attr splits NAME=VALUE and percent-decodes the value.
func attr(part string, seen map[string]bool) (name, value string, err error) {
	name, raw, ok := strings.Cut(part, "=")
	if !ok || name == "" {
		return "", "", fmt.Errorf("hsm: PKCS#11 URI: attribute %q is not NAME=VALUE", redactAttr(part))
	}
	if seen[name] {
		return "", "", fmt.Errorf("hsm: PKCS#11 URI: attribute %s given twice", name)
	}
	seen[name] = true
	value, err = url.PathUnescape(raw)
	if err != nil {
		if name == "pin-value" {
			return "", "", errors.New("hsm: PKCS#11 URI: pin-value is not correctly percent-encoded")
		}
		return "", "", fmt.Errorf("hsm: PKCS#11 URI: attribute %s: %v", name, err)
	}
	return name, value, nil
}

// redactAttr keeps a malformed attribute out of an error if it could be a
// PIN.
func redactAttr(part string) string {
	if strings.HasPrefix(part, "pin") {
		return "pin…"
	}
	return part
}

func (u *URI) setPath(part string, seen map[string]bool) error {
	name, v, err := attr(part, seen)
	if err != nil {
		return err
	}
	switch name {
	case "token":
		u.Token = v
	case "serial":
		u.Serial = v
	case "object":
		u.Object = v
	case "id":
		u.ID = []byte(v)
	case "type":
		if v != "private" {
			return fmt.Errorf("hsm: PKCS#11 URI: type=%s; a signing key is type=private", v)
		}
	default:
		return fmt.Errorf("hsm: PKCS#11 URI: path attribute %q is not supported (use token or serial, object or id, type=private)", name)
	}
	return nil
}

func (u *URI) setQuery(part string, seen map[string]bool) error {
	name, v, err := attr(part, seen)
	if err != nil {
		return err
	}
	switch name {
	case "module-path":
		u.ModulePath = v
	case "pin-value":
		u.PINValue = v
	case "pin-source":
		u.PINSource = strings.TrimPrefix(v, "file:")
	default:
		return fmt.Errorf("hsm: PKCS#11 URI: query attribute %q is not supported (use module-path, pin-value or pin-source)", name)
	}
	return nil
}

// String formats the URI in RFC 7512 form with a pin-value replaced by
// "***", so that it can be logged and put into errors.
func (u *URI) String() string {
	var path []string
	add := func(name, v string) {
		if v != "" {
			path = append(path, name+"="+escape(v))
		}
	}
	add("token", u.Token)
	add("serial", u.Serial)
	add("object", u.Object)
	add("id", string(u.ID))
	path = append(path, "type=private")
	var query []string
	if u.ModulePath != "" {
		query = append(query, "module-path="+escape(u.ModulePath))
	}
	if u.PINSource != "" {
		query = append(query, "pin-source="+escape(u.PINSource))
	}
	if u.PINValue != "" {
		query = append(query, "pin-value=***")
	}
	s := Scheme + strings.Join(path, ";")
	if len(query) > 0 {
		s += "?" + strings.Join(query, "&")
	}
	return s
}

// escape percent-encodes everything but RFC 7512's unreserved characters
// and the few that are safe in both parts of the URI.
func escape(v string) string {
	var b strings.Builder
	for i := 0; i < len(v); i++ {
		c := v[i]
		switch {
		case c >= 'a' && c <= 'z', c >= 'A' && c <= 'Z', c >= '0' && c <= '9',
			c == '-', c == '.', c == '_', c == '~', c == ':', c == '/', c == '@', c == '!', c == '$', c == '\'', c == '(', c == ')', c == '*', c == '+', c == ',':
			b.WriteByte(c)
		default:
			fmt.Fprintf(&b, "%%%02X", c)
		}
	}
	return b.String()
}
