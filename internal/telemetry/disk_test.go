package telemetry

import (
	"context"
	"io"
	"net/http/httptest"
	"regexp"
	"strconv"
	"testing"
)

// TestObserveDisk: the scrape shows the data directory's filesystem, with
// a size above zero and no more available than its size.
func TestObserveDisk(t *testing.T) {
	tel, err := New("disktest")
	if err != nil {
		t.Fatal(err)
	}
	defer tel.Shutdown(context.Background())
	if err := tel.ObserveDisk(t.TempDir()); err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewServer(tel.Handler)
	defer srv.Close()
	resp, err := srv.Client().Get(srv.URL)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	read := func(name string) float64 {
		t.Helper()
		m := regexp.MustCompile(`(?m)^` + name + `\{[^}]*\} (\S+)$`).FindSubmatch(body)
		if m == nil {
			t.Fatalf("no %s in the scrape:\n%s", name, body)
		}
		v, err := strconv.ParseFloat(string(m[1]), 64)
		if err != nil {
			t.Fatal(err)
		}
		return v
	}
	size, avail := read("flotilla_disk_size_bytes"), read("flotilla_disk_available_bytes")
	wantSize, wantAvail, err := diskSpace(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	if size <= 0 || avail < 0 || avail > size || size != float64(wantSize) {
		t.Errorf("size %v, available %v; statfs says %d and %d", size, avail, wantSize, wantAvail)
	}
}
