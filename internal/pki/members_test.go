package pki

import (
	"bytes"
	"context"
	"crypto/x509"
	"encoding/pem"
	"fmt"
	"os"
	"path/filepath"
	"reflect"
	"runtime"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/tempel-ksi/tempel/ksi"
	"github.com/tempel-ksi/tempel/verifier"
)

// lazyCluster is a 3-member development PKI that tests only read.
type lazyCluster struct {
	once sync.Once
	dir  string
	sets []*Set
	err  error
}

var cluster lazyCluster

func clusterSets(t *testing.T) ([]*Set, string) {
	t.Helper()
	cluster.once.Do(func() {
		if cluster.dir, cluster.err = os.MkdirTemp("", "tempel-pki-cluster-"); cluster.err == nil {
			cluster.sets, cluster.err = InitMembers(cluster.dir, 3, InitOptions{})
		}
	})
	if cluster.err != nil {
		t.Fatalf("InitMembers: %v", cluster.err)
	}
	return cluster.sets, cluster.dir
}

func memberKeys(dir string, id int) string { return filepath.Join(MemberDataDir(dir, id), "keys") }

func dirNames(t *testing.T, dir string) string {
	t.Helper()
	entries, err := os.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, e := range entries {
		names = append(names, e.Name())
	}
	return strings.Join(names, " ")
}

func TestInitMembersLayout(t *testing.T) {
	sets, dir := clusterSets(t)
	if len(sets) != 3 {
		t.Fatalf("%d sets", len(sets))
	}
	if got, want := dirNames(t, dir), "ca node1 node2 node3"; got != want {
		t.Errorf("%s holds %q, want %q", dir, got, want)
	}
	if got, want := dirNames(t, filepath.Join(dir, CADir)), "root.key root.pem"; got != want {
		t.Errorf("ca holds %q, want %q", got, want)
	}
	for id := 1; id <= 3; id++ {
		keys := memberKeys(dir, id)
		// No root key: a member never issues certificates.
		if got, want := dirNames(t, keys), "calendar.key calendar.pem members.pem publisher.key publisher.pem root.pem tls.key tls.pem tsa.key tsa.pem"; got != want {
			t.Errorf("member %d holds %q, want %q (no temporary files left)", id, got, want)
		}
		if runtime.GOOS == "windows" {
			continue
		}
		for _, d := range []string{MemberDataDir(dir, id), keys} {
			if m := mode(t, d); m != DirMode {
				t.Errorf("%s mode %04o, want %04o", d, m, DirMode)
			}
		}
		for _, k := range []string{PublisherKeyFile, CalendarKeyFile, TLSKeyFile} {
			if m := mode(t, filepath.Join(keys, k)); m != KeyMode {
				t.Errorf("member %d %s mode %04o, want %04o", id, k, m, KeyMode)
			}
		}
		for _, c := range []string{RootCertFile, PublisherCertFile, CalendarCertFile, TLSCertFile, MembersFile} {
			if m := mode(t, filepath.Join(keys, c)); m&^CertMode != 0 || m&0o600 != 0o600 {
				t.Errorf("member %d %s mode %04o, want %04o", id, c, m, CertMode)
			}
		}
		if sets[id-1].RootPath != filepath.Join(keys, RootCertFile) {
			t.Errorf("member %d RootPath %q", id, sets[id-1].RootPath)
		}
	}
	if runtime.GOOS != "windows" {
		if m := mode(t, filepath.Join(dir, CADir)); m != DirMode {
			t.Errorf("ca mode %04o", m)
		}
		if m := mode(t, filepath.Join(dir, CADir, RootKeyFile)); m != KeyMode {
			t.Errorf("root.key mode %04o", m)
		}
	}
}

