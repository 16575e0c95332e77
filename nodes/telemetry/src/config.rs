//! How to export: from flags and the standard OpenTelemetry variables.

use crate::export::DEFAULT_QUEUE;

/// How to export, read from flags and the standard OpenTelemetry variables.
#[derive(Clone, Debug, PartialEq)]
pub struct TelemetryConfig {
    /// The collector, e.g. `http://localhost:4317` (OTLP over gRPC).
    pub endpoint: String,
    /// `service.name` of spans without a `node` attribute (and of all spans when
    /// `per_node_services` is false).
    pub service_name: String,
    /// Export each node's spans under its own service name (several nodes in one process).
    pub per_node_services: bool,
    /// Fraction of traces kept, 0.0..=1.0 (decided where a trace starts, see
    /// [`sample_root`]); a span with a parent follows the parent.
    pub sample_ratio: f64,
    /// Finished spans waiting for export at most; beyond this they are dropped and counted.
    pub queue: usize,
}

impl TelemetryConfig {
    /// The configuration from a flag, falling back to `OTEL_EXPORTER_OTLP_TRACES_ENDPOINT`
    /// and `OTEL_EXPORTER_OTLP_ENDPOINT`; `OTEL_SERVICE_NAME` names the service
    /// (`default_service` otherwise) and `OTEL_TRACES_SAMPLER_ARG` the ratio unless
    /// `ratio` is given. `Ok(None)`: tracing is off (no endpoint, or `OTEL_SDK_DISABLED`).
    pub fn from_env(
        endpoint: Option<String>,
        default_service: &str,
        ratio: Option<f64>,
    ) -> Result<Option<Self>, String> {
        Self::from_lookup(endpoint, default_service, ratio, |k| std::env::var(k).ok())
    }

    fn from_lookup(
        endpoint: Option<String>,
        default_service: &str,
        ratio: Option<f64>,
        env: impl Fn(&str) -> Option<String>,
    ) -> Result<Option<Self>, String> {
        let set = |k: &str| env(k).map(|v| v.trim().to_string()).filter(|v| !v.is_empty());
        if set("OTEL_SDK_DISABLED").is_some_and(|v| v.eq_ignore_ascii_case("true")) {
            return Ok(None);
        }
        let Some(endpoint) = endpoint
            .filter(|e| !e.trim().is_empty())
            .or_else(|| set("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT"))
            .or_else(|| set("OTEL_EXPORTER_OTLP_ENDPOINT"))
        else {
            return Ok(None);
        };
        let endpoint = check_endpoint(&endpoint)?;
        let sample_ratio = match ratio {
            Some(r) => r,
            None => match set("OTEL_TRACES_SAMPLER_ARG") {
                Some(v) => v.parse::<f64>().map_err(|_| {
                    format!("OTEL_TRACES_SAMPLER_ARG={v} is not a number: give a ratio between 0 and 1, e.g. 0.01")
                })?,
                None => 1.0,
            },
        };
        if !(0.0..=1.0).contains(&sample_ratio) {
            return Err(format!(
                "trace sampling ratio {sample_ratio} is outside 0..1: give e.g. 1 (every vote) or 0.01"
            ));
        }
        Ok(Some(TelemetryConfig {
            endpoint,
            service_name: set("OTEL_SERVICE_NAME").unwrap_or_else(|| default_service.to_string()),
            per_node_services: false,
            sample_ratio,
            queue: DEFAULT_QUEUE,
        }))
    }
}

/// An OTLP/gRPC endpoint as `http://host:port`; anything else is refused with what to
/// give instead (TLS is not built in).
pub fn check_endpoint(endpoint: &str) -> Result<String, String> {
    let e = endpoint.trim();
    let rest = e.strip_prefix("http://").ok_or_else(|| {
        format!(
            "OTLP endpoint {e:?} is not an http:// URL: give the collector's gRPC address, e.g. http://localhost:4317"
        )
    })?;
    let authority = rest.trim_end_matches('/');
    let (host, port) = authority
        .rsplit_once(':')
        .ok_or_else(|| format!("OTLP endpoint {e:?} has no port: give e.g. http://localhost:4317"))?;
    if host.is_empty() || authority.contains('/') || port.parse::<u16>().is_err() {
        return Err(format!("OTLP endpoint {e:?} is not host:port: give e.g. http://localhost:4317"));
    }
    Ok(format!("http://{authority}"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::BTreeMap;

    fn env(pairs: &[(&str, &str)]) -> impl Fn(&str) -> Option<String> {
        let m: BTreeMap<String, String> = pairs.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect();
        move |k| m.get(k).cloned()
    }

    #[test]
    fn off_without_an_endpoint_or_when_disabled() {
        assert_eq!(TelemetryConfig::from_lookup(None, "n", None, env(&[])), Ok(None));
        let disabled = env(&[("OTEL_SDK_DISABLED", "true"), ("OTEL_EXPORTER_OTLP_ENDPOINT", "http://c:4317")]);
        assert_eq!(TelemetryConfig::from_lookup(None, "n", None, disabled), Ok(None));
    }

    #[test]
    fn flag_beats_variables_and_service_name_comes_from_the_environment() {
        let e = env(&[("OTEL_EXPORTER_OTLP_ENDPOINT", "http://env:4317"), ("OTEL_SERVICE_NAME", "acceptor-2")]);
        let c = TelemetryConfig::from_lookup(Some("http://flag:4317/".into()), "n", None, e).unwrap().unwrap();
        assert_eq!(
            (c.endpoint.as_str(), c.service_name.as_str(), c.sample_ratio),
            ("http://flag:4317", "acceptor-2", 1.0)
        );
        let e = env(&[("OTEL_EXPORTER_OTLP_ENDPOINT", "http://env:4317"), ("OTEL_TRACES_SAMPLER_ARG", "0.01")]);
        let c = TelemetryConfig::from_lookup(None, "proposer-1", None, e).unwrap().unwrap();
        assert_eq!(
            (c.endpoint.as_str(), c.service_name.as_str(), c.sample_ratio),
            ("http://env:4317", "proposer-1", 0.01)
        );
    }

    #[test]
    fn bad_endpoints_and_ratios_are_one_line_errors() {
        for bad in
            ["localhost:4317", "https://c:4317", "http://c", "http://c:port", "http://:4317", "http://c:4317/v1/traces"]
        {
            let e = TelemetryConfig::from_lookup(Some(bad.into()), "n", None, env(&[])).unwrap_err();
            assert!(e.contains("e.g. http://localhost:4317") && !e.contains('\n'), "{bad}: {e}");
        }
        assert!(TelemetryConfig::from_lookup(Some("http://c:1".into()), "n", Some(1.5), env(&[])).is_err());
        let e = env(&[("OTEL_TRACES_SAMPLER_ARG", "lots")]);
        assert!(TelemetryConfig::from_lookup(Some("http://c:1".into()), "n", None, e).is_err());
    }
}
