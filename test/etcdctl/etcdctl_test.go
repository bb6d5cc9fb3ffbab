package etcdctl

import (
	"fmt"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"testing"

	"github.com/flotilla-kv/flotilla/test/target"
)

// TestEtcdctl runs the real etcdctl through its everyday commands against
// each target of COMPAT_TARGETS (a real etcd first, whose passing shows
// that the checks are right, then Flotilla) and checks every output
// exactly. Each step uses keys of its own under /ctl/.
func TestEtcdctl(t *testing.T) {
	bin := target.Etcdctl(t)
	for _, name := range target.Names(t) {
		t.Run(name, func(t *testing.T) {
			tg := target.Start(t, name, target.Options{EtcdMembers: 3})
			c := ctl{bin: bin, endpoints: tg.Endpoints}
			var failed []string
			for _, step := range steps {
				if !t.Run(step.name, func(t *testing.T) { step.run(t, c) }) {
					failed = append(failed, step.name)
				}
			}
			t.Logf("%s: %d of the %d etcdctl steps failed (the others passed or were not selected by -run): %v", name, len(failed), len(steps), failed)
		})
	}
}

// steps are the etcdctl checks, run in this order against one target.
var steps = []struct {
	name string
	run  func(*testing.T, ctl)
}{
	{"put-get", testPutGet},
	{"get-prefix-and-ranges", testGetPrefix},
	{"get-across-shards", testGetAcrossShards},
	{"get-at-revision", testGetAtRevision},
	{"del", testDel},
	{"txn", testTxn},
	{"watch", testWatch},
	{"lease", testLease},
	{"member-list-endpoint-status-health", testCluster},
	{"across-endpoints", testAcrossEndpoints},
	{"compaction-and-revision-errors", testCompaction}, // last: it compacts the history of every key
}

func testPutGet(t *testing.T, c ctl) {
	c.expect(t, "", []string{"put", "/ctl/pg/a", "1"}, "OK")
	c.expect(t, "", []string{"get", "/ctl/pg/a"}, "/ctl/pg/a", "1")
	c.expect(t, "", []string{"put", "--prev-kv", "/ctl/pg/a", "two words"}, "OK", "/ctl/pg/a", "1")
	c.expect(t, "", []string{"get", "--print-value-only", "/ctl/pg/a"}, "two words")
	c.expect(t, "", []string{"get", "/ctl/pg/missing"})
	// A value read from standard input, with a newline kept inside it.
	c.expect(t, "line1\nline2", []string{"put", "/ctl/pg/b"}, "OK")
	c.expect(t, "", []string{"get", "/ctl/pg/b"}, "/ctl/pg/b", "line1", "line2")

	var r struct {
		Header header   `json:"header"`
		Kvs    []jsonKV `json:"kvs"`
		Count  int64    `json:"count"`
	}
	c.runJSON(t, &r, "get", "/ctl/pg/a")
	if r.Count != 1 || len(r.Kvs) != 1 || string(r.Kvs[0].Key) != "/ctl/pg/a" || string(r.Kvs[0].Value) != "two words" ||
		r.Kvs[0].Version != 2 || r.Kvs[0].CreateRevision <= 0 || r.Kvs[0].ModRevision <= r.Kvs[0].CreateRevision ||
		r.Header.Revision < r.Kvs[0].ModRevision || r.Header.ClusterID == 0 || r.Header.MemberID == 0 {
		t.Fatalf("get -w json /ctl/pg/a: %+v", r)
	}
}