func TestInitMembersSharedRootDistinctCalendars(t *testing.T) {
	sets, dir := clusterSets(t)
	caRoot, err := os.ReadFile(filepath.Join(dir, CADir, RootCertFile))
	if err != nil {
		t.Fatal(err)
	}
	rootKey, err := readKeyFile(filepath.Join(dir, CADir, RootKeyFile))
	if err != nil {
		t.Fatal(err)
	}
	if !publicKeysEqual(sets[0].Root.PublicKey, rootKey.Public()) {
		t.Error("ca/root.key does not belong to the members' root")
	}
	ids := map[string]int{}
	for i, s := range sets {
		id := i + 1
		if b, err := os.ReadFile(s.RootPath); err != nil || !bytes.Equal(b, caRoot) {
			t.Errorf("member %d root.pem differs from ca/root.pem (%v)", id, err)
		}
		if !s.Publisher.Equal(sets[0].Publisher) || !publicKeysEqual(s.PublisherKey.Public(), sets[0].PublisherKey.Public()) ||
			s.Constraint() != "E="+DefaultEmail {
			t.Errorf("member %d publisher differs: %q", id, s.Constraint())
		}
		if err := s.Calendar.CheckSignatureFrom(s.Root); err != nil {
			t.Errorf("member %d calendar certificate not issued by the root: %v", id, err)
		}
		if cn := s.Calendar.Subject.CommonName; cn != fmt.Sprintf("Tempel calendar member %d", id) {
			t.Errorf("member %d calendar subject %q", id, cn)
		}
		if prev, ok := ids[string(s.CalendarCertID())]; ok {
			t.Errorf("members %d and %d share calendar certificate id %X", prev, id, s.CalendarCertID())
		}
		ids[string(s.CalendarCertID())] = id
		for j := range i {
			if publicKeysEqual(s.CalendarKey.Public(), sets[j].CalendarKey.Public()) {
				t.Errorf("members %d and %d share a calendar key", j+1, id)
			}
		}
		if err := s.CheckValidity(time.Now()); err != nil {
			t.Errorf("member %d: %v", id, err)
		}
	}
}

func TestInitMembersTLS(t *testing.T) {
	sets, dir := clusterSets(t)
	pool := x509.NewCertPool()
	pool.AddCert(sets[0].Root)
	var keys []any
	for id := 1; id <= 3; id++ {
		keysDir := memberKeys(dir, id)
		// tempel serve --tls: the member's certificate is there, so
		// nothing needs the root key.
		certFile, keyFile, issued, err := EnsureDevTLS(keysDir)
		if err != nil || issued {
			t.Fatalf("member %d EnsureDevTLS: issued %v, %v", id, issued, err)
		}
		c, err := LoadTLSKeyPair(certFile, keyFile)
		if err != nil {
			t.Fatalf("member %d: %v", id, err)
		}
		for _, host := range DevTLSHosts {
			if _, err := c.Leaf.Verify(x509.VerifyOptions{Roots: pool, DNSName: host}); err != nil {
				t.Errorf("member %d TLS certificate for %s: %v", id, host, err)
			}
		}
		for _, k := range keys {
			if publicKeysEqual(c.Leaf.PublicKey, k) {
				t.Errorf("member %d reuses a TLS key", id)
			}
		}
		keys = append(keys, c.Leaf.PublicKey)
		// The server's start-up path loads the directory as it is.
		if s, created, err := LoadOrInit(keysDir, InitOptions{TLSHosts: DevTLSHosts}); err != nil || created || !s.Calendar.Equal(sets[id-1].Calendar) {
			t.Errorf("member %d LoadOrInit: created %v, %v", id, created, err)
		}
	}
}

