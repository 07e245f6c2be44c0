package cli

import (
	"crypto/rand"
	"errors"
	"math/big"
	"strings"
	"time"

	ucli "github.com/urfave/cli/v2"

	"github.com/tempel-ksi/tempel/client"
	"github.com/tempel-ksi/tempel/ksi"
	"github.com/tempel-ksi/tempel/tsp"
)

// Flags and names of RFC 3161 time-stamp tokens.
const (
	flagRFC3161 = "rfc3161"
	// tsrSuffix names a TimeStampResp, as openssl ts -reply writes it;
	// tstSuffix a bare token.
	tsrSuffix = ".tsr"
	tstSuffix = ".tst"
)

// rfc3161Flag is sign's --rfc3161.
func rfc3161Flag() ucli.Flag {
	return &ucli.BoolFlag{Name: flagRFC3161, Usage: "ask the server's RFC 3161 front door (POST /tsa) for a time-stamp token of each FILE, written to FILE" + tsrSuffix}
}

// runSignRFC3161 is tempel sign --rfc3161: a token per file, each asked
// for with its own request (a token names one document), checked, and
// written to FILE.tsr or -o.
func runSignRFC3161(c *ucli.Context) error {
	switch {
	case c.IsSet(flagHash):
		return usageErrorf("--%s time-stamps files; --%s is not supported with it", flagRFC3161, flagHash)
	case c.Bool(flagRecursive) || c.IsSet(flagFromList):
		return usageErrorf("--%s takes FILE arguments, not -r or --%s", flagRFC3161, flagFromList)
	case c.Bool(flagNoMask):
		return usageErrorf("--%s: --%s does not apply, a token names one document", flagRFC3161, flagNoMask)
	}
	alg, err := signAlg(c.String(flagHashAlg), time.Now())
	if err != nil {
		return usageErrorf("-H %s", err)
	}
	args := c.Args().Slice()
	out := c.String(flagOutput)
	asic, suffix := c.Bool(flagASiC), tsrSuffix
	if asic {
		suffix = asicSuffix
	}
	switch {
	case len(args) == 0:
		return usageErrorf("nothing to time-stamp: give a FILE (see 'tempel sign --help')")
	case out != "" && len(args) > 1:
		return usageErrorf("-o names the token of one FILE, got %d (without -o each FILE gets FILE%s)", len(args), suffix)
	}
	jobs := make([]signJob, len(args))
	outs := make([]string, len(args))
	for i, a := range args {
		switch {
		case a == "-" && asic:
			return usageErrorf("standard input (-) has no name to give the document in a container: --%s takes files", flagASiC)
		case a == "-" && out == "":
			return usageErrorf("standard input (-) has no name to put the token next to: add -o PATH")
		case a == "-" && len(args) > 1:
			return usageErrorf("standard input (-) can only be time-stamped alone")
		case isDir(a):
			return usageErrorf("%s is a directory: --%s takes files", a, flagRFC3161)
		}
		jobs[i] = signJob{doc: a, out: a + suffix}
		if out != "" {
			jobs[i].out = out
		}
		outs[i] = jobs[i].out
	}
	force := c.Bool(flagForce)
	if err := checkOutputs(outs, force); err != nil {
		return err
	}
	srv, err := serverOptionsFrom(c)
	if err != nil {
		return err
	}
	cl, err := srv.dial()
	if err != nil {
		return err
	}
	defer cl.Close()
	bulk := len(jobs) > 1
	views := make([]signView, len(jobs))
	for i := range jobs {
		j := &jobs[i]
		v := signView{Document: j.doc, display: j.display()}
		tok, err := timeStampFile(c, cl, srv, j, alg, force, asic)
		if err != nil {
			var ee *exitError
			if !bulk && errors.As(err, &ee) {
				return err
			}
			v.Error = oneLine(err.Error())
		} else {
			v.fillToken(j, tok)
		}
		views[i] = v
	}
	return reportInputs(c, bulk, newSummary("time-stamped", "signed", "failed"), views)
}

// timeStampFile hashes one file, asks for its token, checks it and
// writes it.
func timeStampFile(c *ucli.Context, cl *client.Client, srv serverOptions, j *signJob, alg ksi.HashAlg, force, asic bool) (*tsp.Token, error) {
	var err error
	if j.hash, err = hashFile(j.doc, alg, nil); err != nil {
		return nil, err
	}
	nonce, err := rand.Int(rand.Reader, new(big.Int).Lsh(big.NewInt(1), 63))
	if err != nil {
		return nil, inputErrorf("cannot make a nonce: %v", err)
	}
	req, err := tsp.NewRequest(j.hash, nonce, true)
	if err != nil {
		return nil, inputErrorf("%s", err)
	}
	resp, err := cl.TimeStamp(c.Context, req)
	if err != nil {
		return nil, srv.serverError(err)
	}
	tok, err := checkTimeStampResponse(c, resp, req)
	if err != nil {
		return nil, err
	}
	if asic {
		// The document is read again for the container: it must be
		// the one hashed, which the token's imprint then proves.
		if err := writeASiC(j.out, j.doc, j.hash, tok.Raw, force); err != nil {
			return nil, inputErrorf("cannot write container: %v", err)
		}
		return tok, nil
	}
	if err := writeNew(j.out, resp, force); err != nil {
		return nil, inputErrorf("cannot write token: %v", err)
	}
	return tok, nil
}

// checkTimeStampResponse checks, before anything is written, that resp
// is a granted response to req whose KSI signature verifies internally.
// The client made the same checks to choose among the endpoints; this
// states them where the file is written.
func checkTimeStampResponse(c *ucli.Context, resp, req []byte) (*tsp.Token, error) {
	q, err := tsp.ParseRequest(req)
	if err != nil {
		return nil, inputErrorf("%v", err)
	}
	tok, err := tsp.ParseResponse(resp)
	if err != nil {
		return nil, inputErrorf("the server's answer is not a granted time-stamp response: %s", strings.TrimPrefix(err.Error(), "tsp: "))
	}
	if err := client.CheckToken(c.Context, tok, q); err != nil {
		return nil, inputErrorf("the server's token does not fit the request: %s", strings.TrimPrefix(err.Error(), "client: "))
	}
	return tok, nil
}

// fillToken fills in a view of a written token.
func (v *signView) fillToken(j *signJob, tok *tsp.Token) {
	v.Signature = j.out
	v.DocumentHash = j.hash.String()
	t := uint64(tok.GenTime.Unix())
	v.SigningTime, v.SigningTimeUnix = formatTime(t), t
	if sig, err := tok.KSI(); err == nil {
		v.Identity = strings.Join(sig.Identity(), " :: ")
	}
}
