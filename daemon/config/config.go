// Package config reads the daemon's TOML configuration over its embedded
// defaults and validates it.
//
// It owns the names, defaults and limits of every configuration key. It must
// not open the database, touch the kernel or start anything: it only says
// what the configuration is, or what is wrong with it.
package config

import (
	"bytes"
	_ "embed"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"time"

	"github.com/BurntSushi/toml"

	"github.com/tollgate-fw/tollgate/shared"
)

//go:embed default.toml
var defaultTOML []byte

// DefaultTOML returns the embedded defaults, commented, as shipped.
func DefaultTOML() []byte { return bytes.Clone(defaultTOML) }

// Mode is how the daemon treats connections.
type Mode string

const (
	ModeEnforcing Mode = "enforcing" // rules decide
	ModeMonitor   Mode = "monitor"   // allow everything, log what would have been denied
	ModeDisabled  Mode = "disabled"  // allow everything, log nothing
)

// ParseMode checks a mode name.
func ParseMode(s string) (Mode, error) {
	switch m := Mode(s); m {
	case ModeEnforcing, ModeMonitor, ModeDisabled:
		return m, nil
	}
	return "", fmt.Errorf("unknown mode %q (want enforcing, monitor or disabled)", s)
}

// Duration is a time.Duration written as "30s" or "5m" in TOML.
type Duration struct{ time.Duration }

// UnmarshalText parses a Go duration string.
func (d *Duration) UnmarshalText(b []byte) error {
	v, err := time.ParseDuration(string(b))
	if err != nil {
		return fmt.Errorf("want a duration like \"30s\": %w", err)
	}
	d.Duration = v
	return nil
}

// MarshalText prints the duration.
func (d Duration) MarshalText() ([]byte, error) { return []byte(d.Duration.String()), nil }

// Config is the daemon's configuration.
type Config struct {
	Database            string        `toml:"database"`
	DatabaseLockTimeout Duration      `toml:"database_lock_timeout"`
	RulesDir            string        `toml:"rules_dir"`
	DefaultAction       shared.Action `toml:"default_action"`
	PromptTimeout       Duration      `toml:"prompt_timeout"`
	Mode                Mode          `toml:"mode"`
	FailOpen            bool          `toml:"fail_open"`
	InterceptLoopback   bool          `toml:"intercept_loopback"`
	Inbound             bool          `toml:"inbound"`
	QueueNum            uint16        `toml:"queue_num"`
	QueueMaxLen         uint32        `toml:"queue_max_len"`
	DNS                 bool          `toml:"dns"`
	DNSQueueNum         uint16        `toml:"dns_queue_num"`
	RejectMark          uint32        `toml:"reject_mark"`
	AcceptMarkOut       uint32        `toml:"accept_mark_out"`
	AcceptMarkIn        uint32        `toml:"accept_mark_in"`
	IptablesBackend     string        `toml:"iptables_backend"`
	ProcEventsNetns     string        `toml:"proc_events_netns"`
	BusAddress          string        `toml:"bus_address"`
	Polkit              bool          `toml:"polkit"`
	LogMaxEntries       int           `toml:"log_max_entries"`
	LogLevel            string        `toml:"log_level"`
}

// Limits on values, so a typo cannot make the daemon hold packets for a day
// or keep an unbounded log.
const (
	MaxPromptTimeout   = 10 * time.Minute
	MaxLogEntries      = 10_000_000
	MaxLockTimeout     = 5 * time.Minute
	WatchdogGrace      = 5 * time.Second // added to the prompt timeout before the watchdog steps in
	MinQueueLen        = 4096            // room for every packet the daemon may hold, and more
	MaxQueueLen        = 1 << 20
	maxConfigFileBytes = 1 << 20
)

// Default returns the embedded defaults.
func Default() Config {
	c, err := parse(Config{}, defaultTOML, "embedded defaults")
	if err != nil {
		// The embedded file is part of the binary and tested; this cannot
		// happen in a released build.
		panic(err)
	}
	return c
}

// Load reads path over the embedded defaults. An empty path means the
// defaults alone.
func Load(path string) (Config, error) {
	if path == "" {
		return Default(), nil
	}
	f, err := os.Open(path)
	if err != nil {
		return Config{}, fmt.Errorf("read config: %w", err)
	}
	defer f.Close()
	var buf bytes.Buffer
	if _, err := buf.ReadFrom(io.LimitReader(f, maxConfigFileBytes+1)); err != nil {
		return Config{}, fmt.Errorf("read config %s: %w", path, err)
	}
	if buf.Len() > maxConfigFileBytes {
		return Config{}, fmt.Errorf("config %s: larger than %d bytes", path, maxConfigFileBytes)
	}
	c, err := Parse(buf.Bytes(), path)
	if err != nil {
		return Config{}, err
	}
	if c.RulesDir != "" && !filepath.IsAbs(c.RulesDir) {
		c.RulesDir = filepath.Join(filepath.Dir(path), c.RulesDir)
	}
	if c.Database != "" && !filepath.IsAbs(c.Database) {
		c.Database = filepath.Join(filepath.Dir(path), c.Database)
	}
	return c, nil
}

