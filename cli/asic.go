package cli

import (
	"archive/zip"
	"context"
	"crypto/x509"
	"encoding/json"
	"errors"
	"fmt"
	"hash/crc32"
	"io"
	"os"
	"path"
	"path/filepath"
	"strings"
	"time"

	ucli "github.com/urfave/cli/v2"

	"github.com/tempel-ksi/tempel/ksi"
	"github.com/tempel-ksi/tempel/tsp"
	"github.com/tempel-ksi/tempel/verifier"
)

// ASiC-S containers (ETSI EN 319 162-1): a ZIP whose first entry is
// "mimetype" (stored, no extra field) naming the container type, then the
// one signed document at the root, and META-INF/timestamp.tst, a bare
// RFC 3161 token over the document. Tempel's token carries its KSI
// signature, so the container verifies keylessly once extended.

const (
	flagASiC      = "asic"
	asicSuffix    = ".asics"
	asicMimeType  = "application/vnd.etsi.asic-s+zip"
	asicTokenName = "META-INF/timestamp.tst"
	// asicMaxEntries bounds the entries of a container read: an ASiC-S
	// holds the mimetype, one document and a few META-INF files.
	asicMaxEntries = 64
)

func asicFlag() ucli.Flag {
	return &ucli.BoolFlag{Name: flagASiC, Usage: "like --" + flagRFC3161 + ", but write an ASiC-S container FILE" + asicSuffix + " (the document and META-INF/timestamp.tst)"}
}

// isASiC reports whether the file at p is a ZIP (what a container is),
// by its first bytes.
func isASiC(p string) bool {
	f, err := os.Open(p)
	if err != nil {
		return false
	}
	defer f.Close()
	var head [4]byte
	_, err = io.ReadFull(f, head[:])
	return err == nil && string(head[:]) == "PK\x03\x04"
}

// writeASiC writes the container of document doc (read from the file
// again, and refused unless its hash is still want, the token's
// imprint) with the bare token tok to out.
func writeASiC(out, doc string, want ksi.Imprint, tok []byte, force bool) error {
	f, err := os.Open(doc)
	if err != nil {
		return fmt.Errorf("cannot read document: %v", err)
	}
	defer f.Close()
	h, err := want.Alg().New()
	if err != nil {
		return err
	}
	return writeStream(out, force, func(w io.Writer) error {
		if err := buildASiC(w, filepath.Base(doc), io.TeeReader(f, h), tok, time.Now()); err != nil {
			return err
		}
		if got, err := ksi.NewImprint(want.Alg(), h.Sum(nil)); err != nil || !got.Equal(want) {
			return fmt.Errorf("%s changed while it was time-stamped: no container written", doc)
		}
		return nil
	})
}

// writeStream writes a file that may be large (a container holds its
// document) through a temporary file in the same directory, so that a
// failed run leaves nothing half written: with force it replaces path
// atomically, without it never replaces an existing file (a hard link
// fails when the name exists).
func writeStream(path string, force bool, fill func(io.Writer) error) error {
	tmp, err := os.CreateTemp(filepath.Dir(path), "."+filepath.Base(path)+".*.tmp")
	if err != nil {
		return err
	}
	defer os.Remove(tmp.Name())
	err = fill(tmp)
	if err == nil {
		err = tmp.Sync()
	}
	if cerr := tmp.Close(); err == nil {
		err = cerr
	}
	if err == nil {
		err = os.Chmod(tmp.Name(), 0o644)
	}
	if err != nil {
		return err
	}
	if force {
		return os.Rename(tmp.Name(), path)
	}
	if err := os.Link(tmp.Name(), path); err != nil {
		if errors.Is(err, os.ErrExist) {
			return fmt.Errorf("%s already exists: remove it or add --%s", path, flagForce)
		}
		return err
	}
	return nil
}