func testGetPrefix(t *testing.T, c ctl) {
	for _, kv := range [][2]string{{"/ctl/gp/a", "1"}, {"/ctl/gp/b", "2"}, {"/ctl/gp/c", "3"}, {"/ctl/gp0", "outside"}, {"/ctl/go", "before"}} {
		c.expect(t, "", []string{"put", kv[0], kv[1]}, "OK")
	}
	c.expect(t, "", []string{"get", "--prefix", "/ctl/gp/"}, "/ctl/gp/a", "1", "/ctl/gp/b", "2", "/ctl/gp/c", "3")
	c.expect(t, "", []string{"get", "--prefix", "--limit=2", "/ctl/gp/"}, "/ctl/gp/a", "1", "/ctl/gp/b", "2")
	c.expect(t, "", []string{"get", "--prefix", "--keys-only", "/ctl/gp/"}, "/ctl/gp/a", "", "/ctl/gp/b", "", "/ctl/gp/c", "")
	c.expect(t, "", []string{"get", "--prefix", "--sort-by=KEY", "--order=DESCEND", "/ctl/gp/"}, "/ctl/gp/c", "3", "/ctl/gp/b", "2", "/ctl/gp/a", "1")
	c.expect(t, "", []string{"get", "/ctl/gp/a", "/ctl/gp/c"}, "/ctl/gp/a", "1", "/ctl/gp/b", "2") // [a, c)
	c.expect(t, "", []string{"get", "--from-key", "--limit=2", "/ctl/gp/c"}, "/ctl/gp/c", "3", "/ctl/gp0", "outside")

	// --count-only prints with -w fields only: no key-value pair, "More"
	// false and the count.
	out := c.run(t, "", "-w", "fields", "get", "--prefix", "--count-only", "/ctl/gp/")
	if !strings.HasSuffix(out, "\"More\" : false\n\"Count\" : 3\n") || strings.Contains(out, "\"Key\"") {
		t.Fatalf("get -w fields --prefix --count-only /ctl/gp/: %q, want no keys, More false and Count 3", out)
	}
	out = c.run(t, "", "-w", "fields", "get", "--prefix", "--limit=1", "/ctl/gp/")
	if !strings.HasSuffix(out, "\"More\" : true\n\"Count\" : 3\n") {
		t.Fatalf("get -w fields --prefix --limit=1 /ctl/gp/: %q, want More true and Count 3", out)
	}
}

func testGetAcrossShards(t *testing.T, c ctl) {
	keys := []string{"0-span", "P-span", "é-span"}
	for i, k := range keys {
		c.expect(t, "", []string{"put", k, strconv.Itoa(i)}, "OK")
	}
	c.expect(t, "", []string{"get", "--from-key", "0"}, "0-span", "0", "P-span", "1", "é-span", "2")
	c.expect(t, "", []string{"get", "--from-key", "--limit=2", "0"}, "0-span", "0", "P-span", "1")
	c.expect(t, "", []string{"get", "--from-key", "--sort-by=KEY", "--order=DESCEND", "0"}, "é-span", "2", "P-span", "1", "0-span", "0")
	c.expect(t, "", []string{"del", "--from-key", "0"}, "3")
	c.expect(t, "", []string{"get", "--from-key", "0"})
}

func testGetAtRevision(t *testing.T, c ctl) {
	r1 := c.putRev(t, "/ctl/rev/k", "v1")
	r2 := c.putRev(t, "/ctl/rev/k", "v2")
	if r2 <= r1 {
		t.Fatalf("second put's revision %d is not above the first's %d", r2, r1)
	}
	c.expect(t, "", []string{"get", "--rev=" + strconv.FormatInt(r1, 10), "/ctl/rev/k"}, "/ctl/rev/k", "v1")
	c.expect(t, "", []string{"get", "--rev=" + strconv.FormatInt(r2, 10), "/ctl/rev/k"}, "/ctl/rev/k", "v2")
	c.expect(t, "", []string{"get", "--rev=" + strconv.FormatInt(r1-1, 10), "/ctl/rev/k"})
	// Revision bounds on the keys' modifications.
	c.expect(t, "", []string{"get", "--prefix", "--min-mod-rev=" + strconv.FormatInt(r2, 10), "/ctl/rev/"}, "/ctl/rev/k", "v2")
	c.expect(t, "", []string{"get", "--prefix", "--max-mod-rev=" + strconv.FormatInt(r1, 10), "/ctl/rev/"})
}

