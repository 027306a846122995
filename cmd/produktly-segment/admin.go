package main

import (
	"context"
	"encoding/json"
	"errors"
	"net"
	"net/http"
	httppprof "net/http/pprof"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"

	"github.com/produktly/produktly-segment/integrations"
	"github.com/produktly/produktly-segment/sink"
)

// probe reports one condition for /healthz or /readyz.
type probe func() bool

// newAdmin serves /healthz (the process and its loops are alive), /readyz
// (member of the group and consuming; false while draining), /metrics,
// in accounts mode /accounts (accounts, when not nil), and, when pprof is
// set, the runtime profiles under /debug/pprof/.
func newAdmin(reg *prometheus.Registry, alive, ready probe, accounts http.Handler, pprof bool) *http.Server {
	mux := http.NewServeMux()
	if accounts != nil {
		mux.Handle("GET /accounts", accounts)
	}
	if pprof {
		mux.HandleFunc("/debug/pprof/", httppprof.Index)
		mux.HandleFunc("/debug/pprof/profile", httppprof.Profile)
		mux.HandleFunc("/debug/pprof/trace", httppprof.Trace)
	}
	mux.Handle("GET /metrics", promhttp.HandlerFor(reg, promhttp.HandlerOpts{Registry: reg}))
	mux.HandleFunc("GET /healthz", status(alive))
	mux.HandleFunc("GET /readyz", status(ready))
	return &http.Server{Handler: mux, ReadHeaderTimeout: 5 * time.Second}
}

func status(ok probe) http.HandlerFunc {
	return func(w http.ResponseWriter, _ *http.Request) {
		w.Header().Set("Content-Type", "text/plain; charset=utf-8")
		if ok() {
			_, _ = w.Write([]byte("ok\n"))
			return
		}
		w.WriteHeader(http.StatusServiceUnavailable)
		_, _ = w.Write([]byte("not ready\n"))
	}
}

// serveAdmin listens on addr and serves until ctx ends.
func serveAdmin(ctx context.Context, srv *http.Server, addr string) error {
	l, err := net.Listen("tcp", addr)
	if err != nil {
		return &configError{Name: "ADMIN_ADDR", Err: err}
	}
	errc := make(chan error, 1)
	go func() { errc <- srv.Serve(l) }()
	select {
	case err := <-errc:
		return err
	case <-ctx.Done():
	}
	sctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	_ = srv.Shutdown(sctx)
	if err := <-errc; !errors.Is(err, http.ErrServerClosed) {
		return err
	}
	return nil
}

// accountsReport is the body of GET /accounts: the accounts whose
// deliveries are failing or that are parked, never a write key.
type accountsReport struct {
	Failing  int             `json:"failing"`
	Parked   int             `json:"parked"`
	Accounts []accountStatus `json:"accounts"`
}

type accountStatus struct {
	Account  string `json:"account"`
	Region   string `json:"region"` // "us", "eu", or "" for another endpoint
	Endpoint string `json:"endpoint"`
	State    string `json:"state"` // "failing" or "parked"
	// Since is when its deliveries began failing, or when it was parked.
	Since     time.Time `json:"since"`
	LastError string    `json:"lastError"`
	// Waiting is how many of its records the sink holds.
	Waiting int `json:"waiting"`
}

// accountsHandler serves /accounts in accounts mode (nil otherwise) from
// the sink's Status, which carries no write key.
func (s *service) accountsHandler() http.Handler {
	if s.table == nil {
		return nil
	}
	return http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		rep := accountsReport{Accounts: []accountStatus{}}
		for _, st := range s.seg.Status() {
			a := accountStatus{
				Account: st.Account, Endpoint: st.Endpoint, State: string(st.State),
				Since: st.Since.UTC(), LastError: st.LastError, Waiting: st.Waiting,
			}
			switch st.Endpoint {
			case s.usEndpoint:
				a.Region = string(integrations.RegionUS)
			case s.euEndpoint:
				a.Region = string(integrations.RegionEU)
			}
			switch st.State {
			case sink.StateParked:
				rep.Parked++
			case sink.StateFailing:
				rep.Failing++
			}
			rep.Accounts = append(rep.Accounts, a)
		}
		w.Header().Set("Content-Type", "application/json")
		w.Header().Set("Cache-Control", "no-store")
		enc := json.NewEncoder(w)
		enc.SetIndent("", "  ")
		_ = enc.Encode(rep)
	})
}