// buildASiC writes a container: mimetype first and stored, the document
// (deflated), the token.
func buildASiC(w io.Writer, name string, doc io.Reader, tok []byte, now time.Time) error {
	if name == "mimetype" || strings.HasPrefix(name, "META-INF") {
		return fmt.Errorf("a document named %s cannot go into an ASiC container", name)
	}
	z := zip.NewWriter(w)
	// mimetype is written raw: stored, its sizes and CRC in the local
	// header, no data descriptor and no extra field (EN 319 162-1 A.1),
	// so that its value sits at offset 38 where type sniffers look.
	mt, err := z.CreateRaw(&zip.FileHeader{
		Name: "mimetype", Method: zip.Store, CRC32: crc32.ChecksumIEEE([]byte(asicMimeType)),
		CompressedSize64: uint64(len(asicMimeType)), UncompressedSize64: uint64(len(asicMimeType)),
	})
	if err == nil {
		_, err = io.WriteString(mt, asicMimeType)
	}
	if err != nil {
		return fmt.Errorf("cannot write the container: %v", err)
	}
	dw, err := z.CreateHeader(&zip.FileHeader{Name: name, Method: zip.Deflate, Modified: now})
	if err == nil {
		_, err = io.Copy(dw, doc)
	}
	if err != nil {
		return fmt.Errorf("cannot write the document into the container: %v", err)
	}
	tw, err := z.CreateHeader(&zip.FileHeader{Name: asicTokenName, Method: zip.Deflate, Modified: now})
	if err == nil {
		_, err = tw.Write(tok)
	}
	if err == nil {
		err = z.Close()
	}
	if err != nil {
		return fmt.Errorf("cannot write the container: %v", err)
	}
	return nil
}

// asic is a container read back.
type asic struct {
	z     *zip.ReadCloser
	doc   *zip.File
	token []byte
}

// openASiC opens and checks a container: mimetype first and right, one
// document at the root, the token.
func openASiC(p string) (*asic, error) {
	z, err := zip.OpenReader(p)
	if err != nil {
		return nil, fmt.Errorf("%s is not a readable ASiC container: %v", p, err)
	}
	a := &asic{z: z}
	if err := a.check(p); err != nil {
		z.Close()
		return nil, err
	}
	return a, nil
}

func (a *asic) Close() error { return a.z.Close() }

func (a *asic) check(p string) error {
	files := a.z.File
	switch {
	case len(files) > asicMaxEntries:
		return fmt.Errorf("%s has %d entries, an ASiC-S container at most %d", p, len(files), asicMaxEntries)
	case len(files) == 0 || files[0].Name != "mimetype":
		return fmt.Errorf("%s is not an ASiC container: its first entry is not mimetype", p)
	}
	mt, err := readEntry(files[0], 256)
	if err != nil || string(mt) != asicMimeType {
		return fmt.Errorf("%s: mimetype is %q, want %s (an ASiC-S container)", p, mt, asicMimeType)
	}
	for _, f := range files[1:] {
		switch {
		case f.Name == asicTokenName:
			if a.token, err = readEntry(f, tsp.MaxTokenSize); err != nil {
				return fmt.Errorf("%s: %s: %v", p, asicTokenName, err)
			}
		case strings.HasPrefix(f.Name, "META-INF/"):
			// Other signatures or manifests: not ours to check.
		case strings.Contains(f.Name, "/") || f.Name == "mimetype":
			return fmt.Errorf("%s: entry %s: an ASiC-S container holds one document at its root", p, f.Name)
		case a.doc != nil:
			return fmt.Errorf("%s holds two documents (%s, %s): an ASiC-S container holds one", p, a.doc.Name, f.Name)
		default:
			a.doc = f
		}
	}
	switch {
	case a.doc == nil:
		return fmt.Errorf("%s holds no document", p)
	case a.token == nil:
		return fmt.Errorf("%s holds no %s (only time-stamped ASiC-S containers are supported)", p, asicTokenName)
	}
	return nil
}

// readEntry reads an entry of at most limit bytes.
func readEntry(f *zip.File, limit int64) ([]byte, error) {
	r, err := f.Open()
	if err != nil {
		return nil, err
	}
	defer r.Close()
	b, err := io.ReadAll(io.LimitReader(r, limit+1))
	if err == nil && int64(len(b)) > limit {
		err = fmt.Errorf("larger than %d bytes", limit)
	}
	return b, err
}

