package cli

import (
	"bytes"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"strings"
	"time"

	ucli "github.com/urfave/cli/v2"

	"github.com/tempel-ksi/tempel/ksi"
	"github.com/tempel-ksi/tempel/ksi/tlv"
)

func inspectCommand() *ucli.Command {
	return &ucli.Command{
		Name:      "inspect",
		Usage:     "show the contents of a KSI signature or publications file",
		ArgsUsage: "PATH",
		Description: "Detects whether PATH is a KSI signature (TLV element 0x800, a .ksig\n" +
			"file), an RFC 3161 time-stamp token or response (.tst, .tsr: DER) or a\n" +
			"publications file (starting with KSIPUBLF) and prints its\n" +
			"contents readably. Nothing is verified: use 'tempel verify' for that.\n\n" +
			"With --json the same contents are printed as one JSON object whose\n" +
			"field \"type\" is \"signature\", \"rfc3161-response\", \"rfc3161-token\" or\n" +
			"\"publications-file\". A time is an\n" +
			"object {\"utc\": RFC 3339 in UTC, \"unix\": POSIX seconds}; hashes are ALG:hex.\n\n" +
			"A token shows both layers: the TSTInfo, the TSA's signer and certificates,\n" +
			"then its KSI signature; --extract-ksig PATH writes that KSI signature.\n\n" +
			"Exit code 0 when the file was shown, 3 when it cannot be read or parsed.",
		Flags: []ucli.Flag{
			&ucli.BoolFlag{Name: flagJSON, Usage: "print JSON instead of text"},
			extractKSIFlag(),
		},
		Action: runInspect,
	}
}

// inspectLimit bounds what inspect reads: the largest object it can show
// is a publications file.
const inspectLimit = ksi.MaxPublicationsFileSize

func runInspect(c *ucli.Context) error {
	if c.NArg() != 1 {
		return usageErrorf("want exactly one PATH, got %d (see 'tempel inspect --help')", c.NArg())
	}
	path := c.Args().First()
	if isASiC(path) {
		return inspectASiC(c, path)
	}
	b, err := readFileLimited(path, inspectLimit)
	if err != nil {
		return inputErrorf("cannot read: %v", err)
	}
	var view any
	if c.IsSet(flagExtractKSI) && !isToken(b) {
		return usageErrorf("--%s takes the KSI signature out of an RFC 3161 token; %s is not one", flagExtractKSI, path)
	}
	switch {
	case isToken(b):
		if view, err = inspectToken(c, path, b); err != nil {
			return err
		}
	case bytes.HasPrefix(b, []byte(ksi.PubFileMagic)):
		pf, err := ksi.ParsePublicationsFile(b)
		if err != nil {
			return inputErrorf("%s is not a valid publications file: %s", path, trimPkg(err))
		}
		view = newPubfileView(pf)
	default:
		e, _, err := tlv.Read(b)
		if err != nil || e.Type != ksi.TypeSignature {
			what := "it does not start with a TLV element"
			if err == nil {
				what = fmt.Sprintf("it starts with a TLV element of type %#x", e.Type)
			}
			return inputErrorf("%s is neither a KSI signature (TLV element 0x800) nor a publications file (%s): %s",
				path, ksi.PubFileMagic, what)
		}
		sig, err := ksi.ParseSignature(b)
		if err != nil {
			return inputErrorf("%s is not a valid KSI signature: %s", path, trimPkg(err))
		}
		view = newSignatureView(sig)
	}
	out := c.App.Writer
	if c.Bool(flagJSON) {
		enc := json.NewEncoder(out)
		enc.SetEscapeHTML(false)
		enc.SetIndent("", "  ")
		return enc.Encode(view)
	}
	switch v := view.(type) {
	case *signatureView:
		v.writeText(out)
	case *pubfileView:
		v.writeText(out)
	case *tokenInspectView:
		v.writeText(out)
	}
	return nil
}

