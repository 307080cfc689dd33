//go:build pgoprofile

// This file is compiled only with -tags pgoprofile, which bench/run.sh
// uses when it records the CPU profile that profile-guided optimisation
// builds from (PGO_PROFILE=cmd/portcullis/default.pgo bench/run.sh). No
// release build has it: the Dockerfile, `go build ./cmd/portcullis` and
// the tests never set the tag.

package main

import (
	"fmt"
	"net"
	"net/http"
	"net/http/pprof"
	"os"
)

// The profiling build serves /debug/pprof/profile on the loopback address
// in PORTCULLIS_PPROF_LISTEN, and nothing else. It starts from init so
// that the product's own start-up code carries no trace of it.
func init() {
	addr := os.Getenv("PORTCULLIS_PPROF_LISTEN")
	if addr == "" {
		return
	}
	host, _, err := net.SplitHostPort(addr)
	if ip := net.ParseIP(host); err != nil || ip == nil || !ip.IsLoopback() {
		fmt.Fprintf(os.Stderr, "portcullis: PORTCULLIS_PPROF_LISTEN=%q: want a loopback host:port such as 127.0.0.1:6060\n", addr)
		os.Exit(2)
	}
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		fmt.Fprintf(os.Stderr, "portcullis: PORTCULLIS_PPROF_LISTEN: %v\n", err)
		os.Exit(2)
	}
	mux := http.NewServeMux()
	mux.HandleFunc("/debug/pprof/profile", pprof.Profile)
	go func() { _ = http.Serve(ln, mux) }()
}
