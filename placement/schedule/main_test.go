package schedule

import (
	"os"
	"testing"
)

func TestMain(m *testing.M) {
	verifyRanking = true // every test checks the ranked target search against a full scan
	os.Exit(m.Run())
}