// timeView is a point in time in both forms people and scripts want.
type timeView struct {
	UTC  string `json:"utc"`
	Unix uint64 `json:"unix"`
}

func newTime(t uint64) timeView { return timeView{UTC: formatTime(t), Unix: t} }

func (t timeView) String() string { return fmt.Sprintf("%s (%d)", t.UTC, t.Unix) }

// signatureView is what inspect shows of a signature.
type signatureView struct {
	Type               string            `json:"type"` // "signature"
	Size               int               `json:"size"`
	DocumentHash       string            `json:"document_hash"`
	SigningTime        timeView          `json:"signing_time"`
	Identity           []string          `json:"identity"`
	Extended           bool              `json:"extended"`
	Metadata           []metadataView    `json:"metadata,omitempty"`
	AggregationChains  []chainView       `json:"aggregation_chains"`
	CalendarChain      *calendarView     `json:"calendar_chain,omitempty"`
	PublicationRecord  *publicationView  `json:"publication_record,omitempty"`
	CalendarAuthRecord *authRecordView   `json:"calendar_auth_record,omitempty"`
	RFC3161Record      *rfc3161View      `json:"rfc3161_record,omitempty"`
	AggregationAuth    bool              `json:"aggregation_auth_record,omitempty"`
	Unknown            []unknownElemView `json:"unknown_elements,omitempty"`
}

type metadataView struct {
	ClientID       string  `json:"client_id"`
	MachineID      string  `json:"machine_id,omitempty"`
	SequenceNumber *uint64 `json:"sequence_number,omitempty"`
	RequestTime    string  `json:"request_time,omitempty"` // RFC 3339 with microseconds, UTC
}

// chainView is an aggregation hash chain. Links are listed from the
// chain's input upwards.
type chainView struct {
	AggregationTime timeView   `json:"aggregation_time"`
	ChainIndex      []uint64   `json:"chain_index"`
	Algorithm       string     `json:"algorithm"`
	InputHash       string     `json:"input_hash"`
	InputData       string     `json:"input_data,omitempty"` // hex
	Links           []linkView `json:"links"`
}

// linkView is one aggregation step. Side is the link type: "left" (0x07,
// the chain's node is the left child, the sibling comes after it) or
// "right" (0x08, the sibling comes first).
type linkView struct {
	Side            string        `json:"side"`
	LevelCorrection uint64        `json:"level_correction"`
	SiblingHash     string        `json:"sibling_hash,omitempty"`
	LegacyID        string        `json:"legacy_id,omitempty"`
	Metadata        *metadataView `json:"metadata,omitempty"`
}

type calendarView struct {
	PublicationTime timeView `json:"publication_time"`
	AggregationTime timeView `json:"aggregation_time"`
	InputHash       string   `json:"input_hash"`
	Links           int      `json:"links"`
	LeftLinks       int      `json:"left_links"`
	RightLinks      int      `json:"right_links"`
}

type publicationView struct {
	PublicationTime   timeView `json:"publication_time"`
	PublishedHash     string   `json:"published_hash"`
	PublicationString string   `json:"publication_string"`
	References        []string `json:"references,omitempty"`
	RepositoryURIs    []string `json:"repository_uris,omitempty"`
}

type authRecordView struct {
	PublicationTime    timeView `json:"publication_time"`
	PublishedHash      string   `json:"published_hash"`
	SignatureType      string   `json:"signature_type"` // OID
	SignatureAlgorithm string   `json:"signature_algorithm,omitempty"`
	CertificateID      string   `json:"certificate_id"` // hex
	CertRepositoryURI  string   `json:"cert_repository_uri,omitempty"`
}

type rfc3161View struct {
	AggregationTime           timeView `json:"aggregation_time"`
	ChainIndex                []uint64 `json:"chain_index"`
	InputHash                 string   `json:"input_hash"`
	TSTInfoAlgorithm          string   `json:"tst_info_algorithm"`
	SignedAttributesAlgorithm string   `json:"signed_attributes_algorithm"`
}

