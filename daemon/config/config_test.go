package config

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/tollgate-fw/tollgate/shared"
)

func TestDefaultsAreDefaultDeny(t *testing.T) {
	c := Default()
	if c.DefaultAction != shared.ActionDeny {
		t.Errorf("default_action = %q, want deny", c.DefaultAction)
	}
	if c.Mode != ModeEnforcing || c.FailOpen || c.InterceptLoopback || !c.Inbound {
		t.Errorf("unexpected defaults: %+v", c)
	}
	if c.PromptTimeout.Duration != 30*time.Second || c.QueueNum != 7467 || c.RejectMark != 0x100000 {
		t.Errorf("unexpected defaults: %+v", c)
	}
	if got := c.WatchdogAge(); got != 35*time.Second {
		t.Errorf("WatchdogAge = %s", got)
	}
}

func TestParseOverridesOnlyGivenKeys(t *testing.T) {
	c, err := Parse([]byte("default_action = \"reject\"\nprompt_timeout = \"5s\"\nfail_open = true\n"), "test")
	if err != nil {
		t.Fatal(err)
	}
	if c.DefaultAction != shared.ActionReject || c.PromptTimeout.Duration != 5*time.Second || !c.FailOpen {
		t.Errorf("overrides not applied: %+v", c)
	}
	if c.Database != Default().Database || c.QueueNum != Default().QueueNum {
		t.Errorf("defaults lost: %+v", c)
	}
}

func TestParseErrorsNameTheKey(t *testing.T) {
	cases := []struct{ in, want string }{
		{`default_action = "maybe"`, "default_action"},
		{`prompt_timeout = "forever"`, "prompt_timeout"},
		{`prompt_timeout = "1h"`, "prompt_timeout"},
		{`mode = "loud"`, "mode"},
		{`reject_mark = 3`, "reject_mark"},
		{`reject_mark = 0`, "reject_mark"},
		{`queue_max_len = 100`, "queue_max_len"},
		{`accept_mark_out = 0x100000`, "accept_mark_out"},
		{`accept_mark_in = 0x200000`, "accept_mark_in"},
		{`accept_mark_in = 6`, "accept_mark_in"},
		{`proc_events_netns = "proc/1/ns/net"`, "proc_events_netns"},
		{`iptables_backend = "bpf"`, "iptables_backend"},
		{`log_max_entries = -1`, "log_max_entries"},
		{`log_level = "chatty"`, "log_level"},
		{`database = ""`, "database"},
		{`queue_num = 70000`, "queue_num"},
		{`typo_key = 1`, "typo_key"},
		{`[section]` + "\nx = 1", "section"},
		{`default_action = `, "test"},
	}
	for _, tc := range cases {
		_, err := Parse([]byte(tc.in), "test")
		if err == nil {
			t.Errorf("%q: no error", tc.in)
			continue
		}
		if !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%q: error %q does not name %q", tc.in, err, tc.want)
		}
	}
}

func TestLoadResolvesRelativePathsBesideTheFile(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "config.toml")
	if err := os.WriteFile(path, []byte("database = \"db/t.db\"\nrules_dir = \"rules.d\"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	c, err := Load(path)
	if err != nil {
		t.Fatal(err)
	}
	if c.Database != filepath.Join(dir, "db/t.db") || c.RulesDir != filepath.Join(dir, "rules.d") {
		t.Errorf("paths not resolved: %q %q", c.Database, c.RulesDir)
	}
	if _, err := Load(filepath.Join(dir, "missing.toml")); err == nil {
		t.Error("missing file: no error")
	}
}

func TestLoadRefusesHugeFiles(t *testing.T) {
	path := filepath.Join(t.TempDir(), "big.toml")
	if err := os.WriteFile(path, []byte("# "+strings.Repeat("x", maxConfigFileBytes)+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	if _, err := Load(path); err == nil || !strings.Contains(err.Error(), "larger than") {
		t.Fatalf("err = %v", err)
	}
}

func FuzzParse(f *testing.F) {
	f.Add(DefaultTOML())
	f.Add([]byte(`default_action = "allow"`))
	f.Add([]byte(`prompt_timeout = "1ms"` + "\nqueue_num = 1"))
	f.Add([]byte("[[x]]\n"))
	f.Fuzz(func(t *testing.T, data []byte) {
		c, err := Parse(data, "fuzz")
		if err != nil {
			return
		}
		// Whatever parsed must be valid.
		if err := c.Validate(); err != nil {
			t.Fatalf("Parse accepted an invalid config: %v", err)
		}
	})
}

func TestDNSKeys(t *testing.T) {
	c := Default()
	if !c.DNS || c.DNSQueueNum != 7468 {
		t.Errorf("dns = %v, dns_queue_num = %d; want true and 7468 by default", c.DNS, c.DNSQueueNum)
	}
	c, err := Parse([]byte("dns = false\ndns_queue_num = 9\n"), "test")
	if err != nil {
		t.Fatal(err)
	}
	if c.DNS || c.DNSQueueNum != 9 {
		t.Errorf("dns overrides not applied: %+v", c)
	}
	if _, err := Parse([]byte("queue_num = 5\ndns_queue_num = 5\n"), "test"); err == nil || !strings.Contains(err.Error(), "dns_queue_num") {
		t.Errorf("same queue for connections and DNS: error %v, want one naming dns_queue_num", err)
	}
	if _, err := Parse([]byte("queue_num = 5\ndns_queue_num = 5\ndns = false\n"), "test"); err != nil {
		t.Errorf("DNS off, its queue number does not matter: %v", err)
	}
	if _, err := Parse([]byte("dns_queue_num = 70000\n"), "test"); err == nil || !strings.Contains(err.Error(), "dns_queue_num") {
		t.Errorf("out-of-range dns_queue_num: %v", err)
	}
}
