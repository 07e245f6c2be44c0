package cli_test

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"

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
	dir := ts.MkAbs("softhsm")
	tokens := filepath.Join(dir, "tokens")
	ts.Check(os.MkdirAll(tokens, 0o700))
	conf := filepath.Join(dir, "softhsm2.conf")
	ts.Check(os.WriteFile(conf, []byte(fmt.Sprintf("directories.tokendir = %s\nobjectstore.backend = file\nlog.level = ERROR\nslots.removable = false\n", tokens)), 0o600))
	pinFile := filepath.Join(dir, "pin")
	ts.Check(os.WriteFile(pinFile, []byte(softhsmtest.PIN+"\n"), 0o600))
	ts.Setenv("SOFTHSM2_CONF", conf)
	ts.Setenv("PKCS11_MODULE", softhsmtest.Module)
	ts.Setenv("PIN", softhsmtest.PIN)
	ts.Setenv("PINFILE", pinFile)
	cmd := exec.Command("softhsm2-util", "--init-token", "--free", "--label", args[0], "--pin", softhsmtest.PIN, "--so-pin", softhsmtest.SOPIN)
	cmd.Env = append(os.Environ(), "SOFTHSM2_CONF="+conf)
	if out, err := cmd.CombinedOutput(); err != nil {
		ts.Fatalf("softhsm2-util --init-token: %v\n%s", err, out)
	}
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
