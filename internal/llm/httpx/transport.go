// Package httpx is the HTTP path the LLM providers share, from their common settings (Options,
// New) to a call and its reply (Do), built so that no call can hang: every phase of a request
// has its own deadline, a streamed reply that goes quiet is cut, and every failure comes back
// classified. The providers keep their own wire types and their own classification.
//
// The error rule: when the caller's context is cancelled, a call returns ctx.Err() as is, not
// an *llm.Error, so the caller can tell its own stop (pause, shutdown, a progress watchdog) from
// a provider failure. Every other failure is an *llm.Error; no reply in time (the request
// timeout or the caller's deadline), resets, refused connections, truncated bodies and stalled
// streams are Unavailable.
package httpx

import (
	"net"
	"net/http"
	"time"
)

// TransportOptions sizes a transport.
type TransportOptions struct {
	// ResponseHeaderTimeout bounds the wait for a reply's headers once the request is sent;
	// set it to the request timeout.
	ResponseHeaderTimeout time.Duration
	// MaxIdleConnsPerHost is how many kept-alive connections to the provider are pooled: the
	// number of calls that can run at once, so that none opens a connection it throws away.
	MaxIdleConnsPerHost int
}

// Connection timings. IdleConnTimeout sits well below the 60..350 s after which NAT gateways
// and load balancers silently drop an idle connection, so a pooled connection is never one a
// middlebox has already forgotten.
const (
	dialTimeout         = 10 * time.Second
	tcpKeepAlive        = 15 * time.Second
	tlsHandshakeTimeout = 10 * time.Second
	idleConnTimeout     = 30 * time.Second
	// An HTTP/2 connection with no frame for h2PingAfter is pinged, and closed when the ping
	// is not answered within h2PingTimeout, so a dead connection fails its streams instead
	// of leaving them waiting.
	h2PingAfter        = 15 * time.Second
	h2PingTimeout      = 5 * time.Second
	h2WriteByteTimeout = 15 * time.Second
)

// NewTransport returns a transport with a deadline on every phase of a request. Create one per
// provider instance and share it between that provider's calls.
func NewTransport(o TransportOptions) *http.Transport {
	dialer := &net.Dialer{Timeout: dialTimeout, KeepAlive: tcpKeepAlive}
	return &http.Transport{
		Proxy:                 http.ProxyFromEnvironment,
		DialContext:           dialer.DialContext,
		ForceAttemptHTTP2:     true, // a custom DialContext would otherwise turn HTTP/2 off
		TLSHandshakeTimeout:   tlsHandshakeTimeout,
		ResponseHeaderTimeout: o.ResponseHeaderTimeout,
		ExpectContinueTimeout: time.Second,
		IdleConnTimeout:       idleConnTimeout,
		MaxIdleConnsPerHost:   max(o.MaxIdleConnsPerHost, 2),
		HTTP2: &http.HTTP2Config{
			SendPingTimeout:  h2PingAfter,
			PingTimeout:      h2PingTimeout,
			WriteByteTimeout: h2WriteByteTimeout,
		},
	}
}