func TestMembersReadBack(t *testing.T) {
	sets, dir := clusterSets(t)
	for i, s := range sets {
		var want []*x509.Certificate
		for j, o := range sets {
			if j != i {
				want = append(want, o.Calendar)
			}
		}
		if !slices.EqualFunc(s.Members, want, (*x509.Certificate).Equal) {
			t.Errorf("member %d: %d other members, want the other two in order", i+1, len(s.Members))
		}
		recs := s.CertificateRecords()
		if len(recs) != 3 || !reflect.DeepEqual(recs[0], s.CertificateRecord()) {
			t.Fatalf("member %d: %d records, first %X", i+1, len(recs), recs[0].ID)
		}
		for k, r := range recs[1:] {
			if !bytes.Equal(r.DER, want[k].Raw) || !bytes.Equal(r.ID, certID(want[k])) {
				t.Errorf("member %d record %d is not the next member's certificate", i+1, k+1)
			}
		}
	}
	// members.pem is the same file for everyone, member 1 first.
	b, err := os.ReadFile(filepath.Join(memberKeys(dir, 2), MembersFile))
	if err != nil {
		t.Fatal(err)
	}
	certs, err := verifier.ParseCertificates(b)
	if err != nil || len(certs) != 3 {
		t.Fatalf("members.pem: %d certificates, %v", len(certs), err)
	}
	for i, c := range certs {
		if !c.Equal(sets[i].Calendar) {
			t.Errorf("members.pem certificate %d is not member %d's", i+1, i+1)
		}
	}
}

// TestSingleSetCertificateRecords: without members the records are
// exactly today's one record.
func TestSingleSetCertificateRecords(t *testing.T) {
	s, dir := sharedSet(t)
	l, err := Load(dir)
	if err != nil {
		t.Fatal(err)
	}
	for _, set := range []*Set{s, l} {
		if len(set.Members) != 0 || !reflect.DeepEqual(set.CertificateRecords(), []ksi.CertificateRecord{set.CertificateRecord()}) {
			t.Errorf("single set: %d members, %d records", len(set.Members), len(set.CertificateRecords()))
		}
	}
}

// copyAll copies the files of a directory, keeping their modes.
func copyAll(t *testing.T, src string) string {
	t.Helper()
	dst := filepath.Join(t.TempDir(), "keys")
	if err := os.Mkdir(dst, DirMode); err != nil {
		t.Fatal(err)
	}
	entries, err := os.ReadDir(src)
	if err != nil {
		t.Fatal(err)
	}
	for _, e := range entries {
		copyFile(t, filepath.Join(src, e.Name()), filepath.Join(dst, e.Name()))
	}
	return dst
}

func TestMembersFileRefusesForeignCertificates(t *testing.T) {
	sets, dir := clusterSets(t)
	foreign, _ := otherSet(t)
	for _, tc := range []struct {
		name  string
		certs []*x509.Certificate
		want  string
	}{
		{"another PKI's calendar certificate", []*x509.Certificate{sets[0].Calendar, foreign.Calendar},
			`certificate 2 ("O=Tempel development, CN=Tempel calendar signer"): it does not chain to this calendar's trust root`},
		{"the root", []*x509.Certificate{sets[1].Calendar, sets[0].Root}, "certificate 2 (\"O=Tempel development, CN=Tempel root CA\"): a CA certificate, not a calendar signer"},
		{"the publisher", []*x509.Certificate{sets[0].Calendar, sets[0].Publisher}, "): the publisher certificate, not a calendar signer"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			keys := copyAll(t, memberKeys(dir, 1))
			writeCert(t, filepath.Join(keys, MembersFile), tc.certs...)
			_, err := Load(keys)
			if err == nil || !strings.Contains(err.Error(), tc.want) || !strings.HasPrefix(err.Error(), "pki: "+filepath.Join(keys, MembersFile)+": ") {
				t.Fatalf("Load error = %v, want it to name members.pem and contain %q", err, tc.want)
			}
			t.Log(err)
		})
	}
	if _, err := Load(memberKeys(dir, 1)); err != nil {
		t.Fatalf("the original directory: %v", err)
	}
}