func testDel(t *testing.T, c ctl) {
	for _, k := range []string{"/ctl/del/a", "/ctl/del/b", "/ctl/del/c", "/ctl/del0"} {
		c.expect(t, "", []string{"put", k, "x"}, "OK")
	}
	c.expect(t, "", []string{"del", "/ctl/del/missing"}, "0")
	c.expect(t, "", []string{"del", "--prev-kv", "/ctl/del/a"}, "1", "/ctl/del/a", "x")
	c.expect(t, "", []string{"del", "--prefix", "/ctl/del/"}, "2")
	c.expect(t, "", []string{"get", "--prefix", "/ctl/del/"})
	c.expect(t, "", []string{"get", "/ctl/del0"}, "/ctl/del0", "x")
}

func testTxn(t *testing.T, c ctl) {
	c.expect(t, "", []string{"put", "/ctl/txn/k", "v1"}, "OK")
	c.expect(t, "", []string{"put", "/ctl/txn/other", "o"}, "OK")
	// Compares, a blank line, the success requests, a blank line, the
	// failure requests: the format etcdctl txn reads from stdin.
	c.expect(t, joinLines([]string{
		`value("/ctl/txn/k") = "v1"`,
		`version("/ctl/txn/k") = "1"`,
		"",
		`put /ctl/txn/k "v2"`,
		`get /ctl/txn/other`,
		"",
		`put /ctl/txn/k "failed"`,
		"",
	}), []string{"txn"},
		"SUCCESS", "", "OK", "", "/ctl/txn/other", "o")
	c.expect(t, "", []string{"get", "/ctl/txn/k"}, "/ctl/txn/k", "v2")

	// A compare that fails runs the failure branch.
	c.expect(t, joinLines([]string{
		`value("/ctl/txn/k") = "v1"`,
		"",
		`put /ctl/txn/k "wrong"`,
		"",
		`put /ctl/txn/k "v3"`,
		`del /ctl/txn/other`,
		"",
	}), []string{"txn"},
		"FAILURE", "", "OK", "", "1")
	c.expect(t, "", []string{"get", "--prefix", "/ctl/txn/"}, "/ctl/txn/k", "v3")

	// Compares on revisions: the key's create revision equals its own,
	// and a missing key's mod revision is 0.
	var r struct {
		Kvs []jsonKV `json:"kvs"`
	}
	c.runJSON(t, &r, "get", "/ctl/txn/k")
	if len(r.Kvs) != 1 {
		t.Fatalf("get /ctl/txn/k: %d kvs", len(r.Kvs))
	}
	c.expect(t, joinLines([]string{
		fmt.Sprintf(`create("/ctl/txn/k") = "%d"`, r.Kvs[0].CreateRevision),
		fmt.Sprintf(`mod("/ctl/txn/k") = "%d"`, r.Kvs[0].ModRevision),
		`mod("/ctl/txn/missing") = "0"`,
		"",
		`put /ctl/txn/created "yes"`,
		"",
		"",
	}), []string{"txn"},
		"SUCCESS", "", "OK")
	c.expect(t, "", []string{"get", "/ctl/txn/created"}, "/ctl/txn/created", "yes")
	c.expect(t, joinLines([]string{
		fmt.Sprintf(`mod("/ctl/txn/k") > "%d"`, r.Kvs[0].ModRevision),
		"",
		"",
		`get /ctl/txn/k`,
		"",
	}), []string{"txn"},
		"FAILURE", "", "/ctl/txn/k", "v3")
}

