package main

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/flotilla-kv/flotilla/internal/fleet"
)

// TestStatusPageInChromium loads placement's status page in headless
// Chromium (Debian's chromium package; `make browser-deps` installs it)
// against a running fleet: every node and shard is shown, a killed node
// turns "down", and a screenshot is saved.
func TestStatusPageInChromium(t *testing.T) {
	browser, err := exec.LookPath("chromium")
	if err != nil {
		t.Fatal("chromium is not installed: run 'make browser-deps' (apt-get install chromium)")
	}
	c := newCluster(t, 1, 3, "--initial-shards", "6")
	c.waitHealthy(60*time.Second, 6, false, 3)
	url := "http://" + c.f.Placement[1].HTTP + "/"

	dom := func() string {
		ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
		defer cancel()
		out, err := exec.CommandContext(ctx, browser, "--headless", "--no-sandbox", "--disable-gpu",
			"--virtual-time-budget=3000", "--dump-dom", url).Output()
		if err != nil {
			t.Fatalf("chromium --dump-dom: %v", err)
		}
		return string(out)
	}
	rows := regexp.MustCompile(`(?s)<table id="(\w+)">.*?</table>`)
	table := func(html, id string) string {
		for _, m := range rows.FindAllStringSubmatch(html, -1) {
			if m[1] == id {
				return m[0]
			}
		}
		return ""
	}
	fleet.Eventually(t, 30*time.Second, func() error {
		html := dom()
		nodes, shards := table(html, "nodes"), table(html, "shards")
		for id, n := range c.f.Nodes {
			if !strings.Contains(nodes, n.Addr) {
				return fmt.Errorf("node %d (%s) not on the page", id, n.Addr)
			}
		}
		if got := strings.Count(shards, "<tr>") - 1; got != 6 {
			return fmt.Errorf("%d shard rows, want 6", got)
		}
		if strings.Count(nodes, `class="up"`) != 3 {
			return fmt.Errorf("not every node shown up")
		}
		return nil
	})

	victim := c.f.Nodes[2]
	victim.Kill()
	var html string
	fleet.Eventually(t, 30*time.Second, func() error {
		html = dom()
		row := regexp.MustCompile(`<tr><td>2</td><td>` + regexp.QuoteMeta(victim.Addr) + `</td><td class="(\w+)">`).FindStringSubmatch(table(html, "nodes"))
		if row == nil || row[1] != "down" {
			return fmt.Errorf("killed node not shown down yet (%v)", row)
		}
		return nil
	})
	shot := filepath.Join(os.TempDir(), "flotilla-status-page.png")
	if out, err := exec.Command(browser, "--headless", "--no-sandbox", "--disable-gpu", "--window-size=1300,1100",
		"--virtual-time-budget=3000", "--screenshot="+shot, url).CombinedOutput(); err != nil {
		t.Fatalf("screenshot: %v\n%s", err, out)
	}
	if st, err := os.Stat(shot); err != nil || st.Size() == 0 {
		t.Fatalf("no screenshot: %v", err)
	}
	t.Logf("screenshot saved to %s", shot)
}
