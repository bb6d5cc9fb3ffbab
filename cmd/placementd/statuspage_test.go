package main

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/flotilla-kv/flotilla/internal/testutil"
	"github.com/flotilla-kv/flotilla/router"
)

// TestStatusPageInChromium loads placement's status page in headless
// Chromium (Debian's chromium package; `make browser-deps` installs it)
// against a running fleet: every node and shard is shown, a killed node
// turns "down", its shards count as under-replicated and, once
// --down-after passes, the page says why none can be repaired (3 nodes,
// replication factor 3); a screenshot is saved. Three leases granted
// show in the nodes' Leases column (each counted once, by the leader of
// its home shard) and as the summary's total, which still counts them
// once the killed node's shards have new leaders.
func TestStatusPageInChromium(t *testing.T) {
	browser, err := exec.LookPath("chromium")
	if err != nil {
		t.Fatal("chromium is not installed: run 'make browser-deps' (apt-get install chromium)")
	}
	c := newCluster(t, 1, 3, "--initial-shards", "6", "--down-after", "3s")
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
	testutil.Eventually(t, 30*time.Second, func() error {
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

	r, err := router.New(testutil.Context(t, 10*time.Second), router.Config{PlacementAddresses: []string{c.f.PlacementAddrs()}})
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	for range 3 {
		if _, err := r.Grant(testutil.Context(t, 20*time.Second), 600); err != nil {
			t.Fatal(err)
		}
	}
	// The Leases column follows Leaders in each node row.
	leaseCells := regexp.MustCompile(`<tr><td>\d+</td><td>[^<]*</td><td class="(\w+)">\w+</td><td>[^<]*</td><td>[^<]*</td>` +
		`<td class="num">\d+</td><td class="num">\d+</td><td class="num">(\d+)</td>`)
	leasesShown := func(html string) error {
		if !strings.Contains(table(html, "nodes"), "<th>Leases</th>") {
			return fmt.Errorf("no Leases column")
		}
		if !strings.Contains(html, `<span id="summary-leases">leases: 3</span>`) {
			return fmt.Errorf("summary does not show 3 leases: %s",
				regexp.MustCompile(`(?s)<div class="summary" id="summary">.*?</div>`).FindString(html))
		}
		sum, rows := 0, leaseCells.FindAllStringSubmatch(table(html, "nodes"), -1)
		for _, m := range rows {
			if m[1] != "down" {
				n, _ := strconv.Atoi(m[2])
				sum += n
			}
		}
		if len(rows) != 3 || sum != 3 {
			return fmt.Errorf("%d node rows with leases, %d leases on the live nodes, want 3 rows and 3 leases", len(rows), sum)
		}
		return nil
	}
	testutil.Eventually(t, 30*time.Second, func() error { return leasesShown(dom()) })

	victim := c.f.Nodes[2]
	victim.Kill()
	var html string
	testutil.Eventually(t, 30*time.Second, func() error {
		html = dom()
		row := regexp.MustCompile(`<tr><td>2</td><td>` + regexp.QuoteMeta(victim.Addr) + `</td><td class="(\w+)">`).FindStringSubmatch(table(html, "nodes"))
		if row == nil || row[1] != "down" {
			return fmt.Errorf("killed node not shown down yet (%v)", row)
		}
		// Every shard has a replica on each of the 3 nodes: all 6 have
		// two live voters of three, in red; past --down-after none can be
		// repaired, and the page says why.
		if !strings.Contains(html, `<span id="summary-under-replicated" class="bad">under-replicated: 6</span>`) {
			return fmt.Errorf("summary does not show 6 shards under-replicated: %s",
				regexp.MustCompile(`(?s)<div class="summary" id="summary">.*?</div>`).FindString(html))
		}
		if !strings.Contains(html, `<li class="blocked">blocked: 6 shards: cannot repair: no live node without a replica of the shard (s1 s2 s3 s4 s5 ...)</li>`) {
			return fmt.Errorf("the blocked repairs are not listed: %s", regexp.MustCompile(`(?s)<ul id="blocked">.*?</ul>`).FindString(html))
		}
		// The killed node's count is left out of the total; the new
		// leaders of its shards count its leases.
		return leasesShown(html)
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
