package pki

import (
	"bytes"
	"errors"
	"fmt"
	"time"
)

// RetireOptions configures [Retire].
type RetireOptions struct {
	// Cert is the calendar certificate to retire: the very file the
	// server signed with (its SHA-256 is the id the records carry),
	// optionally followed by its issuers below the root.
	Cert string
	// RootCert and RootKey are the root that issued Cert; it re-issues
	// the certificate.
	RootCert, RootKey string
	// RetiredFile is the file of retired certificates to append to
	// (created when absent), what `tempel serve --retired-certs` reads.
	RetiredFile string
	// At is the retirement: the re-issued certificate ends then. It must
	// not be before the newest second the key signed.
	At time.Time
}

// ErrAlreadyRetired is returned (wrapped) by [Retire] when the file
// holds the certificate retired already; the file is left as it is.
var ErrAlreadyRetired = errors.New("pki: the certificate is retired already")

// Retire retires a calendar certificate whose key lives outside a key
// directory (in a token): the root re-issues it to end at opts.At and
// it is appended to opts.RetiredFile under the id of the certificate it
// replaces, exactly as [Rotate] does for a key directory's own calendar
// key. The key itself is not needed: the certificate carries its public
// half. The file is written to a temporary name and renamed, so a crash
// leaves it as it was or complete.
func Retire(opts RetireOptions) (RetiredCert, error) {
	if opts.Cert == "" || opts.RootCert == "" || opts.RootKey == "" || opts.RetiredFile == "" || opts.At.IsZero() {
		return RetiredCert{}, errors.New("pki: retire: the certificate, the root certificate and key, the retired file and the time are all required")
	}
	roots, err := readCertFile(opts.RootCert)
	if err != nil {
		return RetiredCert{}, err
	}
	if len(roots) != 1 {
		return RetiredCert{}, fmt.Errorf("pki: %s holds %d certificates, want exactly one root", opts.RootCert, len(roots))
	}
	root := roots[0]
	rootKey, err := readKeyFile(opts.RootKey)
	if err != nil {
		return RetiredCert{}, err
	}
	if !publicKeysEqual(root.PublicKey, rootKey.Public()) {
		return RetiredCert{}, fmt.Errorf("pki: retire: %s does not belong to %s", opts.RootKey, opts.RootCert)
	}
	certs, err := readCertFile(opts.Cert)
	if err != nil {
		return RetiredCert{}, err
	}
	old := certs[0]
	if err := checkMemberCert(old, root, certs[1:]); err != nil {
		return RetiredCert{}, fmt.Errorf("pki: retire: %s (%q): %w", opts.Cert, old.Subject, err)
	}
	id := certID(old)
	var file []byte
	if present(opts.RetiredFile) {
		have, err := readRetired(opts.RetiredFile)
		if err != nil {
			return RetiredCert{}, err
		}
		for _, rc := range have {
			if !bytes.Equal(rc.ID, id) {
				continue
			}
			if publicKeysEqual(rc.Cert.PublicKey, old.PublicKey) {
				return rc, fmt.Errorf("%w: %s holds it under id %X, valid to %s", ErrAlreadyRetired, opts.RetiredFile, id,
					rc.Cert.NotAfter.UTC().Format(time.RFC3339))
			}
			return RetiredCert{}, fmt.Errorf("pki: retire: %s holds another certificate under id %X; verifiers could not tell them apart", opts.RetiredFile, id)
		}
		if len(have) >= MaxRetiredCerts {
			return RetiredCert{}, fmt.Errorf("pki: retire: %s holds %d certificates already, the most accepted", opts.RetiredFile, len(have))
		}
		if file, err = readLimited(opts.RetiredFile); err != nil {
			return RetiredCert{}, fmt.Errorf("pki: retire: %w", err)
		}
	}
	c, err := reissueRetired(old, root, rootKey, opts.At)
	if err != nil {
		return RetiredCert{}, err
	}
	if len(file) > 0 && file[len(file)-1] != '\n' {
		file = append(file, '\n')
	}
	if err := writeFileAtomic(opts.RetiredFile, append(file, retiredPEM(c, old.Raw)...), CertMode); err != nil {
		return RetiredCert{}, fmt.Errorf("pki: retire: %w", err)
	}
	return RetiredCert{Cert: c, ID: id}, nil
}
