package cli_test

import (
	"fmt"
	"os"
	"os/exec"

	"github.com/rogpeppe/go-internal/testscript"

	"github.com/tempel-ksi/tempel/internal/hsm"
	"github.com/tempel-ksi/tempel/internal/hsm/softhsmtest"
)

// cmdSoftHSM makes a SoftHSM2 token store of the script's own under
// $WORK/softhsm and initializes a token labelled LABEL in it; it sets
// SOFTHSM2_CONF for the commands that follow, PKCS11_MODULE to the
// module, PIN to the user PIN and PINFILE to a file (0600) holding it.
// Scripts guard it with [softhsm] (see [hsmCondition]).
//
//	softhsm LABEL
func cmdSoftHSM(ts *testscript.TestScript, neg bool, args []string) {
	if neg || len(args) != 1 {
		ts.Fatalf("usage: softhsm LABEL")
	}
	tok, err := softhsmtest.Init(ts.MkAbs("softhsm"), args[0])
	ts.Check(err)
	ts.Setenv("SOFTHSM2_CONF", tok.Conf)
	ts.Setenv("PKCS11_MODULE", softhsmtest.Module)
	ts.Setenv("PIN", softhsmtest.PIN)
	ts.Setenv("PINFILE", tok.PINFile)
}

// hsmCondition is the script condition [softhsm]: true when this build
// can load PKCS#11 modules and softhsm2 is installed. Where it is not
// installed the condition is false (scripts skip), except in CI
// (CI=true), where .ci/run installs it and its absence is an error.
func hsmCondition(cond string) (bool, error) {
	if cond != "softhsm" {
		return false, fmt.Errorf("unknown condition %q", cond)
	}
	_, errM := os.Stat(softhsmtest.Module)
	_, errU := exec.LookPath("softhsm2-util")
	if hsm.Supported && errM == nil && errU == nil {
		return true, nil
	}
	if os.Getenv("CI") == "true" {
		return false, fmt.Errorf("softhsm2 (%s, softhsm2-util) or cgo is missing: .ci/run installs softhsm2, and CI builds with cgo", softhsmtest.Module)
	}
	return false, nil
}
