package kubeletserving_test

import (
	"os"
	"testing"

	"github.com/certctl/certctl/internal/testenv"
)

func TestMain(m *testing.M) {
	code := m.Run()
	testenv.RemoveCertctl()
	os.Exit(code)
}
