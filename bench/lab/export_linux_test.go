package lab

// SetTestHookBuilt makes Up call f after building a lab (and fail with its
// error); it returns a function restoring the previous hook.
func SetTestHookBuilt(f func(*Lab) error) (restore func()) {
	old := testHookBuilt
	testHookBuilt = f
	return func() { testHookBuilt = old }
}