func testWatch(t *testing.T, c ctl) {
	start := c.putRev(t, "/ctl/watch-start", "x")
	c.expect(t, "", []string{"put", "/ctl/w/a", "1"}, "OK")
	c.expect(t, "", []string{"put", "/ctl/w/b", "2"}, "OK")
	c.expect(t, "", []string{"put", "/ctl/w/a", "3"}, "OK")
	c.expect(t, "", []string{"del", "/ctl/w/a"}, "1")
	c.expect(t, "", []string{"put", "/ctl/w0", "outside"}, "OK")

	// From a past revision: the history is replayed, then live events
	// follow. Each event prints its type, the previous key-value pair
	// (--prev-kv, when there is one), then the key and value.
	w := c.start(t, "watch", "--prefix", "--prev-kv", "--rev="+strconv.FormatInt(start+1, 10), "/ctl/w/")
	history := []string{
		"PUT", "/ctl/w/a", "1",
		"PUT", "/ctl/w/b", "2",
		"PUT", "/ctl/w/a", "1", "/ctl/w/a", "3",
		"DELETE", "/ctl/w/a", "3", "/ctl/w/a", "",
	}
	w.waitLines(t, history...)
	c.expect(t, "", []string{"put", "/ctl/w/c", "4"}, "OK")
	c.expect(t, "", []string{"put", "/ctl/w0", "still outside"}, "OK")
	c.expect(t, "", []string{"del", "--prefix", "/ctl/w/"}, "2")
	w.waitLines(t, append(history,
		"PUT", "/ctl/w/c", "4",
		"DELETE", "/ctl/w/b", "2", "/ctl/w/b", "",
		"DELETE", "/ctl/w/c", "4", "/ctl/w/c", "")...)

	// A single key, from the current revision: the watch is in place
	// once a put made after starting it shows up. Until then the puts
	// are repeated, with values that say which one arrived first. An
	// event is three lines, which may be read one at a time: the loop
	// waits for all three of the first (a put more meanwhile is one more
	// event expected below).
	one := c.start(t, "watch", "/ctl/w1")
	puts := 0
	for ; len(one.lines()) < 3; puts++ {
		if puts == 200 {
			t.Fatalf("watch /ctl/w1 printed nothing after 200 puts; stderr:\n%s", one.stderr.String())
		}
		c.expect(t, "", []string{"put", "/ctl/w1", "v" + strconv.Itoa(puts)}, "OK")
	}
	seen := one.lines()
	first, err := strconv.Atoi(strings.TrimPrefix(seen[min(2, len(seen)-1)], "v"))
	if len(seen) < 3 || seen[0] != "PUT" || seen[1] != "/ctl/w1" || err != nil || first >= puts {
		t.Fatalf("watch /ctl/w1 printed %q first, want PUT, /ctl/w1, v<one of 0..%d>", seen, puts-1)
	}
	var want []string
	for i := first; i < puts; i++ {
		want = append(want, "PUT", "/ctl/w1", "v"+strconv.Itoa(i))
	}
	one.waitLines(t, want...)
	c.expect(t, "", []string{"del", "/ctl/w1"}, "1")
	one.waitLines(t, append(want, "DELETE", "/ctl/w1", "")...)
}

var (
	grantedRE   = regexp.MustCompile(`^lease ([0-9a-f]{16}) granted with TTL\((\d+)s\)\n$`)
	remainingRE = regexp.MustCompile(`^lease ([0-9a-f]{16}) granted with TTL\((\d+)s\), remaining\((\d+)s\)(.*)\n$`)
)

