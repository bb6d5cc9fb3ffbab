package layers

import (
	"bufio"
	"bytes"
	"fmt"
	"os/exec"
	"path/filepath"
	"runtime"
	"slices"
	"strings"
	"testing"
)

const module = "github.com/flotilla-kv/flotilla/"

// layer is a package's place in the stack. A package may import packages
// of lower layers only, never a sibling of its own layer, except inside
// one component (placement may import placement/schedule) and among
// leaves (pebbleopts builds its key order on keys). Harnesses may
// import anything but the binaries, and only harnesses and tests import
// them.
type layer int

const (
	leaf     layer = iota // no Flotilla imports but other leaves
	engine                // multiraft: knows nothing of keys or shards
	state                 // shard: the replicated state machine
	wire                  // conversions between the state machine's types and the wire messages (rpc/pbconv)
	service               // rpc, placement, router: siblings, never importing each other
	frontend              // other protocols served over the router (etcdapi: the etcd v3 API)
	plumbing              // what the binaries share: flags, servers, telemetry, the local fleet launcher
	tool                  // the bench suite: drives fleets it launches through the plumbing
	binary                // cmd/...
	harness               // simulators, fleets and chaos: test machinery beside the stack
)

var names = [...]string{"leaf", "engine", "state", "wire", "service", "frontend", "plumbing", "tool", "binary", "harness"}

func (l layer) String() string { return names[l] }

// layers places every package of the module. Keep it in step with the
// table in ARCHITECTURE.md.
var layers = map[string]layer{
	"internal/keys":       leaf,
	"internal/syskeys":    leaf,
	"internal/pebbleopts": leaf,
	"internal/keyfmt":     leaf,
	"internal/ports":      leaf,
	"internal/cpustat":    leaf,
	"internal/poll":       leaf,
	"internal/tlsconfig":  leaf,
	"internal/framed":     leaf,
	"internal/buildinfo":  leaf,
	"internal/readable":   leaf,
	"rpc/flotillapb":      leaf,
	"placement/tso":       leaf,
	"deploy":              leaf,

	"multiraft": engine,
	"shard":     state,

	"rpc/pbconv": wire,

	"rpc":                service,
	"placement":          service,
	"placement/schedule": service,
	"router":             service,
	"router/concurrency": service,
	"lease":              service,

	"etcdapi": frontend,
	"backup":  frontend,

	"internal/serve":     plumbing,
	"internal/cli":       plumbing,
	"internal/telemetry": plumbing,
	"internal/launch":    plumbing,

	"bench": tool,

	"cmd/flotilla":       binary,
	"cmd/flotilla-bench": binary,
	"cmd/placementd":     binary,
	"cmd/shardnode":      binary,

	"internal/sim":           harness,
	"internal/chaos":         harness,
	"internal/chaos/recheck": harness,
	"internal/fleet":         harness,
	"internal/testutil":      harness,
	"multiraft/bench":        harness,
	"internal/layers":        harness,
	"internal/txncheck":      harness,
}

// only narrows what some packages may import beyond the layer rule: the
// router is a client library and links only the wire types (and the
// framed KV connections' client), and the
// engine only the key encoding.
var only = map[string][]string{
	"router":    {"rpc/flotillapb", "internal/keyfmt", "internal/syskeys", "internal/framed"},
	"multiraft": {"internal/keys"},
}

// component is the first path element (placement/schedule → placement),
// so a component's packages may import each other within one layer.
func component(pkg string) string {
	first, _, _ := strings.Cut(pkg, "/")
	if first == "internal" || first == "cmd" {
		return pkg
	}
	return first
}

