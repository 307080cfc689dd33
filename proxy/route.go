package proxy

import (
	"sort"
	"strings"

	"github.com/portcullis-proxy/portcullis/auth/policy"
	"github.com/portcullis-proxy/portcullis/upstream"
)

// route is a compiled RouteConfig.
type route struct {
	name           string
	host           string // normalised; "" matches any host
	path           string
	public         []string
	policy         *policy.Policy
	bearer         bool
	audiences      []string // accepted in bearer tokens: the default one, then bearer_audiences
	forward        upstream.Forward
	encodedSlashes bool
	series         *upstreamSeries
	upstream       *upstream.Upstream
}

// table finds the route for a request: routes with a matching host beat
// host-less ones, then the longest path prefix wins.
type table struct {
	routes    []*route // sorted: specific host first, then longer path first
	hostNames []string // distinct non-empty route hosts, computed once
}

func newTable(rs []*route) *table {
	sorted := append([]*route(nil), rs...)
	sort.SliceStable(sorted, func(i, j int) bool {
		a, b := sorted[i], sorted[j]
		if (a.host != "") != (b.host != "") {
			return a.host != ""
		}
		return len(a.path) > len(b.path)
	})
	t := &table{routes: sorted}
	seen := map[string]bool{}
	for _, r := range sorted {
		if r.host != "" && !seen[r.host] {
			seen[r.host] = true
			t.hostNames = append(t.hostNames, r.host)
		}
	}
	return t
}

// match returns the route for a normalised host and a canonical path, or nil.
func (t *table) match(host, path string) *route {
	for _, r := range t.routes {
		if r.host != "" && r.host != host {
			continue
		}
		if pathHasPrefix(path, r.path) {
			return r
		}
	}
	return nil
}

// isPublic reports whether the canonical path is under one of the route's
// public prefixes (callers never ask for a path kept with encoded slashes).
func (r *route) isPublic(path string) bool {
	for _, p := range r.public {
		if pathHasPrefix(path, p) {
			return true
		}
	}
	return false
}

// pathHasPrefix matches on segment boundaries: a prefix ending in "/" is a
// plain prefix; "/app" matches "/app" and "/app/…" but not "/application".
func pathHasPrefix(path, prefix string) bool {
	if !strings.HasPrefix(path, prefix) {
		return false
	}
	return prefix == "" || prefix[len(prefix)-1] == '/' || len(path) == len(prefix) || path[len(prefix)] == '/'
}

// hosts lists the distinct host names routes are configured for: the only
// hosts an absolute return target may point to. The slice is shared: do
// not modify it.
func (t *table) hosts() []string { return t.hostNames }