// Parse reads TOML text over the embedded defaults; name is used in errors.
func Parse(data []byte, name string) (Config, error) {
	return parse(Default(), data, name)
}

func parse(base Config, data []byte, name string) (Config, error) {
	c := base
	md, err := toml.Decode(string(data), &c)
	if err != nil {
		return Config{}, fmt.Errorf("config %s: %w", name, err)
	}
	if und := md.Undecoded(); len(und) > 0 {
		keys := make([]string, len(und))
		for i, k := range und {
			keys[i] = k.String()
		}
		sort.Strings(keys)
		return Config{}, fmt.Errorf("config %s: unknown key(s) %s", name, strings.Join(keys, ", "))
	}
	if err := c.Validate(); err != nil {
		return Config{}, fmt.Errorf("config %s: %w", name, err)
	}
	return c, nil
}

// Validate checks every key and says which one is wrong.
func (c *Config) Validate() error {
	var errs []error
	bad := func(key, format string, a ...any) {
		errs = append(errs, fmt.Errorf("%s: %s", key, fmt.Sprintf(format, a...)))
	}
	if c.Database == "" {
		bad("database", "must be a file path")
	}
	if c.DatabaseLockTimeout.Duration <= 0 || c.DatabaseLockTimeout.Duration > MaxLockTimeout {
		bad("database_lock_timeout", "must be between 0 and %s, got %s", MaxLockTimeout, c.DatabaseLockTimeout.Duration)
	}
	switch c.DefaultAction {
	case shared.ActionAllow, shared.ActionDeny, shared.ActionReject:
	default:
		bad("default_action", "must be deny, reject or allow, got %q", c.DefaultAction)
	}
	if c.PromptTimeout.Duration <= 0 || c.PromptTimeout.Duration > MaxPromptTimeout {
		bad("prompt_timeout", "must be between 0 and %s, got %s", MaxPromptTimeout, c.PromptTimeout.Duration)
	}
	if _, err := ParseMode(string(c.Mode)); err != nil {
		bad("mode", "%v", err)
	}
	if c.QueueMaxLen < MinQueueLen || c.QueueMaxLen > MaxQueueLen {
		bad("queue_max_len", "must be between %d and %d, got %d", MinQueueLen, MaxQueueLen, c.QueueMaxLen)
	}
	seen := uint32(0)
	for _, m := range []struct {
		key string
		bit uint32
	}{{"reject_mark", c.RejectMark}, {"accept_mark_out", c.AcceptMarkOut}, {"accept_mark_in", c.AcceptMarkIn}} {
		switch {
		case m.bit == 0 || m.bit&(m.bit-1) != 0:
			bad(m.key, "must be a single bit like 0x100000, got %#x", m.bit)
		case seen&m.bit != 0:
			bad(m.key, "bit %#x is already used by another mark key", m.bit)
		}
		seen |= m.bit
	}
	if c.DNS && c.DNSQueueNum == c.QueueNum {
		bad("dns_queue_num", "must differ from queue_num (both %d)", c.QueueNum)
	}
	switch c.IptablesBackend {
	case "auto", "nft", "legacy":
	default:
		bad("iptables_backend", "must be auto, nft or legacy, got %q", c.IptablesBackend)
	}
	if c.ProcEventsNetns != "" && !filepath.IsAbs(c.ProcEventsNetns) {
		bad("proc_events_netns", "must be an absolute path like /proc/1/ns/net, got %q", c.ProcEventsNetns)
	}
	if c.LogMaxEntries < 0 || c.LogMaxEntries > MaxLogEntries {
		bad("log_max_entries", "must be between 0 and %d, got %d", MaxLogEntries, c.LogMaxEntries)
	}
	if _, err := ParseLogLevel(c.LogLevel); err != nil {
		bad("log_level", "%v", err)
	}
	return errors.Join(errs...)
}

// WatchdogAge is how old a held packet may get before the watchdog gives it
// the default verdict.
func (c *Config) WatchdogAge() time.Duration { return c.PromptTimeout.Duration + WatchdogGrace }

// ParseLogLevel maps a level name to slog's.
func ParseLogLevel(s string) (slog.Level, error) {
	var l slog.Level
	if err := l.UnmarshalText([]byte(s)); err != nil {
		return 0, fmt.Errorf("unknown log level %q (want debug, info, warn or error)", s)
	}
	return l, nil
}
