// Package fleet is the testing.TB face of internal/launch: tests start
// real Flotilla processes on loopback with one-liners that fail the test
// instead of returning errors. It builds the binaries from this checkout
// once per test process (Binary), and every fleet lives in the test's
// temporary directory and is killed when the test ends.
//
//	f := fleet.New(t, 3, "--heartbeat-interval", "250ms") // 3 shardnodes, prepared
//	f.AddPlacement(1, "--initial-shards", "4")            // and a placementd
//	f.StartPlacement()                                    // start, wait for /readyz
//	f.Start()
//	f.Nodes[2].Kill()                                     // SIGKILL
//	f.Nodes[2].Restart()                                  // same data, wait until ready
//
// The processes, their flags, logs and waits are launch's; this package
// adds only the failing of the test and the build. Waits poll with a
// deadline; nothing sleeps for a fixed time.
package fleet
