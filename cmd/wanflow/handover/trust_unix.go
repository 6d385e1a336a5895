//go:build unix

package handover

import (
	"fmt"
	"io/fs"
	"os"
	"syscall"
)

// ownerOK accepts a file owned by this process's effective user.
func ownerOK(fi fs.FileInfo) error {
	if st, ok := fi.Sys().(*syscall.Stat_t); ok && int(st.Uid) != os.Geteuid() {
		return fmt.Errorf("%w: owned by uid %d, not %d", ErrUntrusted, st.Uid, os.Geteuid())
	}
	return nil
}