type unknownElemView struct {
	Type        string `json:"type"`
	NonCritical bool   `json:"non_critical"`
	Forward     bool   `json:"forward"`
	Size        int    `json:"size"`
}

// signatureAlgorithmNames names the signature type OIDs of calendar
// authentication records.
var signatureAlgorithmNames = map[string]string{
	"1.2.840.113549.1.1.5":  "sha1WithRSAEncryption",
	"1.2.840.113549.1.1.11": "sha256WithRSAEncryption",
	"1.2.840.113549.1.1.12": "sha384WithRSAEncryption",
	"1.2.840.113549.1.1.13": "sha512WithRSAEncryption",
	"1.2.840.10045.4.3.2":   "ecdsa-with-SHA256",
	"1.2.840.10045.4.3.3":   "ecdsa-with-SHA384",
	"1.2.840.10045.4.3.4":   "ecdsa-with-SHA512",
}

func newSignatureView(s *ksi.Signature) *signatureView {
	v := &signatureView{
		Type:            "signature",
		Size:            len(s.Raw),
		DocumentHash:    s.DocumentHash().String(),
		SigningTime:     newTime(s.SigningTime()),
		Identity:        s.Identity(),
		Extended:        s.IsExtended(),
		AggregationAuth: s.AggregationAuth != nil,
	}
	if v.Identity == nil {
		v.Identity = []string{}
	}
	for _, m := range s.Metadata() {
		v.Metadata = append(v.Metadata, newMetadataView(m))
	}
	for _, c := range s.Chains() {
		v.AggregationChains = append(v.AggregationChains, newChainView(c))
	}
	if c := s.CalendarChain; c != nil {
		v.CalendarChain = newCalendarView(c)
	}
	if r := s.PublicationRecord; r != nil {
		v.PublicationRecord = newPublicationView(r)
	}
	if a := s.CalendarAuthRecord; a != nil {
		v.CalendarAuthRecord = newAuthRecordView(a)
	}
	if r := s.RFC3161; r != nil {
		v.RFC3161Record = &rfc3161View{
			AggregationTime:           newTime(r.AggregationTime),
			ChainIndex:                r.ChainIndex,
			InputHash:                 r.InputHash.String(),
			TSTInfoAlgorithm:          r.TSTInfoAlg.String(),
			SignedAttributesAlgorithm: r.SigAttrAlg.String(),
		}
	}
	for _, e := range s.Unknown {
		v.Unknown = append(v.Unknown, unknownElemView{Type: fmt.Sprintf("%#x", e.Type), NonCritical: e.NonCritical, Forward: e.Forward, Size: len(e.Value)})
	}
	return v
}

func newChainView(c *ksi.AggregationChain) chainView {
	cv := chainView{
		AggregationTime: newTime(c.AggregationTime),
		ChainIndex:      c.ChainIndex,
		Algorithm:       c.Algorithm.String(),
		InputHash:       c.InputHash.String(),
		InputData:       hex.EncodeToString(c.InputData),
		Links:           make([]linkView, 0, len(c.Links)),
	}
	for i := range c.Links {
		cv.Links = append(cv.Links, newLinkView(&c.Links[i]))
	}
	return cv
}

func newLinkView(l *ksi.Link) linkView {
	lv := linkView{Side: "right", LevelCorrection: l.LevelCorrection}
	if l.Left {
		lv.Side = "left"
	}
	switch {
	case l.SiblingHash() != nil:
		lv.SiblingHash = l.SiblingHash().String()
	case l.LegacyID() != nil:
		lv.LegacyID = ksi.LegacyIDName(l.LegacyID())
	case l.Metadata != nil:
		m := newMetadataView(l.Metadata)
		lv.Metadata = &m
	}
	return lv
}

func newCalendarView(c *ksi.CalendarChain) *calendarView {
	cv := &calendarView{
		PublicationTime: newTime(c.PublicationTime),
		AggregationTime: newTime(c.AggregationTime),
		InputHash:       c.InputHash.String(),
		Links:           len(c.Links),
	}
	for _, l := range c.Links {
		if l.Left {
			cv.LeftLinks++
		} else {
			cv.RightLinks++
		}
	}
	return cv
}