// allowed reports whether from may import to, and why not.
func allowed(from, to string) (bool, string) {
	lf, lt := layers[from], layers[to]
	if list, ok := only[from]; ok && !slices.Contains(list, to) {
		return false, fmt.Sprintf("%s may import only %v", from, list)
	}
	switch {
	case lt == harness && lf != harness:
		return false, "only harnesses import a harness"
	case lt == binary:
		return false, "nothing imports a binary"
	case lf == harness:
		return true, ""
	case lt < lf:
		return true, ""
	case lt == lf && component(from) == component(to):
		return true, ""
	case lt == leaf && lf == leaf:
		return true, "" // a leaf may build on another leaf (pebbleopts on keys)
	case lt == lf:
		return false, fmt.Sprintf("%s and %s are siblings in the %s layer", from, to, lf)
	}
	return false, fmt.Sprintf("%s (%s) is above %s (%s)", to, lt, from, lf)
}

// goTool returns the go command of the toolchain running this test, or
// the one on $PATH.
func goTool() string {
	if root := runtime.GOROOT(); root != "" {
		return filepath.Join(root, "bin", "go")
	}
	return "go"
}

// imports lists each package of the module with its non-test imports
// inside the module.
func imports(t *testing.T) map[string][]string {
	t.Helper()
	cmd := exec.Command(goTool(), "list", "-f", "{{.ImportPath}} {{join .Imports \" \"}}", module+"...")
	cmd.Dir = "../.."
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("go list: %v\n%s", err, stderr.String())
	}
	graph := map[string][]string{}
	sc := bufio.NewScanner(bytes.NewReader(out))
	for sc.Scan() {
		fields := strings.Fields(sc.Text())
		if len(fields) == 0 {
			continue
		}
		pkg := strings.TrimPrefix(fields[0], module)
		graph[pkg] = nil
		for _, imp := range fields[1:] {
			if rest, ok := strings.CutPrefix(imp, module); ok {
				graph[pkg] = append(graph[pkg], rest)
			}
		}
	}
	if len(graph) == 0 {
		t.Fatal("go list found no package")
	}
	return graph
}

// TestImportDirection fails on every import against the layers and on
// every package the table does not place.
func TestImportDirection(t *testing.T) {
	graph := imports(t)
	pkgs := make([]string, 0, len(graph))
	for p := range graph {
		pkgs = append(pkgs, p)
	}
	slices.Sort(pkgs)
	for _, from := range pkgs {
		if _, ok := layers[from]; !ok {
			t.Errorf("package %s has no layer: add it to layers_test.go and ARCHITECTURE.md", from)
			continue
		}
		for _, to := range graph[from] {
			if ok, why := allowed(from, to); !ok {
				t.Errorf("edge %s -> %s goes against the layers: %s", from, to, why)
			}
		}
	}
	for p := range layers {
		if _, ok := graph[p]; !ok {
			t.Errorf("layers_test.go places %s, which is not a package any more", p)
		}
	}
}

// TestAllowed checks the rule itself on edges it must refuse and accept,
// so a loosened rule cannot pass unnoticed.
func TestAllowed(t *testing.T) {
	for _, tc := range []struct {
		from, to string
		want     bool
	}{
		{"shard", "multiraft", true},
		{"multiraft", "shard", false},
		{"placement", "rpc", false},
		{"rpc", "placement", false},
		{"placement", "placement/schedule", true},
		{"router", "shard", false},
		{"router", "rpc/flotillapb", true},
		{"cmd/shardnode", "rpc", true},
		{"rpc", "internal/sim", false},
		{"internal/sim", "shard", true},
		{"bench", "cmd/flotilla", false},
		{"cmd/flotilla-bench", "bench", true},
		{"internal/cli", "internal/telemetry", false},
		{"bench", "internal/launch", true},
		{"internal/launch", "bench", false},
		{"cmd/flotilla", "internal/launch", true},
		{"internal/launch", "internal/fleet", false},
	} {
		if got, why := allowed(tc.from, tc.to); got != tc.want {
			t.Errorf("allowed(%s -> %s) = %v (%s), want %v", tc.from, tc.to, got, why, tc.want)
		}
	}
}
