package sink

import (
	"cmp"
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/rs/zerolog"
)

// Segment's limits and this package's defaults. The two byte limits are the
// HTTP Tracking API's, as analytics-go enforces them (maxBatchBytes,
// maxMessageBytes in its message.go). MaxBatchSize caps the messages in one
// request; segmenttest.Server answers 400 above it, as Segment does.
//
// The defaults are the service's: cmd/produktly-segment takes its defaults
// from these constants, so each is defined here once. They were sized by
// benchmark (docs/performance.md): 64 requests in flight keep throughput up
// at 50 ms round trips.
const (
	DefaultEndpoint = "https://api.segment.io"
	// DefaultEUEndpoint is the Tracking API of Segment's EU region, where
	// the sources of EU workspaces send (SEGMENT_EU_ENDPOINT's default).
	DefaultEUEndpoint    = "https://events.eu1.segmentapis.com"
	DefaultBatchSize     = 500
	MaxBatchSize         = 2500
	MaxBatchBytes        = 500000
	MaxMessageBytes      = 32000
	DefaultFlushInterval = 100 * time.Millisecond
	DefaultConcurrency   = 64
	DefaultTimeout       = 10 * time.Second
	DefaultMinBackoff    = 100 * time.Millisecond
	DefaultMaxBackoff    = 30 * time.Second
	// DefaultSystemicRejects is Options.SystemicRejects' default.
	DefaultSystemicRejects = 20

	// Accounts mode (Options.Accounts). Segment asks partners to stay at
	// or below 50 requests per second per source.
	DefaultAccountMaxRPS      = 50
	DefaultAccountConcurrency = 8
	// DefaultAccountLinger is Options.Linger's default in accounts mode:
	// how long a partial batch may wait for more messages while they keep
	// coming. It keeps the contract's latency promise (p99 from record to
	// Segment under 2 s) with room for a round trip and a retry.
	DefaultAccountLinger = time.Second
	// DefaultLingerBytes is Options.LingerBytes' default: 8 MiB of
	// request bodies in partial batches, 1/LingerShare of the consumer's
	// default MaxInFlightBytes (32 MiB), which charges a record three to
	// four times its mapped call: about what the consumer's caps let the
	// sink hold of the bench's records. Measured there (accounts mode,
	// 1,000 Zipf accounts): 4 MiB sent 13,355 requests per 200,000
	// records, 8 MiB 10,433, 16 MiB 10,918 (the caps bind first, and
	// the stall sends the oldest). The service sets LingerBytes to
	// 1/LingerShare of its MAX_IN_FLIGHT_BYTES.
	DefaultLingerBytes = 8 << 20
	// LingerShare: partial batches may hold 1/LingerShare of the
	// caller's in-flight byte cap (DefaultLingerBytes).
	LingerShare = 4
	// DefaultParkAfter is the service's ACCOUNT_PARK_AFTER default; the
	// sink parks nothing unless Options.ParkAfter is set.
	DefaultParkAfter = 30 * time.Second
)

// writeBufferSize is the default transport's write buffer: a request body
// of a few hundred messages goes out with its headers in one write.
const writeBufferSize = 64 << 10

