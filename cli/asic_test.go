package cli

import (
	"archive/zip"
	"bytes"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// A container as buildASiC writes it opens; containers that are not
// ASiC-S (mimetype missing, not first or wrong; two documents; no token;
// a document in a folder; too many entries) are refused with the reason.
func TestOpenASiC(t *testing.T) {
	dir := t.TempDir()
	write := func(name string, entries ...[2]string) string {
		t.Helper()
		var buf bytes.Buffer
		z := zip.NewWriter(&buf)
		for _, e := range entries {
			w, err := z.CreateHeader(&zip.FileHeader{Name: e[0], Method: zip.Store})
			if err != nil {
				t.Fatal(err)
			}
			w.Write([]byte(e[1]))
		}
		if err := z.Close(); err != nil {
			t.Fatal(err)
		}
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, buf.Bytes(), 0o644); err != nil {
			t.Fatal(err)
		}
		return p
	}

	var buf bytes.Buffer
	if err := buildASiC(&buf, "doc.txt", strings.NewReader("a document"), []byte{0x30, 0}, time.Now()); err != nil {
		t.Fatal(err)
	}
	good := filepath.Join(dir, "good.asics")
	if err := os.WriteFile(good, buf.Bytes(), 0o644); err != nil {
		t.Fatal(err)
	}
	if !bytes.HasPrefix(buf.Bytes()[30:], []byte("mimetype"+asicMimeType)) {
		t.Errorf("mimetype is not raw at offset 30: %q", buf.Bytes()[:80])
	}
	a, err := openASiC(good)
	if err != nil {
		t.Fatal(err)
	}
	if a.doc.Name != "doc.txt" || !bytes.Equal(a.token, []byte{0x30, 0}) {
		t.Errorf("read back document %s, token %x", a.doc.Name, a.token)
	}
	a.Close()
	if err := buildASiC(&buf, "mimetype", strings.NewReader(""), nil, time.Now()); err == nil {
		t.Error("a document named mimetype was put into a container")
	}

	mt := [2]string{"mimetype", asicMimeType}
	tok := [2]string{asicTokenName, "0"}
	doc := [2]string{"doc.txt", "x"}
	many := [][2]string{mt, doc, tok}
	for i := range asicMaxEntries {
		many = append(many, [2]string{"META-INF/x" + string(rune('a'+i%26)) + strings.Repeat("y", i), ""})
	}
	for _, tc := range []struct {
		name    string
		entries [][2]string
		want    string
	}{
		{"nomime", [][2]string{doc, tok}, "first entry is not mimetype"},
		{"late", [][2]string{doc, mt, tok}, "first entry is not mimetype"},
		{"wrongmime", [][2]string{{"mimetype", "application/vnd.etsi.asic-e+zip"}, doc, tok}, "want application/vnd.etsi.asic-s+zip"},
		{"two", [][2]string{mt, doc, {"b.txt", "y"}, tok}, "holds two documents"},
		{"notoken", [][2]string{mt, doc}, "holds no META-INF/timestamp.tst"},
		{"nodoc", [][2]string{mt, tok}, "holds no document"},
		{"folder", [][2]string{mt, {"d/doc.txt", "x"}, tok}, "one document at its root"},
		{"many", many, "entries, an ASiC-S container at most"},
	} {
		_, err := openASiC(write(tc.name+".asics", tc.entries...))
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%s: %v, want an error with %q", tc.name, err, tc.want)
		}
	}
	if isASiC(filepath.Join(dir, "missing")) {
		t.Error("a missing file taken for a container")
	}
}