func newAuthRecordView(a *ksi.CalendarAuthRecord) *authRecordView {
	return &authRecordView{
		PublicationTime:    newTime(a.PublishedData.Time),
		PublishedHash:      a.PublishedData.Hash.String(),
		SignatureType:      a.SignatureData.Type,
		SignatureAlgorithm: signatureAlgorithmNames[a.SignatureData.Type],
		CertificateID:      strings.ToUpper(hex.EncodeToString(a.SignatureData.CertificateID)),
		CertRepositoryURI:  a.SignatureData.CertRepoURI,
	}
}

func newMetadataView(m *ksi.Metadata) metadataView {
	v := metadataView{ClientID: m.ClientID, MachineID: m.MachineID}
	if m.HasSequence {
		n := m.SequenceNumber
		v.SequenceNumber = &n
	}
	if t, ok := m.RequestUTC(); ok {
		v.RequestTime = t.Format("2006-01-02T15:04:05.000000Z07:00")
	}
	return v
}

func newPublicationView(r *ksi.PublicationRecord) *publicationView {
	return &publicationView{
		PublicationTime:   newTime(r.Data.Time),
		PublishedHash:     r.Data.Hash.String(),
		PublicationString: r.Data.String(),
		References:        r.References,
		RepositoryURIs:    r.RepositoryURI,
	}
}

// textWriter writes aligned "label: value" lines at an indentation.
type textWriter struct{ w io.Writer }

func (t textWriter) head(format string, args ...any) { fmt.Fprintf(t.w, format+"\n", args...) }

func (t textWriter) field(indent int, label string, value any) {
	fmt.Fprintf(t.w, "%*s%-19s %v\n", indent, "", label+":", value)
}

func (s *signatureView) writeText(w io.Writer) {
	t := textWriter{w}
	t.head("KSI signature (%d bytes)", s.Size)
	t.field(2, "document hash", s.DocumentHash)
	t.field(2, "signing time", s.SigningTime)
	identity := strings.Join(s.Identity, " :: ")
	if identity == "" {
		identity = "(none recorded)"
	}
	t.field(2, "identity", identity)
	t.field(2, "extended", s.extendedText())
	for i, m := range s.Metadata {
		t.head("  metadata %d of %d (lowest first):", i+1, len(s.Metadata))
		m.writeText(t, 4)
	}
	for i, c := range s.AggregationChains {
		t.head("Aggregation chain %d of %d (lowest first)", i+1, len(s.AggregationChains))
		c.writeText(t)
	}
	if c := s.CalendarChain; c != nil {
		t.head("Calendar chain")
		t.field(2, "publication time", c.PublicationTime)
		t.field(2, "aggregation time", c.AggregationTime)
		t.field(2, "input hash", c.InputHash)
		t.field(2, "links", fmt.Sprintf("%d (%d left, %d right)", c.Links, c.LeftLinks, c.RightLinks))
	}
	if p := s.PublicationRecord; p != nil {
		t.head("Publication record")
		p.writeText(t, 2)
	}
	if a := s.CalendarAuthRecord; a != nil {
		a.writeText(t)
	}
	if r := s.RFC3161Record; r != nil {
		t.head("RFC 3161 record")
		t.field(2, "aggregation time", r.AggregationTime)
		t.field(2, "chain index", formatIndex(r.ChainIndex))
		t.field(2, "input hash", r.InputHash)
		t.field(2, "TSTInfo algorithm", r.TSTInfoAlgorithm)
		t.field(2, "signed attributes", r.SignedAttributesAlgorithm)
	}
	if s.AggregationAuth {
		t.head("Aggregation authentication record (present, not used by verification)")
	}
	for _, u := range s.Unknown {
		t.head("Unknown element %s (%d bytes, non-critical %v, forward %v)", u.Type, u.Size, u.NonCritical, u.Forward)
	}
}

