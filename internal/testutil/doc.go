// Package testutil holds the helpers Flotilla's tests share: a context
// bounded by the test, waiting for a condition with a deadline, this
// process's CPU time for benchmarks, the goroutine-leak check of a
// package's TestMain, and a few fixtures more than one package's tests
// need: a shard descriptor over the first key byte (ShardDesc), a health
// check and the plaintext-refusal check of a mutual-TLS server. Only
// tests import it.
//
//	func TestMain(m *testing.M) { testutil.VerifyNoLeaks(m) }
//
//	func TestSomething(t *testing.T) {
//		ctx := testutil.Context(t, 30*time.Second)
//		testutil.Eventually(t, 10*time.Second, func() error {
//			return check(ctx) // nil once it holds, else what is missing
//		})
//	}
//
// Eventually is for what the test cannot be told about (a process
// becoming ready, a heartbeat reaching placement); where the code under
// test can signal (a channel, a future, an injected clock), wait on that.
// Real processes are started by internal/fleet.
package testutil