// Options configure a Segment sink. The zero value of every field except
// WriteKey means its default.
type Options struct {
	// Endpoint is the base URL of the Tracking API; requests go to
	// Endpoint+"/v1/batch". Default DefaultEndpoint
	// ("https://api.segment.io"); use DefaultEUEndpoint
	// for a workspace in the EU region, or a segmenttest.Server's URL.
	Endpoint string

	// WriteKey authenticates the source. Required, except in accounts
	// mode. It is sent as the basic auth user name and never logged or
	// put into errors. Messages whose Destination is the zero value go to
	// this source at Endpoint.
	WriteKey string

	// Accounts selects accounts mode: messages name their Destination
	// (write key and endpoint), WriteKey may be empty, and MaxRPS and
	// DestinationConcurrency default to DefaultAccountMaxRPS (50) and
	// DefaultAccountConcurrency (8).
	Accounts bool

	// MaxRPS caps the requests per second of each destination. While a
	// destination is at its cap, its batches fill up to Segment's limits
	// (MaxBatchSize messages, BatchBytes) instead of queueing more
	// requests. Default: no cap; DefaultAccountMaxRPS (50) in accounts
	// mode.
	MaxRPS float64

	// DestinationConcurrency is how many batches of one destination may be
	// out at once (in a request, or waiting for a retry); its further
	// messages wait in the sink. Default Concurrency; in accounts mode
	// DefaultAccountConcurrency (8), so that one failing destination
	// cannot take every request slot.
	DestinationConcurrency int

	// ParkAfter parks a destination whose deliveries have kept failing
	// (5xx, 429, timeouts, connection errors, and also 401/403 and a
	// systemic 400) for longer than this: its waiting messages complete
	// Parked, and so do new messages to it at once and without an attempt
	// (except messages with Retry set, which are attempted) until a
	// delivery to it succeeds. Default 0: never.
	ParkAfter time.Duration

	// ParkAbove parks a failing destination at once when the sink holds
	// more than this many of its messages, so that one high-volume failing
	// destination cannot fill the caller's in-flight limits before
	// ParkAfter has passed. Default 0: never.
	ParkAbove int

	// BatchSize is the most messages one request carries. Default
	// DefaultBatchSize (500), at most MaxBatchSize (2500).
	BatchSize int

	// BatchBytes is the most bytes one request body carries, envelope
	// included. Default and maximum MaxBatchBytes (500000). A message that
	// does not fit with others is sent alone.
	BatchBytes int

	// FlushInterval is how long a partial batch waits for more messages
	// after its first one arrived. Default DefaultFlushInterval (100ms). It bounds the latency a
	// quiet partition adds before its offsets can be committed.
	FlushInterval time.Duration

	// Linger, when longer than FlushInterval, lets a partial batch wait
	// for more messages up to Linger after its first one while messages
	// keep coming, so that a destination with a few messages per
	// FlushInterval sends them in fewer requests. When the flow of
	// messages into the sink stalls (the caller's in-flight caps are full
	// of messages the sink holds, or it has nothing more to send), or the
	// sink holds as many messages as it takes, a partial batch goes
	// FlushInterval after its first message again, oldest first (see
	// linger.go). So a batch waits at least FlushInterval (unless full)
	// and at most Linger. Default FlushInterval (no lingering); in
	// accounts mode DefaultAccountLinger (1s), or FlushInterval if that
	// is longer. Must not be under FlushInterval.
	Linger time.Duration

	// LingerBytes bounds the body bytes of the partial batches that may
	// linger (see Linger): above it the biggest go (body bytes times age,
	// FlushInterval old at least) until they hold 7/8 of it. When the
	// caller stalls while the partial batches hold at least half the
	// bound (its in-flight caps are full of what the sink holds), the
	// sink lowers the bound to 7/8 of what they held, so that it sends
	// before the caller has to wait again, and raises it back by
	// LingerBytes/16 a second (linger.go). Set it at or under what the
	// caller lets the sink hold: above, each stall costs the caller a
	// FlushInterval. Default DefaultLingerBytes (8 MiB).
	LingerBytes int

	// Concurrency is how many requests may be in flight at once, over all
	// destinations. A batch waiting for its retry holds no request slot;
	// how many batches of one destination may be out (in a request or
	// waiting for a retry) is DestinationConcurrency, which defaults to
	// Concurrency in single-source mode, so there it is also how many
	// batches may be waiting for a retry. Default DefaultConcurrency (64).
	Concurrency int

	// Timeout bounds one request, from dial to the end of the response
	// body. Default DefaultTimeout (10s).
	Timeout time.Duration

	// MinBackoff and MaxBackoff bound the exponential wait between
	// attempts of one batch (jittered between half and all of
	// MinBackoff*2^attempt, capped at MaxBackoff). Defaults
	// DefaultMinBackoff (100ms) and DefaultMaxBackoff (30s).
	// A Retry-After header lengthens the wait, up to five minutes.
	MinBackoff, MaxBackoff time.Duration

	// SystemicRejects is how many requests in a row that carried one call
	// each, for distinct calls and with no success in between, Segment
	// must answer 400 before the sink treats 400 as an outage (a proxy or
	// envelope bug) rather than as bad calls: it then keeps the calls and
	// retries them with backoff, Healthy reports false, and the gauge
	// produktly_segment_sink_systemic_rejection is 1, until a request
	// succeeds. The calls rejected before that are rejected for good.
	// Default DefaultSystemicRejects (20).
	SystemicRejects int

	// Client sends the requests. Default: a client whose transport keeps
	// Concurrency idle connections to each endpoint (http.DefaultTransport
	// keeps two, which would mean a TLS handshake for most requests) and
	// writes a request of up to 64 KiB in one write.
	// Options.Timeout applies per request in any case.
	Client *http.Client

	// Logger receives one warn line per failed attempt and one error line
	// per rejected message. Default: the zero Logger, which discards.
	Logger zerolog.Logger

	// Registerer, when set, receives the sink's metrics (see metrics.go).
	// Default: metrics are kept but not registered anywhere.
	Registerer prometheus.Registerer
}

// String describes the options without the write key, so that logging an
// Options value by accident does not leak it.
func (o Options) String() string {
	key := ""
	if o.WriteKey != "" {
		key = "(set)"
	}
	return fmt.Sprintf("{Endpoint:%q WriteKey:%s Accounts:%t BatchSize:%d BatchBytes:%d FlushInterval:%s Linger:%s LingerBytes:%d Concurrency:%d DestinationConcurrency:%d MaxRPS:%v Timeout:%s MinBackoff:%s MaxBackoff:%s ParkAfter:%s ParkAbove:%d}",
		o.Endpoint, key, o.Accounts, o.BatchSize, o.BatchBytes, o.FlushInterval, o.Linger, o.LingerBytes, o.Concurrency, o.DestinationConcurrency, o.MaxRPS, o.Timeout, o.MinBackoff, o.MaxBackoff, o.ParkAfter, o.ParkAbove)
}

