//! The `/logs` pages: the process's last log lines as HTML or JSON.

use super::overview::{escape, CSS};
use super::{json_response, Shared};
use axum::extract::State;
use axum::http::Uri;
use axum::response::{Html, IntoResponse, Response};
use ballot_telemetry::log_ring::LOG_LINES;
use std::fmt::Write as _;

/// `?format=json` asks for JSON.
fn wants_json(uri: &Uri) -> bool {
    uri.query().is_some_and(|q| q.split('&').any(|kv| kv == "format=json"))
}

pub(super) async fn logs(State(s): State<Shared>, uri: Uri) -> Response {
    let lines = s.logs.as_ref().map(|l| l.lines()).unwrap_or_default();
    if wants_json(&uri) {
        return json_response(&lines);
    }
    let title = format!("{} logs", s.nodes.first().map(|n| n.id.to_string()).unwrap_or_default());
    let mut body = String::with_capacity(lines.len() * 120 + 1024);
    let _ = write!(
        body,
        "<!doctype html><html><head><meta charset=\"utf-8\"><title>{t}</title><style>{CSS}</style></head><body>\
         <h1>{t}</h1><p>The last {n} lines, newest last (at most {LOG_LINES}). <a href=\"/logs?format=json\">JSON</a> · \
         <a href=\"/\">cluster</a></p><table class=\"logs\"><tr><th>time</th><th>level</th><th>target</th><th>message</th></tr>",
        t = escape(&title),
        n = lines.len()
    );
    for l in &lines {
        let _ = write!(
            body,
            "<tr class=\"{lv}\"><td>{}</td><td>{lv}</td><td>{}</td><td>{}</td></tr>",
            escape(&l.time),
            escape(&l.target),
            escape(&l.message),
            lv = escape(&l.level)
        );
    }
    body.push_str("</table></body></html>");
    Html(body).into_response()
}

pub(super) async fn logs_json(State(s): State<Shared>) -> Response {
    json_response(&s.logs.as_ref().map(|l| l.lines()).unwrap_or_default())
}
