package node

import (
	"github.com/prometheus/client_golang/prometheus"

	"github.com/tempel-ksi/tempel/internal/buildinfo"
)

// registerBuildInfo exports which build is running as the constant gauge
// tempel_build_info{version,revision,goversion} 1, the usual Prometheus
// form, so that dashboards can tell the members of a fleet apart.
func registerBuildInfo(reg prometheus.Registerer) {
	i := buildinfo.Get()
	reg.MustRegister(prometheus.NewGaugeFunc(prometheus.GaugeOpts{
		Name: "tempel_build_info",
		Help: "Build of the running tempel: release version, VCS revision (-dirty if modified) and Go version; always 1.",
		ConstLabels: prometheus.Labels{
			"version":   i.Version,
			"revision":  i.RevisionLabel(),
			"goversion": i.GoVersion,
		},
	}, func() float64 { return 1 }))
}