// extendedText says whether, and how far, the signature is extended.
func (s *signatureView) extendedText() string {
	switch {
	case s.PublicationRecord != nil:
		return "yes, to a publication"
	case s.CalendarAuthRecord != nil:
		return "no (calendar authentication record)"
	}
	return "no"
}

func (c chainView) writeText(t textWriter) {
	t.field(2, "aggregation time", c.AggregationTime)
	t.field(2, "chain index", formatIndex(c.ChainIndex))
	t.field(2, "algorithm", c.Algorithm)
	t.field(2, "input hash", c.InputHash)
	if c.InputData != "" {
		t.field(2, "input data", c.InputData)
	}
	t.head("  links (%d, from the input up):", len(c.Links))
	for j, l := range c.Links {
		var what string
		switch {
		case l.SiblingHash != "":
			what = "sibling " + l.SiblingHash
		case l.Metadata != nil:
			what = "metadata " + l.Metadata.summary()
		default:
			what = fmt.Sprintf("legacy id %q", l.LegacyID)
		}
		t.head("    %2d. %-5s level +%d  %s", j+1, l.Side, l.LevelCorrection, what)
	}
}

func (a *authRecordView) writeText(t textWriter) {
	t.head("Calendar authentication record")
	t.field(2, "publication time", a.PublicationTime)
	t.field(2, "published hash", a.PublishedHash)
	sigType := a.SignatureType
	if a.SignatureAlgorithm != "" {
		sigType += " (" + a.SignatureAlgorithm + ")"
	}
	t.field(2, "signature type", sigType)
	t.field(2, "certificate id", a.CertificateID)
	if a.CertRepositoryURI != "" {
		t.field(2, "cert repository", a.CertRepositoryURI)
	}
}

func (m metadataView) writeText(t textWriter, indent int) {
	t.field(indent, "client id", m.ClientID)
	if m.MachineID != "" {
		t.field(indent, "machine id", m.MachineID)
	}
	if m.SequenceNumber != nil {
		t.field(indent, "sequence number", *m.SequenceNumber)
	}
	if m.RequestTime != "" {
		t.field(indent, "request time", m.RequestTime)
	}
}

// summary is the metadata on one line, for a link.
func (m metadataView) summary() string {
	parts := []string{fmt.Sprintf("client %q", m.ClientID)}
	if m.MachineID != "" {
		parts = append(parts, fmt.Sprintf("machine %q", m.MachineID))
	}
	if m.SequenceNumber != nil {
		parts = append(parts, fmt.Sprintf("seq %d", *m.SequenceNumber))
	}
	if m.RequestTime != "" {
		parts = append(parts, "requested "+m.RequestTime)
	}
	return strings.Join(parts, ", ")
}

func (p *publicationView) writeText(t textWriter, indent int) {
	t.field(indent, "publication time", p.PublicationTime)
	t.field(indent, "published hash", p.PublishedHash)
	t.field(indent, "publication string", p.PublicationString)
	for _, r := range p.References {
		t.field(indent, "reference", r)
	}
	for _, r := range p.RepositoryURIs {
		t.field(indent, "repository URI", r)
	}
}

func formatIndex(idx []uint64) string {
	s := make([]string, len(idx))
	for i, x := range idx {
		s[i] = fmt.Sprint(x)
	}
	return "[" + strings.Join(s, " ") + "]"
}

// attrNames are the short names of distinguished-name attributes, as
// OpenSSL and ksi-tool print them (E for the e-mail address that
// --cnstr E=… pins).
var attrNames = map[string]string{
	"2.5.4.3":              "CN",
	"2.5.4.5":              "serialNumber",
	"2.5.4.6":              "C",
	"2.5.4.7":              "L",
	"2.5.4.8":              "ST",
	"2.5.4.10":             "O",
	"2.5.4.11":             "OU",
	"1.2.840.113549.1.9.1": "E",
}

