package service

import (
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"strings"

	"github.com/tollgate-fw/tollgate/daemon/config"
	"github.com/tollgate-fw/tollgate/daemon/rulebook"
	"github.com/tollgate-fw/tollgate/daemon/rules"
	"github.com/tollgate-fw/tollgate/daemon/rulesdir"
	"github.com/tollgate-fw/tollgate/daemon/store"
)

// DefaultConfigPath is read when no --config is given and it exists.
const DefaultConfigPath = "/etc/tollgate/config.toml"

// maxImportBytes bounds a rules file given to ImportRules.
const maxImportBytes = 16 << 20

// CheckConfig validates the configuration (already done by config.Load) and
// every file of the rules directory, and says what it found. Any bad rule
// makes it fail.
func CheckConfig(cfg config.Config, w io.Writer) error {
	rs, errs := rulesdir.Load(cfg.RulesDir)
	fmt.Fprintf(w, "configuration ok: mode %s, default action %s, queue %d, database %s\n",
		cfg.Mode, cfg.DefaultAction, cfg.QueueNum, cfg.Database)
	fmt.Fprintf(w, "rules directory %s: %d rule(s) load\n", cfg.RulesDir, len(rs))
	for _, err := range errs {
		fmt.Fprintf(w, "  error: %v\n", err)
	}
	if len(errs) > 0 {
		return fmt.Errorf("%d error(s) in the rules directory", len(errs))
	}
	return nil
}

// ImportRules stores the rules of a TOML rules file as system rules, all or
// nothing, and idempotently: importing the same file twice changes nothing.
// It returns how many rules changed. It opens the database itself, so the
// daemon must not be running (the database lock says so).
func ImportRules(cfg config.Config, log *slog.Logger, path string) (int, error) {
	f, err := os.Open(path)
	if err != nil {
		return 0, fmt.Errorf("read rules: %w", err)
	}
	defer f.Close()
	data, err := io.ReadAll(io.LimitReader(f, maxImportBytes+1))
	if err != nil {
		return 0, fmt.Errorf("read rules %s: %w", path, err)
	}
	if len(data) > maxImportBytes {
		return 0, fmt.Errorf("rules %s: larger than %d bytes", path, maxImportBytes)
	}
	rs, errs := rulesdir.Parse(path, data)
	if len(errs) > 0 {
		return 0, fmt.Errorf("nothing imported: %w", errors.Join(errs...))
	}
	for i := range rs {
		// rulesdir names rules "file:name"; stored rules get IDs of their
		// own (from their content, so importing twice changes nothing).
		if strings.Contains(rs[i].ID, ":") {
			rs[i].ID = ""
		}
	}
	st, err := store.Open(store.Options{
		Path: cfg.Database, LockTimeout: cfg.DatabaseLockTimeout.Duration, MaxLogEntries: cfg.LogMaxEntries,
	}, log)
	if err != nil {
		return 0, fmt.Errorf("open database: %w", err)
	}
	book, err := rulebook.New(st, func(*rules.Set) {}, log, rulebook.Options{})
	if err != nil {
		st.Close()
		return 0, err
	}
	n, err := book.Import(rulebook.Actor{UID: 0, Admin: true}, rs)
	if err != nil {
		st.Close()
		return 0, fmt.Errorf("nothing imported: %w", err)
	}
	return n, st.Close()
}
