// Package fleet starts real Flotilla processes on loopback for tests: it
// builds the binaries once per test process, gives every node its own ports
// and data directory, and kills (SIGKILL), stops (SIGTERM) and restarts
// them. Nothing here sleeps for a fixed time: waits poll a condition with a
// deadline.
package fleet
