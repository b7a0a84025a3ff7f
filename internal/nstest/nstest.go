// Package nstest runs privileged tests inside network namespaces they create.
//
// It owns the one way Tollgate's tests touch the kernel's network stack: a
// fresh namespace with loopback up and no route out, deleted afterwards, also
// on failure. It must never change the machine's own network namespace.
package nstest

import (
	"fmt"
	"os"
	"os/exec"
	"testing"

	"github.com/tollgate-fw/tollgate/internal/netns"
)

// envNetns is set in the environment of a test binary re-executed inside a
// namespace made by Main; its value is the namespace's name.
const envNetns = "TOLLGATE_TEST_NETNS"

// Prefix starts the name of every namespace made for tests.
const Prefix = netns.Prefix

// Pair is a client and a server namespace joined by veth.
type Pair = netns.Pair

// IsRoot reports whether the process has uid 0.
func IsRoot() bool { return os.Geteuid() == 0 }

// InCI reports whether the tests run in CI (CI=true), where root-only tests
// must run instead of skipping.
func InCI() bool { return os.Getenv("CI") == "true" }

// InNetns reports whether this process runs inside a namespace made by Main.
func InNetns() bool { return os.Getenv(envNetns) != "" }

// NetnsName is the name of the namespace made by Main, or "".
func NetnsName() string { return os.Getenv(envNetns) }

// RequireRoot skips t unless it runs as root inside a namespace made by Main
// (or Pair). In CI a missing privilege is a failure, not a skip.
func RequireRoot(t testing.TB) {
	t.Helper()
	if IsRoot() {
		return
	}
	if InCI() {
		t.Fatal("this test needs root (CI=true: not skipping)")
	}
	t.Skip("needs root: run `sudo make test`")
}

// RequireNetns is RequireRoot plus a check that the test really runs inside a
// throwaway namespace, so it may install netfilter rules.
func RequireNetns(t testing.TB) {
	t.Helper()
	RequireRoot(t)
	if !InNetns() {
		t.Fatal("refusing to touch netfilter outside a test namespace: use nstest.Main in TestMain")
	}
}

// Main is for TestMain. As root and not yet inside a test namespace, it
// creates a fresh namespace (loopback up, no other link, no route out),
// re-executes the test binary inside it with `ip netns exec`, deletes the
// namespace and exits with the child's status. Otherwise it runs the tests
// in place.
func Main(m *testing.M) {
	if !IsRoot() || InNetns() {
		os.Exit(m.Run())
	}
	os.Exit(reexec())
}

func reexec() int {
	name, err := netns.Create("m")
	if err != nil {
		fmt.Fprintln(os.Stderr, "nstest:", err)
		return 1
	}
	defer netns.Delete(name)
	self, err := os.Executable()
	if err != nil {
		fmt.Fprintln(os.Stderr, "nstest: find test binary:", err)
		return 1
	}
	args := append([]string{"netns", "exec", name, self}, os.Args[1:]...)
	cmd := exec.Command("ip", args...)
	cmd.Stdin, cmd.Stdout, cmd.Stderr = os.Stdin, os.Stdout, os.Stderr
	cmd.Env = append(os.Environ(), envNetns+"="+name)
	if err := cmd.Run(); err != nil {
		if ee, ok := err.(*exec.ExitError); ok {
			return ee.ExitCode()
		}
		fmt.Fprintln(os.Stderr, "nstest: run tests in namespace:", err)
		return 1
	}
	return 0
}

// NewPair creates a client and a server namespace joined by veth and
// registers their deletion with t.Cleanup. It needs root (RequireRoot).
func NewPair(t testing.TB) *Pair {
	t.Helper()
	RequireRoot(t)
	p, err := netns.CreatePair("p")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(p.Delete)
	return p
}