func TestMemberCertsFile(t *testing.T) {
	sets, dir := clusterSets(t)
	// An operator's own file, given as Files.MemberCerts: copies and the
	// member's own certificate are dropped, the order is kept.
	f := DirFiles(memberKeys(dir, 3))
	f.MemberCerts = filepath.Join(t.TempDir(), "all-members.pem")
	writeCert(t, f.MemberCerts, sets[1].Calendar, sets[2].Calendar, sets[0].Calendar, sets[1].Calendar)
	s, err := LoadFiles(f)
	if err != nil {
		t.Fatal(err)
	}
	if len(s.Members) != 2 || !s.Members[0].Equal(sets[1].Calendar) || !s.Members[1].Equal(sets[0].Calendar) {
		t.Fatalf("members %d", len(s.Members))
	}
	if recs := s.CertificateRecords(); len(recs) != 3 || !bytes.Equal(recs[0].ID, sets[2].CalendarCertID()) {
		t.Fatalf("%d records", len(recs))
	}
	// Without MemberCerts, LoadFiles reads no members.pem on its own.
	if s, err := LoadFiles(DirFiles(memberKeys(dir, 3))); err != nil || len(s.Members) != 0 {
		t.Fatalf("LoadFiles without MemberCerts: %d members, %v", len(s.Members), err)
	}
	// A file that is not there is an error, not a single calendar.
	f.MemberCerts = filepath.Join(t.TempDir(), "missing.pem")
	if _, err := LoadFiles(f); err == nil || !strings.Contains(err.Error(), "missing.pem") {
		t.Fatalf("LoadFiles with a missing members file: %v", err)
	}
	// Too many certificates.
	f.MemberCerts = filepath.Join(t.TempDir(), "many.pem")
	var many []*x509.Certificate
	for range MaxMemberCerts + 1 {
		many = append(many, sets[0].Calendar)
	}
	writeCert(t, f.MemberCerts, many...)
	if _, err := LoadFiles(f); err == nil || !strings.Contains(err.Error(), "at most 64") {
		t.Fatalf("LoadFiles with %d certificates: %v", len(many), err)
	}
}

func TestInitMembersRefusesToOverwrite(t *testing.T) {
	_, src := clusterSets(t)
	for _, n := range []int{0, -1, MaxMembers + 1} {
		if _, err := InitMembers(t.TempDir(), n, InitOptions{}); err == nil || !strings.Contains(err.Error(), "1 to 9") {
			t.Errorf("InitMembers(%d): %v", n, err)
		}
	}
	if _, err := InitMembers(t.TempDir(), 1, InitOptions{Email: "nobody"}); err == nil {
		t.Error("InitMembers accepted a bad e-mail address")
	}

	// One key file of one member is enough to refuse, and nothing is
	// written then.
	dir := t.TempDir()
	keys := memberKeys(dir, 2)
	if err := os.MkdirAll(keys, DirMode); err != nil {
		t.Fatal(err)
	}
	copyFile(t, filepath.Join(memberKeys(src, 2), CalendarKeyFile), filepath.Join(keys, CalendarKeyFile))
	_, err := InitMembers(dir, 3, InitOptions{})
	if err == nil || !strings.Contains(err.Error(), "refusing to overwrite") || !strings.Contains(err.Error(), filepath.Join(keys, CalendarKeyFile)) {
		t.Fatalf("InitMembers over an existing key: %v", err)
	}
	if got := dirNames(t, dir); got != "node2" {
		t.Errorf("after the refusal %s holds %q", dir, got)
	}
	if got := dirNames(t, keys); got != CalendarKeyFile {
		t.Errorf("after the refusal %s holds %q", keys, got)
	}

	// Force replaces the keys with a new PKI.
	old, err := os.ReadFile(filepath.Join(keys, CalendarKeyFile))
	if err != nil {
		t.Fatal(err)
	}
	sets, err := InitMembers(dir, 2, InitOptions{Force: true, Now: time.Now()})
	if err != nil {
		t.Fatalf("InitMembers with Force: %v", err)
	}
	if b, _ := os.ReadFile(filepath.Join(keys, CalendarKeyFile)); bytes.Equal(b, old) {
		t.Error("Force kept the old key")
	}
	if len(sets) != 2 || !publicKeysEqual(sets[1].CalendarKey.Public(), mustLoad(t, keys).CalendarKey.Public()) {
		t.Error("returned sets differ from the files")
	}
	if _, err := InitMembers(dir, 2, InitOptions{}); err == nil || !strings.Contains(err.Error(), "and 19 more") {
		t.Errorf("second InitMembers: %v", err)
	}

	// A single calendar's keys where a member's go: refused, and with
	// Force replaced without leaving its root key behind.
	dir = t.TempDir()
	if _, err := Init(memberKeys(dir, 1), InitOptions{}); err != nil {
		t.Fatal(err)
	}
	if _, err := InitMembers(dir, 1, InitOptions{}); err == nil || !strings.Contains(err.Error(), "refusing to overwrite") {
		t.Fatalf("InitMembers over a single calendar's keys: %v", err)
	}
	if _, err := InitMembers(dir, 1, InitOptions{Force: true}); err != nil {
		t.Fatal(err)
	}
	if got := dirNames(t, memberKeys(dir, 1)); strings.Contains(got, RootKeyFile) {
		t.Errorf("member 1 holds %q after Force", got)
	}
	mustLoad(t, memberKeys(dir, 1))
}