// Validate reports every field that is out of range. Zero values are valid
// (they mean the default) except for WriteKey.
func (o Options) Validate() error {
	var errs []error
	bad := func(format string, args ...any) {
		errs = append(errs, fmt.Errorf("sink: "+format, args...))
	}
	if o.WriteKey == "" && !o.Accounts {
		bad("WriteKey is required")
	}
	if o.MaxRPS < 0 {
		bad("MaxRPS %v is negative", o.MaxRPS)
	}
	if o.DestinationConcurrency < 0 {
		bad("DestinationConcurrency %d is negative", o.DestinationConcurrency)
	}
	if o.ParkAfter < 0 {
		bad("ParkAfter %s is negative", o.ParkAfter)
	}
	if o.ParkAbove < 0 {
		bad("ParkAbove %d is negative", o.ParkAbove)
	}
	if o.Endpoint != "" {
		u, err := url.Parse(o.Endpoint)
		switch {
		case err != nil:
			bad("Endpoint is not a URL")
		case u.Scheme != "http" && u.Scheme != "https", u.Host == "":
			bad("Endpoint %q is not an absolute http(s) URL", u.Redacted())
		}
	}
	if o.BatchSize < 0 || o.BatchSize > MaxBatchSize {
		bad("BatchSize %d is outside 1..%d", o.BatchSize, MaxBatchSize)
	}
	if o.BatchBytes < 0 || o.BatchBytes > MaxBatchBytes {
		bad("BatchBytes %d is outside 1..%d", o.BatchBytes, MaxBatchBytes)
	}
	for _, d := range []struct {
		name string
		v    time.Duration
	}{
		{"FlushInterval", o.FlushInterval},
		{"Linger", o.Linger},
		{"Timeout", o.Timeout},
		{"MinBackoff", o.MinBackoff},
		{"MaxBackoff", o.MaxBackoff},
	} {
		if d.v < 0 {
			bad("%s %s is negative", d.name, d.v)
		}
	}
	if o.Concurrency < 0 {
		bad("Concurrency %d is negative", o.Concurrency)
	}
	if o.LingerBytes < 0 {
		bad("LingerBytes %d is negative", o.LingerBytes)
	}
	if o.SystemicRejects < 0 {
		bad("SystemicRejects %d is negative", o.SystemicRejects)
	}
	if flush := cmp.Or(o.FlushInterval, DefaultFlushInterval); o.Linger > 0 && o.Linger < flush {
		bad("Linger %s is under FlushInterval %s", o.Linger, flush)
	}
	if minB := cmp.Or(o.MinBackoff, DefaultMinBackoff); o.MaxBackoff > 0 && minB > o.MaxBackoff {
		bad("MinBackoff %s is over MaxBackoff %s", minB, o.MaxBackoff)
	}
	return errors.Join(errs...)
}

// withDefaults returns o with every zero field replaced by its default.
func (o Options) withDefaults() Options {
	if o.Endpoint == "" {
		o.Endpoint = DefaultEndpoint
	}
	if o.BatchSize == 0 {
		o.BatchSize = DefaultBatchSize
	}
	if o.BatchBytes == 0 {
		o.BatchBytes = MaxBatchBytes
	}
	if o.FlushInterval == 0 {
		o.FlushInterval = DefaultFlushInterval
	}
	if o.Linger == 0 {
		o.Linger = o.FlushInterval
		if o.Accounts {
			o.Linger = max(DefaultAccountLinger, o.FlushInterval)
		}
	}
	if o.LingerBytes == 0 {
		o.LingerBytes = DefaultLingerBytes
	}
	if o.Concurrency == 0 {
		o.Concurrency = DefaultConcurrency
	}
	if o.Timeout == 0 {
		o.Timeout = DefaultTimeout
	}
	if o.MinBackoff == 0 {
		o.MinBackoff = DefaultMinBackoff
	}
	if o.MaxBackoff == 0 {
		o.MaxBackoff = max(DefaultMaxBackoff, o.MinBackoff)
	}
	if o.Accounts && o.MaxRPS == 0 {
		o.MaxRPS = DefaultAccountMaxRPS
	}
	if o.DestinationConcurrency == 0 {
		o.DestinationConcurrency = o.Concurrency
		if o.Accounts {
			o.DestinationConcurrency = min(DefaultAccountConcurrency, o.Concurrency)
		}
	}
	if o.SystemicRejects == 0 {
		o.SystemicRejects = DefaultSystemicRejects
	}
	if o.Client == nil {
		t := http.DefaultTransport.(*http.Transport).Clone()
		t.MaxIdleConnsPerHost = o.Concurrency
		// Accounts mode sends to two endpoints (US and EU): keep
		// Concurrency idle connections for each, not 100 in all.
		t.MaxIdleConns = max(t.MaxIdleConns, 2*o.Concurrency)
		// A body up to this size goes out with its headers in one
		// write; above it net/http copies the rest through a fresh 32 KiB
		// buffer per request (net.genericReadFrom).
		t.WriteBufferSize = writeBufferSize
		o.Client = &http.Client{Transport: t}
	}
	return o
}
