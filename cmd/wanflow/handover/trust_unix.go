//go:build unix

package handover

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"syscall"
)

// ErrUntrusted is wrapped by Take's error for a file it refuses to trust.
var ErrUntrusted = errors.New("handover: file not trusted")

// trusted accepts a regular file owned by this process's effective user
// that neither its group nor others may write.
func trusted(fi fs.FileInfo) error {
	if !fi.Mode().IsRegular() {
		return fmt.Errorf("%w: not a regular file", ErrUntrusted)
	}
	if fi.Mode().Perm()&0o022 != 0 {
		return fmt.Errorf("%w: mode %v lets others write it", ErrUntrusted, fi.Mode().Perm())
	}
	if st, ok := fi.Sys().(*syscall.Stat_t); ok && int(st.Uid) != os.Geteuid() {
		return fmt.Errorf("%w: owned by uid %d, not %d", ErrUntrusted, st.Uid, os.Geteuid())
	}
	return nil
}
