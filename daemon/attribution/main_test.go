package attribution

import (
	"os"
	"testing"

	"github.com/tollgate-fw/tollgate/internal/nstest"
)

func TestMain(m *testing.M) {
	if mode := os.Getenv(helperEnv); mode != "" {
		os.Exit(runHelper(mode, os.Args[2:])) // os.Args[1] is the mode
	}
	nstest.Main(m)
}
