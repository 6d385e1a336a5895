// Package labtest builds lab.Lab instances for tests: it skips tests that
// are not run as root, removes namespaces left behind by crashed test
// binaries once per process, and closes each lab when its test ends (also
// when the test fails half-way).
//
// Its functions may be called from parallel tests; each lab gets its own
// namespace prefix.
package labtest
