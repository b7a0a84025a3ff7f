package nstest

import (
	"os/exec"
	"strings"
	"testing"
	"time"

	"github.com/tollgate-fw/tollgate/internal/netns"
)

func TestMain(m *testing.M) { Main(m) }

func TestIntegrationMainRunsInFreshNamespace(t *testing.T) {
	RequireNetns(t)
	out, err := exec.Command("ip", "-o", "link").Output()
	if err != nil {
		t.Fatal(err)
	}
	links := strings.Split(strings.TrimSpace(string(out)), "\n")
	if len(links) != 1 || !strings.Contains(links[0], "lo:") || !strings.Contains(links[0], "UP") {
		t.Fatalf("want only loopback, up; got:\n%s", out)
	}
	routes, err := exec.Command("ip", "route", "show", "default").Output()
	if err != nil {
		t.Fatal(err)
	}
	if len(strings.TrimSpace(string(routes))) != 0 {
		t.Fatalf("namespace has a default route: %s", routes)
	}
	if !strings.HasPrefix(NetnsName(), Prefix+"-") {
		t.Fatalf("namespace name %q", NetnsName())
	}
}

func TestIntegrationPairReachesOnlyEachOther(t *testing.T) {
	RequireRoot(t)
	p := NewPair(t)
	if _, err := exec.LookPath("ping"); err != nil {
		t.Fatal("ping not installed (make deps)")
	}
	for _, addr := range []string{p.ServerIP4.String(), p.ServerIP6.String()} {
		// The first echo can be lost while neighbour discovery runs on a
		// loaded machine: retry until a deadline.
		deadline := time.Now().Add(15 * time.Second)
		for {
			out, err := exec.Command("ip", "netns", "exec", p.Client, "ping", "-c1", "-W1", addr).CombinedOutput()
			if err == nil {
				break
			}
			if time.Now().After(deadline) {
				t.Fatalf("ping %s from client: %v\n%s", addr, err, out)
			}
		}
	}
	out, _ := exec.Command("ip", "-n", p.Client, "route", "show", "default").Output()
	if len(strings.TrimSpace(string(out))) != 0 {
		t.Fatalf("client has a default route: %s", out)
	}
}

func TestDeleteRefusesForeignNames(t *testing.T) {
	if err := netns.Delete("default"); err == nil {
		t.Fatal("Delete accepted a name nstest did not make")
	}
}