// hashDoc hashes the container's document with alg, streaming.
func (a *asic) hashDoc(alg ksi.HashAlg) (ksi.Imprint, error) {
	h, err := alg.New()
	if err != nil {
		return nil, fmt.Errorf("cannot hash with %s, the algorithm of the token: %s", alg, trimPkg(err))
	}
	r, err := a.doc.Open()
	if err != nil {
		return nil, fmt.Errorf("cannot read %s in the container: %v", a.doc.Name, err)
	}
	defer r.Close()
	if _, err := io.Copy(h, r); err != nil {
		return nil, fmt.Errorf("cannot read %s in the container: %v", a.doc.Name, err)
	}
	return ksi.NewImprint(alg, h.Sum(nil))
}

// verifyASiC verifies a container: its token against its document, both
// layers, as for a .tsr.
func verifyASiC(ctx context.Context, j verifyJob, p verifier.Policy, opts verifier.Options, roots *x509.CertPool, v *verifyView) (*verifyView, error) {
	if j.doc != "" || j.hash != nil {
		return v, errors.New("an ASiC container holds its document: give the container alone")
	}
	a, err := openASiC(j.sig)
	if err != nil {
		return v, err
	}
	defer a.Close()
	tok, err := tsp.ParseToken(a.token)
	if err != nil {
		return v, fmt.Errorf("%s: %s is not a valid time-stamp token: %s", j.sig, asicTokenName, strings.TrimPrefix(err.Error(), "tsp: "))
	}
	imp, err := tok.Imprint()
	if err != nil {
		return v, fmt.Errorf("%s: %s", j.sig, strings.TrimPrefix(err.Error(), "tsp: "))
	}
	if j.hash, err = a.hashDoc(imp.Alg()); err != nil {
		return v, err
	}
	v.Document = j.sig + ": " + a.doc.Name
	v, err = verifyToken(ctx, j, a.token, nil, p, opts, roots, v)
	v.byHash = false
	return v, err
}

// extendASiC extends the token of a container and writes the container
// again with the new token; mimetype and the document are copied as they
// were (compressed bytes included).
func (r *extendRun) extendASiC(v extendView, dst string, overwrite bool) (extendView, int, error) {
	a, err := openASiC(v.Signature)
	if err != nil {
		return v, ExitError, err
	}
	defer a.Close()
	v, code, tok, err := r.extendTokenBytes(v, a.token, dst, overwrite)
	if err != nil || tok == nil {
		return v, code, err
	}
	err = writeStream(dst, overwrite, func(w io.Writer) error {
		z := zip.NewWriter(w)
		for _, f := range a.z.File {
			if f.Name == asicTokenName {
				continue
			}
			if err := z.Copy(f); err != nil {
				return fmt.Errorf("copying %s: %v", f.Name, err)
			}
		}
		tw, err := z.CreateHeader(&zip.FileHeader{Name: asicTokenName, Method: zip.Deflate, Modified: time.Now()})
		if err == nil {
			_, err = tw.Write(tok)
		}
		if err == nil {
			err = z.Close()
		}
		return err
	})
	if err != nil {
		return v, ExitError, fmt.Errorf("cannot write the extended container: %v", err)
	}
	v.Status, v.Output = extStatusExtended, dst
	return v, ExitOK, nil
}

// isASiCName reports whether a name is that of a container.
func isASiCName(p string) bool { return strings.HasSuffix(p, asicSuffix) && path.Base(p) != asicSuffix }

// inspectASiC shows a container: its document, then its token as
// inspect shows one (--extract-ksig applies to it).
func inspectASiC(c *ucli.Context, p string) error {
	a, err := openASiC(p)
	if err != nil {
		return inputErrorf("%v", err)
	}
	defer a.Close()
	v, err := inspectToken(c, p+": "+asicTokenName, a.token)
	if err != nil {
		return err
	}
	out := c.App.Writer
	if c.Bool(flagJSON) {
		enc := json.NewEncoder(out)
		enc.SetEscapeHTML(false)
		enc.SetIndent("", "  ")
		return enc.Encode(struct {
			Type     string            `json:"type"` // "asic-s"
			Document string            `json:"document"`
			Size     uint64            `json:"document_size"`
			Token    *tokenInspectView `json:"token"`
		}{"asic-s", a.doc.Name, a.doc.UncompressedSize64, v})
	}
	fmt.Fprintf(out, "ASiC-S container: document %s (%d bytes), token %s\n", a.doc.Name, a.doc.UncompressedSize64, asicTokenName)
	v.writeText(out)
	return nil
}