func testLease(t *testing.T, c ctl) {
	out := c.run(t, "", "lease", "grant", "60")
	m := grantedRE.FindStringSubmatch(out)
	if m == nil || m[2] != "60" {
		t.Fatalf("lease grant 60: %q, want \"lease <16 hex digits> granted with TTL(60s)\"", out)
	}
	id := m[1]
	c.expect(t, "", []string{"put", "--lease=" + id, "/ctl/lease/a", "1"}, "OK")
	c.expect(t, "", []string{"put", "--lease=" + id, "/ctl/lease/b", "2"}, "OK")
	c.expect(t, "", []string{"get", "--prefix", "/ctl/lease/"}, "/ctl/lease/a", "1", "/ctl/lease/b", "2")

	var r struct {
		Kvs []jsonKV `json:"kvs"`
	}
	c.runJSON(t, &r, "get", "/ctl/lease/a")
	if want, _ := strconv.ParseInt(id, 16, 64); len(r.Kvs) != 1 || r.Kvs[0].Lease != want {
		t.Fatalf("get -w json /ctl/lease/a: %+v, want lease %s", r.Kvs, id)
	}

	checkRemaining := func(args []string, keys string) {
		t.Helper()
		out := c.run(t, "", args...)
		m := remainingRE.FindStringSubmatch(out)
		if m == nil || m[1] != id || m[2] != "60" || sortedKeys(m[4]) != keys {
			t.Fatalf("etcdctl %s: %q, want \"lease %s granted with TTL(60s), remaining(<50..60>s)%s\"", strings.Join(args, " "), out, id, keys)
		}
		if rem, _ := strconv.Atoi(m[3]); rem < 50 || rem > 60 {
			t.Fatalf("etcdctl %s: remaining %ds, want 50..60", strings.Join(args, " "), rem)
		}
	}
	checkRemaining([]string{"lease", "timetolive", id}, "")
	checkRemaining([]string{"lease", "timetolive", "--keys", id}, ", attached keys([/ctl/lease/a /ctl/lease/b])") // in any order

	c.expect(t, "", []string{"lease", "keep-alive", "--once", id}, fmt.Sprintf("lease %s keepalived with TTL(60)", id))

	out = c.run(t, "", "lease", "list")
	lines := strings.Split(strings.TrimSuffix(out, "\n"), "\n")
	if len(lines) < 2 || lines[0] != fmt.Sprintf("found %d leases", len(lines)-1) || !slices.Contains(lines[1:], id) {
		t.Fatalf("lease list: %q, want \"found N leases\" and N IDs, %s among them", out, id)
	}

	c.expect(t, "", []string{"lease", "revoke", id}, fmt.Sprintf("lease %s revoked", id))
	c.expect(t, "", []string{"get", "--prefix", "/ctl/lease/"})
	c.expect(t, "", []string{"lease", "timetolive", id}, fmt.Sprintf("lease %s already expired", id))
	if _, errOut, err := c.try("", "put", "--lease="+id, "/ctl/lease/c", "3"); err == nil || !strings.Contains(errOut, "requested lease not found") {
		t.Fatalf("put --lease of a revoked lease: err %v, stderr %q; want an error saying \"requested lease not found\"", err, errOut)
	}
}

// sortedKeys sorts the list of ", attached keys([k1 k2 ...])", whose
// order etcd leaves unspecified.
func sortedKeys(s string) string {
	const pre, post = ", attached keys([", "])"
	if !strings.HasPrefix(s, pre) || !strings.HasSuffix(s, post) {
		return s
	}
	keys := strings.Fields(strings.TrimSuffix(strings.TrimPrefix(s, pre), post))
	slices.Sort(keys)
	return pre + strings.Join(keys, " ") + post
}

// member is a member as etcdctl member list -w json prints it.
type member struct {
	ID         uint64   `json:"ID"`
	Name       string   `json:"name"`
	ClientURLs []string `json:"clientURLs"`
}

// epStatus is one endpoint of etcdctl endpoint status -w json.
type epStatus struct {
	Endpoint string `json:"Endpoint"`
	Status   struct {
		Header  header `json:"header"`
		Version string `json:"version"`
		DbSize  int64  `json:"dbSize"`
		Leader  uint64 `json:"leader"`
	} `json:"Status"`
}