func mustLoad(t *testing.T, dir string) *Set {
	t.Helper()
	s, err := Load(dir)
	if err != nil {
		t.Fatal(err)
	}
	return s
}

// TestMembersKeyBasedVerification: a root signed by member 2 verifies
// key-based with the publications file member 1 made, and not with a file
// holding member 1's certificate only.
func TestMembersKeyBasedVerification(t *testing.T) {
	sets, _ := clusterSets(t)
	now := time.Now()
	sig, doc := keySignedSignature(t, sets[1], now)
	pf := buildPubFile(t, sets[0], now)
	if len(pf.parsed.Certificates) != 3 {
		t.Fatalf("member 1's publications file has %d certificates", len(pf.parsed.Certificates))
	}
	// Verifiers pin the same root and constraint whichever member made it.
	if err := verifier.VerifyPublicationsFile(pf.parsed, trustFor(t, sets[2], sets[2].Constraint(), now)); err != nil {
		t.Fatal(err)
	}
	rep := verifier.Verify(context.Background(), sig, verifier.KeyBased, verifier.Options{Document: doc, PublicationsFile: pf.parsed})
	if err := rep.Err(); err != nil {
		t.Fatalf("key-based verification: %v (rules %+v)", err, rep.Rules)
	}
	if !strings.Contains(rep.Anchor, "Tempel calendar member 2") {
		t.Errorf("anchor %q", rep.Anchor)
	}

	alone := *sets[0]
	alone.Members = nil
	rep = verifier.Verify(context.Background(), sig, verifier.KeyBased, verifier.Options{Document: doc, PublicationsFile: buildPubFile(t, &alone, now).parsed})
	if rep.Result == verifier.OK {
		t.Error("verified with a file that lacks member 2's certificate")
	}
}

func TestMembersPEMHasNoKeys(t *testing.T) {
	_, dir := clusterSets(t)
	b, err := os.ReadFile(filepath.Join(memberKeys(dir, 1), MembersFile))
	if err != nil {
		t.Fatal(err)
	}
	for rest := b; ; {
		var blk *pem.Block
		if blk, rest = pem.Decode(rest); blk == nil {
			break
		}
		if blk.Type != "CERTIFICATE" {
			t.Errorf("members.pem holds a %s block", blk.Type)
		}
	}
}

func TestInitMembersTLSHosts(t *testing.T) {
	dir := t.TempDir()
	if _, err := InitMembers(dir, 2, InitOptions{TLSHosts: []string{"cal2.example.org", "10.0.0.7"}}); err != nil {
		t.Fatal(err)
	}
	for id := 1; id <= 2; id++ {
		keys := memberKeys(dir, id)
		c, err := LoadTLSKeyPair(filepath.Join(keys, TLSCertFile), filepath.Join(keys, TLSKeyFile))
		if err != nil {
			t.Fatal(err)
		}
		if !slices.Equal(c.Leaf.DNSNames, []string{"cal2.example.org"}) || len(c.Leaf.IPAddresses) != 1 || c.Leaf.IPAddresses[0].String() != "10.0.0.7" {
			t.Errorf("member %d TLS certificate for %v %v", id, c.Leaf.DNSNames, c.Leaf.IPAddresses)
		}
	}
}
