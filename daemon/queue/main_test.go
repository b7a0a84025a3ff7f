package queue

import (
	"testing"

	"github.com/tollgate-fw/tollgate/internal/nstest"
)

// TestMain runs the tests in a throwaway network namespace when root, so
// the integration tests bind queues and install rules only there.
func TestMain(m *testing.M) { nstest.Main(m) }
