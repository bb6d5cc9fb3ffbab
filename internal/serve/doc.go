// Package serve holds what Flotilla's server binaries share around their
// gRPC and HTTP servers: a pool of client connections, the health
// endpoints, a graceful stop with a deadline, and Pebble's logger.
package serve
