//! W3C Trace Context (`traceparent`) on envelopes: taken from a span, given to a span.

use ballot_transports::TraceContext;
use opentelemetry::trace::{SpanContext, SpanId, TraceContextExt, TraceFlags, TraceId, TraceState};
use opentelemetry::Context;
use tracing_opentelemetry::OpenTelemetrySpanExt;

/// The trace context of `span` for an envelope, or `None` when the span is not traced
/// (tracing off, the span disabled, or its trace not sampled). An unsampled trace is not
/// propagated: nodes only open spans for messages that carry a context, so a vote that
/// sampling left out costs nothing past the client.
pub fn context_of(span: &tracing::Span) -> Option<TraceContext> {
    if span.is_disabled() {
        return None;
    }
    let cx = span.context();
    let sc = cx.span().span_context().clone();
    (sc.is_valid() && sc.is_sampled()).then(|| to_traceparent(&sc))
}

/// `traceparent` for `sc` (W3C Trace Context, version 00).
pub fn to_traceparent(sc: &SpanContext) -> TraceContext {
    TraceContext {
        traceparent: format!("00-{}-{}-{:02x}", sc.trace_id(), sc.span_id(), sc.trace_flags().to_u8()),
        tracestate: None,
        slot: None,
    }
}

/// The span context a `traceparent` names, or `None` if it is not a valid version-00
/// header (it comes from the network: anything malformed is ignored, never trusted).
pub fn parse_traceparent(tp: &str) -> Option<SpanContext> {
    if tp.len() != 55 {
        return None;
    }
    let mut parts = tp.split('-');
    let (v, t, s, f) = (parts.next()?, parts.next()?, parts.next()?, parts.next()?);
    let hex = |x: &str| x.bytes().all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b));
    if parts.next().is_some()
        || v != "00"
        || t.len() != 32
        || s.len() != 16
        || f.len() != 2
        || ![t, s, f].iter().all(|x| hex(x))
    {
        return None;
    }
    let trace_id = TraceId::from_hex(t).ok()?;
    let span_id = SpanId::from_hex(s).ok()?;
    let flags = u8::from_str_radix(f, 16).ok()?;
    let sc = SpanContext::new(trace_id, span_id, TraceFlags::new(flags & 1), true, TraceState::default());
    sc.is_valid().then_some(sc)
}

/// Make the span a trace context names (an envelope's, or one taken with [`context_of`])
/// the parent of `span`. Returns whether it did: a malformed context is ignored.
pub fn set_parent(span: &tracing::Span, parent: &TraceContext) -> bool {
    match parse_traceparent(&parent.traceparent) {
        Some(sc) => span.set_parent(Context::new().with_remote_span_context(sc)).is_ok(),
        None => false,
    }
}

/// Add a link from `span` to another trace context (a vote batched with others).
pub fn add_link(span: &tracing::Span, other: &TraceContext) {
    if let Some(sc) = parse_traceparent(&other.traceparent) {
        span.add_link(sc);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn traceparent_round_trips_and_garbage_is_refused() {
        let tp = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";
        let sc = parse_traceparent(tp).expect("valid");
        assert!(sc.is_sampled() && sc.is_remote());
        assert_eq!(to_traceparent(&sc).traceparent, tp);
        let unsampled = parse_traceparent("00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-00").unwrap();
        assert!(!unsampled.is_sampled());
        for bad in [
            "",
            "00-00000000000000000000000000000000-00f067aa0ba902b7-01",
            "00-4bf92f3577b34da6a3ce929d0e0e4736-0000000000000000-01",
            "01-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
            "00-4BF92F3577B34DA6A3CE929D0E0E4736-00f067aa0ba902b7-01",
            "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-0g",
            "00_4bf92f3577b34da6a3ce929d0e0e4736_00f067aa0ba902b7_01",
            "00-4bf92f3577b34da6a3ce929d0e0e47-3600f067aa0ba902b7-01",
            "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01-extra",
            "é0-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-0",
        ] {
            assert!(parse_traceparent(bad).is_none(), "accepted {bad:?}");
        }
    }
}
