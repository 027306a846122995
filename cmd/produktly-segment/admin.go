package main

import (
	"context"
	"errors"
	"net"
	"net/http"
	httppprof "net/http/pprof"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"
)

// probe reports one condition for /healthz or /readyz.
type probe func() bool

// newAdmin serves /healthz (the process and its loops are alive), /readyz
// (member of the group and consuming; false while draining), /metrics and,
// when pprof is set, the runtime profiles under /debug/pprof/.
func newAdmin(reg *prometheus.Registry, alive, ready probe, pprof bool) *http.Server {
	mux := http.NewServeMux()
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
