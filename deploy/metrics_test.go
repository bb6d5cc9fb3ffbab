package deploy

import (
	"bufio"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"
)

// scrape fetches a Prometheus text exposition and returns the sum of the
// samples of each series name (histograms keep their _bucket, _sum and
// _count names).
func scrape(url string) (map[string]float64, error) {
	c := http.Client{Timeout: 5 * time.Second}
	resp, err := c.Get(url)
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		b, _ := io.ReadAll(resp.Body)
		return nil, fmt.Errorf("GET %s: %s: %s", url, resp.Status, b)
	}
	return parseExposition(resp.Body)
}

func parseExposition(r io.Reader) (map[string]float64, error) {
	out := map[string]float64{}
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 1<<20), 1<<20)
	for sc.Scan() {
		line := strings.TrimSpace(sc.Text())
		if line == "" || strings.HasPrefix(line, "#") {
			continue
		}
		name, rest := line, ""
		if i := strings.IndexAny(line, "{ "); i >= 0 {
			name, rest = line[:i], line[i:]
		}
		if strings.HasPrefix(rest, "{") {
			rest = rest[strings.LastIndexByte(rest, '}')+1:]
		}
		fields := strings.Fields(rest)
		if len(fields) == 0 {
			return nil, fmt.Errorf("malformed sample line %q", line)
		}
		v, err := strconv.ParseFloat(fields[0], 64)
		if err != nil {
			return nil, fmt.Errorf("sample line %q: %v", line, err)
		}
		out[name] += v
	}
	return out, sc.Err()
}

// merge adds the series of from into into.
func merge(into, from map[string]float64) {
	for k, v := range from {
		into[k] += v
	}
}

// dashboardExprs returns every PromQL expression of the Grafana dashboard,
// by panel title.
func dashboardExprs(t *testing.T) map[string][]string {
	t.Helper()
	b, err := os.ReadFile("grafana/flotilla.json")
	if err != nil {
		t.Fatal(err)
	}
	var d struct {
		Title  string `json:"title"`
		UID    string `json:"uid"`
		Panels []struct {
			Type    string `json:"type"`
			Title   string `json:"title"`
			Targets []struct {
				Expr string `json:"expr"`
			} `json:"targets"`
		} `json:"panels"`
	}
	if err := json.Unmarshal(b, &d); err != nil {
		t.Fatalf("grafana/flotilla.json: %v", err)
	}
	if d.Title == "" || d.UID == "" {
		t.Fatalf("grafana/flotilla.json: title %q, uid %q: both are required", d.Title, d.UID)
	}
	out := map[string][]string{}
	for _, p := range d.Panels {
		if p.Type == "row" {
			continue
		}
		if len(p.Targets) == 0 {
			t.Errorf("panel %q has no query", p.Title)
		}
		for _, tg := range p.Targets {
			out[p.Title] = append(out[p.Title], tg.Expr)
		}
	}
	if len(out) == 0 {
		t.Fatal("grafana/flotilla.json has no panels")
	}
	return out
}

var (
	// metricName matches a series name of Flotilla's in a PromQL expression.
	metricName = regexp.MustCompile(`\bflotilla_[a-z0-9_]+\b`)
	// quoted matches a quoted label value, which may hold anything.
	quoted = regexp.MustCompile(`"[^"]*"`)
)

// checkDashboard fails t for every series the dashboard queries that is
// missing from have, and for every query that names no Flotilla series.
func checkDashboard(t *testing.T, have map[string]float64) {
	t.Helper()
	var missing []string
	for title, exprs := range dashboardExprs(t) {
		for _, e := range exprs {
			names := metricName.FindAllString(quoted.ReplaceAllString(e, `""`), -1)
			if len(names) == 0 {
				t.Errorf("panel %q: query %q names no flotilla_ series", title, e)
			}
			for _, n := range names {
				if _, ok := have[n]; !ok && !slices.Contains(missing, n) {
					missing = append(missing, n)
					t.Errorf("panel %q queries %s, which no scrape exports", title, n)
				}
			}
		}
	}
	if len(missing) > 0 {
		var names []string
		for n := range have {
			names = append(names, n)
		}
		slices.Sort(names)
		t.Logf("series scraped:\n%s", strings.Join(names, "\n"))
	}
}

// alertExpr matches the expression of an alerting rule in
// prometheus/alerts.yaml, which keeps each on one line.
var alertExpr = regexp.MustCompile(`(?m)^\s*expr:\s*(.*)$`)

// alertExprs returns the expression of every alerting rule in
// prometheus/alerts.yaml.
func alertExprs(t *testing.T) []string {
	t.Helper()
	b, err := os.ReadFile("prometheus/alerts.yaml")
	if err != nil {
		t.Fatal(err)
	}
	var exprs []string
	for _, m := range alertExpr.FindAllStringSubmatch(string(b), -1) {
		e := strings.TrimSpace(m[1])
		if e == "" || e == "|" || e == ">" || strings.HasPrefix(e, "|") || strings.HasPrefix(e, ">") {
			t.Fatalf("prometheus/alerts.yaml: an expression over several lines (%q): keep each on one line", m[0])
		}
		exprs = append(exprs, e)
	}
	if n := strings.Count(string(b), "- alert:"); n == 0 || n != len(exprs) {
		t.Fatalf("prometheus/alerts.yaml: %d alerts, %d expressions read", n, len(exprs))
	}
	return exprs
}

// checkAlerts fails t for every series an alerting rule reads that is
// missing from have, and for every rule that reads no Flotilla series.
func checkAlerts(t *testing.T, have map[string]float64) {
	t.Helper()
	for _, e := range alertExprs(t) {
		names := metricName.FindAllString(quoted.ReplaceAllString(e, `""`), -1)
		if len(names) == 0 {
			t.Errorf("alert rule %q names no flotilla_ series", e)
		}
		for _, n := range names {
			if _, ok := have[n]; !ok {
				t.Errorf("alert rule %q reads %s, which no scrape exports", e, n)
			}
		}
	}
}

func TestAlertExprsRead(t *testing.T) {
	exprs := alertExprs(t)
	if len(exprs) < 5 {
		t.Fatalf("%d alert expressions read: %q", len(exprs), exprs)
	}
	for _, want := range []string{"flotilla_placement_shards_unavailable", "flotilla_placement_shards_under_replicated",
		"flotilla_placement_nodes_down", "flotilla_engine_sync_latency_seconds_bucket", "flotilla_disk_available_bytes"} {
		found := false
		for _, e := range exprs {
			found = found || strings.Contains(e, want)
		}
		if !found {
			t.Errorf("no alert rule reads %s: %q", want, exprs)
		}
	}
}

func TestParseExposition(t *testing.T) {
	m, err := parseExposition(strings.NewReader(`# HELP x y
# TYPE flotilla_a_total counter
flotilla_a_total{kind="create",x="}"} 2
flotilla_a_total{kind="repair"} 3
flotilla_b 1.5e+00
`))
	if err != nil {
		t.Fatal(err)
	}
	if m["flotilla_a_total"] != 5 || m["flotilla_b"] != 1.5 || len(m) != 2 {
		t.Fatalf("parsed %v", m)
	}
}
