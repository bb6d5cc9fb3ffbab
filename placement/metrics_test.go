package placement

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"regexp"
	"strconv"
	"testing"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"
	otelprom "go.opentelemetry.io/otel/exporters/prometheus"
	sdkmetric "go.opentelemetry.io/otel/sdk/metric"

	"github.com/flotilla-kv/flotilla/multiraft"
)

// scrapeStatusGauges serves s's ObserveStatus gauges through the
// Prometheus exporter placementd uses and returns a function that scrapes
// them.
func scrapeStatusGauges(t *testing.T, s *Service) func() string {
	t.Helper()
	reg := prometheus.NewRegistry()
	exp, err := otelprom.New(otelprom.WithRegisterer(reg))
	if err != nil {
		t.Fatal(err)
	}
	mp := sdkmetric.NewMeterProvider(sdkmetric.WithReader(exp))
	t.Cleanup(func() { _ = mp.Shutdown(context.Background()) })
	if err := s.ObserveStatus(mp.Meter("placement-test")); err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewServer(promhttp.HandlerFor(reg, promhttp.HandlerOpts{}))
	t.Cleanup(srv.Close)
	return func() string {
		t.Helper()
		resp, err := http.Get(srv.URL)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		b, err := io.ReadAll(resp.Body)
		if err != nil {
			t.Fatal(err)
		}
		return string(b)
	}
}

// sample returns the value of the one sample of name whose labels include
// every one of labels (`kind="repair"`), or an error.
func sample(body, name string, labels ...string) (int, error) {
	re := regexp.MustCompile(`(?m)^` + name + `\{([^}]*)\} (\S+)$`)
	found := -1
	for _, m := range re.FindAllStringSubmatch(body, -1) {
		all := true
		for _, l := range labels {
			all = all && regexp.MustCompile(`(^|,)`+regexp.QuoteMeta(l)+`(,|$)`).MatchString(m[1])
		}
		if !all {
			continue
		}
		if found >= 0 {
			return 0, fmt.Errorf("two samples of %s%v", name, labels)
		}
		v, err := strconv.ParseFloat(m[2], 64)
		if err != nil {
			return 0, err
		}
		found = int(v)
	}
	if found < 0 {
		return 0, fmt.Errorf("no sample of %s%v in the scrape", name, labels)
	}
	return found, nil
}

// TestStatusGaugesScraped: the operators running by kind and the status
// page's problems by kind are in a Prometheus scrape, at 0 in a healthy
// fleet, and follow a running operator, a killed node and a repair loop.
func TestStatusGaugesScraped(t *testing.T) {
	f := newStatusFleet(t, 3)
	f.beat(1, 2, 3)
	scrape := scrapeStatusGauges(t, f.s)
	expect := func(body, name string, want int, labels ...string) {
		t.Helper()
		got, err := sample(body, name, labels...)
		if err != nil {
			t.Fatalf("%v\n%s", err, body)
		}
		if got != want {
			t.Errorf("%s%v = %d, want %d", name, labels, got, want)
		}
	}
	body := scrape()
	for _, k := range operatorKinds {
		expect(body, "flotilla_placement_operators_running", 0, `kind="`+k+`"`)
	}
	for _, p := range problemSeverity {
		expect(body, "flotilla_placement_problems", 0, `kind="`+p.kind+`"`, `severity="`+p.severity+`"`)
	}

	running := f.s.ops.start("repair", 1, "repair s1", f.now)
	for range 3 {
		f.tick(1, 2) // node 3 stops
	}
	body = scrape()
	expect(body, "flotilla_placement_operators_running", 1, `kind="repair"`)
	expect(body, "flotilla_placement_problems", 1, `kind="nodes-down"`, `severity="critical"`)
	expect(body, "flotilla_placement_problems", 1, `kind="shards-under-replicated"`, `severity="warning"`)
	f.s.ops.finish(running, errors.New("no leader"), f.now)
	for range 2 {
		f.s.ops.finish(f.s.ops.start("repair", 1, "repair s1", f.now), nil, f.now)
	}
	body = scrape()
	expect(body, "flotilla_placement_operators_running", 0, `kind="repair"`)
	expect(body, "flotilla_placement_problems", 1, `kind="operators-repeating"`, `severity="warning"`)
}

// TestProblemSeveritiesListed: every problem the status page can show is
// one the gauge reports, with the severity it has on the page.
func TestProblemSeveritiesListed(t *testing.T) {
	listed := map[string]string{}
	for _, p := range problemSeverity {
		listed[p.kind] = p.severity
	}
	f := newStatusFleet(t, 4)
	f.s.cat.load().settings.Bootstrapped = false
	f.layout = f.layout[:1]
	f.lagging[1] = []multiraft.ReplicaID{12}
	f.beat(1, 2, 3, 4)
	f.s.ops.finish(f.s.ops.start("split", 1, "split s1", f.now), errors.New("too few keys"), f.now)
	f.s.ops.start("repair", 1, "repair s1", f.now)
	for range 70 {
		f.tick(1)
	}
	seen := map[string]bool{}
	check := func() {
		for _, p := range f.status().Health.Problems {
			seen[p.Kind] = true
			if listed[p.Kind] != p.Severity {
				t.Errorf("problem %s of severity %s: the gauge lists it as %q", p.Kind, p.Severity, listed[p.Kind])
			}
		}
	}
	check()
	f.s.cat.load().settings.Bootstrapped = true
	check()
	t.Logf("kinds: %v", seen)
	if len(seen) < 9 {
		t.Errorf("only %d kinds of problem exercised: %v", len(seen), seen)
	}
}
