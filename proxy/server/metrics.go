package server

import (
	"net"
	"net/http"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promauto"
)

// Metrics holds this package's Prometheus collectors. A nil *Metrics records
// nothing, so tests and callers that do not care pass nil. Create it ONCE per
// process (the command keeps it across config reloads and server restarts):
// registering twice panics.
type Metrics struct {
	cert  *certCollector
	conns prometheus.Gauge
}

// NewMetrics creates the collectors and registers them with reg (none when
// reg is nil):
//   - portcullis_tls_certificate_expiry_timestamp_seconds{source="files"|"self-signed"|"acme"}:
//     the NotAfter of the certificate the main listener serves (for acme,
//     the one for the first configured domain), read at scrape time from
//     what the most recently started [Server] holds; absent with tls off;
//   - portcullis_connections_active: open connections on the main listener
//     (a connection taken over by a websocket upgrade stops counting).
//
// It panics when they are already registered with reg.
func NewMetrics(reg prometheus.Registerer) *Metrics {
	m := &Metrics{
		cert: &certCollector{desc: prometheus.NewDesc(
			"portcullis_tls_certificate_expiry_timestamp_seconds",
			"Expiry (NotAfter, Unix seconds) of the TLS certificate served on the main listener, by its source.",
			[]string{"source"}, nil,
		)},
		conns: promauto.With(reg).NewGauge(prometheus.GaugeOpts{
			Name: "portcullis_connections_active",
			Help: "Open client connections on the main listener.",
		}),
	}
	if reg != nil {
		reg.MustRegister(m.cert)
	}
	return m
}

// serve makes m report s's certificate from now on.
func (m *Metrics) serve(s *Server) {
	if m != nil {
		m.cert.srv.Store(s)
	}
}

// connState is the main listener's http.Server.ConnState hook; nil without
// metrics. net/http reports StateNew and exactly one of StateClosed or
// StateHijacked for every connection, HTTP/2 included.
func (m *Metrics) connState() func(net.Conn, http.ConnState) {
	if m == nil {
		return nil
	}
	return func(_ net.Conn, st http.ConnState) {
		switch st {
		case http.StateNew:
			m.conns.Inc()
		case http.StateClosed, http.StateHijacked:
			m.conns.Dec()
		}
	}
}

// certCollector reads the expiry when scraped, so neither handshakes nor
// renewals do any metrics work.
type certCollector struct {
	desc *prometheus.Desc
	srv  atomic.Pointer[Server]
}

func (c *certCollector) Describe(ch chan<- *prometheus.Desc) { ch <- c.desc }

func (c *certCollector) Collect(ch chan<- prometheus.Metric) {
	s := c.srv.Load()
	if s == nil {
		return
	}
	e := s.expiry.Load()
	if e == nil {
		return
	}
	notAfter, ok := e.notAfter()
	if !ok {
		return
	}
	ch <- prometheus.MustNewConstMetric(c.desc, prometheus.GaugeValue, float64(notAfter.Unix()), e.source)
}

// certExpiry tells where the served certificate comes from and when it
// expires; notAfter reports false while there is none (acme before its
// first certificate).
type certExpiry struct {
	source   string
	notAfter func() (time.Time, bool)
}
