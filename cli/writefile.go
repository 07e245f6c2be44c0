package cli

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
)

// Flags shared by the commands that write files (sign, extend, pubfile).
const (
	flagOutput = "output"
	flagForce  = "force"
)

func isDir(p string) bool {
	fi, err := os.Stat(p)
	return err == nil && fi.IsDir()
}

// checkOutputs refuses, before anything is hashed or sent, output paths
// that already exist (unless force) or that two inputs share: a signing
// request should not be wasted on a run that cannot write its results.
func checkOutputs(paths []string, force bool) error {
	seen := make(map[string]bool, len(paths))
	var exist []string
	for _, p := range paths {
		clean := filepath.Clean(p)
		if seen[clean] {
			return usageErrorf("two inputs would both write %s", p)
		}
		seen[clean] = true
		if force {
			continue
		}
		if _, err := os.Lstat(p); err == nil {
			exist = append(exist, p)
		}
	}
	switch len(exist) {
	case 0:
		return nil
	case 1:
		return usageErrorf("%s already exists: remove it or add --%s", exist[0], flagForce)
	}
	return usageErrorf("%d signatures already exist (%s, …): remove them or add --%s", len(exist), exist[0], flagForce)
}

// writeNew writes a signature file. Without force it never replaces an
// existing file, even one created since the inputs were checked (O_EXCL).
// With force it replaces the file atomically, so a crash never leaves a
// half-written signature in place of a good one.
func writeNew(path string, b []byte, force bool) error {
	if force {
		return writeAtomic(path, b)
	}
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o644)
	if err != nil {
		if errors.Is(err, os.ErrExist) {
			return fmt.Errorf("%s already exists: remove it or add --%s", path, flagForce)
		}
		return err
	}
	_, err = f.Write(b)
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		os.Remove(path)
	}
	return err
}

// writeAtomic replaces path with b through a temporary file in the same
// directory and a rename.
func writeAtomic(path string, b []byte) error {
	tmp, err := os.CreateTemp(filepath.Dir(path), "."+filepath.Base(path)+".*.tmp")
	if err != nil {
		return err
	}
	defer os.Remove(tmp.Name()) // after a successful rename there is nothing left to remove
	if _, err := tmp.Write(b); err != nil {
		tmp.Close()
		return err
	}
	if err := tmp.Sync(); err != nil {
		tmp.Close()
		return err
	}
	if err := tmp.Close(); err != nil {
		return err
	}
	if err := os.Chmod(tmp.Name(), 0o644); err != nil {
		return err
	}
	return os.Rename(tmp.Name(), path)
}