func testCluster(t *testing.T, c ctl) {
	var ml struct {
		Header  header   `json:"header"`
		Members []member `json:"members"`
	}
	c.runJSON(t, &ml, "member", "list")
	if len(ml.Members) != len(c.endpoints) {
		t.Fatalf("member list: %d members, want %d (one per endpoint): %+v", len(ml.Members), len(c.endpoints), ml.Members)
	}
	if ml.Header.ClusterID == 0 {
		t.Fatalf("member list: cluster ID 0")
	}
	// Every endpoint is some member's client URL, and every member has
	// an ID of its own.
	ids := map[uint64]member{}
	var urls []string
	for _, m := range ml.Members {
		if m.ID == 0 || ids[m.ID].ID != 0 {
			t.Fatalf("member list: member ID %x is zero or repeated: %+v", m.ID, ml.Members)
		}
		ids[m.ID] = m
		urls = append(urls, m.ClientURLs...)
	}
	for _, ep := range c.endpoints {
		if !slices.Contains(urls, "http://"+ep) {
			t.Fatalf("member list: no member has client URL http://%s: %+v", ep, ml.Members)
		}
	}
	// The simple format: one line per member, "ID, started, name, peer
	// URLs, client URLs, is learner".
	out := c.run(t, "", "member", "list")
	lines := strings.Split(strings.TrimSuffix(out, "\n"), "\n")
	if len(lines) != len(ml.Members) {
		t.Fatalf("member list: %d lines, want %d:\n%s", len(lines), len(ml.Members), out)
	}
	for _, l := range lines {
		f := strings.Split(l, ", ")
		id, err := strconv.ParseUint(f[0], 16, 64)
		if len(f) != 6 || err != nil || ids[id].ID == 0 || f[1] != "started" || f[2] != ids[id].Name ||
			f[4] != strings.Join(ids[id].ClientURLs, ",") || f[5] != "false" {
			t.Fatalf("member list line %q does not match %+v", l, ids[id])
		}
	}

	// endpoint status: every endpoint answers with a member's ID, the
	// same cluster ID and leader, a revision at least that of a put
	// made just before, and a database size (etcdctl divides by it).
	rev := c.putRev(t, "/ctl/status", "x")
	var sts []epStatus
	c.runJSON(t, &sts, "endpoint", "status")
	if len(sts) != len(c.endpoints) {
		t.Fatalf("endpoint status: %d endpoints, want %d: %+v", len(sts), len(c.endpoints), sts)
	}
	for i, s := range sts {
		h := s.Status.Header
		if s.Endpoint != c.endpoints[i] || ids[h.MemberID].ID == 0 || h.ClusterID != ml.Header.ClusterID ||
			ids[s.Status.Leader].ID == 0 || s.Status.Leader != sts[0].Status.Leader || h.Revision < rev ||
			s.Status.DbSize <= 0 || s.Status.Version == "" {
			t.Fatalf("endpoint status of %s: %+v; want a member's ID, cluster ID %x, a member as leader (the same for all), revision >= %d, a positive db size and a version",
				c.endpoints[i], s, ml.Header.ClusterID, rev)
		}
	}
	out = c.run(t, "", "endpoint", "status")
	lines = strings.Split(strings.TrimSuffix(out, "\n"), "\n")
	if len(lines) != len(sts) {
		t.Fatalf("endpoint status: %d lines, want %d:\n%s", len(lines), len(sts), out)
	}
	for i, l := range lines {
		f := strings.Split(l, ", ")
		isLeader := strconv.FormatBool(sts[i].Status.Leader == sts[i].Status.Header.MemberID)
		if len(f) < 9 || f[0] != sts[i].Endpoint || f[1] != fmt.Sprintf("%x", sts[i].Status.Header.MemberID) ||
			f[2] != sts[i].Status.Version || f[8] != isLeader {
			t.Fatalf("endpoint status line %q, want endpoint %s, ID %x, version %s, is leader %s",
				l, sts[i].Endpoint, sts[i].Status.Header.MemberID, sts[i].Status.Version, isLeader)
		}
	}

	// endpoint health, of the endpoints given and of the members' client
	// URLs (--cluster, from member list).
	healthy := regexp.MustCompile(`^(\S+) is healthy: successfully committed proposal: took = \S+$`)
	for _, args := range [][]string{{"endpoint", "health"}, {"endpoint", "health", "--cluster"}} {
		out := c.run(t, "", args...)
		var got []string
		for _, l := range strings.Split(strings.TrimSuffix(out, "\n"), "\n") {
			m := healthy.FindStringSubmatch(l)
			if m == nil {
				t.Fatalf("etcdctl %s: line %q is not \"<endpoint> is healthy: ...\"", strings.Join(args, " "), l)
			}
			got = append(got, strings.TrimPrefix(m[1], "http://"))
		}
		slices.Sort(got)
		want := slices.Sorted(slices.Values(c.endpoints))
		if !slices.Equal(got, want) {
			t.Fatalf("etcdctl %s: healthy %q, want %q", strings.Join(args, " "), got, want)
		}
	}
}