// formatName writes a distinguished name in certificate order with short
// attribute names. pkix.Name.String shows the e-mail address, the one
// attribute a publications file is pinned by, as a hex-encoded OID.
func formatName(n pkix.Name) string {
	parts := make([]string, 0, len(n.Names))
	for _, a := range n.Names {
		k := a.Type.String()
		if s, ok := attrNames[k]; ok {
			k = s
		}
		parts = append(parts, fmt.Sprintf("%s=%v", k, a.Value))
	}
	return strings.Join(parts, ", ")
}

// pubfileView is what inspect shows of a publications file.
type pubfileView struct {
	Type          string            `json:"type"` // "publications-file"
	Size          int               `json:"size"`
	Version       uint64            `json:"version"`
	CreationTime  timeView          `json:"creation_time"`
	RepositoryURI string            `json:"repository_uri,omitempty"`
	SignatureSize int               `json:"signature_size"` // PKCS#7, not verified by inspect
	Certificates  []certView        `json:"certificates"`
	Publications  []publicationView `json:"publications"`
}

type certView struct {
	ID        string `json:"id"` // hex
	Subject   string `json:"subject,omitempty"`
	Issuer    string `json:"issuer,omitempty"`
	NotBefore string `json:"not_before,omitempty"`
	NotAfter  string `json:"not_after,omitempty"`
	Error     string `json:"error,omitempty"` // the certificate could not be parsed
}

func newPubfileView(pf *ksi.PublicationsFile) *pubfileView {
	v := &pubfileView{
		Type:          "publications-file",
		Size:          len(pf.Raw),
		Version:       pf.Header.Version,
		CreationTime:  newTime(pf.Header.CreationTime),
		RepositoryURI: pf.Header.RepositoryURI,
		SignatureSize: len(pf.Signature),
		Certificates:  make([]certView, 0, len(pf.Certificates)),
		Publications:  make([]publicationView, 0, len(pf.Publications)),
	}
	for _, c := range pf.Certificates {
		cv := certView{ID: strings.ToUpper(hex.EncodeToString(c.ID))}
		if cert, err := x509.ParseCertificate(c.DER); err != nil {
			cv.Error = err.Error()
		} else {
			cv.Subject = formatName(cert.Subject)
			cv.Issuer = formatName(cert.Issuer)
			cv.NotBefore = cert.NotBefore.UTC().Format(time.RFC3339)
			cv.NotAfter = cert.NotAfter.UTC().Format(time.RFC3339)
		}
		v.Certificates = append(v.Certificates, cv)
	}
	for _, r := range pf.Publications {
		v.Publications = append(v.Publications, *newPublicationView(r))
	}
	return v
}

func (p *pubfileView) writeText(w io.Writer) {
	t := textWriter{w}
	t.head("KSI publications file (%d bytes)", p.Size)
	t.field(2, "version", p.Version)
	t.field(2, "created", p.CreationTime)
	if p.RepositoryURI != "" {
		t.field(2, "repository URI", p.RepositoryURI)
	}
	t.field(2, "signature", fmt.Sprintf("PKCS#7, %d bytes (not verified here: use tempel verify --pubfile)", p.SignatureSize))
	writeCertsAndPublications(t, p.Certificates, p.Publications)
}

// writeCertsAndPublications prints a publications file's certificates and
// publications, one line per publication (inspect and pubfile share it).
func writeCertsAndPublications(t textWriter, certs []certView, pubs []publicationView) {
	t.head("Certificates (%d)", len(certs))
	for _, c := range certs {
		if c.Error != "" {
			t.head("  %s  unreadable certificate: %s", c.ID, c.Error)
			continue
		}
		t.head("  %s  %s", c.ID, c.Subject)
		t.head("  %s  valid %s to %s", strings.Repeat(" ", len(c.ID)), c.NotBefore, c.NotAfter)
	}
	t.head("Publications (%d)", len(pubs))
	for _, r := range pubs {
		t.head("  %s  %s", r.PublicationTime.UTC, r.PublicationString)
	}
}
