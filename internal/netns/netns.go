// Package netns creates and removes the throwaway network namespaces that
// Tollgate's tests, demo and benchmarks run in.
//
// It owns their names (all start with Prefix) and addresses. It must never
// change the machine's own network namespace, and it deletes only namespaces
// it named.
package netns

import (
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"os/exec"
	"strings"
)

// Prefix starts the name of every namespace this package creates, so leaks
// are easy to spot (`ip netns list | grep tollgate`).
const Prefix = "tollgate-t"

// Create makes a new network namespace named Prefix-<tag>-<random> with its
// loopback up and returns its name. The caller deletes it with Delete.
func Create(tag string) (string, error) {
	var b [4]byte
	if _, err := rand.Read(b[:]); err != nil {
		return "", fmt.Errorf("name namespace: %w", err)
	}
	name := fmt.Sprintf("%s-%s-%s", Prefix, tag, hex.EncodeToString(b[:]))
	if err := Run("ip", "netns", "add", name); err != nil {
		return "", fmt.Errorf("create namespace: %w", err)
	}
	if err := Run("ip", "-n", name, "link", "set", "lo", "up"); err != nil {
		Delete(name)
		return "", fmt.Errorf("bring up loopback in %s: %w", name, err)
	}
	return name, nil
}

// Delete removes a namespace made by Create. Processes still running inside
// keep it alive in the kernel, but its name is gone and nothing can join it.
func Delete(name string) error {
	if !strings.HasPrefix(name, Prefix+"-") {
		return fmt.Errorf("refusing to delete namespace %q: not made by nstest", name)
	}
	return Run("ip", "netns", "del", name)
}

// Run runs a command and returns its combined output in the error when it
// fails.
func Run(name string, args ...string) error {
	out, err := exec.Command(name, args...).CombinedOutput()
	if err != nil {
		return fmt.Errorf("%s %s: %w: %s", name, strings.Join(args, " "), err, strings.TrimSpace(string(out)))
	}
	return nil
}