// testAcrossEndpoints talks to one member at a time: a write through
// any member is read at once through every member (reads are
// linearizable), and a lease granted through one member is seen, kept
// alive and revoked through the others.
func testAcrossEndpoints(t *testing.T, c ctl) {
	if len(c.endpoints) < 2 {
		t.Fatalf("%d endpoint(s): nothing to cross", len(c.endpoints))
	}
	member := func(i int) ctl { return ctl{bin: c.bin, endpoints: c.endpoints[i : i+1]} }
	for i := range c.endpoints {
		key := fmt.Sprintf("/ctl/across/%d", i)
		for round := range 2 {
			value := fmt.Sprintf("v%d-%d", i, round)
			member(i).expect(t, "", []string{"put", key, value}, "OK")
			for j := range c.endpoints {
				member(j).expect(t, "", []string{"get", key}, key, value)
			}
		}
	}
	out := member(0).run(t, "", "lease", "grant", "60")
	m := grantedRE.FindStringSubmatch(out)
	if m == nil {
		t.Fatalf("lease grant 60 through %s: %q", c.endpoints[0], out)
	}
	id := m[1]
	last := len(c.endpoints) - 1
	member(1).expect(t, "", []string{"put", "--lease=" + id, "/ctl/across/leased", "x"}, "OK")
	member(last).expect(t, "", []string{"lease", "keep-alive", "--once", id}, fmt.Sprintf("lease %s keepalived with TTL(60)", id))
	out = member(last).run(t, "", "lease", "timetolive", "--keys", id)
	if m := remainingRE.FindStringSubmatch(out); m == nil || m[1] != id || m[4] != ", attached keys([/ctl/across/leased])" {
		t.Fatalf("lease timetolive --keys through %s: %q", c.endpoints[last], out)
	}
	member(1).expect(t, "", []string{"lease", "revoke", id}, fmt.Sprintf("lease %s revoked", id))
	for j := range c.endpoints {
		member(j).expect(t, "", []string{"get", "/ctl/across/leased"})
	}
}

func testCompaction(t *testing.T, c ctl) {
	r1 := c.putRev(t, "/ctl/compact/k", "v1")
	r2 := c.putRev(t, "/ctl/compact/k", "v2")
	c.expect(t, "", []string{"compaction", strconv.FormatInt(r2, 10)}, fmt.Sprintf("compacted revision %d", r2))
	// The compaction point itself is still readable; below it is gone.
	c.expect(t, "", []string{"get", "--rev=" + strconv.FormatInt(r2, 10), "/ctl/compact/k"}, "/ctl/compact/k", "v2")
	const compacted = "etcdserver: mvcc: required revision has been compacted"
	expectError := func(want string, args ...string) {
		t.Helper()
		out, errOut, err := c.try("", args...)
		if err == nil || !strings.Contains(errOut, want) {
			t.Errorf("etcdctl %s: exit %v, stdout %q, stderr %q; want an error saying %q", strings.Join(args, " "), err, out, errOut, want)
		}
	}
	expectError(compacted, "get", "--rev="+strconv.FormatInt(r1, 10), "/ctl/compact/k")
	expectError(compacted, "compaction", strconv.FormatInt(r1, 10))
	// A watch from below the compaction point is cancelled by the server.
	expectError("watch was canceled ("+compacted+")", "watch", "--rev="+strconv.FormatInt(r1, 10), "/ctl/compact/k")
	// A revision far above any written is refused, not waited for.
	expectError("etcdserver: mvcc: required revision is a future revision", "get", "--rev="+strconv.FormatInt(2*r2, 10), "/ctl/compact/k")
}
