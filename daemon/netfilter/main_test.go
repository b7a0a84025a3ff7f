package netfilter

import (
	"log/slog"
	"testing"

	"github.com/tollgate-fw/tollgate/internal/nstest"
)

// TestMain runs the tests in a throwaway network namespace when root, so
// the integration tests never touch the machine's own firewall.
func TestMain(m *testing.M) { nstest.Main(m) }

// testLogger logs through t.Log.
func testLogger(t testing.TB) *slog.Logger {
	return slog.New(slog.NewTextHandler(testWriter{t}, &slog.HandlerOptions{Level: slog.LevelDebug}))
}

type testWriter struct{ t testing.TB }

func (w testWriter) Write(p []byte) (int, error) {
	w.t.Helper()
	w.t.Log(string(p))
	return len(p), nil
}
