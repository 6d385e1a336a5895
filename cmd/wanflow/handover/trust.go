package handover

import (
	"errors"
	"fmt"
	"io/fs"
)

// ErrUntrusted is wrapped by Take's error for a file it refuses to trust.
var ErrUntrusted = errors.New("handover: file not trusted")

// trusted accepts a regular file that neither its group nor others may
// write, owned by this process's user where the GOOS tells (ownerOK).
func trusted(fi fs.FileInfo) error {
	if !fi.Mode().IsRegular() {
		return fmt.Errorf("%w: not a regular file", ErrUntrusted)
	}
	if fi.Mode().Perm()&0o022 != 0 {
		return fmt.Errorf("%w: mode %v lets others write it", ErrUntrusted, fi.Mode().Perm())
	}
	return ownerOK(fi)
}
